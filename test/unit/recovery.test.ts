// A recovering sequencer reads the best log of the fenced quorum page by page: a page that does
// not come is asked for again (the fence already holds), a few times, before the attempt fails.
import { leaseTimers } from "../support/direct.js";
import { describe, expect, it } from "vitest";
import { fenceStragglersMs, readLeaseMs, replicaRpcTimeoutMs, resendMs } from "../../shared/limits.js";
import { ReplicaDriver } from "../../shared/protocol/replica-driver.js";
import { type DriverIO, type ReplicaLink, type ReplicaTransport, linkOver, serve } from "../../shared/protocol/io.js";
import { MemorySequencerStorage } from "../../shared/protocol/memory.js";
import { recoverSequencer } from "../../shared/protocol/recovery.js";
import { SequencerCore } from "../../shared/protocol/sequencer.js";
import { Cluster } from "../support/cluster.js";
import { clusterIO } from "../support/cluster-io.js";

/** Links straight to the cluster's replicas; readLog fails its first `lost` calls; `reach` as clusterIO's. */
const ioOver = (c: Cluster, lost: number, reach?: string[]) => clusterIO(c, { lostReads: lost, reach, timerCapMs: 50 });

function groupWithLog(): Cluster {
  const c = Cluster.of("kv", 3, "first", 1_000);
  for (let r = 1; r <= 20; r++) c.submit("a", r, { op: "put", key: `k${r}`, value: r });
  c.settle();
  return c;
}

describe("recovery reads the best log", () => {
  it("asks again for a page that did not come, and recovers every entry", async () => {
    const c = groupWithLog();
    const { io, reads } = ioOver(c, 2);
    const storage = new MemorySequencerStorage();
    const r = await recoverSequencer(c.config, storage, io);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.recoveredSeq).toBe(20);
    expect(storage.lastEntry()!.seq).toBe(21); // the new epoch's no-op
    expect(reads()).toBe(3);
  });

  it("gives the attempt up after three lost tries of one page", async () => {
    const c = groupWithLog();
    const { io } = ioOver(c, 3);
    const r = await recoverSequencer(c.config, new MemorySequencerStorage(), io);
    expect(r).toMatchObject({ ok: false, reason: expect.stringMatching(/^could not read the log of r\d$/) });
  });
});

describe("the recovered epoch", () => {
  // Found by the simulator (seed 1730814463): the group's first sequencer takes epoch 1 without
  // fencing anyone; cut off before any append got out, it left every other replica at epoch 0,
  // and its successor took epoch 1 too: two sequencers ordered entry 1 in one epoch.
  it("is above 1 even when no replica has seen an epoch", async () => {
    const c = Cluster.of("kv", 3, "first", 1_000);
    for (const r of c.replicas.values()) expect(r.fence(0).epoch).toBe(0);
    const storage = new MemorySequencerStorage();
    const r = await recoverSequencer(c.config, storage, ioOver(c, 0).io);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.meta.epoch).toBe(2);
    expect(storage.lastEntry()).toMatchObject({ seq: 1, epoch: 2, kind: "noop" });
  });
});

/**
 * Links to the cluster's replicas in time running 100x faster (a resend after 10 ms, a timeout
 * after 30); the answer to the first copy of each call `lost` picks is lost (the replica acts on
 * it, its caller hears nothing). `timeouts` counts the replicaRpcTimeoutMs timers that fired.
 */
function lossyIo(c: Cluster, lost: (id: string, method: string) => boolean) {
  const sent = new Map<string, number>();
  let timeouts = 0;
  const io = {
    nowMs: () => Date.now(),
    setTimer: (ms: number, fn: () => void) => {
      const t = setTimeout(() => {
        if (ms === replicaRpcTimeoutMs) timeouts++;
        fn();
      }, ms / 100);
      return () => clearTimeout(t);
    },
    log: () => {},
    link: (id: string): ReplicaLink => {
      const transport: ReplicaTransport = async (method, args) => {
        const key = `${id}:${method}:${JSON.stringify(args)}`;
        sent.set(key, (sent.get(key) ?? 0) + 1);
        const answer = serve(c.replicas.get(id)! as never, method, args);
        if (lost(id, method) && sent.get(key) === 1) return new Promise<never>(() => {});
        return (await answer) as never;
      };
      return linkOver(transport, async () => null);
    },
  } as unknown as DriverIO;
  return { io, sent, timeouts: () => timeouts };
}

describe("a recovery's lost answers", () => {
  it("a fence round asks a replica whose answer was lost again, and counts its second answer", async () => {
    const c = groupWithLog();
    const { io, sent, timeouts } = lossyIo(c, (id, method) => method === "fence" && id !== "r1");
    const r = await recoverSequencer(c.config, new MemorySequencerStorage(), io);
    expect(r).toMatchObject({ ok: true, recoveredSeq: 20 });
    expect([...sent].filter(([k]) => k.startsWith("r2:fence")).map(([, n]) => n)).toEqual([2, 2]); // the probe and the fence, each sent twice
    expect(timeouts()).toBe(0);
  });

  it("a page of the log whose answer was lost is asked for again before its timeout", async () => {
    const c = groupWithLog();
    const { io, sent, timeouts } = lossyIo(c, (_id, method) => method === "readLog");
    const r = await recoverSequencer(c.config, new MemorySequencerStorage(), io);
    expect(r).toMatchObject({ ok: true, recoveredSeq: 20 });
    expect([...sent].filter(([k]) => k.includes(":readLog:")).map(([, n]) => n)).toEqual([2]);
    expect(timeouts()).toBe(0);
  });
});

/** Links to these replica drivers, whose clock reads `now()`; timers are recorded and run at once. */
function leaseIo(now: () => number, drivers: Map<string, ReplicaDriver>) {
  const { waits, setTimer } = leaseTimers();
  const io = {
    nowMs: now,
    setTimer,
    log: () => {},
    link: (id: string): ReplicaLink => linkOver(async (method, args) => (await serve(drivers.get(id)! as never, method, args)) as never, async () => null),
  } as unknown as DriverIO;
  return { io, waits };
}

describe("a successor waits out an older sequencer's read lease", () => {
  /** The cluster's replicas behind ReplicaDrivers started now. */
  function drivenIo(c: Cluster, now: () => number) {
    const drivers = new Map([...c.replicas].map(([id, core]) => [id, new ReplicaDriver(core, { nowMs: now, setTimer: () => () => {} })]));
    return { ...leaseIo(now, drivers), drivers };
  }

  it("until readLeaseMs after the latest acknowledgement a fenced replica reports (its start counts)", async () => {
    const c = groupWithLog();
    let clock = 100_000;
    const { io, drivers, waits } = drivenIo(c, () => clock);
    clock += 1_000; // every replica started (so may have acknowledged) 1 s ago
    expect(drivers.get("r1")!.fence(0)).toMatchObject({ ackedAgoMs: 1_000 });
    const r = await recoverSequencer(c.config, new MemorySequencerStorage(), io);
    expect(r.ok).toBe(true);
    expect(waits).toEqual([readLeaseMs - 1_000]);
  });

  it("not at all when every fenced replica acknowledged nothing for readLeaseMs", async () => {
    const c = groupWithLog();
    let clock = 100_000;
    const { io, waits } = drivenIo(c, () => clock);
    clock += readLeaseMs + 1;
    const r = await recoverSequencer(c.config, new MemorySequencerStorage(), io);
    expect(r.ok).toBe(true);
    expect(waits).toEqual([]);
  });
});

describe("the old lease's end, by quorum", () => {
  it("does not wait for one replica's recent acknowledgement when the others, all fenced, acknowledged nothing lately (a co-located replica alone gives no lease)", async () => {
    const c = groupWithLog();
    let clock = 100_000;
    const drivers = new Map<string, ReplicaDriver>();
    const clockOf = { nowMs: () => clock, setTimer: () => () => {} };
    for (const [id, core] of c.replicas) {
      if (id !== "r1") drivers.set(id, new ReplicaDriver(core, clockOf));
    }
    clock += 10_000;
    drivers.set("r1", new ReplicaDriver(c.replicas.get("r1")!, clockOf)); // started (so may have acknowledged) just now
    const { io, waits } = leaseIo(() => clock, drivers);
    const r = await recoverSequencer(c.config, new MemorySequencerStorage(), io);
    expect(r.ok).toBe(true);
    // Any quorum of the old sequencer's includes r2 or r3, both fenced, silent for 10 s.
    expect(waits).toEqual([]);
  });
});

describe("a recovered sequencer's epoch is settled", () => {
  it("not while its commit point is its compacted base (after a restore, or a log compacted to it): no entry there tells its epoch", () => {
    const c = Cluster.of("kv", 3, "first", 1_000);
    const core = new SequencerCore(new MemorySequencerStorage(), { config: c.config, epoch: 2, commitSeq: 1, baseSeq: 1, baseHash: "ab".repeat(32), quarantined: [] });
    expect(core.epochSettled).toBe(false);
  });
});

describe("a recovery that fenced every member", () => {
  it("counts as settled only if every log is a prefix of the best (raft's figure 8: an older epoch's uncommitted entry may commit later)", async () => {
    const c = Cluster.of("kv", 3, "first", 1_000);
    c.submit("a", 1, { op: "put", key: "x", value: 1 });
    c.sequencer.flush(new Date(0).toISOString());
    c.deliver("r1", c.messageFor("r1")!); // X at seq 1 on r1 only, uncommitted
    // An epoch-2 recovery reaches r2 and r3; its no-op reaches r2 only.
    const s2 = new MemorySequencerStorage();
    const two = await recoverSequencer(c.config, s2, ioOver(c, 0, ["r2", "r3"]).io);
    expect(two.ok).toBe(true);
    const noop = s2.readEntries(1, 1);
    expect(c.replicas.get("r2")!.append({ epoch: (two as { meta: { epoch: number } }).meta.epoch, prevSeq: 0, prevHash: "0".repeat(64), entries: noop, commitSeq: 0 }).ok).toBe(true);
    // Recovery A fences all three: r2's log is the best, r1's ends in an older epoch with X.
    const a = await recoverSequencer(c.config, new MemorySequencerStorage(), ioOver(c, 0, ["r1", "r2", "r3"]).io);
    expect(a.ok).toBe(true);
    expect((a as { meta: { fencedAll?: boolean } }).meta.fencedAll).toBeUndefined();
    // Every log the best's prefix (all in step): settled at once.
    const d = Cluster.of("kv", 3, "first", 1_000);
    d.submit("a", 1, { op: "put", key: "x", value: 1 });
    d.settle();
    const all = await recoverSequencer(d.config, new MemorySequencerStorage(), ioOver(d, 0, ["r1", "r2", "r3"]).io);
    expect((all as { meta: { fencedAll?: boolean } }).meta.fencedAll).toBe(true);
  });
});

describe("a recovered sequencer's first append", () => {
  // Found in the simulator's takeovers: the first message to each replica was an empty append
  // after the no-op, which no replica holds, so each answered "gap" and the no-op went one round
  // trip later (up to 1.6 s over a slow link, on every takeover).
  it("carries its last entry (the no-op), and a replica that holds the entry before takes it", async () => {
    const c = groupWithLog();
    const storage = new MemorySequencerStorage();
    const r = await recoverSequencer(c.config, storage, ioOver(c, 0).io);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const core = new SequencerCore(storage, r.meta);
    for (const id of ["r1", "r2", "r3"]) {
      const d = core.nextAppend(id);
      expect(d.kind).toBe("send");
      if (d.kind !== "send") continue;
      expect(d.msg.prevSeq).toBe(20);
      expect(d.msg.entries.map((e) => [e.seq, e.kind])).toEqual([[21, "noop"]]);
      expect(c.replicas.get(id)!.append(d.msg)).toMatchObject({ ok: true, lastSeq: 21 });
    }
  });
});
