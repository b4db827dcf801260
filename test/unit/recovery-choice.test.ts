// A recovery's choices: which fenced log it rebuilds from, how long it waits out an older
// sequencer's read lease, and which rebuilt replicas may stand in its fenced quorum at all.
import { leaseTimers } from "../support/direct.js";
import { describe, expect, it } from "vitest";
import { fenceStragglersMs, readLeaseMs, replicaRpcTimeoutMs, resendMs } from "../../shared/limits.js";
import type { Entry } from "../../shared/api/types.js";
import { entryHash } from "../../shared/protocol/entry.js";
import { zeroHash } from "../../shared/protocol/hash.js";
import { type DriverIO, type ReplicaLink, linkOver, serve } from "../../shared/protocol/io.js";
import { MemorySequencerStorage } from "../../shared/protocol/memory.js";
import { recoverSequencer } from "../../shared/protocol/recovery.js";
import type { FenceReply } from "../../shared/protocol/types.js";
import { Cluster } from "../support/cluster.js";

const put = (key: string, value: unknown) => ({ op: "put", key, value });

/** A hash-chained log: `epochs[i]` is the epoch of entry i + 1; `tag` tells two logs' commands apart. */
function chain(epochs: number[], tag: (seq: number) => string = () => "x"): Entry[] {
  const out: Entry[] = [];
  let prev = zeroHash;
  epochs.forEach((epoch, i) => {
    const seq = i + 1;
    const body = { seq, epoch, kind: "command" as const, client: "a", request: seq, command: put(`${tag(seq)}${seq}`, seq), timestamp: new Date(seq * 1_000).toISOString() };
    const e = { ...body, hash: entryHash(prev, body) } as Entry;
    prev = e.hash;
    out.push(e);
  });
  return out;
}

/** A scripted replica: it holds `log`, has seen `epoch`, and accepts any fence above it. */
interface Scripted {
  log: Entry[];
  epoch: number;
  commitSeq: number;
  ackedAgoMs?: number;
}

function reply(r: Scripted, accepted: boolean): FenceReply {
  const last = r.log[r.log.length - 1];
  return {
    accepted,
    epoch: r.epoch,
    lastSeq: last?.seq ?? 0,
    lastEpoch: last?.epoch ?? 0,
    commitSeq: r.commitSeq,
    appliedSeq: r.commitSeq,
    baseSeq: 0,
    baseHash: zeroHash,
    baseTimestamp: null,
    quarantined: false,
    rebuilding: false,
    membership: null,
    ...(r.ackedAgoMs !== undefined ? { ackedAgoMs: r.ackedAgoMs } : {}),
  };
}

/**
 * Links to scripted replicas (an id not among them is unreachable), a clock standing at `nowMs`;
 * calls answer at once, so their resend, timeout and straggler timers never fire; any other timer
 * (the old lease's wait) is recorded and runs at once. `reads`: the replicas whose log was read.
 */
function scriptedIo(replicas: Map<string, Scripted>, nowMs = 1_000_000) {
  const { waits, setTimer } = leaseTimers();
  const reads: string[] = [];
  const io = {
    nowMs: () => nowMs,
    setTimer,
    log: () => {},
    link: (id: string): ReplicaLink =>
      linkOver(
        (async (method: string, args: unknown[]) => {
          const r = replicas.get(id);
          if (!r) throw new Error(`${id} unreachable`);
          if (method === "fence") {
            const [epoch] = args as [number];
            const accepted = epoch > r.epoch;
            if (accepted) r.epoch = epoch;
            return reply(r, accepted);
          }
          if (method === "readLog") {
            reads.push(id);
            const [from, to] = args as [number, number];
            return r.log.filter((e) => e.seq >= from && e.seq <= to);
          }
          throw new Error(`unexpected call ${method}`);
        }) as never,
        async () => null,
      ),
  } as unknown as DriverIO;
  return { io, waits, reads };
}

describe("the log a recovery rebuilds from", () => {
  // Guards the order logs compare in (recovery.ts header, FenceReply.lastEpoch; raft's up-to-date rule): by the
  // epoch of the last entry first, its seq second. A's longer tail (6..10, epoch 1) was never
  // committed: the epoch-2 sequencer recovered without A, replaced it with its no-op and a command
  // at 6..7, and committed them on B and a third replica. Picked by seq first, A's stale tail wins
  // and the acknowledged entries 6..7 are lost (mutant m05).
  it("is the one whose last entry has the highest epoch, even if another is longer", async () => {
    const a = chain([1, 1, 1, 1, 1, 1, 1, 1, 1, 1], (s) => (s > 5 ? "stale" : "k"));
    const b = chain([1, 1, 1, 1, 1, 2, 2], (s) => (s > 5 ? "new" : "k"));
    expect(b[4]!.hash).toBe(a[4]!.hash); // the same committed prefix 1..5
    const replicas = new Map<string, Scripted>([
      ["r1", { log: a, epoch: 1, commitSeq: 5 }],
      ["r2", { log: b, epoch: 2, commitSeq: 7 }],
    ]);
    const { io, reads } = scriptedIo(replicas);
    const storage = new MemorySequencerStorage();
    const r = await recoverSequencer(Cluster.of("kv", 3).config, storage, io);
    expect(r).toMatchObject({ ok: true, recoveredSeq: 7 });
    if (!r.ok) return;
    expect(r.meta.epoch).toBe(3);
    expect(reads.every((id) => id === "r2")).toBe(true);
    expect(storage.log.slice(0, 7).map((e) => e.hash)).toEqual(b.map((e) => e.hash));
    expect(storage.lastEntry()).toMatchObject({ seq: 8, epoch: 3, kind: "noop" });
  });
});

describe("the wait for an older sequencer's read lease", () => {
  // Guards the quorum rule of oldLeaseEndMs: with 3 voters and r3 not fenced, the old lease's
  // quorum (2 of 3) holds at least one fenced voter, so the lease may last until readLeaseMs after
  // the most recent acknowledgement among the fenced (100 ms ago), not the oldest (5 s ago). Taken
  // from the oldest, the successor waits nothing and may answer while the old lease still serves
  // reads that miss its writes (mutant m10).
  it("runs from the k-th most recent acknowledgement of the fenced voters (here the latest: one voter is not fenced)", async () => {
    const replicas = new Map<string, Scripted>([
      ["r1", { log: [], epoch: 1, commitSeq: 0, ackedAgoMs: 100 }],
      ["r2", { log: [], epoch: 1, commitSeq: 0, ackedAgoMs: 5_000 }],
    ]);
    const { io, waits } = scriptedIo(replicas);
    const r = await recoverSequencer(Cluster.of("kv", 3).config, new MemorySequencerStorage(), io);
    expect(r.ok).toBe(true);
    expect(waits).toEqual([readLeaseMs - 100]);
  });
});

describe("a replica rebuilt by a state transfer", () => {
  // Guards beginInstall's rejoinSeq: it is the cleared log's lastSeq, not its commitSeq. r2 held
  // 3..6 that it had acknowledged (the sequencer committed them with r1's ack) but had not yet
  // heard committed (its commitSeq is 2). Rebuilt at 2, it must refuse fences until its log is back
  // at 6: else a recovery fencing r2 and r3 (r1 away) finds no log past 2 and loses 3..6, which
  // clients were told were done. With rejoinSeq taken from commitSeq (2) it accepts (mutant m13).
  it("holds back from a recovery's quorum until its log is back past the entries it acknowledged uncommitted", async () => {
    const c = Cluster.of("kv");
    for (let r = 1; r <= 2; r++) c.submit("a", r, put(`k${r}`, r));
    c.settle();
    const source = c.replicas.get("r1")!;
    const info = source.beginSnapshot()!;
    expect(info.seq).toBe(2);
    const rows = source.snapshotPage(2, null, 1 << 20)!;
    source.endSnapshot();

    for (let r = 3; r <= 6; r++) c.submit("a", r, put(`k${r}`, r));
    c.sequencer.flush(new Date(1_000).toISOString());
    const toR1 = c.messageFor("r1")!;
    const toR2 = c.messageFor("r2")!; // sent before any ack: it says commitSeq 2
    c.deliver("r1", toR1);
    c.deliver("r2", toR2); // r3 hears nothing
    expect(c.sequencer.commitSeq).toBe(6); // acknowledged by r1 and r2
    const r2 = c.replicas.get("r2")!;
    expect(r2.position()).toMatchObject({ lastSeq: 6, commitSeq: 2 });

    expect(r2.beginInstall(info, "t1", 1)).toBe(true);
    expect(c.replicaStores.get("r2")!.meta!.rejoinSeq).toBe(6);
    expect(r2.installPage("t1", rows)).toBe(true);
    expect(r2.endInstall("t1").ok).toBe(true);
    expect(r2.position().lastSeq).toBe(2);
    expect(r2.fence(2).accepted).toBe(false);

    // The recovery the refusal prevents: r1 away, r2 and r3 at 2, entries 3..6 nowhere to be read.
    const io = {
      nowMs: () => 0,
      setTimer: (ms: number, fn: () => void) => {
        const t = setTimeout(fn, Math.min(ms, 20));
        return () => clearTimeout(t);
      },
      log: () => {},
      link: (id: string): ReplicaLink =>
        linkOver((async (method: string, args: unknown[]) => {
          if (id === "r1") throw new Error("r1 unreachable");
          return serve(c.replicas.get(id)! as never, method as never, args as never);
        }) as never, async () => null),
    } as unknown as DriverIO;
    const r = await recoverSequencer(c.config, new MemorySequencerStorage(), io);
    expect(r.ok).toBe(false);
  });
});
