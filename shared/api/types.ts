// The shapes of the public HTTP API (API.md) that the protocol also produces: shared by the
// router, the client and the protocol, which imports them from here (never the other way round).

/** A state machine's name: any machine listed in shared/machines/index.ts. */
export type MachineName = string;
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
  /** The log route's extra field for an entry past commitSeq: not committed yet, a recovery may replace it. */
  committed?: false;
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
  /** The replicas this audit quarantined (only a minority that disagrees with a healthy quorum). */
  quarantined: string[];
  /** Set when a quorum of voters failed the same check: a bug, not corruption (nobody quarantined). */
  alarm?: string;
  /** Set by the cron when the group could not be audited at all (its sequencer out of reach, no failover): why. */
  unaudited?: string;
  /** false when no position was compared (`seq` is then 0, not a position): every replica failed its scrub, or none shared one. */
  compared?: false;
}

export interface ReplicaStatus {
  id: string;
  location: string | null;
  status: ReplicaStatusName;
  lastSeq: number;
  appliedSeq: number;
  digest: string;
  lastContact: string | null;
  /**
   * Not heard from by the sequencer (lastContact null) but reached by an audit: the positions and
   * digest are what the latest such audit saw, at this time (they went back to 0 without it).
   */
  audited?: string;
  /** In the current sequencer's object (GroupConfig.colocated, while the group's first sequencer is in office): absent otherwise. */
  colocated?: true;
  /** From its last audit: rows of its replicated state (machine, client books, sessions, idle index), as its last finished scrub counted them. */
  stateRows?: number;
  /** From its last append's answer or its last audit: bytes its object's storage takes (the co-located replica's include the sequencer's log). */
  storageBytes?: number;
  /** Its rows failed their digest at its last scrub (an audit's): it serves reads only when no other replica can; repair it. */
  damaged?: true;
  /** While a state transfer rebuilds it: the replica copied, the position copied, rows installed so far, since when. */
  rebuild?: { source: string; seq: number; rows: number; since: string };
}

export interface GroupStatus {
  group: string;
  machine: MachineName;
  epoch: number;
  commitSeq: number;
  lastSeq: number;
  outputs: OutputsMode;
  checkpointEvery: number;
  /** A client idle this long (log time) is forgotten; null: never (a group created before sessions expired). */
  sessionIdleSeconds?: number | null;
  /**
   * Which life of the group name this is (1, 2, ...: a group deleted and created again has a
   * higher one). `DELETE ?incarnation=N` deletes only that life: a retry of a delete whose answer
   * was lost does not delete a group someone created again meanwhile.
   */
  incarnation?: number;
  /** While any replica's storage (its `storageBytes`) holds this many MiB, commands that write are refused (503). */
  storageQuotaMiB?: number;
  /** The object ordering the group's commands now. */
  /** noQuorumMs: the sequencer answers but has heard no quorum for that long (cut off). */
  /** asleepSince: it sleeps (no client work for a while: no heartbeats), since then. */
  /** answerMs: how long it took to answer the status call (the router measured it). */
  /** noQuorumSide, silentVoters: with noQuorumMs, whether the voters answer the router (the sequencer is cut off) or not (the replicas are), and which do not. */
  /** Only a creation's answer (PUT): what in the config may cost the group its availability (a majority of voters in one location). */
  warnings?: string[];
  sequencer: { name: string; location: string | null; epoch: number; since: string | null; reachable?: false; problem?: string; noQuorumMs?: number; noQuorumSide?: "sequencer" | "replicas"; silentVoters?: string[]; answerMs?: number; asleepSince?: string };
  replicas: ReplicaStatus[];
}

/**
 * Every kind of event a group's history holds: API.md's kinds, and no other (a consumer may check
 * every event against that list). One list, so the OpenAPI document and the code that writes
 * events cannot disagree.
 */
export const eventKinds = ["failover", "move", "recovery", "quarantine", "repair", "replica-added", "replica-removed"] as const;
/**
 * What an event of a listed kind did when the kind alone does not say (an extra field): a quarantine
 * event may be a replica made again after losing its storage (`rejoin`), an operator's `release`,
 * an audit `alarm` that quarantined nobody, or a quarantine found to predate the replica's rebuild
 * and so ended (`rebuilt`); a recovery event may be a `restore` from a snapshot; a
 * repair event may be one that `failed` (the rows copied did not sum to the source's digest), or
 * the verdict of the whole scrub that then `judged` its source (`verdict`: damaged or sound).
 */
export const eventActions = ["rejoin", "release", "alarm", "rebuilt", "restore", "failed", "judged"] as const;
export type EventAction = (typeof eventActions)[number];
export type EventKind = (typeof eventKinds)[number];

/** One entry of a group's operational history (API.md "Events"); a failover adds cause, from, to, downMs. */
export interface GroupEvent {
  at: string;
  kind: EventKind;
  epoch: number;
  message: string;
  /** What a quarantine or recovery event did when the kind alone does not say (see eventActions). */
  action?: EventAction;
  [field: string]: unknown;
}
