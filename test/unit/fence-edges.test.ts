// Three edges a review suspected, each driven to the outcome a client could observe: none loses a
// write, moves a read back or elects two sequencers, and each test fails if the safeguard it names goes.
// 1. A replica acknowledges an append below its compacted base without raising its epoch.
// 2. A sequencer that lost its storage starts fresh when no replica answers.
// 3. A repair from a source behind its target moves the target back.
import { describe, expect, it } from "vitest";
import { machineFor } from "../../shared/machines/index.js";
import { SequencerLifecycle } from "../../shared/protocol/lifecycle.js";
import type { DriverIO } from "../../shared/protocol/io.js";
import { MemorySequencerStorage } from "../../shared/protocol/memory.js";
import { recoverSequencer } from "../../shared/protocol/recovery.js";
import { ReplicaCore } from "../../shared/protocol/replica.js";
import { ReplicaDriver } from "../../shared/protocol/replica-driver.js";
import { SequencerCore } from "../../shared/protocol/sequencer.js";
import type { GroupConfig } from "../../shared/protocol/types.js";
import { Cluster } from "../support/cluster.js";
import { clusterIO } from "../support/cluster-io.js";
import { directGroup, realClock } from "../support/direct.js";

const ioOver = (c: Cluster, reach?: string[]): DriverIO => clusterIO(c, { reach }).io;

/** One append from `seq` to replica `id`, answered; the replica's answer. */
function exchange(seq: SequencerCore, c: Cluster, id: string) {
  const d = seq.nextAppend(id);
  if (d.kind !== "send") return null;
  const resp = c.replicas.get(id)!.append(d.msg);
  seq.onAppendResponse(id, resp, 0);
  return resp;
}

const put = (n: number) => ({ op: "put", key: `k${n}`, value: n });

describe("suspicion 1: an append below a replica's compacted base is acknowledged without raising its epoch", () => {
  it("the old sequencer gets that replica's ack, but never a quorum: the successor's fence holds", async () => {
    const c = Cluster.of("kv", 3, "first", 1_000);
    // r3 compacts after a handful of entries (r1 and r2 keep theirs: S2's log starts at 0).
    const store3 = c.replicaStores.get("r3")!;
    c.replicas.set("r3", new ReplicaCore(store3, store3.meta!, machineFor("kv"), { entries: 4, slack: 1 }));
    // S1 (epoch 1) commits 1..10 on r1 and r2; r3 is away.
    c.down.add("r3");
    for (let n = 1; n <= 10; n++) c.submit("a", n, put(n));
    c.settle();
    const s1 = c.sequencer;
    expect(s1.commitSeq).toBe(10);
    expect(c.replicas.get("r3")!.position().lastSeq).toBe(0);

    // Failover: S2 fences r1 and r2 at epoch 2 (r3 still away) and recovers 1..10 plus its no-op.
    const s2Store = new MemorySequencerStorage();
    const r = await recoverSequencer(c.config, s2Store, ioOver(c, ["r1", "r2"]));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const s2 = new SequencerCore(s2Store, r.meta);
    expect(s2.epoch).toBe(2);
    c.down.delete("r3");
    const r3 = c.replicas.get("r3")!;
    // S2's first message finds r3 empty: a gap, S2 goes back to its start.
    expect(exchange(s2, c, "r3")).toMatchObject({ ok: false, reason: "gap" });

    // The deposed S1, cut off from r1 and r2 but reaching r3, catches it up to 10: r3 compacts to 6.
    expect(exchange(s1, c, "r3")).toMatchObject({ ok: true, appliedSeq: 10 });
    expect(r3.config.baseSeq).toBe(6);
    expect(r3.position().epoch).toBe(1);

    // S2's heartbeat at prevSeq 0, below r3's base: acknowledged, and r3 stays at epoch 1 (the suspicion).
    const beat = s2.heartbeat("r3")!;
    expect(beat).toMatchObject({ epoch: 2, prevSeq: 0, entries: [] });
    const ack = r3.append(beat);
    s2.onAppendResponse("r3", ack, 0);
    expect(ack.ok).toBe(true);
    expect(r3.position().epoch).toBe(1);

    // S1 orders entry 11: r3 (still epoch 1) stores it and acks, r1 and r2 refuse (fenced at 2).
    c.submit("a", 11, put(11));
    s1.flush(new Date(1_000).toISOString());
    expect(exchange(s1, c, "r3")).toMatchObject({ ok: true, lastSeq: 11 });
    expect(s1.commitSeq).toBe(10); // one ack of three: no quorum
    expect(exchange(s1, c, "r1")).toMatchObject({ ok: false, reason: "stale_epoch" });
    expect(s1.fenced).toBe(true);
    expect(s1.nextAppend("r2").kind).toBe("idle"); // fenced: it sends nothing more
    expect(s1.commitSeq).toBe(10);
    expect(c.decided.find((d) => d.seq === 11)).toBeUndefined();

    // S2 goes on: r3's entry 11 (S1's, never committed) is replaced by S2's no-op, and r3 takes epoch 2.
    for (let i = 0; i < 10; i++) for (const id of ["r1", "r2", "r3"]) exchange(s2, c, id);
    expect(s2.commitSeq).toBe(11);
    for (const [id, rep] of c.replicas) {
      expect(rep.position(), id).toMatchObject({ epoch: 2, lastSeq: 11, appliedSeq: 11 });
      expect(rep.readLog(11, 11)[0], id).toMatchObject({ seq: 11, epoch: 2, kind: "noop" });
    }
  });
});

describe("suspicion 2: a sequencer without storage and no replica answering", () => {
  const config: GroupConfig = { group: "g", incarnation: 1, machine: "kv", replicas: 3, locations: [], outputs: "first", checkpointEvery: 50 } as never;

  it("of a group with committed entries recovers or fails; it never starts fresh", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    for (let n = 1; n <= 20; n++) expect(await g.driver.submit("a", n, put(n))).toMatchObject({ kind: "ok" });
    g.driver.stop();
    // Its storage is lost; every replica is out of reach.
    for (const id of ["r1", "r2", "r3"]) g.down.add(id);
    const storage = new MemorySequencerStorage();
    let wipes = 0;
    const lifecycle = new SequencerLifecycle({
      storage: () => storage,
      prepare: () => {},
      wipe: async () => void wipes++,
      io: () => ({ ...g.io, setTimer: (ms: number, fn: () => void) => realClock.setTimer(Math.min(ms, 20), fn) }),
      inOffice: async () => true,
    });
    // A ready group's router asks for recover (groups.ts recoveredCall, failover, move): no quorum, no sequencer.
    const failed = await lifecycle.recover(config);
    expect(failed.ok).toBe(false);
    expect(lifecycle.core).toBeNull();
    expect(storage.lastEntry()).toBeNull();
    expect(wipes).toBeGreaterThan(0);
    // Back: it recovers every committed entry at a new epoch.
    g.down.clear();
    const back = await lifecycle.recover(config);
    expect(back).toMatchObject({ ok: true, epoch: 2 });
    expect(lifecycle.core!.lastLogSeq).toBe(21);
    lifecycle.stop();
  });

  it("init, the one path that can start fresh, recovers instead as soon as any replica answers with state", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    for (let n = 1; n <= 20; n++) expect(await g.driver.submit("a", n, put(n))).toMatchObject({ kind: "ok" });
    g.driver.stop();
    g.down.add("r1");
    g.down.add("r2");
    const storage = new MemorySequencerStorage();
    const lifecycle = new SequencerLifecycle({
      storage: () => storage,
      prepare: () => {},
      wipe: async () => {},
      io: () => ({ ...g.io, setTimer: (ms: number, fn: () => void) => realClock.setTimer(Math.min(ms, 20), fn) }),
      inOffice: async () => true,
    });
    // One replica of three answers: it holds state, so init recovers, and a recovery needs a quorum.
    await expect(lifecycle.init(config)).rejects.toThrow(/cannot recover/);
    expect(lifecycle.core).toBeNull();
    expect(storage.lastEntry()).toBeNull();
    lifecycle.stop();
  });
});

describe("suspicion 3: a repair from a source behind its target", () => {
  it("moves the target back, but no bookmarked read sees it and no recovery counts it", async () => {
    const c = Cluster.of("kv", 3, "first", 1_000);
    for (let n = 1; n <= 10; n++) c.submit("a", n, put(n));
    c.settle();
    c.down.add("r3");
    for (let n = 11; n <= 20; n++) c.submit("a", n, put(n));
    c.settle();
    expect(c.sequencer.commitSeq).toBe(20);
    const r1 = c.replicas.get("r1")!;
    const r3 = c.replicas.get("r3")!;
    expect(r3.appliedSeq).toBe(10);
    const reader = new ReplicaDriver(r1, realClock);
    // A read at r1 gives the client its bookmark's position, 20.
    expect(await reader.query({ op: "get", key: "k20" }, 0, 0)).toMatchObject({ kind: "ok", seq: 20, result: { value: 20 } });

    // An operator's repair of r1 while r2 is away: the only source is r3, behind at 10.
    c.sequencer.beginRepair("r1");
    const info = r3.beginSnapshot()!;
    expect(info.seq).toBe(10);
    expect(reader.beginInstall(info, "t1", c.sequencer.epoch)).toBe(true);
    for (let after: string | null = null; ; ) {
      const page: [string, string][] = r3.snapshotPage(info.seq, after, 1 << 20)!;
      if (page.length === 0) break;
      expect(reader.installPage("t1", page)).toBe(true);
      after = page[page.length - 1]![0];
    }
    expect(reader.endInstall("t1")).toMatchObject({ ok: true });
    r3.endSnapshot();
    expect(r1.appliedSeq).toBe(10); // back (the suspicion)

    // A reader with its bookmark (20) gets no older state: the read waits, then times out.
    expect(await reader.query({ op: "get", key: "k20" }, 20, 30)).toMatchObject({ kind: "timeout", appliedSeq: 10 });
    // The sequencer is lost, and r2, the other holder of the acknowledged 11..20, is away: a
    // recovery from r1 and r3 would end the log at 10. It is refused instead (no lost write).
    c.down.add("r2");
    const lost = await recoverSequencer(c.config, new MemorySequencerStorage(), ioOver(c, ["r1", "r3"]));
    expect(lost.ok ? `recovered through ${lost.recoveredSeq}` : "refused").toBe("refused");
    // Because r1 acknowledged 11..20 and holds them no more: it refuses every fence until its log is back.
    expect(r1.amnesiac).toBe(true);
    expect(r1.fence(9, "x").accepted).toBe(false);

    // The repair ends at the sequencer; r1 catches up from the log and serves the bookmark.
    c.down.clear();
    c.sequencer.endRepair("r1", info.seq, c.nowMs);
    c.settle();
    expect(r1.appliedSeq).toBe(20);
    expect(r1.amnesiac).toBe(false);
    expect(await reader.query({ op: "get", key: "k20" }, 20, 30)).toMatchObject({ kind: "ok", seq: 20, result: { value: 20 } });
    const rec = await recoverSequencer(c.config, new MemorySequencerStorage(), ioOver(c, ["r1", "r3"]));
    expect(rec).toMatchObject({ ok: true, recoveredSeq: 20 });
  });
});
