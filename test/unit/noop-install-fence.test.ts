// A replica whose log holds no-ops only, rebuilt by a state transfer (a repair), raises rejoinSeq
// like any other: the no-ops exception is a restore's (ReplicaCore.beginInstall). Without it (a
// review), mid-install it answered fences with an empty log, a recovery whose quorum was it and a
// replica that never got the committed no-op put another entry at that seq, and the replica that
// had applied the first refused every append after.
import { describe, expect, it } from "vitest";
import { MemorySequencerStorage } from "../../shared/protocol/memory.js";
import { recoverSequencer } from "../../shared/protocol/recovery.js";
import { zeroHash } from "../../shared/protocol/hash.js";
import { Cluster } from "../support/cluster.js";
import { clusterIO } from "../support/cluster-io.js";

describe("a repair of a replica holding no-ops only, then a failover", () => {
  it("keeps the committed no-op: a recovery needs a replica that holds it", async () => {
    const c = Cluster.of("kv", 3, "first", 1_000);
    const [r1, r2, r3] = ["r1", "r2", "r3"].map((id) => c.replicas.get(id)!);
    // A failover before any write: the successor recovers from r2 and r3; its no-op (seq 1) is
    // stored by both and committed (both apply it).
    const s2store = new MemorySequencerStorage();
    expect((await recoverSequencer(c.config, s2store, clusterIO(c, { reach: ["r2", "r3"] }).io)).ok).toBe(true);
    const noop = s2store.lastEntry()!;
    expect(noop).toMatchObject({ seq: 1, kind: "noop", epoch: 2 });
    for (const r of [r2, r3]) expect(r!.append({ epoch: 2, prevSeq: 0, prevHash: zeroHash, entries: [noop], commitSeq: 1 })).toMatchObject({ ok: true, appliedSeq: 1 });
    // r3 is rebuilt by a state transfer (an audit found its rows corrupt, say): its install
    // begins, clearing its log (committed no-ops: it now refuses fences until it has them again).
    expect(r3!.beginInstall(r2!.beginSnapshot()!, "t1", 2)).toBe(true);
    // That sequencer is lost. A recovery that reaches only r1 (which never heard the no-op) and
    // the installing r3 cannot take office: r3 cleared a committed entry and refuses the fence.
    const s3store = new MemorySequencerStorage();
    expect((await recoverSequencer(c.config, s3store, clusterIO(c, { reach: ["r1", "r3"] }).io)).ok).toBe(false);
    // One that reaches r2 keeps the committed no-op at seq 1, and r2 takes its appends.
    const s4store = new MemorySequencerStorage();
    expect((await recoverSequencer(c.config, s4store, clusterIO(c, { reach: ["r1", "r2"] }).io)).ok).toBe(true);
    expect(s4store.readEntries(1, 1)[0]!.hash).toBe(noop.hash);
    const next = s4store.readEntries(2, 2);
    expect(r2!.append({ epoch: next[0]!.epoch, prevSeq: 1, prevHash: noop.hash, entries: next, commitSeq: 0 })).toMatchObject({ ok: true });
    void r1;
  });
});
