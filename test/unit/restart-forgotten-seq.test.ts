// A rule no test held until mutation testing (sequencer.ts constructor: forgottenSeq 0 instead of the log's base): a
// sequencer that starts over a compacted log holds no request ordered at or below its base, so
// forgottenThroughSeq must cover it. At 0 the driver takes the index as complete, and a refused
// retry of a request that ran before the base is told 503 ("certainly not ordered") without the
// session lookup (driver.ts answerDecision), and a reuse of its id is a 409 at once.
import { describe, expect, it } from "vitest";
import { Cluster } from "../support/cluster.js";

const put = (n: number) => ({ op: "put", key: `k${n}`, value: n });

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
