// The I/O a driver needs, passed in (TigerBeetle style): the Durable Objects give real timers,
// the clock and RPC stubs; the simulator gives virtual time and a faulty network.
import type { AppendResponse, AuditInfo } from "./types.js";

export type ReadAnswer =
  | { kind: "ok"; result: unknown; seq: number; replica: string }
  | { kind: "not_found" }
  | { kind: "quarantined"; replica: string }
  | { kind: "busy"; replica: string }
  | { kind: "timeout"; replica: string; appliedSeq: number };

export type SessionAnswer =
  | { kind: "found"; seq: number; commandHash: string; output: unknown }
  | { kind: "missing" }
  | { kind: "timeout" };

export type SubmitAnswer =
  | { kind: "ok"; seq: number; output: unknown; epoch: number }
  | { kind: "not_found" }
  | { kind: "conflict"; message: string }
  | { kind: "unavailable"; message: string }
  | { kind: "timeout"; message: string }
  | { kind: "no_majority"; message: string };

/** How the sequencer reaches one replica. Every call may reject (unreachable) or never settle. */
export interface ReplicaLink {
  init(): Promise<unknown>;
  append(msg: import("./types.js").AppendRequest): Promise<AppendResponse>;
  query(q: unknown, minSeq: number, waitMs: number): Promise<ReadAnswer>;
  session(client: string, request: number, minSeq: number, waitMs: number): Promise<SessionAnswer>;
  auditInfo(): Promise<AuditInfo | null>;
  setQuarantined(quarantined: boolean): Promise<void>;
  release(rebase: boolean): Promise<{ ok: boolean; digest: string; reason?: string }>;
  fence(epoch: number): Promise<import("./types.js").FenceReply | null>;
  readLog(fromSeq: number, toSeq: number): Promise<import("./types.js").Entry[]>;
  // State transfer: a source freezes its state and serves pages; a target installs them.
  beginSnapshot(): Promise<import("./replica.js").SnapshotInfo | null>;
  snapshotPage(seq: number, after: string | null, maxBytes: number): Promise<[string, string][] | null>;
  endSnapshot(): Promise<void>;
  beginInstall(info: import("./replica.js").SnapshotInfo, transferId: string): Promise<boolean>;
  installPage(transferId: string, rows: [string, string][]): Promise<boolean>;
  endInstall(transferId: string): Promise<{ ok: boolean; digest: string } | null>;
}

export interface Clock {
  nowMs(): number;
  /** Calls fn after ms; returns a cancel function. */
  setTimer(ms: number, fn: () => void): () => void;
}

export interface DriverIO extends Clock {
  link(replicaId: string): ReplicaLink;
  log(level: "info" | "warn" | "error", message: string): void;
  /**
   * A replica refused an append for a higher epoch: a recovery fenced this sequencer out. The
   * driver has stopped; the owner must discard this log and recover from the replicas.
   */
  onFenced?(): void;
  /** Creates (initializes) a new replica before it is added to the group. */
  provision?(replicaId: string, location: string | null): Promise<void>;
  /** Destroys a removed replica's storage, once its removal is committed. */
  retire?(replicaId: string): Promise<void>;
  /**
   * Durably records (in the registry) the config and every membership that may be in force: before
   * a change [current, next], after it commits [next]. Recovery reads it back.
   */
  recordMemberships?(config: import("./types.js").GroupConfig): Promise<void>;
  /** Keeps an operational event in the group's history (quarantine, repair, membership, alarm). */
  event?(kind: string, message: string, fields?: Record<string, unknown>): void;
}

export function sleep(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimer(ms, resolve));
}

/** Rejects after ms, so a call that never settles becomes a missed contact instead of a hang. */
export function withTimeout<T>(clock: Clock, promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const cancel = clock.setTimer(ms, () => reject(new Error(`${what} timed out after ${ms} ms`)));
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
