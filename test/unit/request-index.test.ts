// The sequencer's exactly-once index of (client, request) pairs: rules no test held until
// mutation testing (each a one-line change the unit tests and simulator sweeps let through).
import { describe, expect, it } from "vitest";
import { Cluster } from "../support/cluster.js";

const put = (n: number) => ({ op: "put", key: `k${n}`, value: n });

// Mutated: sequencer.ts pendingKey without its separator. The request index and the
// queue key (client, request) by `${request}:${client}`; without the ':' client "a"'s request 11 and
// client "1a"'s request 1 are one key, and the second command is answered as the first's retry and
// never ordered (client ids are any string: schemas.ts).
describe("the sequencer's exactly-once index keys (client, request) pairs apart", () => {
  it("client a's request 11 and client 1a's request 1 are two requests: both ordered, queued or already in the index", () => {
    const c = Cluster.of("kv");
    expect(c.submit("a", 11, put(1)).kind).toBe("queued");
    expect(c.submit("1a", 1, put(1)).kind).toBe("queued"); // while the first is queued
    c.settle();
    expect(c.sequencer.commitSeq).toBe(2);
    expect(c.submit("1", 12, put(1)).kind).toBe("queued"); // "121" once ordered: "12" + "1", "1" + "21"
    c.settle();
    expect(c.submit("21", 1, put(1)).kind).toBe("queued"); // while the first is in the index
    c.settle();
    expect(c.sequencer.commitSeq).toBe(4);
  });
});

// Mutated: sequencer.ts forgetRequestsThrough breaking at `r.seq >= seq`. Compaction
// through seq drops the entry at seq, so its request must leave the index with it. Kept, a record
// loaded from the log at a start (its command hash read lazily, from the log) names an entry that
// is gone, and the retry of that request threw instead of being answered.
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

// Mutated: sequencer.ts constructor: forgottenSeq 0 instead of the log's base. A
// sequencer that starts over a compacted log holds no request ordered at or below its base, so
// forgottenThroughSeq must cover it. At 0 the driver takes the index as complete, and a refused
// retry of a request that ran before the base is told 503 ("certainly not ordered") without the
// session lookup (driver.ts answerDecision), and a reuse of its id is a 409 at once.
describe("a sequencer started over a compacted log", () => {
  it("counts every request at or below the log's base as forgotten", () => {
    const c = Cluster.of("kv");
    for (let n = 1; n <= 6; n++) c.submit("a", n, put(n));
    c.settle();
    expect(c.sequencer.compact(2, 0)).toBe(4);
    expect(c.sequencer.forgottenThroughSeq).toBe(4);
    c.restartSequencer();
    expect(c.sequencer.baseSeq).toBe(4);
    expect(c.sequencer.forgottenThroughSeq).toBeGreaterThanOrEqual(4);
  });
});
