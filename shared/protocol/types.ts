// Messages and records of the protocol. Plain data: they cross Durable Object RPC and the simulator.
import type { Entry, MachineName, OutputsMode, ReplicaStatusName } from "../api/types.js";

export interface GroupConfig {
  group: string;
  /**
   * Which creation of this group name the config belongs to (1, 2, ... from its directory, which
   * outlives a DELETE): every object keeps it and refuses messages of another incarnation, so late
   * RPCs of a deleted group never revive or corrupt its successor. 0 in tests without a directory.
   */
  incarnation: number;
  machine: MachineName;
  /** Replicas the group was created with (r1..rN); `members` is the current membership. */
  replicas: number;
  locations: (string | null)[];
  outputs: OutputsMode;
  checkpointEvery: number;
  /** The membership after reconfigurations; absent until the first one (then r1..rN, all voters). */
  members?: Member[];
  /** Highest replica number ever used (ids are never reused). */
  lastReplicaNo?: number;
  /**
   * As the registry keeps it: every membership that may be in force while a change is under way
   * (the current one and the next). A recovering sequencer fences a quorum of each, so an entry
   * committed under either is seen. Absent: only `members`.
   */
  inFlight?: Member[][];
  /** Where the group's sequencer lives after a move (absent: the Durable Object named like the group). */
  /**
   * `since`: when a failover named it (the PreVote's hold-down counts from it); `movedAt`: when a
   * move did (shown as the status's since while it cannot be reached; no hold-down after a move).
   */
  sequencer?: { name: string; location: string | null; no: number; since?: string; movedAt?: string };
  /**
   * Replicas the group's sequencer has quarantined, kept in the directory so a successor keeps
   * them so: one whose replica never heard it (cut off, slow) was reported healthy after a
   * failover and served its corrupt rows (a probe read a wrong value from it).
   */
  quarantined?: string[];
  /**
   * Each listed replica's install count (ReplicaPosition.installs) when it was quarantined: a
   * replica that has installed more since was rebuilt after it, and refuses the quarantine's tell
   * (see SequencerMeta.quarantinedAt). Absent for a replica: always told.
   */
  quarantinedAt?: Record<string, number>;
  /** Location hints for the sequencer, in order of preference: it starts at the first; a failover takes the next. */
  sequencerLocations?: string[];
  /**
   * The member whose replica lives in the Durable Object named like the group, beside the group's
   * first sequencer (leader-as-replica): while that object is in office its appends are direct
   * calls that share the sequencer's storage commit. After a move or failover it stays a replica
   * there, reached by RPC like any other. Absent: every replica has an object of its own.
   */
  colocated?: string;
  /**
   * Recorded when the PUT asked for no co-located replica (`"colocate": false`), so a repeated PUT
   * that asks otherwise is a different config (409); absent for the default.
   */
  colocate?: false;
  /**
   * Sessions expire: a client with no command executed for this long (log time) is forgotten on
   * every replica (shared/protocol/state.ts, forgetIdle). Set for every group created since; absent
   * for groups created before, whose clients are kept for the group's life (their replicas apply
   * entries as they always did, so an upgrade changes no digest).
   */
  sessionIdleMs?: number;
  /**
   * A session row keeps an output whole only up to this many characters beyond its command's JSON
   * (limits.ts sessionOutputFreeCharsDefault). Set for every group created since 2026-12-06;
   * absent for groups created before, whose rows keep every output whole (as their replicas
   * always applied entries, so an upgrade changes no digest).
   */
  sessionOutputFreeChars?: number;
  /** The storage quota, stored at creation (absent: a group made before 2026-12-06; limits.ts storageQuotaMiBOf). */
  storageQuotaMiB?: number;
}

export interface Member {
  id: string;
  location: string | null;
  /** A joining replica receives the log but has no vote until it has caught up. */
  voter: boolean;
}

/** A reconfiguration, carried by a log entry of kind "config". */
export type ConfigChange =
  | { op: "add"; id: string; location: string | null }
  | { op: "promote"; id: string }
  | { op: "remove"; id: string };

/**
 * A config entry's command: the change, and the membership after it. The log carries its own
 * membership so that a recovery need not trust the directory's record of it, which may be stale
 * (see Membership). Entries written before it was carried have the change only.
 */
export type ConfigCommand = ConfigChange & { members?: Member[]; lastReplicaNo?: number };

/**
 * The membership after the config entry at seq, as a replica applied it (committed, so the
 * group's for good). A recovery starts from the best log's, not from the directory's record: a
 * change whose record never reached the directory, and whose entry compaction has dropped from
 * every log, is invisible anywhere else.
 */
export interface Membership {
  seq: number;
  members: Member[];
  lastReplicaNo: number;
}

/** The membership a config entry carries, or null if it carries none (an older entry). */
export function membershipIn(seq: number, command: ConfigCommand): Membership | null {
  if (command.members === undefined || command.lastReplicaNo === undefined) return null;
  return { seq, members: command.members, lastReplicaNo: command.lastReplicaNo };
}

export function membersOf(config: GroupConfig): Member[] {
  return config.members ?? replicaIds(config.replicas).map((id, i) => ({ id, location: config.locations[i] ?? null, voter: true }));
}

/** The membership after one change (idempotent, so replaying a change already applied is harmless). */
export function applyConfigChange(members: Member[], change: ConfigChange): Member[] {
  switch (change.op) {
    case "add":
      return members.some((m) => m.id === change.id) ? members : [...members, { id: change.id, location: change.location, voter: false }];
    case "promote":
      return members.map((m) => (m.id === change.id ? { ...m, voter: true } : m));
    case "remove":
      return members.filter((m) => m.id !== change.id);
  }
}

/** The creation settings only: what PUT compares (the membership may have changed since). */
export function creationConfig(config: GroupConfig): Omit<GroupConfig, "members" | "lastReplicaNo" | "inFlight" | "sequencer" | "incarnation" | "colocated" | "quarantined" | "sessionIdleMs" | "sessionOutputFreeChars" | "storageQuotaMiB"> {
  // (sequencerLocations is a creation setting: it stays. Where a replica lives is not compared:
  // a group made before co-location existed is still found by a PUT of the same settings; nor is
  // the session window, which groups made before it have none of, nor the storage quota.)
  const { members: _members, lastReplicaNo: _last, inFlight: _inFlight, sequencer: _sequencer, incarnation: _incarnation, colocated: _colocated, quarantined: _quarantined, sessionIdleMs: _idle, sessionOutputFreeChars: _free, storageQuotaMiB: _quota, ...rest } = config;
  return rest;
}

/** Whether replica `id` lives in the group's first sequencer object (named like the group). */
export function isColocated(config: Pick<GroupConfig, "colocated">, id: string): boolean {
  return config.colocated === id;
}

/**
 * The replica shares the object of the sequencer in office: the co-located one while the group's
 * first sequencer orders (after a failover or a move it stays in that object, a replica like the
 * others). What a status's `colocated` flag says.
 */
export function withCurrentSequencer(config: GroupConfig, id: string): boolean {
  return isColocated(config, id) && sequencerName(config) === config.group;
}

/**
 * What in a placement may cost the group its availability: a location hint whose voters, lost,
 * leave fewer than a quorum (a majority of them, or half of an even count). If that location stops
 * answering, nothing commits, and no failover can help (a new sequencer recovers from a quorum of
 * voters): a probe placed two of three in weur, and the group took no write for the whole outage,
 * with nothing at its creation saying so. Fewer than three voters tolerate no loss wherever they
 * are: nothing to say.
 */
export function placementWarnings(config: GroupConfig): string[] {
  const voters = membersOf(config).filter((m) => m.voter);
  if (voters.length < 3) return [];
  const counts = new Map<string, number>();
  for (const m of voters) if (m.location !== null) counts.set(m.location, (counts.get(m.location) ?? 0) + 1);
  const need = Math.floor(voters.length / 2) + 1;
  // One whose loss leaves fewer than a quorum: with an even count, half is enough (four voters,
  // two in one location: two left, three needed; a review).
  return [...counts]
    .filter(([, n]) => voters.length - n < need)
    .map(([location, n]) => `${n} of the ${voters.length} voting replicas are placed in ${location}, ${n >= need ? "a majority" : "half of them"}: if ${location} stops answering, no write commits and no failover can help until it answers again; spread the replicas so that no location holds half of them or more`);
}

/** The name of the Durable Object that is the group's sequencer. */
export function sequencerName(config: GroupConfig): string {
  return config.sequencer?.name ?? config.group;
}

/** The names the group's sequencer had before the one in office: the group's own, then `~s1` on (failover.ts successor, move). */
export function earlierSequencerNames(config: GroupConfig): string[] {
  const no = config.sequencer?.no ?? 0;
  return [config.group, ...Array.from({ length: Math.max(0, no - 1) }, (_, i) => `${config.group}~s${i + 1}`)].filter((name) => name !== sequencerName(config));
}

/**
 * The location hint the sequencer's object is placed by: the one a move, a failover or
 * `sequencerLocations` gave it, else, the group's first sequencer, the co-located replica's (its
 * object hosts it); null: anywhere. The status said null (`@ any`) for a group of `locations` alone, whose
 * sequencer runs at r1's place, so an operator could not see it would go down with that place (a
 * location probe).
 */
export function sequencerLocationOf(config: GroupConfig): string | null {
  if (config.sequencer?.location) return config.sequencer.location;
  // Only the group's first object hosts the co-located replica: a move "anywhere" (g~s1, no
  // location) was placed back at r1's place, the one its operator moved away from (a review).
  const hosted = sequencerName(config) === config.group ? config.colocated : undefined;
  return membersOf(config).find((m) => m.id === hosted)?.location ?? null;
}

/** The next unused replica id (ids are never reused, so a removed replica's storage is never mistaken for a new one). */
export function nextReplicaNo(config: GroupConfig): number {
  return Math.max(config.lastReplicaNo ?? 0, config.replicas, ...membersOf(config).map((m) => Number(m.id.slice(1)))) + 1;
}

/** The config after a change: membership, and the replica counter for an add. */
export function configAfter(config: GroupConfig, change: ConfigChange): GroupConfig {
  const members = applyConfigChange(membersOf(config), change);
  const no = change.op === "add" ? Math.max(nextReplicaNo(config) - 1, Number(change.id.slice(1))) : (config.lastReplicaNo ?? config.replicas);
  return { ...config, members, lastReplicaNo: no };
}

/** The sequencer -> replica message: raft's AppendEntries, minus leader election. */
export interface AppendRequest {
  epoch: number;
  prevSeq: number;
  prevHash: string;
  entries: Entry[];
  commitSeq: number;
  /**
   * The sender has had no quorum for this long (past sequencerTimeoutMs): a replica it still
   * reaches is not in contact with a serving group, and its watches end (ReplicaDriver.silentMs).
   */
  cutOffMs?: number;
  /**
   * The sequencer sleeps: no client work for a while, so its heartbeats stop. The replica's silence
   * from now on is idleness: it records none, its watches stay open, and a PreVote wakes the
   * sequencer instead of voting it gone (ReplicaDriver.vote).
   */
  sleep?: true;
  /** The sender adopted the restore at this position (a quorum of voters installed it): see ReplicaMeta.unadoptedSeq. */
  adopted?: number;
  /**
   * A member is at the group's storage quota (writes are refused, SequencerCore.storageRefusal):
   * store the state rows with every step, so the space deletes free shows in the answer's size at
   * once (saved in batches, it showed thousands of entries later or at an audit, and writes stayed
   * refused).
   */
  atQuota?: true;
  /**
   * Bytes of applied entries (with their effects rows) the replica keeps behind its applied
   * position, besides logRetentionEntries: limits.ts logRetentionBytesOf the group's quota. Absent
   * (older senders, tests): entries only.
   */
  retainBytes?: number;
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
  /**
   * State transfers installed here (ReplicaMeta.installs; absent: none, or a replica of an older
   * version): a quarantine decided on an answer with a lower count is older than the rebuilt state.
   */
  installs?: number;
}

export type AppendResponse =
  /**
   * storageBytes: the replica's object's storage, where the store can tell (the storage quota's
   * measure). scrubFailed: its rows failed their last scrub (ReplicaMeta.scrubFailed).
   * quarantined: it withholds its reads and outputs (ReplicaMeta.quarantined; from 2026-12-07).
   */
  | ({ ok: true; outputs: AppliedOutput[]; storageBytes?: number; scrubFailed?: true; quarantined?: true } & ReplicaPosition)
  | ({ ok: false; reason: "stale_epoch" | "gap" | "mismatch"; rebuilding?: boolean } & ReplicaPosition)
  | { ok: false; reason: "not_initialized" };

/** A replica's answer to a recovering sequencer's fence (its promise to refuse lower epochs). */
export interface FenceReply {
  /** True if the proposed epoch was higher than any the replica had seen, and it is now fenced at it. */
  accepted: boolean;
  epoch: number;
  lastSeq: number;
  /** Epoch of the entry at lastSeq (0 for an empty log): logs compare by (lastEpoch, lastSeq). */
  lastEpoch: number;
  /**
   * Timestamp of the entry at baseSeq (ReplicaMeta.baseTimestamp), when known: committed, so a
   * recovery's no-op is stamped no earlier than any of these (and than the log it recovers).
   */
  baseTimestamp?: string | null;
  commitSeq: number;
  appliedSeq: number;
  /** The replica's log starts after baseSeq (compacted); baseHash is the hash at baseSeq. */
  baseSeq: number;
  baseHash: string;
  /** The replica holds itself quarantined (its state is suspect): the recovered sequencer keeps it so. */
  quarantined: boolean;
  /** Halfway through a state transfer: its log is cleared, so it reports an empty one. */
  rebuilding: boolean;
  /** State transfers installed here (ReplicaPosition.installs). */
  installs?: number;
  /** The membership after the last config entry it applied (null: none, or one that carried none). */
  membership?: Membership | null;
  /**
   * How long since it last acknowledged an append (or started): an older sequencer may hold a read
   * lease on that acknowledgement for readLeaseMs after it, which a successor waits out.
   */
  ackedAgoMs?: number;
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
  /** A state transfer is installing rows: its rows and digest are not comparable yet. */
  rebuilding?: boolean;
  checkpoints: Checkpoint[];
  scrub: ScrubResult;
  /** Rows of the replicated state (machine, books, sessions) as the last finished scrub pass counted them. */
  stateRows?: number;
  /** Bytes its object's storage takes, where the store can tell (ReplicaStorage.sizeBytes). */
  storageBytes?: number;
}

export { majority } from "./quorum.js";

export function replicaIds(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `r${i + 1}`);
}
