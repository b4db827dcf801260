import { appendBytesMax, appendEntriesMax, downAfterMisses, freeingCommandBytesMax, logRetentionBytesOf, pendingBytesMax, pendingSubmitsMax, replicasMax, requestIndexMax, restoreBytesMax, restoreNoopsMax, storageQuotaMiBMax, storageQuotaMiBOf, tailBytesMax } from "../limits.js";
import { machineFor } from "../machines/index.js";
import { assert } from "./assert.js";
import { CutMeter } from "./cut-meter.js";
import { zeroHash } from "./hash.js";
import { boundedEntries, commandBytes, commandHash, entryBytes, entryHash, noopsOnly, stampAfter } from "./entry.js";
import type { AppendRequest, AppendResponse, AppliedOutput, GroupConfig } from "./types.js";
import type { Entry, ReplicaStatus, ReplicaStatusName } from "../api/types.js";
import { type MajorityConfig, majority } from "./quorum.js";
import { type Contact, type Progress, ProgressTracker, type ReplicaSize } from "./tracker.js";
import { type Decision, OutputVotes } from "./votes.js";
import { type ConfigChange, type ConfigCommand, configAfter, membersOf } from "./types.js";

export interface SequencerMeta {
  config: GroupConfig;
  epoch: number;
  /** When this sequencer took office (created the group, or recovered it at this epoch). */
  since?: string;
  commitSeq: number;
  quarantined: string[];
  /**
   * The install count (ReplicaPosition.installs) each quarantined replica had in the answer the
   * quarantine was decided on: its tell carries it, so a replica rebuilt since refuses it. Kept
   * here for a restart between an install's end and its answer, which told the rebuilt replica
   * "quarantined" again (a needless rebuild, docs/PROTOCOL.md "State transfer"). Absent: unknown.
   */
  quarantinedAt?: Record<string, number>;
  /**
   * Its recovery fenced every member of every membership in force, each log ending in the best
   * log's epoch (a prefix of it), so no entry outside its log can ever commit: a refusal can say
   * "not ordered" before an entry of its epoch commits.
   */
  fencedAll?: boolean;
  /** The log holds entries after baseSeq only (compacted); baseHash is the hash at baseSeq. */
  baseSeq?: number;
  baseHash?: string;
  /** The epoch of the entry at baseSeq, when known (a restore's: this epoch's, committed). */
  baseEpoch?: number;
  /**
   * Command entries this sequencer has ordered since it took office (GET /v1/metrics'
   * smr_commands_total). Raised by each flush and saved with the meta's next save
   * (commandsCountedSeq); a recovery (failover, move, lost storage) starts
   * it again at 0, a counter reset to Prometheus: the log it recovers may be compacted, so a recount
   * would not be the total either.
   */
  commandsTotal?: number;
  /**
   * The last seq commandsTotal counts: the count is raised in memory as a flush writes its
   * entries and saved with the meta's next save, so a start counts the command entries of its log
   * past this one (a crash between the two stepped the counter back by a flush, a drop Prometheus
   * takes for a reset, adding the whole count again: a probe). Absent: saved before it was kept.
   */
  commandsCountedSeq?: number;
  /**
   * A restore began installing its state at (this epoch, the position after the log's no-ops) and
   * is not known to be undone: a replica may hold it there. No entry may be ordered in this epoch,
   * since a different entry at that position would tie with it when a recovery compares logs by
   * (last epoch, last seq), and the recovery might keep the restore's state and drop a committed
   * entry. Cleared when the restore is adopted or undone on every replica that may hold it;
   * otherwise this sequencer takes a new epoch (SequencerLifecycle: it recovers from its replicas)
   * before it orders anything.
   */
  restoreEpoch?: number;
  /**
   * The position of a restore this sequencer adopted (a quorum of voters installed it): its
   * messages from there say so (AppendRequest.adopted), and a replica that installed it serves it
   * from then on. A recovered sequencer whose log starts at a restore it did not adopt has none:
   * its base is committed for it only once its own no-op commits.
   */
  restoreAdoptedSeq?: number;
  /**
   * Since when it sleeps (SequencerDriver: no client work for sleepAfterMs, its replicas told).
   * Kept so that a start of an evicted object (a status, a scrape, the cron's daily audit) stays
   * asleep: only client work wakes the group.
   */
  asleepSinceMs?: number;
  /**
   * The last client work this sequencer saw (SequencerDriver.wake), saved with the meta's next write
   * (each commit's), not one write of its own: a start after an eviction counts the group's
   * idleness from there, not from the start, which had reset it at every eviction (a probe).
   */
  activeMs?: number;
  /**
   * Each member's size as its last audit found it (ReplicaStatus.stateRows, storageBytes). Kept
   * so that a start of the object shows them: they were in memory only, and an asleep group,
   * evicted and audited once a day, showed them unknown for up to a day.
   */
  sizes?: Record<string, ReplicaSize>;
  /** Each member's contact and position when the group fell asleep (see Contact); dropped at the wake. */
  contacts?: Record<string, Contact>;
}

export interface RequestRecord {
  client: string;
  request: number;
  seq: number;
  /** null until needed (a retry of a request loaded from the log at start): read from the log then. */
  commandHash: string | null;
}

/** The sequencer's persistent state behind a narrow synchronous interface (SQLite or memory). */
export interface SequencerStorage {
  transaction<T>(fn: () => T): T;
  appendEntries(entries: Entry[]): void;
  /** Entries fromSeq..toSeq, or fewer (a prefix, at least one) once they pass bytesMax. */
  readEntries(fromSeq: number, toSeq: number, bytesMax?: number): Entry[];
  lastEntry(): Entry | null;
  /** Drops log entries at or below seq (compaction). */
  deleteThrough(seq: number): void;
  /**
   * Compaction by bytes: the seq through which to drop entries so that those after it, through
   * toSeq, take at most bytesMax (a command's JSON and a row's other fields; a replica's effects
   * rows with their entries); null when all those held do.
   */
  cutFor(toSeq: number, bytesMax: number): number | null;
  /** (client, request, seq) of the newest command entries, highest seq first: the request index at start. */
  recentRequests(limit: number): { client: string; request: number; seq: number }[];
  saveMeta(meta: SequencerMeta): void;
}

export interface SubmitRequest {
  client: string;
  request: number;
  command: unknown;
}

export type SubmitDecision =
  | { kind: "queued"; commandHash: string }
  /** `commandHash`: this request's command's (a retry's session lookup compares it with the first's). */
  | { kind: "existing"; seq: number | null; committed: boolean; commandHash: string }
  | { kind: "conflict"; seq: number | null; commandHash: string }
  /**
   * `storage`: refused for the group's storage quota (storageRefusal): a retry does not mend it.
   * `commandHash`: the request is not in the index (a new one, or one forgotten: forgottenSeq).
   * `busy`: refused for a full queue.
   */
  | { kind: "unavailable"; reason: string; storage?: true; commandHash?: string; busy?: true };

/** Why a membership change (or another request to the sequencer) is refused: typed, not a message to match. */
export type Refusal = "stopping" | "change_pending" | "already_member" | "not_member" | "last_voter" | "not_committed" | "full" | "no_quorum" | "not_made" | "restoring" | "not_recorded" | "starting";

export interface Refused {
  refused: Refusal;
  reason: string;
}

const mebibyte = 1024 * 1024;

export function refusal(refused: Refusal, id = "", detail = ""): Refused {
  const reasons: Record<Refusal, string> = {
    stopping: "the sequencer is stopping",
    change_pending: "another membership change is not committed yet",
    already_member: `${id} is already a member`,
    not_member: `${id} is not a member`,
    last_voter: "the last voting replica cannot be removed",
    not_committed: `the change of ${id} was ordered but not committed in time; it may still take effect (see the group's replicas and events)`,
    no_quorum: `the membership after this change would have ${detail}: it could not commit; bring the unreachable replicas back first (if none answers, the sequencer may be the one cut off: the group's status then shows noQuorumMs, and its noQuorumSide says whether a failover can replace it)`,
    not_made: `the new replica ${id} could not be made (${detail}); nothing was ordered`,
    full: `the group has ${replicasMax} replicas, the most it may have`,
    restoring: "a restore is loading this group's state; retry when it is done",
    not_recorded: `the group's directory did not take the change of ${id} first (${detail}); nothing was ordered, retry`,
    starting: "the sequencer is starting (reading the group's record in its directory); nothing was ordered, retry",
  };
  return { refused, reason: reasons[refused] };
}

/** Why a message may be held back for a moment (see nextAppend). */
export type HoldReason = "commit-only" | "in-flight-elsewhere";

/** What to do about one replica now: the driver acts on it. */
export type AppendDecision =
  | { kind: "send"; msg: AppendRequest }
  /** The message may wait (the driver bounds the wait, or asks again with holdable false). */
  | { kind: "hold"; why: HoldReason }
  /** Only a state transfer can bring it back (its next entries were compacted away, or it is quarantined). */
  | { kind: "transfer" }
  /** Nothing to send: up to date, in flight already, being rebuilt, fenced, or not a member. */
  | { kind: "idle" };

export interface StepResult {
  commitAdvanced: boolean;
  decided: Decision[];
  /** Replicas found to disagree with the majority (output voting or a diverged log). */
  diverged: string[];
  /** For a replica outvoted: the install count of its newest losing vote (its quarantine's stamp). */
  divergedAt?: Map<string, number>;
  needsInit: boolean;
  fenced: boolean;
  /** A joining replica caught up: the driver should promote it. */
  promote?: string;
  /** The replica said it is quarantined (its own flag), and now is here too: the driver records and reports it. */
  quarantined?: true;
}

interface Pending extends SubmitRequest {
  commandHash: string;
}

/** Most recent entries kept in memory (and at most tailBytesMax of them) so appends to n replicas do not each read storage. */
const tailEntriesMax = 4 * appendEntriesMax;
/** Undecided or partly voted seqs tracked at once; older ones are dropped (their waiters time out). */
const votesMax = 4 * pendingSubmitsMax;

/**
 * The sequencer's side of the protocol as a synchronous state machine: it orders submits into
 * entries, says what to send to each replica, and folds their answers into commitSeq and
 * decided outputs. It does no I/O of its own and reads no clock (time is passed in).
 */
export class SequencerCore {
  private meta: SequencerMeta;
  private lastSeq: number;
  private lastHash: string;
  /** The newest entry's timestamp (null: no entry since the base): the floor of the next one's. */
  private lastTimestamp: string | null;
  private readonly progress = new ProgressTracker();
  private readonly pending = new Map<string, Pending>();
  private readonly votes = new OutputVotes(votesMax);
  private tail: Entry[] = [];
  private tailByteCount = 0;
  /** When the retained log is measured by bytes (cutByBytes). */
  private readonly cuts = new CutMeter();
  /** Characters of the queued commands' canonical JSON (commandBytes), bounded by pendingBytesMax. */
  private pendingByteCount = 0;
  fenced = false;
  private closed = false;
  /** Seq of the newest config entry; another change waits until it is committed (one at a time). */
  private configPendingSeq = 0;
  /** The highest commitSeq sent to any replica (readIndexSeq). */
  private sentCommitSeq = 0;
  /**
   * The request index, in memory only and in seq order: the requests of the newest
   * requestIndexCap command entries of the log (rebuilt from the log at start). A retry older than
   * that (only if compaction was held back that long) is ordered again, and the replicas' session
   * table answers it as a duplicate: executed once all the same.
   */
  private readonly requests = new Map<string, RequestRecord>();
  /**
   * The highest seq whose request the index no longer holds (compacted away, evicted past its
   * cap, or older than what the log gave at start): a request not in the index may have been
   * ordered at or below it. 0: the index holds every request ordered in this group's log.
   */
  private forgottenSeq = 0;

  constructor(
    private readonly storage: SequencerStorage,
    meta: SequencerMeta,
    /** Bound on the in-memory request index (tests shrink it). */
    private readonly requestIndexCap = requestIndexMax,
  ) {
    this.meta = structuredClone(meta);
    const last = storage.lastEntry();
    this.lastSeq = last?.seq ?? meta.baseSeq ?? 0;
    this.lastHash = last?.hash ?? meta.baseHash ?? zeroHash;
    this.lastTimestamp = last?.timestamp ?? null;
    assert(this.meta.commitSeq <= this.lastSeq, "commitSeq beyond the sequencer's log");
    for (const m of membersOf(meta.config)) this.addProgress(m.id, m.location, m.voter, 0);
    for (const [id, size] of Object.entries(meta.sizes ?? {})) this.progress.noteSize(id, size);
    if (meta.asleepSinceMs !== undefined && meta.contacts) this.progress.restoreContacts(meta.contacts);
    // The first message to each replica carries the last entry, not an empty append after it: a
    // recovered sequencer's last entry is its no-op, which no replica holds, so the empty append
    // only drew a `gap` and the no-op went one round trip later (every takeover; up to 1.6 s over
    // the simulator's slow links). A replica that holds it skips it (same hash).
    if (last && this.lastSeq > (meta.baseSeq ?? 0)) for (const p of this.progress.all()) p.nextSeq = this.lastSeq;
    // Until everything this sequencer holds is known committed, a config change may be in flight.
    this.configPendingSeq = this.lastSeq;
    // What a sequencer sent before it started again is unknown: at most its whole log.
    this.sentCommitSeq = this.lastSeq;
    const recent = storage.recentRequests(requestIndexCap);
    this.countUnsaved(recent);
    // Whatever the log no longer holds (a compacted base, or a failover's best log's) is forgotten,
    // and so is what lies before the newest requestIndexCap requests.
    this.forgottenSeq = recent.length >= requestIndexCap ? recent[recent.length - 1]!.seq - 1 : (meta.baseSeq ?? 0);
    for (let i = recent.length - 1; i >= 0; i--) {
      const r = recent[i]!;
      const key = pendingKey(r.client, r.request);
      // A duplicate in the log (ordered again after its index was lost) answers as the first did.
      if (!this.requests.has(key)) this.requests.set(key, { ...r, commandHash: null });
    }
  }

  /** Adds the commands a flush wrote whose count the meta did not save (SequencerMeta.commandsCountedSeq). */
  private countUnsaved(recent: { seq: number }[]): void {
    const counted = this.meta.commandsCountedSeq;
    if (counted === undefined || counted >= this.lastSeq) return;
    // Newest first, and a few flushes at most: the meta is saved as each commit advances.
    let unsaved = 0;
    while (unsaved < recent.length && recent[unsaved]!.seq > counted) unsaved++;
    this.meta.commandsTotal = this.commandsTotal + unsaved;
    this.meta.commandsCountedSeq = this.lastSeq;
  }

  private findRequest(client: string, request: number): RequestRecord | null {
    const r = this.requests.get(pendingKey(client, request));
    if (!r) return null;
    if (r.commandHash === null) {
      const [e] = this.readEntries(r.seq, r.seq);
      assert(e !== undefined && e.client === client && e.request === request, `request index names entry ${r.seq} wrongly`);
      r.commandHash = commandHash(e.command);
    }
    return r;
  }

  private indexRequests(records: RequestRecord[]): void {
    for (const r of records) this.requests.set(pendingKey(r.client, r.request), r);
    for (const [key, r] of this.requests) {
      if (this.requests.size <= this.requestIndexCap) break;
      this.requests.delete(key);
      this.forgottenSeq = Math.max(this.forgottenSeq, r.seq);
    }
  }

  /** Compaction dropped the entries at or below seq, and with them their requests. */
  private forgetRequestsThrough(seq: number): void {
    this.forgottenSeq = Math.max(this.forgottenSeq, seq);
    for (const [key, r] of this.requests) {
      if (r.seq > seq) break;
      this.requests.delete(key);
    }
  }

  private addProgress(id: string, location: string | null, voter: boolean, joinSeq: number): Progress {
    const p = this.progress.add(id, location, voter, joinSeq, this.lastSeq + 1, this.meta.quarantined.includes(id));
    const stamp = this.meta.quarantinedAt?.[id];
    if (p.quarantined && stamp !== undefined) p.quarantineStamp = stamp;
    return p;
  }

  /** After close, the core refuses to persist anything: its incarnation is over. */
  close(): void {
    this.closed = true;
  }

  private saveMeta(): void {
    assert(!this.closed, "a closed sequencer core tried to persist");
    // Asleep, whatever it learned of its replicas since (a daily audit, a status round) is kept
    // with any write, not only the sleep's snapshot: lost at the next eviction otherwise.
    if (this.meta.asleepSinceMs !== undefined) this.meta = { ...this.meta, contacts: this.progress.contacts() };
    this.storage.saveMeta(this.meta);
  }

  get config(): GroupConfig {
    return this.meta.config;
  }

  get asleepSinceMs(): number | undefined {
    return this.meta.asleepSinceMs;
  }

  /** The last client work a start of this object knows of (undefined: none kept). */
  get activeMs(): number | undefined {
    return this.meta.activeMs;
  }

  /** Client work at `ms`: kept with the meta's next write (see SequencerMeta.activeMs). */
  noteActive(ms: number): void {
    this.meta.activeMs = ms;
  }

  /** Keeps `ms` as the last client work now (a write): what a start the host's alarm makes counts from. */
  keepActive(ms: number): void {
    this.meta.activeMs = ms;
    this.saveMeta();
  }

  /** Records that it sleeps (since when) or woke (null). */
  noteSleep(sinceMs: number | null): void {
    if ((this.meta.asleepSinceMs ?? null) === sinceMs) return;
    this.meta = { ...this.meta, asleepSinceMs: sinceMs ?? undefined, contacts: undefined }; // saveMeta keeps them while asleep
    this.saveMeta();
  }

  /** Replica numbers up to `no` are never given to a new replica (ids the directory has named). */
  reserveReplicaNo(no: number): void {
    if (no <= (this.meta.config.lastReplicaNo ?? this.meta.config.replicas)) return;
    this.meta.config = { ...this.meta.config, lastReplicaNo: no };
    this.saveMeta();
  }
  get commitSeq(): number {
    return this.meta.commitSeq;
  }
  private settled = false;
  /**
   * Whether an entry of this epoch has committed. Until then an entry a predecessor ordered on a
   * replica this recovery did not fence may still commit under a later one (its log the longest),
   * so refusing a command cannot say "not ordered". A group's first sequencer had no predecessor;
   * nor did a recovery that fenced every member with every log a prefix of its own (fencedAll).
   */
  get epochSettled(): boolean {
    // An entry at commitSeq that is compacted (a restore's base, or a log compacted up to its
    // commit point) tells no epoch: not settled, until an entry of this epoch commits (reading it
    // failed an assertion, and every refusal threw instead of answering 503 or 504: a review).
    // A restore's base is this epoch's committed entry (adoptRestore records its epoch): after the
    // no-ops it drops, a refusal answered 504 until the first write committed (a review).
    const known = this.meta.commitSeq > this.baseSeq;
    const atCommit = known ? this.readEntries(this.meta.commitSeq, this.meta.commitSeq)[0]?.epoch : this.meta.commitSeq === this.baseSeq ? this.meta.baseEpoch : undefined;
    this.settled ||= this.meta.epoch <= 1 || this.meta.fencedAll === true || atCommit === this.meta.epoch;
    return this.settled;
  }
  /**
   * A linearizable read's index: at least every commitSeq this sequencer has sent a replica. With
   * commitWithAck a replica applies entries in the step that completes their quorum, before its
   * ack reaches here, and serves reads of that state; an index of commitSeq alone then let a later
   * linearizable read, at a replica not yet there, see an older state (the simulator: a read saw
   * a put, the next read at another replica did not, the ack having been lost). On a start, the
   * whole log (what it sent before is unknown), as raft's leader waits for its term's first commit.
   */
  get readIndexSeq(): number {
    return Math.max(this.meta.commitSeq, this.sentCommitSeq);
  }
  get epoch(): number {
    return this.meta.epoch;
  }
  get since(): string | null {
    return this.meta.since ?? null;
  }
  get lastLogSeq(): number {
    return this.lastSeq;
  }
  get commandsTotal(): number {
    return this.meta.commandsTotal ?? 0;
  }
  /** Requests in the in-memory index (bounded by the retained log and requestIndexCap). */
  get requestIndexSize(): number {
    return this.requests.size;
  }
  get pendingCount(): number {
    return this.pending.size;
  }
  replicaIds(): string[] {
    return this.progress.ids();
  }
  /** The voting members of the configuration in force (quarantined ones included: they are members). */
  voterIds(): string[] {
    return this.progress.voterIds();
  }

  /** Voting members that may vote now (not quarantined). */
  private voters(): Progress[] {
    return this.progress.activeVoters();
  }

  /**
   * The voting members of the newest configuration (raft's single-server changes): every tally's
   * quorum (commit, output votes, retries). The simulator's broken variant overrides it.
   */
  votingConfig(): MajorityConfig {
    return this.progress.votingConfig();
  }


  /** See forgottenSeq: a request this index does not hold may have been ordered at or below it. */
  get forgottenThroughSeq(): number {
    return this.forgottenSeq;
  }

  /** Voters that may vote and answered lately, against how many a quorum needs. */
  reachableVoters(): { count: number; need: number } {
    return this.progress.reachableOf(this.voterIds());
  }

  private get quotaMiB(): number {
    return storageQuotaMiBOf(this.meta.config);
  }

  /**
   * The operator's new storage quota (POST .../quota): commands are admitted against it at once,
   * and each append carries the log retention it implies. Not an entry: nothing any replica
   * applies depends on it (a replica compacts by the retention each message carries).
   */
  setQuota(mib: number): void {
    this.meta.config = { ...this.meta.config, storageQuotaMiB: mib };
    this.saveMeta();
  }
  /** Bytes of log each object of the group keeps behind its applied position (compact, AppendRequest.retainBytes). */
  get retainBytes(): number {
    return logRetentionBytesOf(this.quotaMiB);
  }

  /** Members whose storage, as last measured, is at or over the group's quota. */
  private fullMembers(): Progress[] {
    // Not one counted down, quarantined or behind the log: its size is stale (it was measured
    // before), and it is caught up or rebuilt from the others. One down replica held a group whose
    // other replicas had deleted their way under the quota refusing every write (a probe).
    const current = (p: Progress) => p.misses < downAfterMisses && !p.quarantined && !p.needsTransfer;
    return this.progress.all().filter((p) => p.storageBytes !== undefined && p.storageBytes >= this.quotaMiB * mebibyte && current(p));
  }

  /**
   * Why commands that write are refused (null: they are not): a member's storage, as its last
   * append or audit measured it, at or over the group's quota (limits.ts storageQuotaMiBOf).
   */
  storageRefusal(): string | null {
    const full = this.fullMembers();
    if (full.length === 0) return null;
    const quotaMiB = this.quotaMiB;
    const worst = full.reduce((a, b) => (b.storageBytes! > a.storageBytes! ? b : a));
    // Said per machine: a bank group has no command that frees space (a review: it read "kv: delete").
    const goes = machineFor(this.meta.config.machine).goesAtQuota;
    const way = goes
      ? `only small ones that grow no state are ordered (${goes.commands}); space comes back as rows go, as new entries push old ones (and their outputs) out of the retained log, and as clients' remembered outputs go (a client's oldest past its 1,024 latest requests, or all once it is idle for the group's session window); an audit (POST /v1/groups/${this.meta.config.group}/audit) measures it again`
      : `this machine has no command that frees space: raise the group's quota (POST /v1/groups/${this.meta.config.group}/quota, up to ${storageQuotaMiBMax} MiB), or snapshot the group and restore it into a new group (a restore takes up to ${restoreBytesMax / 1024 / 1024} MiB)`;
    return `the storage of replica ${worst.id} holds ${(worst.storageBytes! / mebibyte).toFixed(1)} MiB, at or over the group's quota of ${quotaMiB} MiB (storageQuotaMiB): commands that write are refused; ${way} (docs/OPERATIONS.md, "Storage quota")`;
  }

  /**
   * Exactly-once at the door: a known (client, request) is never ordered again. With `refuseNew`
   * (a batch after one of its commands was refused) a new one is refused for that reason, while a
   * known one is still answered as known: a 503 must mean "certainly not ordered".
   */
  submit(req: SubmitRequest, refuseNew?: Extract<SubmitDecision, { kind: "unavailable" }>): SubmitDecision {
    const hash = commandHash(req.command);
    const key = pendingKey(req.client, req.request);
    const queued = this.pending.get(key);
    if (queued) {
      return queued.commandHash === hash ? { kind: "existing", seq: null, committed: false, commandHash: hash } : { kind: "conflict", seq: null, commandHash: hash };
    }
    const known = this.findRequest(req.client, req.request);
    if (known) {
      if (known.commandHash !== hash) return { kind: "conflict", seq: known.seq, commandHash: hash };
      return { kind: "existing", seq: known.seq, committed: known.seq <= this.meta.commitSeq, commandHash: hash };
    }
    // Refused from here: a request the index does not hold (its hash, for a lookup of a forgotten one).
    const refused = this.refusalOf(req.command, refuseNew);
    if (refused) return { ...refused, commandHash: hash };
    const bytes = commandBytes(req.command);
    if (this.pending.size >= pendingSubmitsMax || this.pendingByteCount + bytes > pendingBytesMax) {
      return { kind: "unavailable", reason: "sequencer queue is full", commandHash: hash, busy: true };
    }
    this.pending.set(key, { ...req, commandHash: hash });
    this.pendingByteCount += bytes;
    return { kind: "queued", commandHash: hash };
  }

  /** Why a new command is refused now (a queue's room aside), or null. */
  private refusalOf(command: unknown, refuseNew: Extract<SubmitDecision, { kind: "unavailable" }> | undefined): Extract<SubmitDecision, { kind: "unavailable" }> | null {
    if (refuseNew !== undefined) return refuseNew;
    if (this.fenced) return { kind: "unavailable", reason: "sequencer fenced by a newer epoch" };
    if (this.restoreMarked) return { kind: "unavailable", reason: "a restore is loading this group's state; retry when it is done" };
    // A command that grows no state goes only while it is small itself: the entry stores it (a
    // probe's txns of 128 deletes of 512-byte keys each took 138 KB an entry past the quota).
    const full = this.storageRefusal();
    if (full !== null && !(commandBytes(command) <= freeingCommandBytesMax && machineFor(this.meta.config.machine).goesAtQuota?.test(command))) return { kind: "unavailable", reason: full, storage: true };
    const reach = this.reachableVoters();
    if (reach.count < reach.need) return { kind: "unavailable", reason: `only ${reach.count} voting ${reach.count === 1 ? "replica" : "replicas"} reachable, ${reach.need} needed` };
    return null;
  }

  /** Orders everything queued since the last flush into entries and persists them (one transaction). */
  flush(clock: string): Entry[] {
    if (this.pending.size === 0 || this.closed) return [];
    const timestamp = stampAfter(clock, this.lastTimestamp);
    assert(!this.restoreMarked, "an entry ordered in the epoch of a restore under way");
    const entries: Entry[] = [];
    const records: RequestRecord[] = [];
    let prev = this.lastHash;
    let seq = this.lastSeq;
    for (const p of this.pending.values()) {
      seq++;
      const body = { seq, epoch: this.meta.epoch, kind: "command" as const, client: p.client, request: p.request, command: p.command, timestamp };
      const e: Entry = { ...body, hash: entryHash(prev, body) };
      prev = e.hash;
      entries.push(e);
      records.push({ client: p.client, request: p.request, seq, commandHash: p.commandHash });
    }
    this.storage.transaction(() => this.storage.appendEntries(entries));
    // Counted in memory and stored with the meta's next save (the commit that follows): a write of
    // the meta per flush cost a statement on the hot path for a metric. A start after a crash
    // counts what the save missed from the log (countUnsaved).
    this.meta.commandsTotal = this.commandsTotal + entries.length;
    this.meta.commandsCountedSeq = seq;
    this.indexRequests(records);
    this.pending.clear();
    this.pendingByteCount = 0;
    this.lastSeq = seq;
    this.lastHash = prev;
    this.lastTimestamp = timestamp;
    this.keepInTail(entries);
    for (const e of entries) this.votes.open(e.seq);
    return entries;
  }

  get baseSeq(): number {
    return this.meta.baseSeq ?? 0;
  }

  /** Adds new entries to the in-memory tail, then drops its oldest past tailEntriesMax or tailBytesMax. */
  private keepInTail(entries: Entry[]): void {
    for (const e of entries) {
      this.tail.push(e);
      const bytes = entryBytes(e);
      this.tailByteCount += bytes;
      this.cuts.add(bytes);
    }
    let drop = Math.max(0, this.tail.length - tailEntriesMax);
    for (let i = 0; i < drop; i++) this.tailByteCount -= entryBytes(this.tail[i]!);
    while (this.tailByteCount > tailBytesMax && drop < this.tail.length - 1) this.tailByteCount -= entryBytes(this.tail[drop++]!);
    if (drop > 0) this.tail = this.tail.slice(drop);
  }

  /** Bytes of the entries kept in memory (entryBytes), at most tailBytesMax unless one entry alone is larger. */
  get tailBytes(): number {
    return this.tailByteCount;
  }

  /** Entries fromSeq..toSeq, or a prefix of them (at least one) once they pass bytesMax. */
  readEntries(fromSeq: number, toSeq: number, bytesMax = Infinity): Entry[] {
    assert(fromSeq > this.baseSeq, `entries from ${fromSeq} were compacted (base ${this.baseSeq})`);
    const tailFirst = this.tail[0]?.seq ?? Infinity;
    if (fromSeq >= tailFirst) return boundedEntries(this.tail.slice(fromSeq - tailFirst, toSeq - tailFirst + 1), bytesMax);
    return this.storage.readEntries(fromSeq, toSeq, bytesMax);
  }

  /** The log's hash at seq, or null where the log cannot tell (compacted away, or past its end). */
  logHashAt(seq: number): string | null {
    if (seq < this.baseSeq || seq > this.lastSeq) return null;
    return this.hashAt(seq);
  }

  private hashAt(seq: number): string {
    if (seq === 0) return zeroHash;
    if (seq === this.baseSeq) return this.meta.baseHash ?? zeroHash;
    if (seq === this.lastSeq) return this.lastHash;
    const [e] = this.readEntries(seq, seq);
    assert(e !== undefined, `entry ${seq} missing from the sequencer's log`);
    return e.hash;
  }

  /**
   * What to do about one replica now. With `holdable`, a message the driver may hold back for a
   * moment comes as a "hold" with its reason (the driver bounds the wait, or asks again with
   * holdable false): one that would carry nothing but a new commitSeq ("commit-only"), or new
   * entries that another voter has in flight already while this replica's own ack would commit
   * nothing ("in-flight-elsewhere": sent once that ack is in, the message carries the commit of
   * those entries, and the replica answers with their outputs at once).
   */
  nextAppend(id: string, holdable = false): AppendDecision {
    const p = this.progress.get(id);
    if (!p) return { kind: "idle" }; // removed from the group
    if (p.inflightToSeq !== null || this.fenced || p.repairing) return { kind: "idle" };
    if (p.nextSeq <= this.baseSeq) p.needsTransfer = true;
    if (p.needsTransfer) return { kind: "transfer" };
    const hasEntries = p.nextSeq <= this.lastSeq;
    if (!hasEntries && p.heardCommitSeq >= this.meta.commitSeq && p.lastContactMs !== null) return { kind: "idle" };
    if (!hasEntries && p.lastContactMs !== null && holdable) return { kind: "hold", why: "commit-only" };
    const prevSeq = p.nextSeq - 1;
    // At most appendEntriesMax entries and appendBytesMax bytes of commands (at least one entry).
    const entries = hasEntries ? this.readEntries(p.nextSeq, Math.min(this.lastSeq, p.nextSeq + appendEntriesMax - 1), appendBytesMax) : [];
    const toSeq = prevSeq + entries.length;
    assert(!hasEntries || (entries.length > 0 && entries[entries.length - 1]!.seq === toSeq), `entries from ${p.nextSeq} for ${id} not all held`);
    const commitSeq = this.commitWithAck(p, toSeq);
    if (hasEntries && holdable && p.lastContactMs !== null && commitSeq <= this.meta.commitSeq && this.inFlightElsewhere(p)) {
      return { kind: "hold", why: "in-flight-elsewhere" };
    }
    p.inflightToSeq = toSeq;
    p.inflightRepairs = p.repairs;
    p.inflightCommitSeq = commitSeq;
    if (commitSeq > this.sentCommitSeq) this.sentCommitSeq = commitSeq;
    return { kind: "send", msg: { epoch: this.meta.epoch, prevSeq, prevHash: this.hashAt(prevSeq), entries, commitSeq, ...this.flagsFrom(prevSeq) } };
  }

  /**
   * A heartbeat: an empty append at the replica's next position, carrying the commit it has,
   * when nothing is in flight to it. Replicas that hear nothing for sequencerTimeoutMs vote their
   * sequencer gone.
   */
  heartbeat(id: string): AppendRequest | null {
    const p = this.progress.get(id);
    if (!p || p.inflightToSeq !== null || this.fenced || this.closed || p.repairing || p.needsTransfer || p.nextSeq <= this.baseSeq) return null;
    const prevSeq = p.nextSeq - 1;
    p.inflightToSeq = prevSeq;
    p.inflightRepairs = p.repairs;
    p.inflightCommitSeq = Math.min(this.meta.commitSeq, prevSeq);
    return { epoch: this.meta.epoch, prevSeq, prevHash: this.hashAt(prevSeq), entries: [], commitSeq: p.inflightCommitSeq, ...this.flagsFrom(prevSeq) };
  }

  /**
   * What a message says beyond the log: from at or past a restore this sequencer adopted, that it
   * did (SequencerMeta.restoreAdoptedSeq); at the storage quota, so (AppendRequest.atQuota).
   */
  private flagsFrom(prevSeq: number): { adopted?: number; atQuota?: true; retainBytes: number } {
    const seq = this.meta.restoreAdoptedSeq;
    const adopted = seq !== undefined && prevSeq >= seq ? { adopted: seq } : {};
    const flags = { ...adopted, retainBytes: this.retainBytes };
    return this.fullMembers().length > 0 ? { ...flags, atQuota: true } : flags;
  }

  /** Another reachable voter has an append in flight that carries p's next entry. */
  private inFlightElsewhere(p: Progress): boolean {
    if (!p.voter || p.quarantined) return false;
    return this.voters().some((v) => v !== p && v.misses === 0 && v.inflightToSeq !== null && v.inflightToSeq >= p.nextSeq);
  }

  /**
   * The commitSeq that holds once p has stored the log up to toSeq: the quorum-th highest
   * matchSeq among the voters, counting p at toSeq, under the same current-epoch rule as
   * advanceCommit. A message carries it as its commitSeq, so the replica whose ack completes a
   * quorum applies those entries in the same step (one transaction) in which it stores them, and
   * its answer carries their outputs: no second message for them. Safe because by the time that
   * step commits, a quorum has stored the entries, which is what makes an entry committed; the
   * sequencer takes the commit when the ack arrives even if the voters changed meanwhile
   * (onAppendResponse).
   */
  private commitWithAck(p: Progress, toSeq: number): number {
    const commit = this.meta.commitSeq;
    if (!p.voter || p.quarantined || toSeq <= commit) return commit;
    const candidate = this.quorumMatch(p, toSeq);
    if (candidate === null || candidate <= commit) return commit;
    return this.readEntries(candidate, candidate)[0]?.epoch === this.meta.epoch ? candidate : commit;
  }

  /** The quorum-th highest matchSeq among the voters (with `ack` counted at toSeq), or null. */
  private quorumMatch(ack: Progress | null, toSeq: number): number | null {
    const need = this.votingConfig().need;
    const matched = this.voters()
      .map((v) => (v === ack ? Math.max(v.matchSeq, toSeq) : v.matchSeq))
      .sort((a, b) => b - a);
    return matched.length < need ? null : matched[need - 1]!;
  }

  onAppendFailure(id: string): void {
    const p = this.progress.get(id);
    if (!p) return;
    p.inflightToSeq = null;
    p.contacted = true;
    p.misses++;
    this.keepIfAsleep(p.misses - 1, p.misses);
  }

  onAppendResponse(id: string, resp: AppendResponse, nowMs: number): StepResult {
    const result: StepResult = { commitAdvanced: false, decided: [], diverged: [], needsInit: false, fenced: false };
    const p = this.progress.get(id);
    if (!p) return result; // removed from the group while the append was in flight
    const sentTo = p.inflightToSeq;
    p.inflightToSeq = null;
    // An answer to an append sent before a state transfer began (or ended) says nothing about the rebuilt replica.
    if (p.repairing || p.inflightRepairs !== p.repairs) return result;
    if (!resp.ok && resp.reason === "not_initialized") {
      result.needsInit = true;
      return result;
    }
    p.contacted = true;
    const missed = p.misses;
    p.misses = 0;
    p.lastContactMs = nowMs;
    this.keepIfAsleep(missed, 0);
    p.lastSeq = resp.lastSeq;
    p.appliedSeq = resp.appliedSeq;
    p.digest = resp.digest;
    p.installs = resp.installs ?? 0;
    if (!resp.ok) {
      if (resp.reason === "stale_epoch") {
        this.fenced = true;
        result.fenced = true;
      } else if (resp.reason === "gap") {
        p.nextSeq = Math.min(resp.lastSeq, this.lastSeq) + 1;
        if (resp.rebuilding) p.needsTransfer = p.rebuilding = true;
      } else if (sentTo !== null && p.nextSeq - 1 <= resp.appliedSeq) {
        // Its log differs below what it has applied: it executed a different history, and no
        // append can mend that, only a transfer (each next append was refused the same way, at
        // once: a loop that never gave the object's thread back until the heartbeat's repair).
        result.diverged.push(id);
        p.needsTransfer = true;
      } else {
        p.nextSeq = resp.appliedSeq + 1;
      }
      return result;
    }
    assert(sentTo !== null, `append response from ${id} with nothing in flight`);
    p.rebuilding = false; // it appends: no transfer is half-done there
    if (resp.storageBytes !== undefined) this.noteStorage(id, resp.storageBytes);
    p.scrubFailed = resp.scrubFailed === true;
    // It quarantined itself (a replay that missed its digest, at its start or after a step that
    // rolled back): learned here, not at the next audit, so its acks and outputs stop counting
    // with this very answer and a state transfer rebuilds it. An answer from before a release is
    // stale (setQuarantined counts releases in `repairs`, checked above).
    if (resp.quarantined === true && !p.quarantined && this.setQuarantined(id, true)) result.quarantined = true;
    p.matchSeq = Math.max(p.matchSeq, sentTo);
    p.nextSeq = p.matchSeq + 1;
    // A replica that stopped applying at its step's output budget (stepOutputCharsMax) still
    // needs the commit sent again: counted heard, it got nothing until its next heartbeat, and a
    // large batch's later items timed out.
    p.heardCommitSeq = Math.max(p.heardCommitSeq, Math.min(p.inflightCommitSeq, resp.appliedSeq));
    result.commitAdvanced = this.advanceCommit(p.inflightCommitSeq);
    if (!p.quarantined && p.voter) {
      const active = this.voters().map((v) => v.id);
      this.votes.collect(p.id, resp.outputs, this.meta.config.outputs, this.votingConfig(), active, result.decided, result.diverged, p.installs ?? 0, result);
    }
    // A joining replica that has caught up gets its vote (by a promote entry).
    if (!p.voter && p.matchSeq >= p.joinSeq && this.lastSeq - p.matchSeq < appendEntriesMax) result.promote = p.id;
    return result;
  }

  /**
   * applied: a commitSeq a replica just applied up to (what its message carried, see
   * commitWithAck): committed even if a voter was quarantined or removed since it was sent.
   */
  private advanceCommit(applied = 0): boolean {
    const counted = this.quorumMatch(null, 0);
    const candidate = Math.max(counted ?? 0, Math.min(applied, this.lastSeq));
    if (candidate <= this.meta.commitSeq) return false;
    // Raft's rule: only an entry of the current epoch is committed by counting replicas; earlier
    // epochs' entries commit with it. (Counting an old entry could commit one a later recovery drops.)
    if (this.readEntries(candidate, candidate)[0]?.epoch !== this.meta.epoch) return false;
    this.meta.commitSeq = candidate;
    this.saveMeta();
    return true;
  }

  /** Quarantine: the replica keeps receiving the log but serves no reads and has no vote. */
  quarantinedIds(): string[] {
    return this.progress.quarantinedIds();
  }

  /** The install count each quarantined replica's quarantine was decided at, where known (SequencerMeta.quarantinedAt). */
  quarantineStamps(): Record<string, number> {
    const stamps: Record<string, number> = {};
    for (const p of this.progress.all()) if (p.quarantined && p.quarantineStamp !== undefined) stamps[p.id] = p.quarantineStamp;
    return stamps;
  }

  /** The most installs this sequencer knows `id` to have made: its last answer's count, or its quarantine's stamp (0: none known). */
  installsKnown(id: string): number {
    const p = this.progress.get(id);
    return Math.max(p?.installs ?? 0, p?.quarantineStamp ?? 0);
  }

  /** The install count id's quarantine was decided at (undefined: unknown, or not quarantined). */
  quarantineStamp(id: string): number | undefined {
    const p = this.progress.get(id);
    return p?.quarantined ? p.quarantineStamp : undefined;
  }

  /** Quarantined, or left halfway through a rebuild: no vote until rebuilt (the group stays awake for it). */
  awaitingRebuild(): string[] {
    return this.progress.awaitingRebuild();
  }

  /** Being rebuilt by a state transfer now (its install ends its quarantine). */
  isRepairing(id: string): boolean {
    return this.progress.get(id)?.repairing === true;
  }

  /** Only a state transfer brings it back: quarantined, behind the compacted log, or holding a half-done transfer. */
  needsRebuild(id: string): boolean {
    const p = this.progress.get(id);
    return p !== undefined && (p.quarantined || p.needsTransfer || p.rebuilding);
  }

  /** Behind the compacted log, or holding a half-done transfer: its state is no one's to copy. */
  needsTransfer(id: string): boolean {
    const p = this.progress.get(id);
    return p !== undefined && (p.needsTransfer || p.rebuilding);
  }

  /**
   * `stamp`: the install count of the answer the quarantine is decided on (default: the last
   * answer's, Progress.installs), which its tells carry (SequencerMeta.quarantinedAt).
   */
  setQuarantined(id: string, quarantined: boolean, stamp?: number): boolean {
    const p = this.progress.get(id);
    if (!p) return false;
    // A release (or a rebuild's end) is a new generation of what it reports: an answer to a
    // message sent before it may still say "quarantined", and must not undo it (onAppendResponse).
    // Also when this sequencer had not learned the quarantine yet (the replica's own flag): a
    // heartbeat's answer from before the release quarantined it again (a review).
    if (!quarantined) p.repairs++;
    if (p.quarantined === quarantined) {
      // Decided again on newer evidence: the stamp is the newest (a tell of the older one, refused
      // by a replica rebuilt in between, ended a quarantine this evidence had just decided: a review).
      const raised = quarantined && stamp !== undefined && stamp > (p.quarantineStamp ?? -1);
      if (raised) (p.quarantineStamp = stamp), (this.meta.quarantinedAt = this.quarantineStamps()), this.saveMeta();
      return false;
    }
    p.quarantined = quarantined;
    p.quarantineStamp = quarantined ? (stamp ?? p.installs) : undefined;
    this.meta.quarantined = this.progress.quarantinedIds();
    this.meta.quarantinedAt = this.quarantineStamps();
    this.saveMeta();
    // Its acks count again: entries it holds may now have a quorum (sent with the next message).
    if (!quarantined) this.advanceCommit();
    return true;
  }

  /** A contact outside the append path (audit, read, init): updates failure detection. */
  noteContact(id: string, ok: boolean, nowMs: number, position?: { lastSeq: number; appliedSeq: number; digest: string; installs?: number }): void {
    const missed = this.progress.get(id)?.misses ?? 0;
    this.progress.noteContact(id, ok, nowMs, position);
    this.keepIfAsleep(missed, this.progress.get(id)?.misses ?? 0);
  }

  /**
   * Asleep, a replica's misses that changed (a start's contact round, the daily audit) are kept at
   * once (saveMeta writes the contacts): a replica that went down in the sleep was found again at
   * each start, and one down before it counted as one miss, after an eviction (a review).
   */
  private keepIfAsleep(missesBefore: number, missesAfter: number): void {
    if (this.meta.asleepSinceMs === undefined || this.closed || missesBefore === missesAfter) return;
    this.saveMeta();
  }

  /** A scrub's word on the replica's rows (an audit's, a rebuild's, a release's): its status says `damaged` while failed. */
  noteScrub(id: string, failed: boolean): void {
    this.progress.noteScrub(id, failed);
  }

  /**
   * A member's storage as an append or an install measured it: in memory, and stored with the
   * sizes (SequencerMeta.sizes) when it crosses the quota either way, so a start refuses writes
   * to a full group before any append answers. Only audits stored sizes: after an eviction or a
   * restart a full group's first rounds went through, and a probe took one to 7 times its quota.
   */
  noteStorage(id: string, storageBytes: number): void {
    const p = this.progress.get(id);
    if (!p) return;
    p.storageBytes = storageBytes;
    const quota = this.quotaMiB * mebibyte;
    const stored = this.meta.sizes?.[id];
    if ((stored?.storageBytes !== undefined && stored.storageBytes >= quota) !== storageBytes >= quota) this.noteSize(id, { ...stored, storageBytes });
  }

  /** Written only when it changed (an audit every few minutes of a group at rest changes none). */
  noteSize(id: string, size: ReplicaSize): void {
    const kept: ReplicaSize = { ...(size.stateRows !== undefined ? { stateRows: size.stateRows } : {}), ...(size.storageBytes !== undefined ? { storageBytes: size.storageBytes } : {}) };
    this.progress.noteSize(id, kept);
    const was = this.meta.sizes?.[id];
    if (was?.stateRows === kept.stateRows && was?.storageBytes === kept.storageBytes && (was !== undefined || Object.keys(kept).length === 0)) return;
    // Members only: a removed replica's figures go with the next change.
    const members = new Set(membersOf(this.meta.config).map((m) => m.id));
    const sizes = Object.fromEntries(Object.entries({ ...this.meta.sizes, [id]: kept }).filter(([m]) => members.has(m)));
    this.meta = { ...this.meta, sizes };
    this.saveMeta();
  }

  backoffMisses(id: string): number {
    return this.progress.get(id)?.misses ?? 0;
  }

  replicaStatuses(): ReplicaStatus[] {
    return this.progress.statuses(this.lastSeq, this.meta.commitSeq);
  }

  // ---- reconfiguration ----------------------------------------------------------------------

  get configChangePending(): boolean {
    return this.configPendingSeq > this.meta.commitSeq;
  }
  /** The seq of the newest membership change appended (0: none since this start). */
  get configChangeSeq(): number {
    return this.configPendingSeq;
  }

  /** The voting members (ids) the membership would have after `change`. */
  votersAfter(change: ConfigChange): string[] {
    return membersOf(configAfter(this.meta.config, change)).filter((m) => m.voter).map((m) => m.id);
  }

  /** Why this membership change cannot be ordered now, or null: checked before anything is done for it. */
  changeRefusal(change: ConfigChange): Refused | null {
    if (this.closed || this.fenced) return refusal("stopping");
    if (this.restoreMarked) return refusal("restoring");
    const shape = this.shapeRefusal(change);
    if (shape !== null) return shape;
    if (this.configChangePending) return refusal("change_pending");
    // As etcd's strict reconfiguration check: a change the new membership's reachable voters
    // cannot commit is refused before it is ordered (removing a healthy replica while another is
    // down left a group that could commit nothing, the change included).
    const voters = this.votersAfter(change);
    const reach = this.progress.reachableOf(voters);
    if (reach.count < reach.need) return refusal("no_quorum", change.id, `${reach.count} reachable ${reach.count === 1 ? "voter" : "voters"} of ${voters.length}, ${reach.need} needed`);
    return null;
  }

  /**
   * A change the membership in force (the newest in the log, a pending one included) can never
   * take: a 409 at once, before "another change is not committed yet" (503), which a retry would
   * only turn into this 409 (an eighth replica asked for while the seventh's add was committing
   * got the 503: a flaky workers test).
   */
  shapeRefusal(change: ConfigChange): Refused | null {
    const members = membersOf(this.meta.config);
    if (change.op === "add" && members.some((m) => m.id === change.id)) return refusal("already_member", change.id);
    if (change.op === "add" && members.length >= replicasMax) return refusal("full");
    if (change.op !== "add" && !members.some((m) => m.id === change.id)) return refusal("not_member", change.id);
    if (change.op === "remove" && members.filter((m) => m.voter && m.id !== change.id).length === 0) return refusal("last_voter");
    return null;
  }

  /**
   * Appends a config entry and switches to the new membership at once (raft's rule: the newest
   * configuration in the log is the one in force). One change at a time: the previous one must be
   * committed. The caller flushes queued commands first, so they keep their order.
   */
  appendConfig(change: ConfigChange, clock: string): Entry | Refused {
    const refused = this.changeRefusal(change);
    if (refused !== null) return refused;
    const timestamp = stampAfter(clock, this.lastTimestamp);
    const config = configAfter(this.meta.config, change);
    // The entry carries the membership after it (see Membership).
    const command: ConfigCommand = { ...change, members: membersOf(config), lastReplicaNo: config.lastReplicaNo! };
    const body = { seq: this.lastSeq + 1, epoch: this.meta.epoch, kind: "config" as const, client: null, request: null, command, timestamp };
    const e: Entry = { ...body, hash: entryHash(this.lastHash, body) };
    this.storage.transaction(() => {
      this.storage.appendEntries([e]);
      this.meta.config = config;
      this.saveMeta();
    });
    this.lastSeq = e.seq;
    this.lastHash = e.hash;
    this.lastTimestamp = e.timestamp;
    this.keepInTail([e]);
    this.configPendingSeq = e.seq;
    if (change.op === "add") this.addProgress(change.id, change.location, false, e.seq);
    if (change.op === "promote") this.progress.get(change.id)!.voter = true;
    if (change.op === "remove") {
      this.progress.remove(change.id);
      if (this.meta.quarantined.includes(change.id)) {
        this.meta.quarantined = this.meta.quarantined.filter((id) => id !== change.id);
        this.meta.quarantinedAt = this.quarantineStamps();
        this.saveMeta();
      }
    }
    return e;
  }

  // ---- compaction and state transfer --------------------------------------------------------

  /**
   * Drops entries every healthy replica has applied and that are older than the retention
   * window. Quarantined or unreachable replicas do not hold it back: they get a state transfer.
   */
  compact(retentionEntries: number, slackEntries: number): number | null {
    if (this.closed) return null;
    const healthy = this.progress.healthy();
    if (healthy.length === 0) return null;
    const cut = this.cutByBytes();
    const wanted = Math.max(this.lastSeq - retentionEntries, cut ?? 0);
    const target = Math.min(wanted, this.meta.commitSeq, ...healthy.map((p) => p.appliedSeq));
    if (target <= this.baseSeq || (cut === null && target - this.baseSeq < slackEntries)) return null;
    const [at] = this.readEntries(target, target);
    assert(at !== undefined, `compaction target ${target} missing`);
    this.storage.transaction(() => {
      this.storage.deleteThrough(target);
      this.meta.baseSeq = target;
      this.meta.baseHash = at.hash;
      this.meta.baseEpoch = at.epoch;
      this.saveMeta();
    });
    this.tail = this.tail.filter((e) => e.seq > target);
    this.tailByteCount = this.tail.reduce((sum, e) => sum + entryBytes(e), 0);
    this.forgetRequestsThrough(target);
    return target;
  }

  /**
   * Where the log's committed entries pass the bytes budget (retainBytes), measured when the
   * CutMeter says (a measure reads the retained rows' lengths), or null. None while a replica is being rebuilt: its
   * transfer ends at its source's position, which a cut during it passed, and the rebuilt replica
   * was behind the log again, a transfer after another for as long as writes went on (a review;
   * the cause of an earlier scheme's dropping, PROTOCOL.md). Healthy, it holds compaction itself.
   */
  private cutByBytes(): number | null {
    if (this.progress.all().some((p) => p.repairing)) return null;
    const budget = this.retainBytes;
    return this.cuts.due(budget) ? this.storage.cutFor(this.meta.commitSeq, budget) : null;
  }

  /**
   * Why a restore cannot go into this group now, or null. A restore wants a group without
   * entries (API.md); a log of no-ops alone holds none a client made: each is a recovery's (a move
   * or a failover of a group that never took a write, or a failed restore's new epoch), and the
   * restore goes after them. Refused with such a no-op, a group moved before its restore had to be
   * deleted and created again.
   */
  restoreRefusal(): { code: "conflict" | "unavailable"; reason: string } | null {
    if (!noopsOnly(this.baseSeq, this.lastSeq, restoreNoopsMax, (from, to) => this.readEntries(from, to))) {
      // A base past the no-ops with no entry but no-ops after it is a restore's (compaction keeps
      // thousands): a retry of a restore whose answer was lost said "has entries" (a probe).
      const restored = this.baseSeq > 0 && this.lastSeq - this.baseSeq <= restoreNoopsMax && this.readEntries(this.baseSeq + 1, this.lastSeq).every((e) => e.kind === "noop");
      if (restored) return { code: "conflict", reason: `the group holds a restored state already (at seq ${this.baseSeq})` };
      // Only membership changes: they count as entries too, which the 409 alone did not say (a
      // probe: an empty group with a replica added refused, one whose sequencer moved took it).
      const few = this.lastSeq - this.baseSeq <= restoreNoopsMax ? this.readEntries(this.baseSeq + 1, this.lastSeq) : [];
      // (Not after a restore: a new group would not help there.)
      const changes = this.baseSeq === 0 && few.some((e) => e.kind === "config") && few.every((e) => e.kind !== "command");
      const why = changes ? ` (membership changes count as entries: create the new group with the replicas wanted, and restore before any change)` : "";
      return { code: "conflict", reason: `the group has entries (last seq ${this.lastSeq})${why}` };
    }
    if (this.restoreMarked) return { code: "unavailable", reason: "another restore of this group is under way; retry when it is done" };
    if (this.pending.size !== 0) return { code: "unavailable", reason: "commands sent before the restore are being ordered; retry" };
    if (this.meta.commitSeq < this.lastSeq) return { code: "unavailable", reason: "the group's sequencer is still committing its recovery; retry" };
    return null;
  }

  /**
   * A restored state became the group's starting point: position `seq` (just after the log's
   * no-ops) with a synthetic hash, nothing in the log at or below it (a replica that lacks it gets
   * a state transfer, like one behind a compacted log).
   */
  adoptRestore(seq: number, hash: string): void {
    assert(this.baseSeq === 0 && this.lastSeq === seq - 1 && this.restoreMarked, `a restore at ${seq} into a log ending at ${this.lastSeq}`);
    const noopsThrough = this.lastSeq;
    delete this.meta.restoreEpoch;
    this.meta.baseSeq = seq;
    this.meta.baseHash = hash;
    this.meta.baseEpoch = this.meta.epoch;
    this.meta.commitSeq = seq;
    this.meta.restoreAdoptedSeq = seq;
    this.storage.transaction(() => {
      if (noopsThrough > 0) this.storage.deleteThrough(noopsThrough);
      this.saveMeta();
    });
    this.tail = [];
    this.tailByteCount = 0;
    this.lastSeq = seq;
    this.lastHash = hash;
    this.configPendingSeq = 0;
  }

  /**
   * A restore is about to install its state at (this epoch, lastSeq + 1): persisted first (see
   * SequencerMeta.restoreEpoch), so that neither this sequencer nor its restart orders an entry in
   * this epoch while some replica may hold the restore there. Only when restoreRefusal is null.
   */
  markRestore(): void {
    assert(this.restoreRefusal() === null, "a restore into a group that refuses one");
    this.meta.restoreEpoch = this.meta.epoch;
    this.saveMeta();
  }

  /** The restore was undone on every replica that may have installed it: entries may follow in this epoch. */
  unmarkRestore(): void {
    delete this.meta.restoreEpoch;
    this.saveMeta();
  }

  /** Whether a restore may hold a position of this epoch on some replica (nothing may be ordered). */
  get restoreMarked(): boolean {
    return this.meta.restoreEpoch === this.meta.epoch;
  }

  /** Replicas not heard from (nor missed) since this sequencer started. */
  unheardIds(): string[] {
    return this.progress.unheardIds();
  }

  /** Replicas heard from or missed since this sequencer started, but not answered since `sinceMs`. */
  unheardSince(sinceMs: number): string[] {
    return this.progress.unheardSince(sinceMs);
  }

  /** Replicas that need a state transfer: quarantined, or behind the compacted log. */
  transferCandidates(): string[] {
    return this.progress.transferCandidates();
  }

  /**
   * A repair clears its target, which then refuses every recovery's fence until it is rebuilt (it
   * may have acknowledged entries it no longer holds). So at most as many voters are repaired at
   * once as the group can lose (at least one): a sequencer lost midway leaves a quorum that can
   * fence. Two of three repaired at once, and the sequencer then lost, left a group no recovery
   * could ever fence: the rebuilds needed a sequencer, the sequencer needed their fences (the
   * simulator, seed 22, once it kept the directory's quarantine list). The next is begun once one ends.
   */
  beginRepair(id: string): boolean {
    if (this.repairBusy(id) !== null) return false;
    const p = this.progress.get(id)!;
    p.repairing = true;
    p.repairs++;
    return true;
  }

  /** Progress.repairs of id (0 for one not in the group): what an answer from before a repair is told apart by. */
  repairsOf(id: string): number {
    return this.progress.get(id)?.repairs ?? 0;
  }

  /**
   * Why a repair of `id` cannot begin now (null: it can): it is being repaired, or as many voters
   * as the quorum can spare are. An operator's refused repair said "the state transfer did not
   * complete: see the server's log", which said nothing (a probe).
   */
  repairBusy(id: string): string | null {
    const p = this.progress.get(id);
    if (!p) return `no replica ${id}`;
    if (p.repairing) return `${id} is being repaired already (its status shows the rebuild's progress)`;
    // One that already refuses fences (a half-done transfer) takes nothing more from the quorum
    // that can fence; any other counts every voter repairing or left half-rebuilt (a restore or
    // a repair that failed midway: not counted, a third repair could start beside two of them).
    if (p.voter && !p.rebuilding) {
      const voters = this.voterIds();
      const busy = voters.filter((v) => this.progress.get(v)?.repairing || this.progress.get(v)?.rebuilding);
      const spare = Math.max(1, voters.length - majority(voters.length));
      if (busy.length >= spare) return `${busy.join(", ")} ${busy.length === 1 ? "is" : "are"} being rebuilt, as many voters as a quorum can spare (${spare}): retry when ${busy.length === 1 ? "it is" : "one is"} done`;
    }
    return null;
  }

  /** A state transfer to it may have begun and not ended (see Progress.rebuilding). */
  noteRebuilding(id: string): void {
    const p = this.progress.get(id);
    if (p) p.rebuilding = p.needsTransfer = true;
  }

  /** The target holds the source's state at seq: it resumes from seq + 1 and votes again. */
  endRepair(id: string, seq: number | null, nowMs: number, installs?: number): void {
    const p = this.progress.get(id);
    if (!p) return;
    p.repairing = false;
    p.repairs++;
    if (seq === null) return;
    if (installs !== undefined) p.installs = installs;
    p.needsTransfer = p.rebuilding = false;
    p.nextSeq = Math.max(seq, this.baseSeq) + 1;
    p.matchSeq = seq;
    p.lastSeq = seq;
    p.appliedSeq = seq;
    p.heardCommitSeq = 0;
    p.contacted = true;
    p.misses = 0;
    p.lastContactMs = nowMs;
    this.setQuarantined(id, false);
  }

  /** Replicas to try for a read, best first: voting, reachable, most applied. */
  readCandidates(): string[] {
    return this.progress.readCandidates();
  }
}

export function pendingKey(client: string, request: number): string {
  return `${request}:${client}`;
}
