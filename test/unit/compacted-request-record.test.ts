// A rule no test held until mutation testing (sequencer.ts forgetRequestsThrough breaking at `r.seq >= seq`): compaction
// through seq drops the entry at seq, so its request must leave the index with it. Kept, a record
// loaded from the log at a start (its command hash read lazily, from the log) names an entry that
// is gone, and the retry of that request threw instead of being answered.
import { describe, expect, it } from "vitest";
import { Cluster } from "../support/cluster.js";

const put = (n: number) => ({ op: "put", key: `k${n}`, value: n });

describe("a request whose entry compaction dropped", () => {
  it("leaves the index with it, also when the index was rebuilt from the log at a start: its retry is answered, not thrown", () => {
    const c = Cluster.of("kv");
    for (let n = 1; n <= 4; n++) c.submit("a", n, put(n));
    c.settle();
    expect(c.sequencer.commitSeq).toBe(4);
    c.restartSequencer(); // the index is read back from the log, hashes unread
    c.settle(); // the replicas answer again: their applied positions are known
    expect(c.sequencer.compact(1, 0)).toBe(3);
    expect(c.sequencer.forgottenThroughSeq).toBeGreaterThanOrEqual(3);
    expect(() => c.submit("a", 3, put(3))).not.toThrow();
    expect(c.submit("a", 4, put(4))).toMatchObject({ kind: "existing", seq: 4, committed: true });
  });
});
