// The I/O a driver needs, passed in (TigerBeetle style): the Durable Objects give real timers,
// the clock and RPC stubs; the simulator gives virtual time and a faulty network.
import { replicaRpcTimeoutMs, resendMs } from "../limits.js";
import type { ExportInfo, Rejoin, SnapshotInfo } from "./replica.js";
import type { AppendRequest, AppendResponse, AuditInfo, FenceReply, ReplicaPosition } from "./types.js";
import type { Entry, EventKind } from "../api/types.js";

export type ReadAnswer =
  /** `damaged`: served by a replica whose rows failed its last scrub, asked again as no other served. */
  | { kind: "ok"; result: unknown; seq: number; epoch: number; replica: string; damaged?: true }
  | { kind: "not_found" }
  | { kind: "quarantined"; replica: string }
  /** Its rows failed its own last scrub (their digest differs): asked again with evenDamaged only if no other replica serves. */
  | { kind: "damaged"; replica: string }
  | { kind: "busy"; replica: string }
  | { kind: "timeout"; replica: string; appliedSeq: number }
  /** The answer would be over queryResultBytesMax (every replica would say the same: not retried). */
  | { kind: "too_large"; replica: string; message: string }
  /** The machine's query called put or delete (QueryWrote): its bug, the same at every replica (a 500, not retried). */
  | { kind: "query_wrote"; replica: string; message: string };

export type SessionAnswer =
  | { kind: "found"; seq: number; commandHash: string; output: unknown }
  /** `expired`: the request is at or below its client's evicted ids (it may have run; its outcome is gone). */
  | { kind: "missing"; expired?: true }
  | { kind: "timeout" };

/** A replica's PreVote: `gone` once it has heard nothing from its epoch's sequencer for sequencerTimeoutMs. */
export interface VoteReply {
  epoch: number;
  heardAgoMs: number;
  gone: boolean;
  /** It could not stand in a successor's fenced quorum (ReplicaCore.amnesiac): a cut-off PreVote does not count it. */
  amnesiac?: boolean;
  /** How long since its start or its return (the first call after nothing reached it for sequencerTimeoutMs). */
  upMs?: number;
  /**
   * It slept until a vote (this one or an earlier) and is waking the sequencer, not heard since:
   * its `gone: false` says the silence is young, not that it hears the sequencer. A refusal's
   * reason counts it apart (it read "still hears it" while the sequencer was unreachable).
   */
  waking?: boolean;
}

/**
 * `cutOffMs`: the sequencer has had no quorum for that long (past sequencerTimeoutMs): a router may
 * fail it over. `storage`: refused for the group's storage quota (the API's `reason: "storage_quota"`).
 */
export type Unavailable = { kind: "unavailable"; message: string; cutOffMs?: number; storage?: true };

/**
 * The `cutOffMs` a sequencer's 503 or 504 carries (SequencerDriver.refuse): of an answer, or the
 * longest among a batch's. Null when none has it. What a router (and the simulator's) acts on.
 */
export function cutOffOf(answer: unknown): number | null {
  const of = (a: unknown) => {
    const x = a as { kind?: unknown; cutOffMs?: unknown } | null;
    return x !== null && typeof x === "object" && (x.kind === "unavailable" || x.kind === "timeout") && typeof x.cutOffMs === "number" ? x.cutOffMs : null;
  };
  const all = (Array.isArray(answer) ? answer.map(of) : [of(answer)]).filter((x) => x !== null);
  return all.length > 0 ? Math.max(...all) : null;
}

/**
 * A command sent again to a successor after its first call's outcome was unknown (the call failed
 * or timed out, or the old sequencer answered 504): a refusal now (503, "certainly not ordered")
 * speaks only of this call, while the first may sit in a replica's log that the successor
 * recovers and commits. Such refusals become timeouts (504: retry with the same pair). `earlier`:
 * the first answer (per item for a batch), or null when the call itself failed (every item
 * unknown); an item refused then (503) stays as it is answered now. An answer `replayed` from an
 * item the first call may have run (unknown, or ok) loses the mark: the replay is of this
 * request's own first call, and the command ran for it (a review: `smr put` said "nothing ran
 * now" for the put its first call ran).
 */
export function unsureAfter<T>(answer: T, earlier: unknown, advice = "the command may or may not take effect: retry with the same client and request"): T {
  const earlierAt = (i: number) => (earlier === null ? undefined : ((Array.isArray(earlier) ? earlier[i] : earlier) as { kind?: unknown } | undefined)?.kind);
  const unknownAt = (i: number) => earlier === null || (earlierAt(i) !== "unavailable" && earlierAt(i) !== "ok" && earlierAt(i) !== "conflict");
  const unsure = (a: unknown, i: number) => {
    const x = a as { kind?: unknown; message?: unknown; replayed?: unknown } | null;
    if (x?.replayed === true && (unknownAt(i) || earlierAt(i) === "ok")) {
      const { replayed: _replayed, ...rest } = x;
      return rest;
    }
    if (!x || (x.kind !== "unavailable" && x.kind !== "not_found") || !unknownAt(i)) return a;
    const why = typeof x.message === "string" ? x.message : "no sequencer serving yet";
    return { kind: "timeout", message: `${why}; an earlier call for this request (the router's own first try, to the sequencer) may have reached it: ${advice}` };
  };
  return (Array.isArray(answer) ? answer.map(unsure) : unsure(answer, 0)) as T;
}

export type ReadIndexAnswer = { kind: "ok"; seq: number } | { kind: "not_found" } | Unavailable;

export type SubmitAnswer =
  /** incarnation: the group's life that ordered it (its bookmark names it; a router's route may be older). */
  /** replayed: the outcome of an earlier attempt of this (client, request), read back; nothing ran now. */
  | { kind: "ok"; seq: number; output: unknown; epoch: number; incarnation: number; replayed?: true }
  | { kind: "not_found" }
  | { kind: "conflict"; message: string }
  | Unavailable
  /** cutOffMs: as Unavailable's. */
  | { kind: "timeout"; message: string; cutOffMs?: number }
  | { kind: "no_majority"; message: string }
  /** The group was deleted while the command waited (SequencerDriver.stop): a 404, not a retry. */
  | { kind: "deleted"; message: string }
  /** The route that sent it names an older life of the group (SequencerObject.submit): not run; look the group up again. */
  | { kind: "stale_life" }
  /** A batch item executed at seq whose output did not fit the batch's answer (batchOutputCharsMax). */
  | { kind: "too_large"; seq: number; epoch: number; incarnation: number; message: string; replayed?: true };

/**
 * The replica's API, declared once. ReplicaDriver implements it; the link a sequencer holds, the
 * Durable Object's RPC method and every test harness's adapter derive from it (linkOver), so a new
 * replica call is one method here and one in ReplicaDriver.
 */
export interface ReplicaApi {
  append(msg: AppendRequest): AppendResponse;
  query(q: unknown, minSeq: number, waitMs: number, evenDamaged?: boolean): Promise<ReadAnswer>;
  session(client: string, request: number, minSeq: number, waitMs: number): Promise<SessionAnswer>;
  /** `markSeq`: a seq to record a checkpoint at once applied (ReplicaCore.auditInfo). */
  auditInfo(markSeq?: number): AuditInfo | null;
  /**
   * Reads one audit's worth more of the scrub pass under way (`finished`: the pass just ended), for
   * a caller that repeats it to the pass's end without waiting for audits: a snapshot download found
   * this replica's rows do not hash to its digest, and the next audit judges it from that pass.
   * In steps, each its own call: one pass over a large state held the replica 11.5 s (a review).
   * Null: no state, or being rebuilt.
   */
  scrubNow(): { finished: boolean } | null;
  /**
   * `epoch`: the sequencer's; a replica that has accepted a newer one refuses it (a deposed
   * sequencer's late word). `stamp`: the install count the quarantine was decided at; a replica
   * that installed more since refuses it and answers `stale` (ReplicaCore.setQuarantined).
   */
  setQuarantined(quarantined: boolean, epoch?: number, stamp?: number): { stale: true; installs: number } | undefined;
  release(rebase: boolean): { ok: boolean; digest: string; reason?: string };
  /** `by` names the recovery asking (see ReplicaMeta.fencedBy); a probe (epoch 0) needs none. */
  fence(epoch: number, by?: string): FenceReply | null;
  /** The PreVote of a failover: has this replica heard from the sequencer of its epoch lately? */
  vote(): VoteReply | null;
  /** Where it stands, for a status built without the sequencer (one that cannot be reached). */
  /** `scrubFailed`: its last finished scrub pass failed (ReplicaMeta.scrubFailed). */
  position(): (ReplicaPosition & { quarantined: boolean; scrubFailed?: true }) | null;
  readLog(fromSeq: number, toSeq: number): Entry[];
  // State transfer: a source freezes its state and serves pages; a target installs them.
  beginSnapshot(): SnapshotInfo | null;
  snapshotPage(seq: number, after: string | null, maxBytes: number): [string, string][] | null;
  endSnapshot(): void;
  /** Refused (false) from a sequencer whose epoch is below the one this replica was fenced at: a deposed one. */
  beginInstall(info: SnapshotInfo, transferId: string, sequencerEpoch: number): boolean;
  installPage(transferId: string, rows: [string, string][]): boolean;
  endInstall(transferId: string): { ok: boolean; digest: string; storageBytes?: number; installs?: number } | null;
  // Snapshot downloads: a frozen copy of the machine's rows, served in pages, bounded in number.
  /** Once appliedSeq >= minSeq (waiting up to waitMs; null if not by then): so the copy holds every write acknowledged before it was asked for. */
  beginExport(minSeq?: number, waitMs?: number): Promise<ExportInfo | null>;
  exportPage(id: string, after: string | null, maxBytes: number): [string, string][] | null;
  endExport(id: string): void;
}

export type ReplicaMethod = keyof ReplicaApi;
export type ReplicaArgs<K extends ReplicaMethod> = Parameters<ReplicaApi[K]>;
export type ReplicaResult<K extends ReplicaMethod> = Awaited<ReturnType<ReplicaApi[K]>>;

/**
 * How the sequencer reaches one replica: every method of the API, asynchronous, plus init (its
 * creation, which the transport does; with `rejoin`, its re-creation after it lost its storage).
 * Every call may reject (unreachable) or never settle.
 */
export type ReplicaLink = { [K in ReplicaMethod]: (...args: ReplicaArgs<K>) => Promise<ReplicaResult<K>> } & { init(rejoin?: Rejoin): Promise<unknown> };

/** Carries one replica call over some transport (RPC, the simulated network, a direct call). */
export type ReplicaTransport = <K extends ReplicaMethod>(method: K, args: ReplicaArgs<K>) => Promise<ReplicaResult<K>>;

/** The one adapter from a transport to a link. */
export function linkOver(transport: ReplicaTransport, init: (rejoin?: Rejoin) => Promise<unknown>): ReplicaLink {
  return new Proxy({ init } as ReplicaLink, {
    get: (target, name) => (name === "init" ? target.init : (...args: unknown[]) => transport(name as ReplicaMethod, args as never)),
  });
}

/** Serves a call on a replica's API (the receiving end of a transport). */
export function serve<K extends ReplicaMethod>(api: ReplicaApi, method: K, args: ReplicaArgs<K>): ReturnType<ReplicaApi[K]> {
  const fn = api[method] as (...a: unknown[]) => ReturnType<ReplicaApi[K]>;
  if (typeof fn !== "function") throw new Error(`no replica method ${String(method)}`);
  return fn.apply(api, args);
}

export interface Clock {
  nowMs(): number;
  /** Calls fn after ms; returns a cancel function. */
  setTimer(ms: number, fn: () => void): () => void;
}

export interface DriverIO extends Clock {
  link(replicaId: string): ReplicaLink;
  /** The replica this link reaches by a direct call (it lives in the sequencer's own object), if any. */
  readonly directReplica?: string | null;
  log(level: "info" | "warn" | "error", message: string): void;
  /**
   * A replica refused an append for a higher epoch: a recovery fenced this sequencer out. The
   * driver has stopped; the owner must discard this log and recover from the replicas.
   */
  onFenced?(): void;
  /** Creates (initializes) a new replica before it is added to the group. */
  provision?(replicaId: string, location: string | null): Promise<void>;
  /** Destroys a removed replica's storage, once its removal is committed (and says so where leftovers() reads). */
  retire?(replicaId: string): Promise<void>;
  /** Removed replicas whose storage no sequencer has yet been seen to destroy (the directory's list). */
  leftovers?(): Promise<string[]>;
  /**
   * Durably records (in the registry) the config and every membership that may be in force: before
   * a change [current, next], after it commits [next]. Recovery reads it back.
   */
  recordMemberships?(config: import("./types.js").GroupConfig): Promise<void>;
  /** Durably records the replicas held quarantined (all of them, each time the set changes). */
  /** False: refused, this sequencer no longer in office or its group being deleted (nothing to retry). */
  recordQuarantined?(ids: string[], stamps: Record<string, number>): Promise<boolean>;
  /** Keeps an operational event in the group's history (quarantine, repair, membership, alarm). */
  event?(kind: EventKind, message: string, fields?: Record<string, unknown>): void;
  /** After this long without client work (and nothing under way) the sequencer sleeps; absent: never. */
  readonly sleepAfterMs?: number;
  /**
   * Has the host start this object at `atMs` if it is not running then (a Durable Object alarm):
   * the time its sleep is due. Under wrangler dev a quiet group's sequencer was evicted before
   * that, its heartbeats with it, and nothing started it again: it never slept (a probe).
   */
  startAt?(atMs: number): void;
  /**
   * It fell asleep (since when), or woke (null): the host tells the cron (the registry). Also said
   * at every start (`changed` false): only a change is worth a log line (each start of an asleep
   * object logged "sleeps" again, 319 lines against 21 wakes in an operator's probe).
   */
  onSleep?(asleepSinceMs: number | null, changed: boolean): void;
  /**
   * A state transfer rebuilt a replica: the host audits again, so the group's health no longer
   * reads the audit that found it damaged (a group asleep after its repair showed degraded until
   * its next audit, a day later).
   */
  onRepaired?(replicaId: string): void;
}

/**
 * One idempotent call to a replica, sent again every resendMs while it is unanswered (a lost
 * message or answer no longer costs the whole window); the first answer wins. Null on an error,
 * when nothing answered within windowMs, or once `over` (no more copies).
 */
export function askAgain<T>(clock: Clock, send: () => Promise<T>, over: () => boolean = () => false, windowMs = replicaRpcTimeoutMs): Promise<T | null> {
  return new Promise((resolve) => {
    let done = false;
    const cancels: (() => void)[] = [];
    const finish = (value: T | null) => {
      if (done) return;
      done = true;
      for (const cancel of cancels) cancel();
      resolve(value);
    };
    const go = () => {
      if (done) return;
      if (over()) return finish(null);
      send().then(finish, () => finish(null));
      cancels.push(clock.setTimer(resendMs, go));
    };
    cancels.push(clock.setTimer(windowMs, () => finish(null)));
    go();
  });
}

/** Rejects after ms, so a call that never settles becomes a missed contact instead of a hang. */
/** What withTimeout rejects with: the call did not answer in time (it may still be running). */
export class TimeoutError extends Error {}

export function withTimeout<T>(clock: Clock, promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const cancel = clock.setTimer(ms, () => reject(new TimeoutError(`${what} timed out after ${ms} ms`)));
    promise.then(
      (v) => {
        cancel();
        resolve(v);
      },
      (err) => {
        cancel();
        reject(err);
      },
    );
  });
}
