// Messages and records of the protocol. Plain data: they cross Durable Object RPC and the simulator.

export type MachineName = "kv" | "bank";
export type OutputsMode = "first" | "majority";
export type EntryKind = "command" | "config" | "noop";

export type ReplicaStatusName =
  | "healthy"
  | "joining"
  | "lagging"
  | "suspect"
  | "down"
  | "quarantined"
  | "repairing"
  | "removed";

export interface GroupConfig {
  group: string;
  machine: MachineName;
  replicas: number;
  locations: (string | null)[];
  outputs: OutputsMode;
  checkpointEvery: number;
}

export interface Entry {
  seq: number;
  epoch: number;
  kind: EntryKind;
  client: string | null;
  request: number | null;
  command: unknown;
  /** ISO-8601, assigned by the sequencer: the only clock a state machine may read. */
  timestamp: string;
  /** sha256 chaining this entry to its predecessor (see entryHash). */
  hash: string;
}

/** The sequencer -> replica message: raft's AppendEntries, minus leader election. */
export interface AppendRequest {
  epoch: number;
  prevSeq: number;
  prevHash: string;
  entries: Entry[];
  commitSeq: number;
}

/** How the replicated session table resolved an entry (exactly-once). */
export type ApplyStatus = "ok" | "duplicate" | "conflict" | "expired";

export interface AppliedOutput {
  seq: number;
  status: ApplyStatus;
  /** For a duplicate: the seq at which the (client, request) was first executed. */
  originalSeq: number;
  output: unknown;
}

export interface ReplicaPosition {
  epoch: number;
  lastSeq: number;
  commitSeq: number;
  appliedSeq: number;
  digest: string;
}

export type AppendResponse =
  | ({ ok: true; outputs: AppliedOutput[] } & ReplicaPosition)
  | ({ ok: false; reason: "stale_epoch" | "gap" | "mismatch" } & ReplicaPosition)
  | { ok: false; reason: "not_initialized" };

/** A replica's answer to a recovering sequencer's fence (its promise to refuse lower epochs). */
export interface FenceReply {
  /** True if the proposed epoch was higher than any the replica had seen, and it is now fenced at it. */
  accepted: boolean;
  epoch: number;
  lastSeq: number;
  /** Epoch of the entry at lastSeq (0 for an empty log): logs compare by (lastEpoch, lastSeq). */
  lastEpoch: number;
  commitSeq: number;
  appliedSeq: number;
  /** The replica's log starts after baseSeq (compacted); baseHash is the hash at baseSeq. */
  baseSeq: number;
  baseHash: string;
}

export interface Checkpoint {
  seq: number;
  digest: string;
  logHash: string;
}

export interface ScrubResult {
  recordedDigest: string;
  actualDigest: string;
  rows: number;
}

/** What a replica tells the auditor. */
export interface AuditInfo extends ReplicaPosition {
  quarantined: boolean;
  checkpoints: Checkpoint[];
  scrub: ScrubResult;
}

export type ReplicaVerdict = "agrees" | "diverged" | "unreachable" | "behind";

export interface AuditReport {
  at: string;
  group: string;
  seq: number;
  verdict: "consistent" | "diverged" | "insufficient";
  replicas: {
    id: string;
    appliedSeq: number | null;
    digest: string | null;
    verdict: ReplicaVerdict;
    reason?: string;
  }[];
}

export interface ReplicaStatus {
  id: string;
  location: string | null;
  status: ReplicaStatusName;
  lastSeq: number;
  appliedSeq: number;
  digest: string;
  lastContact: string | null;
}

export interface GroupStatus {
  group: string;
  machine: MachineName;
  epoch: number;
  commitSeq: number;
  lastSeq: number;
  outputs: OutputsMode;
  checkpointEvery: number;
  replicas: ReplicaStatus[];
}

export function majority(voters: number): number {
  return Math.floor(voters / 2) + 1;
}

export function replicaIds(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `r${i + 1}`);
}
