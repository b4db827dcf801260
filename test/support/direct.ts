import { machineFor } from "../../shared/machines/index.js";
// A group whose drivers talk through direct calls (no network) and real timers: for unit tests
// of the driver-level features (state transfer, compaction) with the real cores.
import { SequencerDriver } from "../../shared/protocol/driver.js";
import { type DriverIO, type ReplicaLink, type ReplicaTransport, linkOver, serve } from "../../shared/protocol/io.js";
import { MemoryReplicaStorage, MemorySequencerStorage } from "../../shared/protocol/memory.js";
import { ReplicaCore, newReplicaMeta } from "../../shared/protocol/replica.js";
import { ReplicaDriver } from "../../shared/protocol/replica-driver.js";
import { SequencerCore } from "../../shared/protocol/sequencer.js";
import type { GroupConfig } from "../../shared/protocol/types.js";
import type { Rejoin } from "../../shared/protocol/replica.js";
import { replicaIds } from "../../shared/protocol/types.js";
import { fenceStragglersMs, replicaRpcTimeoutMs, resendMs } from "../../shared/limits.js";

export interface Retention {
  entries: number;
  slack: number;
}

/** Real timers and Date.now(), unless a test passes its own clock. */
export interface Clock {
  nowMs(): number;
  setTimer(ms: number, fn: () => void): () => void;
}

export const realClock: Clock = {
  nowMs: () => Date.now(),
  setTimer: (ms, fn) => {
    const t = setTimeout(fn, ms);
    return () => clearTimeout(t);
  },
};

/**
 * Timers for a recovery whose calls answer at once: its resend, call timeout and straggler timers
 * never need to fire (dropped); any other (the old read lease's wait) is recorded in `waits` and
 * runs at once.
 */
export function leaseTimers(): { waits: number[]; setTimer(ms: number, fn: () => void): () => void } {
  const waits: number[] = [];
  return {
    waits,
    setTimer: (ms, fn) => {
      if (ms === resendMs || ms === replicaRpcTimeoutMs || ms === fenceStragglersMs) return () => {};
      waits.push(ms);
      const t = setTimeout(fn, 0);
      return () => clearTimeout(t);
    },
  };
}

/** Time 50 times faster than the wall clock: the drivers' real timers, a cut-off or an old read lease's wait in tens of ms. */
export const fastClock: Clock = (() => {
  const startMs = Date.now();
  return {
    nowMs: () => 1_000_000 + (Date.now() - startMs) * 50,
    setTimer: (ms: number, fn: () => void) => {
      const t = setTimeout(fn, ms / 50);
      return () => clearTimeout(t);
    },
  };
})();

/** `epoch`: the sequencer's (above 1: as if it had recovered after a predecessor). */
export function directGroup(config: GroupConfig, retention: Retention, clock: Clock = realClock, epoch = 1) {
  const stores = new Map<string, MemoryReplicaStorage>();
  const replicas = new Map<string, ReplicaDriver>();
  for (const id of replicaIds(config.replicas)) {
    const store = new MemoryReplicaStorage();
    const meta = newReplicaMeta(config.group, id, config.machine, config.checkpointEvery);
    store.saveMeta(meta);
    stores.set(id, store);
    replicas.set(id, new ReplicaDriver(new ReplicaCore(store, meta, machineFor(meta.machine), retention), clock));
  }
  const down = new Set<string>();
  /** Milliseconds each call to a replica waits before it is served (a slow replica). */
  const slow = new Map<string, number>();
  /** Calls made to each replica, by "id:method" (a down replica's included). */
  const calls = new Map<string, number>();
  /** Runs after each call a replica served; a throw loses the answer on the way back. */
  const hooks: { served?: (id: string, method: string) => void } = {};
  const link = (id: string): ReplicaLink => {
    const r = () => {
      if (down.has(id)) throw new Error(`${id} is down`);
      return replicas.get(id)!;
    };
    // Every call crosses a structured clone, as a Durable Object RPC does.
    const transport: ReplicaTransport = async (method, args) => {
      calls.set(`${id}:${method}`, (calls.get(`${id}:${method}`) ?? 0) + 1);
      const delayMs = slow.get(id);
      if (delayMs) await new Promise((resolve) => clock.setTimer(delayMs, () => resolve(undefined)));
      const answer = await serve(r(), method, structuredClone(args));
      hooks.served?.(id, method);
      return structuredClone(answer) as never;
    };
    // A sequencer's init: null (nothing made) unless a test gives the replica one (a rejoin's).
    const init = async (rejoin?: Rejoin) => {
      calls.set(`${id}:init`, (calls.get(`${id}:init`) ?? 0) + 1);
      if (down.has(id)) throw new Error(`${id} is down`);
      const made = (replicas.get(id) as unknown as { init?: (rejoin?: Rejoin) => unknown }).init;
      return made ? structuredClone(made(rejoin)) : null;
    };
    return linkOver(transport, init);
  };
  const seqStore = new MemorySequencerStorage();
  const meta = { config, epoch, commitSeq: 0, quarantined: [] };
  seqStore.saveMeta(meta);
  /** What the driver wrote to the directory (recordMemberships), in order. */
  const recorded: GroupConfig[] = [];
  /** The driver's events, the ids it provisioned (no object is made: a new replica stays unreachable) and retired. */
  const events: { kind: string; message: string; fields: Record<string, unknown> }[] = [];
  const provisioned: string[] = [];
  const retired: string[] = [];
  const io: DriverIO = {
    ...clock,
    link,
    log: () => {},
    recordMemberships: async (c) => void recorded.push(structuredClone(c)),
    event: (kind, message, fields) => void events.push({ kind, message, fields: fields ?? {} }),
    provision: async (id) => void provisioned.push(id),
    retire: async (id) => void retired.push(id),
  };
  const driver = new SequencerDriver(new SequencerCore(seqStore, meta), io, retention);
  return { driver, io, link, replicas, stores, seqStore, down, slow, hooks, recorded, calls, events, provisioned, retired };
}

/**
 * Replaces one method of the links to replica `id` (each later `io.link(id)`): `fn` gets the real
 * method bound to its link. A slow or lost call of one kind, the others untouched.
 */
export function overrideCall(io: DriverIO, id: string, method: keyof ReplicaLink, fn: (real: (...args: unknown[]) => unknown, ...args: unknown[]) => unknown): void {
  const link = io.link.bind(io);
  io.link = (to: string): ReplicaLink => {
    const l = link(to);
    if (to !== id) return l;
    return new Proxy(l, { get: (t, name) => (name === method ? (...args: unknown[]) => fn((t[method] as (...x: unknown[]) => unknown).bind(t), ...args) : (t as never)[name]) }) as ReplicaLink;
  };
}

/** overrideCall that delays each call of `method` to `id` by delayMs. */
export function delayCall(io: DriverIO, id: string, method: keyof ReplicaLink, delayMs: number): void {
  overrideCall(io, id, method, (real, ...args) => new Promise((res) => setTimeout(res, delayMs)).then(() => real(...args)));
}
