// A rule no test held until mutation testing (recovery.ts taking the best log's lastSeq as committed): a recovery knows
// committed only what a fenced replica said was (its commitSeq); the best log's tail past it may be
// on that one replica alone, and commits only with the successor's no-op (raft's leader
// completeness). Counted committed at once, the successor's first message told the best log's
// holder to apply an entry no quorum held, and a later recovery without that replica put another
// entry at its seq: a read could see a write that then vanished.
import { describe, expect, it } from "vitest";
import { MemorySequencerStorage } from "../../shared/protocol/memory.js";
import { recoverSequencer } from "../../shared/protocol/recovery.js";
import { SequencerCore } from "../../shared/protocol/sequencer.js";
import { Cluster } from "../support/cluster.js";
import { clusterIO } from "../support/cluster-io.js";

const put = (n: number) => ({ op: "put", key: `k${n}`, value: n });

describe("a recovery whose best log ends past every fenced replica's commit", () => {
  it("does not count that tail committed: the holder of the best log is not told to apply it before a quorum holds it", async () => {
    const c = Cluster.of("kv");
    for (let n = 1; n <= 2; n++) c.submit("a", n, put(n));
    c.settle();
    // Entry 3 reaches r1 alone (r2 and r3 away): ordered, never committed.
    c.down.add("r2");
    c.down.add("r3");
    c.submit("a", 3, put(3));
    c.round();
    expect(c.sequencer.commitSeq).toBe(2);
    expect(c.replicas.get("r1")!.position()).toMatchObject({ lastSeq: 3, commitSeq: 2, appliedSeq: 2 });
    c.down.clear();

    // The sequencer is lost; its successor fences r1 and r2 and recovers r1's log (the best).
    const store = new MemorySequencerStorage();
    const r = await recoverSequencer(c.config, store, clusterIO(c, { reach: ["r1", "r2"] }).io);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.recoveredSeq).toBe(3);
    expect(r.meta.commitSeq).toBe(2);

    // Its first message to r1 (the no-op at 4): r1 stores it, but may not apply 3 on its own word.
    const s2 = new SequencerCore(store, r.meta);
    const d = s2.nextAppend("r1");
    expect(d.kind).toBe("send");
    if (d.kind !== "send") return;
    expect(d.msg.commitSeq).toBeLessThanOrEqual(2);
    const resp = c.replicas.get("r1")!.append(d.msg);
    expect(resp).toMatchObject({ ok: true, lastSeq: 4, appliedSeq: 2 });
  });
});
