import {
  appendBytesMax,
  appendEntriesMax,
  checkpointsKeptMax,
  compactionSlackEntries,
  watchHoldBudgets,
  logRetentionEntries,
  pageBytesMax,
  scrubPageRows,
  scrubCharsPerAuditMax,
  scrubRowsPerAuditMax,
  stateSaveBytesMax,
  stateSaveEntriesMax,
  stateSaveRowsMax,
  restoreNoopsMax,
  stepOutputCharsMax,
} from "../limits.js";
import { QueryWrote, type RowStore, type StateMachine } from "../machines/types.js";
import { assert } from "./assert.js";
import { CutMeter } from "./cut-meter.js";
import { entryBytes, entryHash, noopsOnly } from "./entry.js";
import { UnappliedEntries } from "./unapplied.js";
import { sha256Bytes, zeroHash } from "./hash.js";
import { type Changes, DigestedState, InstallDigest, type ScrubCursor, type SessionExpiry, applyEntry, countsReplaced, outputTextOf, lookupSession, machinePrefix, prefetchFor, recomputeDigest } from "./state.js";
import { keptForWatch } from "../machines/output.js";
import type { AppendRequest, AppendResponse, AppliedOutput, AuditInfo, Checkpoint, ConfigCommand, FenceReply, Membership, ReplicaPosition } from "./types.js";
import { membershipIn } from "./types.js";
import type { Entry, MachineName } from "../api/types.js";

export interface ReplicaMeta {
  group: string;
  /** The group's incarnation this replica belongs to (see GroupConfig.incarnation). */
  incarnation?: number;
  id: string;
  machine: MachineName;
  checkpointEvery: number;
  /** The group's session window (GroupConfig.sessionIdleMs); absent: sessions never expire. */
  sessionIdleMs?: number;
  /** GroupConfig.sessionOutputFreeChars; absent: session rows keep every output whole. */
  sessionOutputFreeChars?: number;
  epoch: number;
  lastSeq: number;
  lastHash: string;
  commitSeq: number;
  appliedSeq: number;
  digest: string;
  quarantined: boolean;
  /** The log holds entries after baseSeq only (compacted, or rebuilt by state transfer); baseHash is the hash at baseSeq. */
  baseSeq: number;
  baseHash: string;
  /** Epoch of the entry at baseSeq (the log's last epoch when every entry is compacted away). */
  baseEpoch: number;
  /**
   * Timestamp of the entry at baseSeq (the newest known before it, for a restore's base), when
   * known: with no entry after the base (just rebuilt by a state transfer) it is the floor a
   * recovering sequencer stamps its no-op after (FenceReply.baseTimestamp).
   */
  baseTimestamp?: string | null;
  /** A state transfer being installed: persisted, so a restart midway still knows its rows are partial. */
  installing?: (SnapshotInfo & { transferId: string }) | null;
  /**
   * The last install that ended here, and the digest it installed: its end asked again (a retry
   * after a lost answer, a duplicate) is answered with its outcome, not "no such transfer" (read
   * as a bad copy, or the rebuilt replica quarantined and rebuilt once more: the simulator).
   */
  installed?: { transferId: string; digest: string };
  /**
   * How many installs ended here (absent: none). A quarantine's tell carries the count its
   * sequencer decided it at (stamp); one below this count is older than the rebuilt state and is
   * refused (setQuarantined): a tell that outlived its call's timeout, or a sequencer that
   * restarted between an install's end and its answer, quarantined a rebuilt replica again.
   */
  installs?: number;
  /**
   * The stored state rows are the state after entry stateSeq (digest stateDigest); the entries
   * after it, up to appliedSeq, are applied in memory and re-applied from the log after a restart.
   */
  stateSeq: number;
  stateDigest: string;
  /**
   * The audits' scrub pass under way as of the stored rows (DigestedState.scrubCursor), stored with
   * them and after each audit: a restart goes on with it. (In memory only, a pass over more rows
   * than one audit reads never finished in an object evicted between audits.) `of` is the
   * stateDigest it was taken at: a cursor whose `of` is not the stored rows' digest (or missing)
   * is dropped at load, since an older version that knew no cursor (a rollback, then this one
   * again) kept the field through its saves while writing rows it did not fold into the pass.
   */
  scrub?: StoredScrub | null;
  /**
   * The machine rows' digest (DigestedState.machineDigest) of the stored rows, if known, with the
   * stateDigest it was taken at (`of`): one whose `of` is not the stored rows' digest is dropped at
   * load, as a scrub cursor is (an older version keeps the field through saves it did not fold).
   */
  stateMachineDigest?: { of: string; digest: string } | null;
  /**
   * Set when this replica was made again after losing its storage (a rejoin): it may have
   * acknowledged entries up to this seq before, and holds none of them now. Until its log reaches
   * it again it accepts no fence, so a recovery never counts its empty log in place of those acks.
   */
  rejoinSeq?: number;
  /**
   * Set by the install of a restore (SnapshotInfo.restore) at its seq: the rows are not served
   * (reads, watches, sessions, exports) until an append vouches that its sender holds the
   * restore at that seq and adopted it (AppendRequest.adopted) or committed an entry after it. A restore is adopted only once a
   * quorum of voters installed it: served at once, a replica that installed it showed its rows
   * to readers, and when no quorum did, the undo took them back (its appliedSeq fell, and the
   * bookmark it gave then named another entry: a review).
   */
  unadoptedSeq?: number;
  /**
   * The last scrub pass that finished found its rows do not hash to its digest (cleared by one that
   * passes, and by any install or release): it is no state transfer's source (beginSnapshot). Kept
   * here, not only in the sequencer's memory: after a sequencer's restart an operator's repair
   * copied a damaged replica's rows into its target, and left it rebuilding (a probe).
   */
  scrubFailed?: boolean;
  /**
   * The recovery this replica accepted a fence from, and at which epoch (raft's votedFor): the
   * same recovery asking again at that epoch is accepted again (its first answer may have been
   * lost, or a copy of its message answered first), any other refused.
   */
  fencedBy?: { epoch: number; by: string };
  /** The membership after the last config entry applied (a recovery starts from it: see Membership). */
  membership?: Membership | null;
  /**
   * The appliedSeq `membership` is known to be current at: every save of this version sets it to
   * appliedSeq. A version older than the field (a rollback) keeps both fields through its saves
   * while it applies config entries without updating them; at load, a membership whose mark is
   * not appliedSeq is brought up to date from the log's config entries, or dropped (null: the
   * recovery starts from the directory's, as before the field) when the log no longer holds them.
   */
  membershipAt?: number;
  /**
   * Since when this replica has heard nothing from its epoch's sequencer, written once it has been
   * silent for sequencerTimeoutMs (ReplicaDriver) and cleared when it hears again. An object
   * evicted while nothing reached it used to count its next start as contact, so each PreVote that
   * woke it got "not gone" again, and a cut-off sequencer of a quiet group was never failed over.
   */
  silentSinceMs?: number;
  /**
   * Since when its sequencer has said it sleeps (AppendRequest.sleep), until a message without it
   * or a PreVote: the silence meanwhile is idleness. Kept so that an object evicted in its sleep
   * still knows (a vote then wakes the sequencer instead of starting the silence over).
   */
  asleepSinceMs?: number;
}

/** What a sequencer knows when it re-creates a replica that lost its storage (see ReplicaMeta.rejoinSeq). */
export interface Rejoin {
  epoch: number;
  throughSeq: number;
  /** The installs the sequencer knew it to have made before (ReplicaMeta.installs): counted on from there. */
  installs?: number;
}

/**
 * Everything a replica persists, behind a narrow synchronous interface: SQLite in the Durable
 * Object, maps in the simulator. `transaction` must be all-or-nothing.
 */
export interface ReplicaStorage {
  transaction<T>(fn: () => T): T;
  readonly rows: RowStore;
  /** Inserts entries, replacing any at the same seq. */
  appendEntries(entries: Entry[]): void;
  truncateFrom(seq: number): void;
  /** Drops log entries at or below seq (compaction). */
  deleteThrough(seq: number): void;
  /** SequencerStorage.cutFor, an entry's effects row counted with it. */
  cutFor(toSeq: number, bytesMax: number): number | null;
  /**
   * Freezes a copy of the state rows whose key starts with prefix, under a name (replacing any
   * earlier copy of that name): "snapshot" for a state transfer, others for snapshot downloads.
   * Returns how many rows it copied.
   */
  snapshotRows(name?: string, prefix?: string): number;
  /** A page of a frozen copy: rows after `after`, up to about maxBytes. */
  snapshotPage(after: string | null, maxBytes: number, name?: string): [string, string][];
  dropSnapshot(name?: string): void;
  /** What applied entries did (output, changed keys), kept beside the log for watches. */
  appendEffects(effects: Effect[]): void;
  /** The effects of the applied entries fromSeq..toSeq that are held. */
  readEffects(fromSeq: number, toSeq: number): Effect[];
  /** Removes every state row, log entry and checkpoint (before installing a transferred state). */
  clearAll(): void;
  entryHash(seq: number): string | null;
  /** Entries fromSeq..toSeq, or fewer (a prefix, at least one) once they pass bytesMax. */
  readEntries(fromSeq: number, toSeq: number, bytesMax?: number): Entry[];
  saveMeta(meta: ReplicaMeta): void;
  addCheckpoint(checkpoint: Checkpoint, keepMax: number): void;
  checkpoints(): Checkpoint[];
  /** Bytes the object's storage takes (its SQLite database), where the store can tell. */
  sizeBytes?(): number;
}

/** A scrub cursor as stored: with the digest of the rows it was taken beside (ReplicaMeta.scrub). */
export type StoredScrub = ScrubCursor & { of?: string };

function stampScrub(cursor: ScrubCursor | null, stateDigest: string): StoredScrub | null {
  return cursor === null ? null : { ...cursor, of: stateDigest };
}

/** The stored cursor if it was taken beside the stored rows (digest stateDigest), else null: a new pass. */
function scrubOfRows(stored: StoredScrub | null | undefined, stateDigest: string): ScrubCursor | null {
  if (!stored || stored.of !== stateDigest) return null;
  const { of: _of, ...cursor } = stored;
  return cursor;
}

/**
 * What applying one entry did, as JSON text: its output and the machine keys it wrote with their
 * new values ([[key, value or null], ...]). Stored per applied entry, compacted with the log, so
 * a watch can serve any retained position, after a restart too.
 */
export interface Effect {
  seq: number;
  output: string;
  changes: string;
}

/** The JSON text of a change list: values are already JSON text, so nothing is parsed again. */
export function changesText(changes: Changes): string {
  let out = "";
  for (const [k, v] of changes) out += `${out === "" ? "" : ","}[${JSON.stringify(k)},${v ?? "null"}]`;
  return `[${out}]`;
}

/** Entries whose effects a watch page reads at once (readEvents). */
const watchEffectsChunk = 16;
/** Bounds on the in-memory copy of appended, not yet applied entries. */
const unappliedEntriesMax = 4 * appendEntriesMax;
export const unappliedBytesMax = 2 * appendBytesMax;

/** The group's session rules a replica applies entries by (GroupConfig's fields of the same names). */
export interface SessionRules {
  sessionIdleMs?: number;
  sessionOutputFreeChars?: number;
}

/** The session rules of a config, an init or a meta, those set only: one place for each new rule. */
export function sessionRulesOf(x: SessionRules): SessionRules {
  return {
    ...(x.sessionIdleMs === undefined ? {} : { sessionIdleMs: x.sessionIdleMs }),
    ...(x.sessionOutputFreeChars === undefined ? {} : { sessionOutputFreeChars: x.sessionOutputFreeChars }),
  };
}

export function newReplicaMeta(group: string, id: string, machine: MachineName, checkpointEvery: number, incarnation = 0, rejoin?: Rejoin, rules: SessionRules = {}): ReplicaMeta {
  // A rejoin starts quarantined (no reads, no vote: a state transfer rebuilds it) at the epoch of
  // the sequencer that made it, so an older one's appends are refused.
  const again = rejoin ? { epoch: rejoin.epoch, quarantined: true, rejoinSeq: rejoin.throughSeq, ...(rejoin.installs ? { installs: rejoin.installs } : {}) } : {};
  return {
    group,
    incarnation,
    id,
    machine,
    checkpointEvery,
    ...sessionRulesOf(rules),
    epoch: 0,
    lastSeq: 0,
    lastHash: zeroHash,
    commitSeq: 0,
    appliedSeq: 0,
    digest: zeroHash,
    quarantined: false,
    baseSeq: 0,
    baseHash: zeroHash,
    baseEpoch: 0,
    stateSeq: 0,
    stateDigest: zeroHash,
    ...again,
  };
}

/** A frozen copy of the machine's rows for a download: its name, position, size and digest. */
export interface ExportInfo {
  id: string;
  seq: number;
  rows: number;
  digest: string;
}

/** What a state transfer starts from: the source's frozen state at a seq. */
export interface SnapshotInfo {
  seq: number;
  digest: string;
  logHash: string;
  /** Epoch of the entry at seq. */
  entryEpoch: number;
  /** Timestamp of the entry at seq (or the newest before it), when known: the installed base's. */
  timestamp?: string | null;
  epoch: number;
  /** The source's membership (its last config entry applied may lie before seq, compacted away). */
  membership?: Membership | null;
  /**
   * The undo of a restore that no quorum installed (the empty state at the log's last no-op, or
   * at 0): its sequencer's log holds no-ops alone, so the replica cleared nothing committed but
   * them, and it may stand in a recovery's quorum at once (no rejoinSeq is raised).
   */
  undo?: boolean;
  /** The undo's attempt: the hash at the restore's position (a late undo of another attempt is refused). */
  undoes?: string;
  /** A restore's install: not served until its sequencer is known to have adopted it (ReplicaMeta.unadoptedSeq). */
  restore?: boolean;
}

/**
 * The replica's side of the protocol: accept appends in order, persist them, and apply what is
 * committed, all in one transaction per step.
 */
export class ReplicaCore {
  private meta: ReplicaMeta;
  private state: DigestedState;
  /**
   * Why the last load quarantined this replica (its replay missed the recorded digest, or could
   * not run), or null: the host logs it. Every replica of a group did so in silence under a build
   * whose rule for session rows had changed, the group down with no line saying why (an upgrade probe).
   */
  loadProblem: string | null = null;
  /** What the last load did that an operator may want to know (a replay under another build's session-row rule), or null. */
  loadNote: string | null = null;

  /** The last load's problem and note, once: its host logs them (after a start, and after a step rolled back and reloaded). */
  takeLoadReport(): { problem: string | null; note: string | null } {
    const report = { problem: this.loadProblem, note: this.loadNote };
    this.loadProblem = this.loadNote = null;
    return report;
  }

  /**
   * Entries appended but not applied yet (they commit with a later message): kept so applying
   * them does not read them back from storage. A cache only: anything missing is read.
   */
  private readonly unapplied = new UnappliedEntries(unappliedEntriesMax, unappliedBytesMax);
  /** Bytes (entryBytes) of the entries applied since the rows were last stored: what a restart re-applies. */
  private appliedCharsUnsaved = 0;
  /** When the retained log is measured by bytes (compactionTarget); set with savePhase. */
  private readonly cuts: CutMeter;
  /** The last measure's cut was held back for a live watch (heldForWatch). */
  private watchHeld = false;
  private snapshot: SnapshotInfo | null = null;
  /** Where in each stateSaveEntriesMax entries this replica saves its rows (from its id). */
  private readonly savePhase: number;
  /** The transfer being installed (its id: pages of any other transfer are refused). */
  private installing: (SnapshotInfo & { transferId: string }) | null = null;
  /** A seq an audit asked this replica to record a checkpoint at, once it applies it (see auditInfo). */
  private auditMarkSeq: number | null = null;
  /** The group's session window, as every replica of it applies it (from its init). */
  private readonly expiry: SessionExpiry | null;

  constructor(
    private readonly storage: ReplicaStorage,
    meta: ReplicaMeta,
    /** The state machine this replica runs: given by its host, which looks meta.machine up in the catalog. */
    private readonly machine: StateMachine,
    /** Compaction window; the simulator shrinks it so compaction happens in short runs. */
    private readonly retention = { entries: logRetentionEntries, slack: compactionSlackEntries },
    /** Stored rows an audit's scrub reads (a pass over more takes several audits); the simulator makes it small. */
    private readonly scrubRowsPerAudit = scrubRowsPerAuditMax,
  ) {
    this.meta = { ...meta };
    this.expiry = meta.sessionIdleMs === undefined ? null : { idleMs: meta.sessionIdleMs };
    const membership = this.currentMembership();
    if (membership !== (this.meta.membership ?? null)) this.meta.membership = membership;
    this.savePhase = savePhaseOf(meta.id);
    this.cuts = new CutMeter(1 + (this.savePhase % 8) / 16);
    this.installing = meta.installing ?? null;
    this.state = this.loadState();
    this.saveIfReplayedOtherwise();
  }

  /**
   * Stores the rows at once after a load replayed entries under the other session-row rule: the
   * next steps apply by the group's own, and a replay of both kinds of entries lands on no digest
   * (a review: the next restart before the periodic save quarantined every replica anyway).
   */
  private saveIfReplayedOtherwise(): void {
    if (this.loadNote !== null) this.saveState();
  }

  /**
   * The state as of appliedSeq: the stored rows (as of stateSeq) plus the entries after them
   * re-applied from the log. Applying is deterministic, so this must land on the recorded digest;
   * if it does not, the stored rows or the log are damaged and the replica quarantines itself
   * (the audit rebuilds it from a healthy one). Entries a build of another session-row rule
   * applied (docs/PROTOCOL.md, "A rule of applying never changes for a group that exists") are
   * replayed under that rule too, and taken if it lands on the digest: the state is then the one
   * they made, which its peers hold too, and the group's own rule applies from here on.
   */
  private loadState(): DigestedState {
    this.loadProblem = this.loadNote = null;
    const m = this.meta;
    const machine = m.stateMachineDigest?.of === m.stateDigest ? m.stateMachineDigest.digest : null;
    const stored = () => new DigestedState(this.storage.rows, m.stateDigest, this.installing ? null : scrubOfRows(m.scrub, m.stateDigest), this.installing ? null : machine);
    const stateSeq = m.stateSeq;
    if (this.installing) return stored();
    assert(stateSeq <= m.appliedSeq && stateSeq >= m.baseSeq, `stored state at ${stateSeq} outside base ${m.baseSeq}..applied ${m.appliedSeq}`);
    if (stateSeq === m.appliedSeq) return stored();
    const entries = this.storage.readEntries(stateSeq + 1, m.appliedSeq);
    if (entries.length !== m.appliedSeq - stateSeq) return this.quarantinedAtLoad(stored(), `its log holds ${entries.length} of the ${m.appliedSeq - stateSeq} entries after its stored rows (seq ${stateSeq})`);
    const rule = countsReplaced(m.sessionOutputFreeChars);
    const replay = this.replayed(stored(), entries, rule);
    if (replay.problem !== null) return this.quarantinedAtLoad(replay.state, replay.problem);
    if (replay.state.digest === m.digest) return replay.state;
    if (m.sessionOutputFreeChars !== undefined) {
      const other = this.replayed(stored(), entries, !rule);
      if (other.problem === null && other.state.digest === m.digest) {
        this.loadNote = `entries ${stateSeq + 1} to ${m.appliedSeq} were applied by a build that counted ${rule ? "the command alone" : "the rows replaced too"} in a session row's bound: replayed so, they land on the recorded digest`;
        return other.state;
      }
    }
    return this.quarantinedAtLoad(replay.state, `replaying entries ${stateSeq + 1} to ${m.appliedSeq} over its stored rows landed on digest ${replay.state.digest.slice(0, 12)}, not the recorded ${m.digest.slice(0, 12)}`);
  }

  /** The entries applied over `state` (whether a session row's bound counts the rows replaced), or why they could not be. */
  private replayed(state: DigestedState, entries: Entry[], countReplaced: boolean): { state: DigestedState; problem: string | null } {
    let problem: string | null = null;
    try {
      prefetchFor(state, this.machine, entries);
      for (const e of entries) applyEntry(state, this.machine, e, undefined, this.expiry, this.meta.sessionOutputFreeChars, countReplaced);
    } catch (err) {
      problem = `replaying entries ${entries[0]!.seq} to ${entries.at(-1)!.seq} failed: ${String(err)}`; // a damaged row the machine cannot read
    }
    state.endStep();
    return { state, problem };
  }

  private quarantinedAtLoad(state: DigestedState, problem: string): DigestedState {
    if (!this.meta.quarantined) this.saveMeta({ quarantined: true });
    this.loadProblem = problem;
    return state;
  }

  /**
   * Stores the rows applied entries wrote now (a scrub and a snapshot read the stored rows; the
   * simulator stores them before it corrupts one, so the corruption is not simply overwritten).
   */
  saveState(): void {
    if (this.meta.stateSeq === this.meta.appliedSeq && this.state.unsavedRows === 0) return;
    this.storage.transaction(() => {
      const next = { ...this.meta };
      this.storeRows(next);
      this.saveMeta(next);
    });
  }

  /**
   * The stored membership if it is current at appliedSeq (see ReplicaMeta.membershipAt); else the
   * one the log's config entries since it give, or null if the log no longer holds them all.
   */
  private currentMembership(): Membership | null {
    const m = this.meta;
    const own = m.membership ?? null;
    if (own === null || m.membershipAt === m.appliedSeq) return own;
    const from = (m.membershipAt ?? own.seq) + 1;
    if (from > m.appliedSeq) return own;
    if (from <= m.baseSeq) return null;
    // In pages: up to logRetentionEntries + slack entries of up to bodyBytesMax each (GBs) may
    // lie between, and an object that died of reading them at load would die at every restart.
    let current: Membership | null = own;
    for (let seq = from; seq <= m.appliedSeq; ) {
      const page = this.storage.readEntries(seq, m.appliedSeq, pageBytesMax);
      if (page.length === 0) return null;
      for (const e of page) {
        if (e.seq !== seq) return null;
        if (e.kind === "config") current = membershipIn(e.seq, e.command as ConfigCommand);
        seq++;
      }
    }
    return current;
  }

  /** The one way the meta changes: stored, then taken (a step's transaction holds both or neither). */
  private saveMeta(changes: Partial<ReplicaMeta>): void {
    const next = { ...this.meta, ...changes };
    next.membershipAt = next.appliedSeq;
    this.storage.saveMeta(next);
    this.meta = next;
  }

  /** Writes the unsaved rows and records in `next` (saved by the caller) what they are the state of. */
  private storeRows(next: ReplicaMeta): void {
    this.state.save();
    this.appliedCharsUnsaved = 0;
    next.stateSeq = next.appliedSeq;
    next.stateDigest = this.state.digest;
    next.scrub = stampScrub(this.state.scrubCursor, next.stateDigest);
    const machine = this.state.knownMachineDigest;
    next.stateMachineDigest = machine === null ? null : { of: next.stateDigest, digest: machine };
  }

  get id(): string {
    return this.meta.id;
  }
  /** Bytes of appended entries held in memory until applied (bounded by unappliedBytesMax). */
  get unappliedBytes(): number {
    return this.unapplied.bytes;
  }
  /** Characters of applied rows held in memory, not yet stored (bounded by stateSaveBytesMax). */
  get unsavedChars(): number {
    return this.state.unsavedChars;
  }
  get appliedSeq(): number {
    return this.meta.appliedSeq;
  }
  /**
   * Halfway through a state transfer it holds no log (beginInstall cleared it), and after one it
   * may hold less than it acknowledged (rejoinSeq): it must not stand in a recovery's quorum.
   * beginInstall keeps what the cleared log held as rejoinSeq; one that cleared nothing (an empty
   * replica, or a failed restore's undo) acknowledged nothing and may stand: a restore that left
   * a replica halfway, with the replica that kept it away, left no quorum to recover from (a
   * review).
   */
  get amnesiac(): boolean {
    const rejoinSeq = this.meta.rejoinSeq;
    if (this.installing !== null) return rejoinSeq !== undefined;
    return rejoinSeq !== undefined && this.meta.lastSeq < rejoinSeq;
  }

  get quarantined(): boolean {
    return this.meta.quarantined;
  }

  /** Its last finished scrub pass failed (ReplicaMeta.scrubFailed). */
  get scrubFailed(): boolean {
    return this.meta.scrubFailed === true;
  }

  /** State it must not serve: quarantined, or a restore not known to be adopted (ReplicaMeta.unadoptedSeq). */
  get withheld(): boolean {
    return this.meta.quarantined || this.meta.unadoptedSeq !== undefined;
  }

  /** Records since when this replica has heard nothing from its sequencer (null: it hears it). */
  noteSilence(sinceMs: number | null): void {
    if ((this.meta.silentSinceMs ?? null) === sinceMs) return;
    this.saveMeta({ silentSinceMs: sinceMs ?? undefined });
  }

  /** Records since when its sequencer sleeps (null: awake), and the silence that follows (one write). */
  noteSleep(asleepSinceMs: number | null, silentSinceMs: number | null): void {
    if ((this.meta.asleepSinceMs ?? null) === asleepSinceMs && (this.meta.silentSinceMs ?? null) === silentSinceMs) return;
    this.saveMeta({ asleepSinceMs: asleepSinceMs ?? undefined, silentSinceMs: silentSinceMs ?? undefined });
  }
  get config(): Readonly<ReplicaMeta> {
    return this.meta;
  }

  /**
   * The object's storage in bytes, where the store can tell: the sequencer's storage quota reads it
   * from each append's answer. Rows not yet stored are not in it: saved in batches of up to
   * stateSaveBytesMax (8 MiB), sequential batches took a 16 MiB group 44% past its quota before it
   * measured there (a probe). Each measure of the log by bytes stores them (saveAndCompact), about
   * once per quarter budget appended, which bounds that in a small group. (Counting them in double-counted
   * overwrites of stored rows and refused writes to a group under its quota: a review.)
   */
  /**
   * What every successful append answer says of its rows' last scrub (a heartbeat's answer without
   * it read as "sound", and the sequencer's status flapped between damaged and healthy: a review),
   * and of a quarantine: one it put itself in (a replay that missed its digest) was learned only
   * at the next audit, a minute in which the status said healthy while it withheld its reads and
   * outputs (an upgrade probe). Both only when set: an older sequencer ignores them.
   */
  private damage(): { scrubFailed?: true; quarantined?: true } {
    return { ...(this.meta.scrubFailed ? { scrubFailed: true as const } : {}), ...(this.meta.quarantined ? { quarantined: true as const } : {}) };
  }

  private sized(): { storageBytes?: number } {
    return this.storage.sizeBytes ? { storageBytes: this.storage.sizeBytes() } : {};
  }

  position(): ReplicaPosition {
    const { epoch, lastSeq, commitSeq, appliedSeq, digest, installs } = this.meta;
    return { epoch, lastSeq, commitSeq, appliedSeq, digest, ...(installs !== undefined ? { installs } : {}) };
  }

  /** The hash at seq, or null if unknown (not held, or compacted away). */
  private hashAt(seq: number): string | null {
    if (seq === 0) return zeroHash;
    if (seq === this.meta.baseSeq) return this.meta.baseHash;
    if (seq < this.meta.baseSeq) return null;
    if (seq === this.meta.lastSeq) return this.meta.lastHash; // every append's prevSeq, usually
    return this.storage.entryHash(seq);
  }

  /** `watchedSeq`: the lowest position a live watch stands at (WatchHub.lowestSeq): compaction by bytes keeps what follows it. */
  append(input: AppendRequest, watchedSeq: number | null = null): AppendResponse {
    const m = this.meta;
    if (input.epoch < m.epoch) return { ok: false, reason: "stale_epoch", ...this.position() };
    // Halfway through a state transfer (maybe one a dead sequencer started): only a new one helps.
    if (this.installing) return { ok: false, reason: "gap", rebuilding: true, ...this.position() };
    let req = input;
    if (req.prevSeq < m.baseSeq) {
      // Entries at or below the base are applied already (compacted or transferred): skip them.
      const skip = m.baseSeq - req.prevSeq;
      if (req.entries.length < skip) return { ok: true, outputs: [], ...this.position(), ...this.damage() };
      const last = req.entries[skip - 1]!;
      if (last.hash !== m.baseHash) return { ok: false, reason: "mismatch", ...this.position() };
      req = { ...req, prevSeq: m.baseSeq, prevHash: m.baseHash, entries: req.entries.slice(skip) };
    }
    if (req.prevSeq > m.lastSeq) return { ok: false, reason: "gap", ...this.position() };
    const prevHash = this.hashAt(req.prevSeq);
    if (prevHash !== req.prevHash) return { ok: false, reason: "mismatch", ...this.position() };
    // The sender holds this replica's log up to prevSeq (the restore's position included) and
    // either adopted the restore itself or has committed an entry after it. Not a commit at the
    // position alone: a recovery that took a lone holder's log as best counts its base as
    // committed before its no-op commits, and a later recovery without that holder dropped the
    // restore a reader had seen (a review).
    const unadopted = m.unadoptedSeq;
    if (unadopted !== undefined && req.prevSeq >= unadopted && (req.adopted === unadopted || Math.min(req.commitSeq, req.prevSeq + req.entries.length) > unadopted)) this.saveMeta({ unadoptedSeq: undefined });
    // A heartbeat (or a commit it already knows): nothing changes, nothing is written, unless
    // committed entries wait to be applied (a step stops at stepOutputCharsMax of outputs).
    if (req.entries.length === 0 && req.epoch === m.epoch && Math.min(req.commitSeq, req.prevSeq) <= m.commitSeq && m.appliedSeq >= m.commitSeq) {
      return { ok: true, outputs: [], ...this.position(), ...this.damage() };
    }

    try {
      const resp = this.storage.transaction(() => this.step(req, watchedSeq));
      this.state.endStep();
      return resp;
    } catch (err) {
      // The transaction rolled back; drop in-memory state that may have moved with it.
      this.unapplied.clear();
      this.state = this.loadState();
      this.saveIfReplayedOtherwise();
      throw err;
    }
  }

  /** One append, inside its transaction: store the new entries, apply what is committed, save and compact. */
  private step(req: AppendRequest, watchedSeq: number | null): AppendResponse {
    const next: ReplicaMeta = { ...this.meta, epoch: req.epoch };
    const fresh = this.storeEntries(req, next);
    // Only what this message vouched for can be taken as committed (raft's min(leaderCommit, last new)).
    const vouchedSeq = req.prevSeq + req.entries.length;
    next.commitSeq = Math.max(next.commitSeq, Math.min(req.commitSeq, vouchedSeq));
    const outputs = this.applyCommitted(next, fresh, req.prevSeq);
    next.digest = this.state.digest;
    this.saveAndCompact(next, fresh, req, watchedSeq);
    this.saveMeta(next);
    // A quarantined replica's state is suspect (a failed replay, or the audit's verdict): it
    // still stores and acks the log, but its outputs must not answer anyone.
    return { ok: true, outputs: next.quarantined ? [] : outputs, ...this.position(), ...this.sized(), ...this.damage() };
  }

  /**
   * Checks the message's entries chain, drops a conflicting suffix (an older epoch's entries the
   * new sequencer does not hold), stores what is new. Returns the message's entries by seq.
   */
  private storeEntries(req: AppendRequest, next: ReplicaMeta): Map<number, Entry> {
    const fresh = new Map<number, Entry>();
    let prevHash = req.prevHash;
    const toAppend: Entry[] = [];
    for (let i = 0; i < req.entries.length; i++) {
      const e = req.entries[i]!;
      assert(e.seq === req.prevSeq + 1 + i, `append entries not consecutive at ${e.seq}`);
      assert(e.hash === entryHash(prevHash, e), `entry ${e.seq} does not chain to its predecessor`);
      prevHash = e.hash;
      fresh.set(e.seq, e);
      if (e.seq <= next.lastSeq) {
        if (this.hashAt(e.seq) === e.hash) continue;
        assert(e.seq > next.appliedSeq, `conflicting entry ${e.seq} at or below appliedSeq ${next.appliedSeq}`);
        this.storage.truncateFrom(e.seq);
        this.unapplied.deleteFrom(e.seq);
        next.lastSeq = e.seq - 1;
      }
      toAppend.push(e);
      next.lastSeq = e.seq;
      next.lastHash = e.hash;
    }
    if (toAppend.length > 0) {
      this.storage.appendEntries(toAppend);
      this.unapplied.add(toAppend);
      for (const e of toAppend) this.cuts.add(entryBytes(e));
    }
    return fresh;
  }

  /** Applies the entries between appliedSeq and commitSeq, in order, recording checkpoints. */
  private applyCommitted(next: ReplicaMeta, fresh: Map<number, Entry>, prevSeq: number): AppliedOutput[] {
    const outputs: AppliedOutput[] = [];
    if (next.commitSeq <= next.appliedSeq) return outputs;
    // Entries appended by an earlier message are usually still in memory; read the rest.
    const committed: Entry[] = [];
    for (let seq = next.appliedSeq + 1; seq <= next.commitSeq; seq++) {
      let e = fresh.get(seq) ?? this.unapplied.get(seq);
      if (e === undefined) {
        for (const r of this.storage.readEntries(seq, Math.min(next.commitSeq, prevSeq))) fresh.set(r.seq, r);
        e = fresh.get(seq);
      }
      assert(e !== undefined, `committed entry ${seq} missing from the log`);
      committed.push(e);
    }
    prefetchFor(this.state, this.machine, committed);
    const effects: Effect[] = [];
    let outputChars = 0;
    for (const e of committed) {
      // The answer is one message: past stepOutputCharsMax the rest waits for the next one.
      if (outputChars >= stepOutputCharsMax) break;
      const changes: Changes = new Map();
      const out = applyEntry(this.state, this.machine, e, changes, this.expiry, this.meta.sessionOutputFreeChars);
      this.appliedCharsUnsaved += entryBytes(e);
      outputs.push(out);
      const outputText = outputTextOf(out);
      outputChars += outputText.length;
      const effect = { seq: e.seq, output: keptForWatch(outputText, out.output), changes: changesText(changes) };
      effects.push(effect);
      this.cuts.add(effect.output.length + effect.changes.length);
      this.unapplied.delete(e.seq);
      next.appliedSeq = e.seq;
      if (e.kind === "config") next.membership = membershipIn(e.seq, e.command as ConfigCommand);
      if (e.seq % next.checkpointEvery === 0 || e.seq === this.auditMarkSeq) {
        this.storage.addCheckpoint({ seq: e.seq, digest: this.state.digest, logHash: e.hash }, checkpointsKeptMax);
        if (e.seq === this.auditMarkSeq) this.auditMarkSeq = null;
      }
    }
    this.storage.appendEffects(effects);
    return outputs;
  }

  /**
   * Stores the state rows once per stateSaveEntriesMax entries (at this replica's phase), or once
   * stateSaveRowsMax rows or stateSaveBytesMax characters (of rows, or of the entries applied) are
   * unsaved, or at every step while the group is at its storage quota, and always before the log
   * they were written by is compacted away (a restart re-applies the entries after stateSeq);
   * compacts the log to logRetentionEntries behind the applied position, in slack-sized steps.
   */
  private saveAndCompact(next: ReplicaMeta, fresh: Map<number, Entry>, req: AppendRequest, watchedSeq: number | null): void {
    const atQuota = req.atQuota === true;
    const { to: compactTo, measured } = this.compactionTarget(next, req.retainBytes, watchedSeq, atQuota);
    // Due at every multiple of stateSaveEntriesMax, shifted by this replica's phase: at most that
    // many entries unsaved, and the replicas of a group save at different seqs (a save of a few
    // thousand entries' rows holds a step up for tens of ms: not two voters of a quorum at once).
    const period = stateSaveEntriesMax;
    const crossed = Math.floor((next.appliedSeq + this.savePhase) / period) > Math.floor((next.stateSeq + this.savePhase) / period);
    // In characters too, of rows and of the entries a restart would re-apply (a command may be
    // large and write little: a txn whose compare carries a 64 KiB value).
    const chars = Math.max(this.state.unsavedChars, this.appliedCharsUnsaved);
    // At the quota (AppendRequest.atQuota): what deletes freed shows in this step's answer.
    // And at each measure of the log, cut or not (a watch may hold the cut): what the size leaves
    // out (rows not stored) stays within a quarter budget's appends in a small group.
    const due = this.state.unsavedRows >= stateSaveRowsMax || chars >= stateSaveBytesMax || crossed || ((atQuota || measured) && this.state.unsavedRows > 0);
    if (due || (compactTo !== null && compactTo > next.stateSeq)) this.storeRows(next);
    if (compactTo === null) return;
    assert(compactTo <= next.stateSeq, `compacting to ${compactTo} would drop entries after the stored state at ${next.stateSeq}`);
    const at = fresh.get(compactTo) ?? this.storage.readEntries(compactTo, compactTo)[0];
    assert(at !== undefined, `compaction base ${compactTo} missing from the log`);
    next.baseHash = at.hash;
    next.baseEpoch = at.epoch;
    next.baseTimestamp = at.timestamp;
    next.baseSeq = compactTo;
    this.storage.deleteThrough(compactTo);
  }

  /**
   * Where to compact the log to, or null: logRetentionEntries behind the applied position, in
   * slack-sized steps; or where the applied entries with their effects rows pass the bytes
   * budget (AppendRequest.retainBytes), measured when the CutMeter says, held for a live watch
   * within a bound (heldForWatch; the entries window alone may pass it, as before).
   */
  private compactionTarget(next: ReplicaMeta, retainBytes: number | undefined, watchedSeq: number | null, atQuota: boolean): { to: number | null; measured: boolean } {
    const { entries, slack } = this.retention;
    const byCount = next.appliedSeq - next.baseSeq > entries + slack ? next.appliedSeq - entries : null;
    // At the quota no watch holds the log (it would hold the writes refused), and one held at the
    // last measure is measured again now: only small commands go at the quota, and the next
    // measure by bytes appended came a thousand of them later (a review).
    const again = atQuota && this.watchHeld;
    if (retainBytes === undefined || !(this.cuts.due(retainBytes) || again)) return { to: byCount, measured: false };
    const cut = this.storage.cutFor(next.appliedSeq, retainBytes);
    const held = this.heldForWatch(cut, next.appliedSeq, retainBytes, atQuota ? null : watchedSeq);
    this.watchHeld = held !== cut;
    const target = Math.max(byCount ?? 0, held ?? 0);
    return { to: target > next.baseSeq ? target : null, measured: true };
  }

  /**
   * The bytes cut, not past a live watch's position while the log from there takes at most
   * watchHoldBudgets budgets: a reader that stopped reading (its queue full, never dropped while
   * the others' queues are small) held the log until the group refused writes, deletes or not (a
   * review). Past that the cut goes on, and the watch gets `compacted` when it reads on.
   */
  private heldForWatch(cut: number | null, appliedSeq: number, retainBytes: number, watchedSeq: number | null): number | null {
    if (cut === null || watchedSeq === null || watchedSeq >= cut) return cut;
    const farthest = this.storage.cutFor(appliedSeq, retainBytes * watchHoldBudgets);
    return Math.max(watchedSeq, farthest ?? 0);
  }

  /**
   * A recovering sequencer's fence: from now on appends from a lower epoch are refused. Accepted
   * only for an epoch higher than any seen, like a ballot, so two recoveries cannot share one; or
   * again for the epoch it was fenced at by the same recovery (`by`), which changes nothing: each
   * replica accepts one recovery per epoch, so at most one gathers a quorum at it.
   */
  fence(epoch: number, by?: string): FenceReply {
    // Halfway through a state transfer it holds no log (beginInstall cleared it), and after one
    // it may hold less than it acknowledged (rejoinSeq): either way it must not stand in a
    // recovery's quorum for entries it may have acknowledged.
    const amnesiac = this.amnesiac;
    const f = this.meta.fencedBy;
    const again = by !== undefined && epoch === this.meta.epoch && f?.epoch === epoch && f.by === by;
    const accepted = (epoch > this.meta.epoch || again) && !amnesiac;
    if (accepted && !again) this.saveMeta({ epoch, fencedBy: by === undefined ? undefined : { epoch, by } });
    const m = this.meta;
    // Halfway through a state transfer the log is cleared while the positions are the old ones:
    // it holds nothing a recovery could read, and claims nothing (it used to report a commitSeq
    // beyond every log in the quorum).
    if (this.installing) {
      return { accepted, epoch: m.epoch, lastSeq: 0, lastEpoch: 0, commitSeq: 0, appliedSeq: 0, baseSeq: 0, baseHash: zeroHash, quarantined: true, rebuilding: true, ...this.installCount() };
    }
    const last = m.lastSeq > m.baseSeq ? this.storage.readEntries(m.lastSeq, m.lastSeq)[0] : undefined;
    const lastEpoch = last?.epoch ?? m.baseEpoch;
    return {
      accepted,
      baseTimestamp: m.baseTimestamp ?? null,
      epoch: m.epoch,
      lastSeq: m.lastSeq,
      lastEpoch,
      commitSeq: m.commitSeq,
      appliedSeq: m.appliedSeq,
      baseSeq: m.baseSeq,
      baseHash: m.baseHash,
      quarantined: m.quarantined,
      rebuilding: this.installing !== null,
      membership: m.membership ?? null,
      ...this.installCount(),
    };
  }

  private installCount(): { installs?: number } {
    return this.meta.installs !== undefined ? { installs: this.meta.installs } : {};
  }

  /** A page of this replica's log, for a sequencer rebuilding its own. */
  readLog(fromSeq: number, toSeq: number): Entry[] {
    if (fromSeq <= this.meta.baseSeq) return [];
    return this.storage.readEntries(fromSeq, Math.min(toSeq, fromSeq + appendEntriesMax - 1, this.meta.lastSeq), pageBytesMax);
  }

  /**
   * Watch events of the applied entries after fromSeq, at most `limit` of them (and about
   * pageBytesMax): each with its SSE text and the keys it changed. "compacted": fromSeq + 1 is no
   * longer in this replica's log.
   */
  readEvents(fromSeq: number, limit: number, bytesMax = pageBytesMax): WatchText[] | "compacted" {
    if (fromSeq < this.meta.baseSeq) return "compacted";
    const toSeq = Math.min(this.meta.appliedSeq, fromSeq + limit);
    if (toSeq <= fromSeq) return [];
    const entries = this.storage.readEntries(fromSeq + 1, toSeq, bytesMax);
    // The events' text counts (commands, outputs and changes; an output may be 512 Ki characters):
    // read a few entries' effects at a time and stop past bytesMax, at least one event per page.
    const page: WatchText[] = [];
    let chars = 0;
    for (let i = 0; i < entries.length && chars <= bytesMax; i += watchEffectsChunk) {
      const chunk = entries.slice(i, i + watchEffectsChunk);
      const effects = new Map(this.storage.readEffects(chunk[0]!.seq, chunk[chunk.length - 1]!.seq).map((f) => [f.seq, f]));
      for (const e of chunk) {
        const event = watchText(e, effects.get(e.seq));
        chars += event.text.length;
        if (page.length > 0 && chars > bytesMax) break;
        page.push(event);
      }
    }
    return page;
  }

  query(q: unknown): unknown {
    try {
      // Read-only: a query that wrote changed this replica's rows with no entry in the log (docs/MACHINES.md).
      const view = this.state.machineView();
      const refuse = (): never => {
        throw new QueryWrote(`machine ${this.machine.name}: a query must only read (it called put or delete): the replica refused it`);
      };
      return this.machine.query({ ...view, put: refuse, delete: refuse }, q);
    } finally {
      this.state.endStep();
    }
  }

  session(client: string, request: number) {
    try {
      return lookupSession(this.state, client, request);
    } finally {
      this.state.endStep();
    }
  }

  /**
   * The operator's way out of a quarantine: the replica serves and votes again. Refused while its
   * stored rows do not hash to its recorded digest (repair it from a healthy replica instead),
   * unless `rebase`: then its rows are taken as they are and its digest recomputed from them (for
   * when every replica is quarantined and none is healthy to copy from; the next audit compares it).
   */
  release(rebase: boolean): { ok: boolean; digest: string; reason?: string } {
    if (this.installing) return { ok: false, digest: this.meta.digest, reason: "it is halfway through a state transfer: repair it instead" };
    this.saveState();
    const actual = recomputeDigest(this.storage.rows, scrubPageRows).digest;
    if (actual !== this.meta.digest && !rebase) {
      return { ok: false, digest: actual, reason: `its rows hash to ${actual.slice(0, 12)}, its recorded digest is ${this.meta.digest.slice(0, 12)}: repair it, or release it with rebase to take its rows as they are` };
    }
    this.saveMeta({ quarantined: false, digest: actual, stateDigest: actual, scrub: null, stateMachineDigest: null, scrubFailed: undefined });
    this.state = new DigestedState(this.storage.rows, actual);
    return { ok: true, digest: actual };
  }

  /**
   * `stamp`: the install count its sequencer decided the quarantine at (ReplicaMeta.installs).
   * Below this replica's count, the quarantine is older than the state it installed since: refused,
   * and answered with the count (`stale`), from which the sequencer learns it was rebuilt.
   */
  setQuarantined(quarantined: boolean, stamp?: number): { stale: true; installs: number } | undefined {
    const installs = this.meta.installs ?? 0;
    if (quarantined && stamp !== undefined && stamp < installs) return { stale: true, installs };
    if (this.meta.quarantined !== quarantined) this.saveMeta({ quarantined });
    return undefined;
  }

  // ---- state transfer ------------------------------------------------------------------------

  /** Source side: freeze the state at appliedSeq; pages are served from the frozen copy while writes go on. */
  beginSnapshot(): SnapshotInfo | null {
    // Refused, not asserted: a sequencer whose view is behind (it has not heard yet that this
    // replica is being rebuilt) asks it, and the assertion was thrown into its object as an error.
    // Nor rows that failed their last scrub (ReplicaMeta.scrubFailed): the copy would fail its
    // digest check, the target left rebuilding.
    if (this.installing || this.meta.scrubFailed) return null;
    this.saveState();
    this.storage.snapshotRows();
    const m = this.meta;
    const at = m.appliedSeq > m.baseSeq ? this.storage.readEntries(m.appliedSeq, m.appliedSeq)[0] : undefined;
    const entryEpoch = at?.epoch ?? m.baseEpoch;
    const timestamp = at?.timestamp ?? m.baseTimestamp ?? null;
    // A restore not known to be adopted stays so on the target (a review: rebuilt from a withheld
    // lone holder, the target served a restore a later recovery dropped).
    const restore = m.unadoptedSeq !== undefined ? { restore: true } : {};
    this.snapshot = { seq: m.appliedSeq, digest: m.digest, logHash: this.hashAt(m.appliedSeq) ?? zeroHash, entryEpoch, timestamp, epoch: m.epoch, membership: m.membership ?? null, ...restore };
    return this.snapshot;
  }

  snapshotPage(seq: number, after: string | null, maxBytes: number): [string, string][] | null {
    if (this.snapshot?.seq !== seq) return null;
    return this.storage.snapshotPage(after, maxBytes);
  }

  endSnapshot(): void {
    this.snapshot = null;
    this.storage.dropSnapshot();
  }

  /**
   * A snapshot download (API.md "Snapshot and restore"): freezes the machine's rows under a name,
   * then counts and digests the frozen copy (the digest a state of exactly these rows has), so
   * the file's header can come first while writes go on.
   */
  beginExport(name: string): ExportInfo | null {
    if (this.installing || this.withheld) return null;
    this.saveState();
    const rows = this.storage.snapshotRows(name, machinePrefix);
    return { id: name, seq: this.meta.appliedSeq, rows, digest: this.exportDigest() };
  }

  /**
   * The digest the machine's rows should have: the state's recorded one for them
   * (DigestedState.machineDigest, kept write by write), never the frozen rows' own hash. A
   * replica whose stored rows no longer match it (damage the scrub has not reached yet) then gives
   * a file whose rows do not match its header, which the download's end checks
   * (routes/snapshots.ts) and a restore refuses. Hashing the copy instead, when the books and
   * sessions were the more rows (the usual case: 1,024 remembered requests a client), made a
   * damaged replica's file look whole, and its restore spread the damage (a probe). Hashing every
   * machine row held the replica 4 s of a download's 5.1 s start at 2.5 million rows.
   */
  private exportDigest(): string {
    return this.state.machineDigest();
  }

  /** Rows of a frozen export after `after` (stored keys, "m/" included), about maxBytes of them. */
  exportPage(name: string, after: string | null, maxBytes: number): [string, string][] {
    return this.storage.snapshotPage(after, maxBytes, name);
  }

  endExport(name: string): void {
    this.storage.dropSnapshot(name);
  }

  /** Target side: forget everything (it serves nothing meanwhile: it is quarantined). */
  beginInstall(info: SnapshotInfo, transferId: string, sequencerEpoch: number): boolean {
    // A deposed sequencer must not wipe a replica that a newer one has fenced.
    if (sequencerEpoch < this.meta.epoch) return false;
    const installing = { ...info, transferId };
    // The log it clears may hold entries it acknowledged (a commit counted them): like a replica
    // made again after losing its storage, it accepts no fence until its log is back past them.
    // Found by the simulator (seed 1011823589): a corrupted replica's repair began, a failover's
    // recovery counted its emptied log in its quorum, and seven acknowledged commands were lost.
    // Not for the undo of a failed restore (SnapshotInfo.undo): a replica that had installed the
    // restore then refused every fence until the group's next entry, and a recovery right after
    // could only find its quorum with a replica that kept the restore.
    // An undo is refused by a replica holding anything past its position (the group's last no-op)
    // but that attempt's restore: a late undo of a failed attempt reached a replica holding the
    // adopted retry, emptied it, and a recovery lost the acknowledged restore (a review).
    const m = this.meta;
    const undo = info.undo === true;
    if (undo && !(m.lastSeq <= info.seq || (m.lastSeq === info.seq + 1 && m.baseSeq === m.lastSeq && m.baseHash === info.undoes))) return false;
    // A restore's install over a log of no-ops alone clears nothing a client was answered for, as
    // an undo clears: no rejoinSeq either. Raised, a restore cut off halfway in a group whose log
    // held a no-op (a move, a failover, an earlier cut-off restore) left every replica refusing
    // fences, and no recovery could take office to rebuild them (a review). Only a restore's: a
    // repair's install over committed no-ops let a recovery without the others put another entry
    // at their seq, and a replica that had applied them refused every append after (a review).
    const noops = info.restore === true && noopsOnly(m.baseSeq, m.lastSeq, restoreNoopsMax, (from, to) => this.storage.readEntries(from, to));
    const rejoinSeq = undo || noops ? m.rejoinSeq : Math.max(m.rejoinSeq ?? 0, m.lastSeq);
    this.storage.transaction(() => {
      this.storage.clearAll();
      this.saveMeta({ quarantined: true, installing, rejoinSeq: rejoinSeq !== undefined && rejoinSeq > 0 ? rejoinSeq : undefined, scrub: null, stateMachineDigest: null });
    });
    this.state = new DigestedState(this.storage.rows, zeroHash);
    this.unapplied.clear();
    this.installing = installing;
    this.installDigest = new InstallDigest();
    return true;
  }

  /** The installed rows' digest so far; none after a restart mid-install (endInstall reads them back). */
  private installDigest: InstallDigest | null = null;

  /** False if no such transfer is in progress (another one replaced it): the caller gives up. */
  installPage(transferId: string, rows: [string, string][]): boolean {
    if (this.installing?.transferId !== transferId) return false;
    this.storage.transaction(() => {
      for (const [k, v] of rows) this.storage.rows.put(k, v);
    });
    this.installDigest?.add(rows);
    return true;
  }

  /**
   * Verifies the installed rows against the source's digest and takes the source's position. On
   * a mismatch the replica stays "rebuilding" (serving nothing, scrubbed by nobody) until the
   * next transfer starts over.
   */
  endInstall(transferId: string): { ok: boolean; digest: string; storageBytes?: number; installs?: number } {
    const info = this.installing;
    if (info?.transferId !== transferId) {
      const done = this.meta.installed;
      // Only while no other install is under way: its begin emptied what that one installed.
      return done?.transferId === transferId && !info ? { ok: true, digest: done.digest, ...this.sized(), ...this.installCount() } : { ok: false, digest: "" };
    }
    const actual = this.installDigest?.digest ?? recomputeDigest(this.storage.rows, scrubPageRows).digest;
    if (actual !== info.digest) return { ok: false, digest: actual };
    this.installing = null;
    this.installDigest = null;
    this.saveMeta({
      epoch: Math.max(this.meta.epoch, info.epoch),
      lastSeq: info.seq,
      lastHash: info.logHash,
      commitSeq: info.seq,
      appliedSeq: info.seq,
      digest: info.digest,
      baseSeq: info.seq,
      baseHash: info.logHash,
      baseEpoch: info.entryEpoch,
      baseTimestamp: info.timestamp ?? null,
      quarantined: false,
      installing: null,
      stateSeq: info.seq,
      stateDigest: info.digest,
      scrub: null,
      stateMachineDigest: null,
      membership: info.membership ?? null,
      unadoptedSeq: info.restore === true ? info.seq : undefined,
      scrubFailed: undefined,
      installed: { transferId, digest: info.digest },
      installs: (this.meta.installs ?? 0) + 1,
    });
    this.state = new DigestedState(this.storage.rows, info.digest);
    // Its size now (the quota's measure): the rebuilt or restored state's, not the last append's.
    return { ok: true, digest: actual, ...this.sized(), ...this.installCount() };
  }

  /** One audit's worth more of the scrub pass under way (ReplicaApi.scrubNow); finished: the pass just ended. */
  scrubNow(): { finished: boolean } | null {
    if (this.installing) return null;
    this.saveState();
    const scrubbed = this.state.scrubStep(this.scrubRowsPerAudit, scrubPageRows, scrubCharsPerAuditMax);
    const cursor = stampScrub(this.state.scrubCursor, this.meta.stateDigest);
    this.saveMeta({ scrub: cursor, ...scrubVerdict(scrubbed) });
    return { finished: cursor === null };
  }

  /**
   * What an audit compares, `markSeq`: a seq not yet applied at which to record a checkpoint too.
   * Between periodic checkpoints (a young group, a large checkpointEvery) replicas under writes
   * share no position but the empty state, and the audit had nothing to compare (`insufficient`,
   * which the health reads as degraded) or called a replica a commit apart `behind`; a seq marked
   * ahead of all of them (the sequencer's next) is one every replica records as it passes, so the
   * audit's next round, or the next audit, compares them all there.
   */
  auditInfo(markSeq?: number): AuditInfo {
    if (markSeq !== undefined && markSeq > this.meta.appliedSeq) this.auditMarkSeq = markSeq;
    if (this.installing) {
      // Half-installed rows say nothing yet: no scrub, no checkpoints.
      const empty = { recordedDigest: this.meta.digest, actualDigest: this.meta.digest, rows: 0 };
      return { ...this.position(), quarantined: true, rebuilding: true, checkpoints: [], scrub: empty };
    }
    this.saveState();
    // Before the first pass over a large state has finished there is nothing to judge: equal digests.
    const scrubbed = this.state.scrubStep(this.scrubRowsPerAudit, scrubPageRows, scrubCharsPerAuditMax);
    const scrub = scrubbed ?? { recordedDigest: this.meta.digest, actualDigest: this.meta.digest, rows: 0 };
    // Where the pass stands, for the next audit after a restart (the rows are all stored: it is theirs).
    const cursor = stampScrub(this.state.scrubCursor, this.meta.stateDigest);
    const verdict = scrubVerdict(scrubbed);
    if (JSON.stringify(cursor) !== JSON.stringify(this.meta.scrub ?? null) || ("scrubFailed" in verdict && verdict.scrubFailed !== this.meta.scrubFailed)) this.saveMeta({ scrub: cursor, ...verdict });
    return {
      ...this.position(),
      quarantined: this.meta.quarantined,
      // The current position counts as a checkpoint too: replicas that stand at the same seq
      // (an idle group) are compared there, not only at the last periodic checkpoint.
      checkpoints: dedupeBySeq([
        { seq: 0, digest: zeroHash, logHash: zeroHash },
        ...this.storage.checkpoints(),
        { seq: this.meta.appliedSeq, digest: this.meta.digest, logHash: this.hashAt(this.meta.appliedSeq) ?? zeroHash },
      ]),
      scrub,
      // How big it is, for the status and the metrics (sessions of one-shot clients grew a replica
      // to 230 MB and nothing showed it, a probe).
      ...(scrubbed !== null ? { stateRows: scrubbed.rows } : {}),
      ...this.sized(),
    };
  }
}

/** A replica's save phase: its id's hash, in [0, stateSaveEntriesMax). */
export function savePhaseOf(id: string): number {
  const h = sha256Bytes(id);
  return (((h[0]! << 24) | (h[1]! << 16) | (h[2]! << 8) | h[3]!) >>> 0) % stateSaveEntriesMax;
}

function dedupeBySeq(checkpoints: Checkpoint[]): Checkpoint[] {
  const bySeq = new Map<number, Checkpoint>();
  for (const cp of checkpoints) bySeq.set(cp.seq, cp);
  return [...bySeq.values()].sort((a, b) => a.seq - b.seq);
}

/** One watch event, ready to send: its seq, its Server-Sent Events block, the keys it changed. */
export interface WatchText {
  seq: number;
  text: string;
  keys: string[];
}

function watchText(e: Entry, effect: Effect | undefined): WatchText {
  const changes = effect?.changes ?? "[]";
  const data =
    `{"seq":${e.seq},"kind":${JSON.stringify(e.kind)},"client":${JSON.stringify(e.client)},"request":${JSON.stringify(e.request)},` +
    `"command":${JSON.stringify(e.command)},"output":${effect?.output ?? "null"},"timestamp":${JSON.stringify(e.timestamp)},"changes":${changes}}`;
  const keys = changes === "[]" ? [] : (JSON.parse(changes) as [string, unknown][]).map((c) => c[0]);
  return { seq: e.seq, text: `id: ${e.seq}\nevent: entry\ndata: ${data}\n\n`, keys };
}

/** What a finished scrub pass says of the rows (nothing while a pass is under way). */
function scrubVerdict(scrubbed: { recordedDigest: string; actualDigest: string } | null): { scrubFailed?: boolean } {
  if (scrubbed === null) return {};
  return { scrubFailed: scrubbed.actualDigest !== scrubbed.recordedDigest ? true : undefined };
}
