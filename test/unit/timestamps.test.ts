// Entry timestamps never go back: a lock lease is judged on them (docs/MACHINES.md), so an entry
// stamped before its predecessor (a successor sequencer whose clock is behind its predecessor's,
// or a clock stepped back) judged a lease live again after an earlier entry had found it lapsed:
// a renew answered "expired", then the same renew succeeded.
import { describe, expect, it } from "vitest";
import { lock } from "../../shared/machines/lock.js";
import { type DriverIO, type ReplicaLink, type ReplicaTransport, linkOver, serve } from "../../shared/protocol/io.js";
import { MemorySequencerStorage } from "../../shared/protocol/memory.js";
import { recoverSequencer } from "../../shared/protocol/recovery.js";
import { SequencerCore } from "../../shared/protocol/sequencer.js";
import type { Entry } from "../../shared/api/types.js";
import { Cluster } from "../support/cluster.js";

const iso = (ms: number) => new Date(ms).toISOString();
const t0 = Date.UTC(2026, 11, 4, 6, 0, 0);

/** A successor's I/O over the cluster's replicas, its clock a minute behind (t0); `cut` unreachable. */
function successorIO(c: Cluster, cut: string[] = []): DriverIO {
  return {
    nowMs: () => t0,
    setTimer: (ms: number, fn: () => void) => {
      const t = setTimeout(fn, Math.min(ms, 50));
      return () => clearTimeout(t);
    },
    log: () => {},
    link: (id: string): ReplicaLink => {
      const transport: ReplicaTransport = async (method, args) => {
        if (cut.includes(id)) throw new Error(`${id} unreachable`);
        return (await serve(c.replicas.get(id)! as never, method, args)) as never;
      };
      return linkOver(transport, async () => null);
    },
  } as unknown as DriverIO;
}

function nondecreasing(entries: Entry[]): void {
  for (let i = 1; i < entries.length; i++) expect(entries[i]!.timestamp >= entries[i - 1]!.timestamp, `seq ${entries[i]!.seq}`).toBe(true);
}

function logOf(c: Cluster): Entry[] {
  return c.seqStore.readEntries(1, 1_000);
}

describe("entry timestamps", () => {
  it("a flush stamped before the last entry takes the last entry's time", () => {
    const c = Cluster.of("lock", 3);
    c.submit("a", 1, { op: "acquire", lock: "x", owner: "A", ttlMs: 1_000 });
    c.sequencer.flush(iso(t0 + 5_000));
    c.submit("a", 2, { op: "renew", lock: "x", owner: "A", token: 1, ttlMs: 1_000 });
    c.sequencer.flush(iso(t0)); // the clock went back 5 s
    const log = logOf(c);
    expect(log.map((e) => e.timestamp)).toEqual([iso(t0 + 5_000), iso(t0 + 5_000)]);
  });

  it("so does a restarted sequencer's", () => {
    const c = Cluster.of("lock", 3);
    c.submit("a", 1, { op: "acquire", lock: "x", owner: "A", ttlMs: 1_000 });
    c.sequencer.flush(iso(t0 + 5_000));
    c.sequencer = new SequencerCore(c.seqStore, c.seqStore.meta!);
    c.submit("a", 2, { op: "acquire", lock: "y", owner: "A", ttlMs: 1_000 });
    c.sequencer.flush(iso(t0));
    const log = logOf(c);
    expect(log.map((e) => e.timestamp)).toEqual([iso(t0 + 5_000), iso(t0 + 5_000)]);
  });

  it("a recovered sequencer's no-op is not stamped before the log it recovered", async () => {
    const c = Cluster.of("lock", 3);
    c.nowMs = t0 + 60_000;
    c.submit("a", 1, { op: "acquire", lock: "x", owner: "A", ttlMs: 1_000 });
    c.settle();
    const io = successorIO(c);
    const storage = new MemorySequencerStorage();
    const r = await recoverSequencer(c.config, storage, io);
    expect(r.ok).toBe(true);
    const log = storage.readEntries(1, 1_000);
    expect(log.map((e) => e.kind)).toEqual(["command", "noop"]);
    nondecreasing(log);
  });

  it("nor before the base of replicas rebuilt by a state transfer (no entry after it to read)", async () => {
    const c = Cluster.of("lock", 3);
    c.nowMs = t0 + 60_000;
    c.submit("a", 1, { op: "acquire", lock: "x", owner: "A", ttlMs: 1_000 });
    c.settle();
    const lastTs = logOf(c).at(-1)!.timestamp;
    // r2 and r3 rebuilt from r1 (a repair, a join): their logs hold nothing past the base.
    const src = c.replicas.get("r1")!;
    const info = src.beginSnapshot()!;
    const rows = src.snapshotPage(info.seq, null, 1 << 30)!;
    for (const id of ["r2", "r3"]) {
      const r = c.replicas.get(id)!;
      expect(r.beginInstall(info, `t-${id}`, info.epoch)).toBe(true);
      r.installPage(`t-${id}`, rows);
      expect(r.endInstall(`t-${id}`).ok).toBe(true);
    }
    src.endSnapshot();
    const io = successorIO(c, ["r1"]); // the quorum is the rebuilt two
    const storage = new MemorySequencerStorage();
    const r = await recoverSequencer(c.config, storage, io);
    expect(r.ok).toBe(true);
    const log = storage.readEntries(1, 1_000);
    expect(log.map((e) => e.kind)).toEqual(["noop"]);
    // It was stamped a minute before the acquire at seq 1, which then lived again for a minute.
    expect(log[0]!.timestamp >= lastTs).toBe(true);
  });

  it("a lease found lapsed stays lapsed for every later entry", () => {
    const c = Cluster.of("lock", 3);
    c.submit("a", 1, { op: "acquire", lock: "x", owner: "A", ttlMs: 1_000 });
    c.sequencer.flush(iso(t0));
    c.submit("a", 2, { op: "renew", lock: "x", owner: "A", token: 1, ttlMs: 1_000 });
    c.sequencer.flush(iso(t0 + 2_000)); // lapsed
    c.submit("a", 3, { op: "renew", lock: "x", owner: "A", token: 1, ttlMs: 1_000 });
    c.sequencer.flush(iso(t0 + 500)); // a clock behind: the lease must not live again
    const log = logOf(c);
    const outputs: unknown[] = [];
    const rows = new Map<string, unknown>();
    const state = {
      get: (k: string) => (rows.has(k) ? structuredClone(rows.get(k)) : null),
      put: (k: string, v: unknown) => void rows.set(k, v),
      delete: (k: string) => rows.delete(k),
    };
    for (const e of log) outputs.push(lock.apply(state as never, e.command as never, { seq: e.seq, timestamp: e.timestamp }));
    expect(outputs[1]).toEqual({ ok: false, reason: "expired" });
    expect(outputs[2]).toEqual({ ok: false, reason: "expired" });
  });
});
