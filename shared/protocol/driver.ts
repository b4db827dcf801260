// The sequencer's event handling around SequencerCore: send loops (one append in flight per
// replica), clients waiting for outcomes, retries, reads and audits. Shared by the Durable
// Object (real RPC and timers) and the simulator (virtual network and time).
import {
  appendEntriesMax,
  auditRetryMs,
  auditRpcTimeoutMs,
  auditTriesMax,
  commandTimeoutMs,
  compactionSlackEntries,
  copySuspectMs,
  installRetryMaxMs,
  scrubNowStepsMax,
  logRetentionEntries,
  transferPageBytes,
  heartbeatMs,
  startSettleWaitMs,
  unheardPollMs,
  asleepContactStaleMs,
  readLeaseMs,
  readWaitMs,
  replicaRetryBaseMs,
  replicaRetryMaxMs,
  replicaRpcTimeoutMs,
  confirmWaitMs,
  sequencerTimeoutMs,
  sessionRequestsMax,
  holdMessageMs,
  cutOffLookupMs,
  directoryWriteTimeoutMs,
  holdWhenWaitingMin,
  directTurnSlowMs,
  restoreLaggardGraceMinMs,
  retireAwakeMs,
  storageQuotaMiBOf,
} from "../limits.js";
import { decideAudit } from "./audit.js";
import { MajorityConfig } from "./quorum.js";
import { canonicalJson, sha256Hex, zeroHash } from "./hash.js";
import type { SnapshotInfo } from "./replica.js";
import { askAgain, type DriverIO, type ReadIndexAnswer, type Unavailable, type SessionAnswer, type SubmitAnswer, withTimeout } from "./io.js";
import { type HoldReason, type Refused, type SequencerCore, type StepResult, type SubmitDecision, pendingKey, refusal } from "./sequencer.js";
import type { AppendRequest, AppliedOutput, AuditInfo, ConfigChange, GroupConfig, Member } from "./types.js";
import type { AuditReport, Entry } from "../api/types.js";
import { configAfter, membersOf, nextReplicaNo } from "./types.js";

/** null: no majority agreed (or the sequencer stopped after ordering it); "unordered": it stopped before ordering it. */
type Outcome = AppliedOutput | null | "unordered";
/** A state transfer under way to one replica: from `source`, its state at `seq`, `rows` installed so far since `sinceMs`. */
export interface RebuildProgress {
  source: string;
  seq: number;
  rows: number;
  sinceMs: number;
}
type Resolver = (outcome: Outcome) => void;
interface Deadline {
  atMs: number;
  done: boolean;
  expire: () => void;
}

/**
 * A request id at or below the client's window floor: it may have run and been forgotten, so it is
 * refused, never run again. A client choosing random ids meets it with brand-new ones once its
 * window is full: the message says that ids must increase.
 */
export const expiredMessage = `request id is no longer remembered for this client (it is at or below the lowest of the newest ${sessionRequestsMax} or more kept, or the client was idle past the group's session window and forgotten): it may have run already, so it is not run; use request ids that increase per client, above every earlier one`;

/** A (client, request) that ran, or was ordered, with another command. */
function usedMessage(client: string, request: number): string {
  return `request ${request} of client ${client} was already used for a different command`;
}

/** An answer given to a later attempt of a (client, request) an earlier attempt ordered: it ran nothing. */
function replay(a: SubmitAnswer): SubmitAnswer {
  return a.kind === "ok" ? { ...a, replayed: true } : a;
}

export class SequencerDriver {
  /**
   * Since this driver started (metrics; the bench divides them by commands): flushes that ordered
   * entries (one log write each), and append messages sent to each replica, heartbeats included.
   */
  readonly counts = { flushes: 0, appends: new Map<string, number>() };

  /** Clients waiting for a (client, request) still queued, and for an ordered seq. */
  private readonly waitingPending = new Map<string, Resolver[]>();
  private readonly waitingSeq = new Map<number, Resolver[]>();
  /** The seq a waiter of waitingPending was moved to when its command was ordered (its deadline drops it from there). */
  private readonly orderedWaiters = new WeakMap<Resolver, number>();
  private commitWatchers: { seq: number; wake: () => void }[] = [];
  private readonly sending = new Set<string>();
  /** Replicas whose last append failed: no new send loop before this time (backoff). */
  private readonly retryAtMs = new Map<string, number>();
  /** Consecutive failed repairs per target: the pause before the next one doubles with them. */
  private readonly repairFailures = new Map<string, number>();
  /** Per target, the source of its last transfer whose rows did not match that source's digest. */
  private readonly badSources = new Map<string, string>();
  /**
   * Replicas whose rows failed the last audit's scrub that reached them (id -> when): never a
   * repair's source. When a quorum fails it (the audit's alarm), nobody is quarantined and they
   * serve on, and an operator's repair copied one's damaged rows into its target, whose digest
   * check then failed, the target left rebuilding for good (a probe, every replica corrupted).
   */
  private readonly scrubFailed = new Map<string, number>();
  /**
   * Sources a copy from did not sum to their digest (id -> when): no source for copySuspectMs, or
   * until a scrub passes them (noteBadCopy). Apart from scrubFailed: the fault may have been the
   * target's install, and a refusal on their account is a retry's, not only an operator's.
   */
  private readonly copySuspects = new Map<string, number>();
  /**
   * Targets whose install failed from a source then judged sound (id -> when, and how many times
   * in a row): not rebuilt for copySuspectMs, doubled each time (installFailedWhy).
   */
  private readonly installFailed = new Map<string, { atMs: number; count: number }>();
  /** Sources being judged now (judgeSuspect): one judgement each at a time. */
  private readonly judging = new Set<string>();
  /** Why the last repair of each replica failed, for the operator's repair route. */
  private readonly lastRepairError = new Map<string, string>();
  /** Rebuilds under way, by target: what the status shows of each (the rows copied so far). */
  private readonly rebuilds = new Map<string, RebuildProgress>();
  /**
   * Installs whose end was asked and never answered (both tries lost), by target: the end may have
   * happened. The next repair asks that end again before it begins anything: a new install's begin
   * emptied a replica rebuilt already, which then refused every fence until caught up, and with one
   * more replica lost no recovery could take office (the simulator, seed 3314 with
   * --output-free 30 --watchers 2: the end's answer and its retry dropped, r3's storage lost).
   */
  private readonly unendedInstalls = new Map<string, { transferId: string; seq: number; source: string }>();
  private stopped = false;
  /** A state transfer is under way (a restore waits for it: both install on replicas). */
  get repairsUnderway(): boolean {
    return this.repairing > 0;
  }

  /** This incarnation ended (destroyed, handed over, crashed): it must write nothing more. */
  get isStopped(): boolean {
    return this.stopped;
  }
  /** Transfers begun, for their ids (never decremented). */
  private transfers = 0;
  /** Repairs under way (a group with one does not sleep). */
  private repairing = 0;
  /** A restore is loading the group's state: commands wait (503) and no repair runs meanwhile. */
  restoring = false;
  /** Whether a membership change is under way (an add from its provision on): a restore waits. */
  get changing(): boolean {
    return this.reconfiguring;
  }

  constructor(
    readonly core: SequencerCore,
    private readonly io: DriverIO,
    /** Compaction window; the simulator shrinks it so compaction and transfers happen in short runs. */
    private readonly retention = { entries: logRetentionEntries, slack: compactionSlackEntries },
  ) {
    this.startedMs = io.nowMs();
    // A start of the same sequencer (after an eviction) counts idleness from the last client work
    // its meta kept; a new one (a recovery, a move: no such field yet) from its start.
    this.activeMs = Math.min(core.activeMs ?? this.startedMs, this.startedMs);
    // Asleep when it stopped (evicted in its sleep): it stays so until client work wakes it. Set
    // here, before the lifecycle's first kick: a message built before startHeartbeats went out
    // without the notice, and the co-located replica took the group for awake (a review).
    if (core.asleepSinceMs !== undefined && io.sleepAfterMs !== undefined) {
      this.sleepState = "asleep";
      this.sleepSinceMs = core.asleepSinceMs;
    }
  }
  private readonly startedMs: number;
  /** Stopped by the group's delete (stop): waiting commands are answered so. */
  private deleted = false;

  /**
   * Ends this incarnation: waiting clients get no outcome, send loops end, nothing more is written.
   * `deleted`: the group is being deleted, so waiting clients are told that, not to retry (a retry
   * ran in the group created again under the name: a probe).
   */
  stop(deleted = false): void {
    this.stopped = true;
    this.deleted = deleted;
    this.core.close();
    // Commands still queued were certainly never ordered (503, safe to retry); ordered ones may commit (504).
    for (const list of this.waitingPending.values()) for (const r of list) r("unordered");
    for (const list of this.waitingSeq.values()) for (const r of list) r(null);
    this.waitingPending.clear();
    this.waitingSeq.clear();
    for (const w of this.commitWatchers) w.wake();
    this.commitWatchers = [];
    // A heartbeat round under way fails now, not at its timer (confirmWaitMs): a read or a
    // change waiting on a deposed or moved sequencer answered "stopping" up to 6 s late (a review).
    const rounds = this.confirmations;
    this.confirmations = [];
    for (const c of rounds) c.done(false);
    this.releaseSettled(); // a change waiting for the start is refused as stopping
  }

  // ---- writes -------------------------------------------------------------------------------

  async submit(client: string, request: number, command: unknown): Promise<SubmitAnswer> {
    const [answer] = this.submitBatch(client, [{ request, command }]);
    return answer!;
  }

  /**
   * Queues every command of a batch, in order, before the send loops run: the batch is ordered
   * together (one flush, usually one append) and its seqs increase in array order. Each command
   * keeps its own exactly-once pair and its own answer.
   */
  submitBatch(client: string, items: { request: number; command: unknown }[]): Promise<SubmitAnswer>[] {
    if (this.stopped) return items.map(() => Promise.resolve({ kind: "not_found" }));
    if (this.restoring) return items.map(() => Promise.resolve({ kind: "unavailable", message: "a restore is loading this group's state; retry when it is done" }));
    this.wake();
    // Once one command is refused (a full queue), so are the new ones after it: a later, smaller
    // command must not be ordered without the earlier ones the client put before it. Known ones
    // are still answered as known (a 503 means "certainly not ordered").
    // Cut off (no quorum for sequencerTimeoutMs): a new command would only wait out its timeout
    // here; refused at once (503, cutOffMs), the router may fail this sequencer over.
    // Refused for the storage quota, the rest are too, and say so (a client does not retry them),
    // naming the command whose refusal they follow: a delete after a refused put said deletes are
    // ordered at the quota, and was refused (a probe).
    let refused: Extract<SubmitDecision, { kind: "unavailable" }> | undefined = this.cutOff() ? { kind: "unavailable", reason: this.noQuorum() } : undefined;
    const answers = items.map((i) => {
      const d = this.core.submit({ client, request: i.request, command: i.command }, refused);
      if (d.kind === "unavailable" && refused === undefined) {
        const { commandHash: _hash, ...first } = d;
        refused = { ...first, reason: `not ordered: request ${i.request} before it in this batch was refused, and a batch orders nothing after a refused command (${d.reason})` };
      }
      return this.answerDecision(client, i.request, d);
    });
    this.kickAll();
    return answers;
  }

  private async answerDecision(client: string, request: number, d: SubmitDecision): Promise<SubmitAnswer> {
    switch (d.kind) {
      case "unavailable": {
        const refusal = this.refuse(d.reason);
        const refused = d.storage ? { ...refusal, storage: true as const } : refusal;
        if (this.core.epochSettled) return d.commandHash !== undefined && this.core.forgottenThroughSeq > 0 ? this.refuseUnknown(client, request, d.commandHash, refused, d.busy === true) : refused;
        // Not one entry of this epoch committed yet: the command may be one a predecessor ordered
        // on a replica this recovery did not fence, which a later recovery may still commit.
        return { ...refusal, kind: "timeout", message: `${refusal.message}; this sequencer has committed nothing of its own yet, so an earlier attempt may still take effect: retry with the same client and request` };
      }
      case "conflict":
        return this.forgottenConflict(client, request, d.commandHash);
      case "queued":
        return this.answer(await this.wait(this.waitingPending, pendingKey(client, request)));
      case "existing": {
        // Asked again while cut off: it would only wait out its timeout here (for its commit, or
        // for a quorum of session answers with outputs "majority"). Unknown at once (504,
        // cutOffMs): the router may fail this sequencer over and ask the successor. (A retry of a
        // committed command waited 5 s for session answers, the simulator's router gave up after
        // 3, and its PreVote then met replicas back from a partition, voting gone: a healthy
        // sequencer deposed, quorum-away seed 1412393983.) With outputs "first" one session answer
        // does: the lookup below, capped while cut off unless this object holds a replica.
        if (this.cutOff() && (!d.committed || this.core.config.outputs === "majority")) return this.answer("timeout");
        if (d.seq === null) return replay(this.answer(await this.wait(this.waitingPending, pendingKey(client, request))));
        // A retry of a committed command reads its outcome from the replicas' session tables
        // rather than waiting with the first attempt: if every answer that carried its output was
        // lost, no further output comes, and the retry would time out like the first attempt did.
        if (this.waitingSeq.has(d.seq) && !d.committed) return replay(this.answer(await this.wait(this.waitingSeq, d.seq)));
        // Cut off, the lookup ends at cutOffLookupMs (the router must see cutOffMs in its call);
        // otherwise its calls keep their own timeout past the budget, as before 3acbfcf (a retry
        // whose commit came late in the budget found a slow replica's answer), well within the
        // router's call (sequencerCallTimeoutMs).
        const cut = this.cutOff() && !this.sessionHere();
        return this.answerFromSession(client, request, d.commandHash, d.seq, cut ? cutOffLookupMs : commandTimeoutMs, cut ? 0 : replicaRpcTimeoutMs);
      }
    }
  }

  /**
   * Whether a retry's session lookup can be answered without the network: by the replica in this
   * sequencer's own object (a direct call). A successor has none, and while cut off its lookup
   * crosses the cut, so with outputs "first" the retry of a committed command waited there past
   * the router's timeout: the router saw silence, never cutOffMs, the replicas (hearing the late
   * appends) refused the silence PreVote, and nothing failed the sequencer over while the cut
   * lasted (simulator seed 922121676, cut-sequencer,drop,reorder,duplicate,slow-sequencer: 29 s).
   * Without one, the lookup gets cutOffLookupMs, then answers 504 with cutOffMs (a review: a 504
   * at once refused the answer a reachable replica could give, every retry while the cut lasted).
   */
  private sessionHere(): boolean {
    const here = this.io.directReplica;
    return !!here && this.sessionCandidates().includes(here);
  }

  /**
   * Who may answer a session lookup: the read candidates; with outputs "first", where one answer
   * decides, without those whose rows failed their scrub while another remains (reads refuse them
   * too: `damaged`): a damaged replica's session row (state like any other) answered a retry.
   * With "majority" the vote outweighs one (and leaving it out could leave too few to vote).
   */
  private sessionCandidates(): string[] {
    const all = this.core.readCandidates();
    if (this.core.config.outputs !== "first") return all;
    const sound = all.filter((id) => !this.scrubFailed.has(id));
    return sound.length > 0 ? sound : all;
  }

  private wait<K>(map: Map<K, Resolver[]>, key: K): Promise<Outcome | "timeout"> {
    return new Promise((resolve) => {
      const list = map.get(key) ?? [];
      const deadline: Deadline = {
        atMs: this.io.nowMs() + commandTimeoutMs,
        done: false,
        expire: () => {
          // Ordered meanwhile, it waits under its seq (flush moved it): dropped only from its
          // first map, it stayed there while the seq went undecided (every answer carrying its
          // output lost), and the group never slept (a review).
          const seq = this.orderedWaiters.get(r);
          if (seq !== undefined) dropWaiter(this.waitingSeq, seq, r);
          else dropWaiter(map, key, r);
          resolve("timeout");
        },
      };
      const r: Resolver = (o) => {
        deadline.done = true;
        resolve(o);
      };
      list.push(r);
      map.set(key, list);
      this.deadlines.push(deadline);
      this.armDeadlines();
    });
  }

  /**
   * Waiting clients' deadlines, oldest first (each is its start plus the same commandTimeoutMs,
   * so the order they come in is the order they fall due), behind one timer: a timer per waiting
   * command ran into workerd's limit of 10,000 active timers per object under batches.
   */
  private deadlines: Deadline[] = [];
  private deadlinesHead = 0;
  private deadlineTimerArmed = false;

  /**
   * Answers every waiting command now (504): once cut off, their outcome will not be known here
   * before their deadlines, and a router told so now (cutOffMs) may fail this sequencer over and
   * ask the successor, instead of waiting out up to commandTimeoutMs first.
   */
  private expireWaiting(): void {
    for (let i = this.deadlinesHead; i < this.deadlines.length; i++) {
      const d = this.deadlines[i]!;
      if (d.done) continue;
      d.done = true;
      d.expire();
    }
  }

  private armDeadlines(): void {
    if (this.deadlineTimerArmed) return;
    while (this.deadlinesHead < this.deadlines.length && this.deadlines[this.deadlinesHead]!.done) this.deadlinesHead++;
    if (this.deadlinesHead > 1024 && this.deadlinesHead * 2 > this.deadlines.length) {
      this.deadlines = this.deadlines.slice(this.deadlinesHead);
      this.deadlinesHead = 0;
    }
    const head = this.deadlines[this.deadlinesHead];
    if (!head) return;
    this.deadlineTimerArmed = true;
    this.io.setTimer(Math.max(0, head.atMs - this.io.nowMs()), () => {
      this.deadlineTimerArmed = false;
      const now = this.io.nowMs();
      for (; this.deadlinesHead < this.deadlines.length; this.deadlinesHead++) {
        const d = this.deadlines[this.deadlinesHead]!;
        if (d.done) continue;
        if (d.atMs > now) break;
        d.done = true;
        d.expire();
      }
      this.armDeadlines();
    });
  }

  private answer(outcome: Outcome | "timeout"): SubmitAnswer {
    if (this.deleted && (outcome === "timeout" || outcome === "unordered" || outcome === null)) {
      return { kind: "deleted", message: "the group was deleted while the command was under way; whatever it did went with the group" };
    }
    if (outcome === "timeout") {
      const message = "the command was not confirmed in time; it may or may not take effect: retry with the same client and request";
      const lostMs = this.cutOffMs();
      return lostMs === null ? { kind: "timeout", message } : { kind: "timeout", message: `${message} (no quorum of voters has acknowledged this sequencer for ${lostMs} ms)`, cutOffMs: lostMs };
    }
    if (outcome === "unordered") {
      // Certainly not ordered here; before this epoch settled, maybe by a predecessor (an earlier attempt).
      if (this.core.epochSettled) return { kind: "unavailable", message: "the sequencer stopped before ordering the command; retry" };
      return { kind: "timeout", message: "the sequencer stopped before ordering the command, and had committed nothing of its own: an earlier attempt may still take effect; retry with the same client and request" };
    }
    if (outcome === null) {
      if (this.stopped) return { kind: "timeout", message: "the sequencer stopped; retry with the same client and request" };
      return { kind: "no_majority", message: "replicas produced different outputs and no majority agreed" };
    }
    const epoch = this.core.epoch;
    const incarnation = this.core.config.incarnation;
    switch (outcome.status) {
      case "ok":
        return { kind: "ok", seq: outcome.seq, output: outcome.output, epoch, incarnation };
      case "duplicate":
        return { kind: "ok", seq: outcome.originalSeq, output: outcome.output, epoch, incarnation, replayed: true };
      case "conflict":
        return { kind: "conflict", message: "request id was already used for a different command" }; // the replicas' word: no client or request at hand
      case "expired":
        return { kind: "conflict", message: expiredMessage };
    }
  }

  /**
   * A retry of a command ordered earlier (maybe before a restart): its outcome is in the replicas'
   * session table. In "majority" mode the recorded outputs are voted on like fresh ones, or one
   * corrupted replica could answer the retry alone. `budgetMs` bounds the wait for its commit and
   * the replicas' own wait; the lookup ends `graceMs` after it (0 while cut off: answerDecision).
   */
  private async answerFromSession(client: string, request: number, hash: string, seq: number, budgetMs: number, graceMs: number): Promise<SubmitAnswer> {
    const deadline = this.io.nowMs() + budgetMs;
    if (!(await this.waitCommitted(seq, budgetMs))) return this.answer("timeout");
    const winner = await this.sessionVote(client, request, seq, deadline, graceMs);
    if (this.stopped) return this.answer("timeout");
    if (winner === "split") return this.answer(null);
    // The index's entry for the pair may be a reuse the replicas refused (a pair first ordered
    // before the retained log, for another command): the first command's answer is not this one's
    // (a probe: the reuse's retry was told the first's output, "replayed", and nothing ran).
    if (winner?.kind === "found" && winner.commandHash !== hash) return { kind: "conflict", message: usedMessage(client, request) };
    if (winner?.kind === "found") return this.replayOf(winner);
    if (winner?.kind === "missing") return { kind: "conflict", message: expiredMessage };
    return this.answer("timeout");
  }

  /** The answer a session table recorded for a pair's first run: nothing ran now. */
  private replayOf(found: Extract<SessionAnswer, { kind: "found" }>): SubmitAnswer {
    return { kind: "ok", seq: found.seq, output: found.output, epoch: this.core.epoch, incarnation: this.core.config.incarnation, replayed: true };
  }

  /**
   * A refusal of a request the index does not hold, once it has forgotten some (compacted, or
   * before a failover's log): the request may be one ordered and forgotten (a retry from before
   * the retained log, or a lost answer's), and a 503 must mean "certainly not ordered" (a review:
   * an executed retry was told 503 at the quota). The replicas' session tables say: executed (its
   * recorded answer, as any retry's), expired (a 409: it may have run), or not there (the 503).
   * Cut off, no quorum answers for it: a 504 at once, with cutOffMs for the router's failover.
   */
  private async refuseUnknown(client: string, request: number, hash: string, refusal: Unavailable, busy: boolean): Promise<SubmitAnswer> {
    const forgotten = this.core.forgottenThroughSeq;
    const unknown = { ...refusal, kind: "timeout" as const, message: `${refusal.message}; this sequencer no longer holds the requests ordered through seq ${forgotten}, and the replicas' session tables did not say whether this one was: it may have run already, retry with the same client and request` };
    // The common case, a new request, is settled by the replica in this object without the
    // network (its session table is replicated state, applied through the forgotten seq: it is a
    // read candidate). A review measured a batch refused at the quota asking 768 times over RPC.
    if (this.sessionHere()) {
      const local = await this.io.link(this.io.directReplica!).session(client, request, forgotten, 0).catch(() => null);
      if (local?.kind === "missing" && !local.expired) return refusal;
    }
    // Not over the network while cut off (the lookup crosses the cut) or while the queue is full
    // (it would add load to an overloaded group): unknown, a 504.
    if (refusal.cutOffMs !== undefined || busy) return unknown;
    const winner = await this.sessionVote(client, request, forgotten, this.io.nowMs() + cutOffLookupMs, 0);
    // Deleted meanwhile: said so (answer), not a 504 whose retry would reach a group made again.
    if (this.stopped) return this.deleted ? this.answer(null) : unknown;
    if (winner === null || winner === "split") return unknown;
    if (winner.kind === "found" && winner.commandHash !== hash) return { kind: "conflict", message: usedMessage(client, request) };
    if (winner.kind === "found") return this.replayOf(winner);
    if (winner.kind !== "missing") return unknown;
    return winner.expired ? { kind: "conflict", message: expiredMessage } : refusal;
  }

  /**
   * A request the index holds for a different command. Once the index has forgotten some, the
   * pair may have been ordered before the retained log too, for this command: the index's entry is
   * then a reuse the replicas refused (409), and this is a retry of the first, owed its answer. A
   * probe: after such a reuse the first command's own retries were 409 for good. The replicas'
   * session tables hold the first. The replica in this object is asked first, without the network
   * (a batch of 100 conflicts made 300 session calls: a review): its record of another command,
   * or none, is the 409 at once, the common case; of this command, with outputs "first", the
   * first answer. Otherwise the vote decides, and one that settles nothing is a 504: the command
   * may be this pair's first, and a 409 would have the client send it again under a new id (a
   * review: with two replicas down, the first command's own retry was told 409).
   */
  private async forgottenConflict(client: string, request: number, hash: string): Promise<SubmitAnswer> {
    const conflict: SubmitAnswer = { kind: "conflict", message: usedMessage(client, request) };
    const forgotten = this.core.forgottenThroughSeq;
    if (forgotten === 0) return conflict;
    const first = (a: SessionAnswer | "split" | null): a is Extract<SessionAnswer, { kind: "found" }> => a !== null && a !== "split" && a.kind === "found" && a.commandHash === hash;
    const settledOther = (a: SessionAnswer | "split" | null) => a !== null && a !== "split" && a.kind !== "timeout" && !first(a);
    const other = (a: SessionAnswer) => (a.kind === "missing" && a.expired ? { kind: "conflict" as const, message: expiredMessage } : conflict);
    if (this.sessionHere()) {
      const local = await this.io.link(this.io.directReplica!).session(client, request, forgotten, 0).catch(() => null);
      if (local !== null && settledOther(local)) return other(local);
      if (first(local) && this.core.config.outputs === "first") return this.replayOf(local);
    }
    // Cut off, a vote would cross the cut: unknown (504, with cutOffMs for the router's failover).
    if (this.cutOff()) return this.answer("timeout");
    const winner = await this.sessionVote(client, request, forgotten, this.io.nowMs() + cutOffLookupMs, 0);
    if (this.stopped) return this.answer("timeout");
    if (first(winner)) return this.replayOf(winner);
    return winner !== null && winner !== "split" && settledOther(winner) ? other(winner) : this.answer("timeout");
  }

  /**
   * Asks every read candidate at once (each asked again while silent: askAgain) and settles as
   * soon as enough agree: one answer with outputs "first", else a quorum of the voters (joining
   * replicas never count: counting them made every retry of a committed command time out in a
   * group with one voter down and one replica joining). Null when every ask is done without that.
   * It waited for every candidate before: one lost answer, or one replica down, held every retry
   * of a committed command for the whole command timeout (the simulator, seed 8 with drops).
   * "split": every candidate answered, their outputs differ, and none has enough: no majority agreed, as
   * the first attempt found (a retry answered "timeout", that it may or may not take effect).
   */
  private sessionVote(client: string, request: number, seq: number, deadlineMs: number, graceMs: number): Promise<SessionAnswer | "split" | null> {
    const voters = this.core.votingConfig();
    const enough = (ids: string[]) => (this.core.config.outputs === "majority" ? voters.reached(ids) : ids.length >= 1);
    const candidates = this.sessionCandidates();
    const tally = new Map<string, { answer: SessionAnswer; ids: string[] }>();
    let settled = false;
    let left = candidates.length;
    let answered = 0;
    return new Promise((resolve) => {
      let cancel = () => {};
      const settle = (a: SessionAnswer | "split" | null) => {
        if (settled) return;
        settled = true;
        cancel();
        resolve(a);
      };
      if (left === 0) return settle(null);
      const waitMs = Math.max(0, Math.min(deadlineMs - this.io.nowMs(), readWaitMs));
      // The deadline holds for the calls too (each may take waitMs plus a call's timeout): a
      // cut-off sequencer's lookup must end within cutOffLookupMs, not 4 s later.
      cancel = this.io.setTimer(Math.max(0, deadlineMs + graceMs - this.io.nowMs()), () => settle(null));
      for (const id of candidates) {
        void askAgain(this.io, () => this.io.link(id).session(client, request, seq, waitMs), () => settled, waitMs + replicaRpcTimeoutMs).then((a) => {
          left--;
          if (a && a.kind !== "timeout") {
            answered++;
            // Missing, expired or not, is one answer (split, a mix reached no quorum: a review); expired wins.
            const key = a.kind === "found" ? canonicalJson([a.seq, a.commandHash, a.output]) : "missing";
            const t = tally.get(key) ?? { answer: a, ids: [] };
            if (a.kind === "missing" && a.expired) t.answer = a;
            t.ids.push(id);
            tally.set(key, t);
            if (enough(t.ids)) return settle(t.answer);
          }
          // Only outputs that differ: a "missing" beside a found one says no more than a timeout would.
          const outputs = [...tally.keys()].filter((k) => k !== "missing").length;
          if (left === 0) settle(answered === candidates.length && outputs > 1 ? "split" : null);
        });
      }
    });
  }

  /** Runs `then` once seq is committed, unless this sequencer stops first (no timer: it waits as long as it is in office). */
  private whenCommitted(seq: number, then: () => void): void {
    this.commitWatchers.push({ seq, wake: () => (!this.stopped && this.core.commitSeq >= seq ? then() : undefined) });
  }

  private waitCommitted(seq: number, waitMs: number): Promise<boolean> {
    if (this.core.commitSeq >= seq) return Promise.resolve(true);
    this.kickAll();
    return new Promise((resolve) => {
      const w = {
        seq,
        wake: () => {
          cancel();
          resolve(!this.stopped && this.core.commitSeq >= seq);
        },
      };
      const cancel = this.io.setTimer(waitMs, () => {
        this.commitWatchers = this.commitWatchers.filter((x) => x !== w);
        resolve(false);
      });
      this.commitWatchers.push(w);
    });
  }

  // ---- replication --------------------------------------------------------------------------

  kickAll(): void {
    if (this.stopped) return;
    const now = this.io.nowMs();
    for (const id of this.core.replicaIds()) {
      if (this.sending.has(id) || (this.retryAtMs.get(id) ?? 0) > now) continue;
      this.retryAtMs.delete(id);
      void this.sendLoop(id);
    }
  }

  /** Orders what queued and registers its waiters under the assigned seqs. */
  private flush(): void {
    const entries: Entry[] = this.core.flush(new Date(this.io.nowMs()).toISOString());
    if (entries.length > 0) this.counts.flushes++;
    for (const e of entries) {
      const key = pendingKey(e.client!, e.request!);
      const list = this.waitingPending.get(key);
      if (!list) continue;
      this.waitingPending.delete(key);
      this.waitingSeq.set(e.seq, list);
      for (const r of list) this.orderedWaiters.set(r, e.seq);
    }
    // Idle send loops must learn of the new entries too, or no majority could form.
    if (entries.length > 0) this.kickAll();
  }

  /**
   * One loop per replica, at most one append in flight to it. Whatever queued while the previous
   * append was in flight is ordered into the next one: batching without timers.
   */
  private async sendLoop(id: string): Promise<void> {
    if (this.sending.has(id)) return;
    this.sending.add(id);
    try {
      let advancedCommit = false;
      while (!this.stopped) {
        // The direct replica's turn is taken before its round flushes: the flush kicks the remote
        // loops, which build their messages at once. Taken only around its call, it let them
        // build theirs before this replica stored the new entries, so no message carried those
        // entries' commit and, with outputs "majority", an answer waited for a second round trip
        // (simulator geography, 40 seeds: co-located write p99 45 ms above separate).
        // Nothing here may await before the direct replica's call: a loop that found nothing to
        // send must leave `sending` within the event, or the kick of a flush just after it finds
        // the loop still running, and the new entries wait for the next kick.
        const turn = id === this.io.directReplica ? this.takeDirectTurn() : null;
        let step: StepResult | null;
        let called = false;
        try {
          if (id === this.io.directReplica) this.flushAsDirect();
          else if (!(await this.flushAndWaitTurns())) return;
          const msg = this.nextMessage(id, advancedCommit);
          if (msg === null) return;
          called = true;
          step = await this.exchange(id, msg);
        } finally {
          turn?.(called);
        }
        if (step === null) return;
        if (step.needsInit && !(await this.rejoin(id))) {
          // Not made (unreachable, or refused: a newer incarnation's leftover): tried after a
          // pause like a failure. A replica reached by a direct call answers at once, and a loop
          // that went straight round again would never give the object's thread back.
          if (this.stopped) return;
          this.core.onAppendFailure(id);
          this.backOff(id, "it has no state and could not be made");
          return;
        }
        if (this.stopped) return;
        this.applyStep(step);
        advancedCommit = step.commitAdvanced;
      }
    } finally {
      this.sending.delete(id);
    }
  }

  /**
   * Batches form while an append is in flight; a replica reached by a direct call never is, so its
   * loop would order every command alone (measured: 1 command per flush, and slower than without
   * it). It leaves ordering to a remote loop that is waiting for an answer, whose next round
   * flushes the queue and kicks this loop in the same event; unless a full append's worth is
   * queued (waiting makes no bigger message, and under batches of 100 from 128 clients the queue
   * passed pendingSubmitsMax: 503s). Synchronous: see sendLoop.
   */
  private flushAsDirect(): void {
    if (!this.remoteInFlight() || this.core.pendingCount >= appendEntriesMax) this.flush();
  }

  /**
   * A remote loop's flush, then its wait for the direct replica's turn: that replica has stored
   * what was just ordered (its step ran when its loop was kicked), and its answer is counted a few
   * microtasks later; once it is, this loop's message carries those entries' commit, so its
   * replica applies them and answers with their outputs now, not one round trip later. Waited
   * while a turn is taken, not once (the turn awaited may be a commit-only round, whose next
   * round stores what this flush ordered), and flushed again after each wait (a command
   * submitted meanwhile found this loop in `sending`, its kick lost, and the direct loop does not
   * flush while a remote loop is in `sending`: a review's unit test never ordered it). Not while
   * the direct replica is slow (directSlow), and not past directTurnSlowMs in all (turns each just
   * under it, back to back, would hold this loop and its heartbeats as long). False: stopped.
   */
  private async flushAndWaitTurns(): Promise<boolean> {
    const fromMs = this.io.nowMs();
    for (;;) {
      this.flush();
      if (!this.directTurn || this.directSlow || this.io.nowMs() - fromMs > directTurnSlowMs) return true;
      await this.directTurn;
      if (this.stopped) return false;
    }
  }

  /** id's next message (entries, a commit, or a heartbeat that is due), or null: nothing to send now. */
  private nextMessage(id: string, advancedCommit: boolean): AppendRequest | null {
    let d = this.core.nextAppend(id, true);
    if (d.kind === "hold" && !this.holdBack(id, d.why, advancedCommit)) d = this.core.nextAppend(id, false);
    let msg = d.kind === "send" ? d.msg : null;
    // Nothing to send, but a heartbeat is due (or a read's confirmation round asked for one).
    if (d.kind === "idle" && this.beatDue.delete(id)) msg = this.core.heartbeat(id);
    if (msg === null) {
      if (!this.core.replicaIds().includes(id)) this.heldSinceMs.delete(id);
      if (d.kind === "transfer" || this.core.transferCandidates().includes(id)) void this.repair(id);
      return null;
    }
    this.heldSinceMs.delete(id);
    this.beatDue.delete(id);
    const cutOffMs = this.cutOffMs();
    if (cutOffMs !== null) msg = { ...msg, cutOffMs };
    // Every message while not awake says so: one without it (a status's or an audit's round while
    // asleep) would start the replica's silence clock again.
    return this.sleepState === "awake" ? msg : { ...msg, sleep: true };
  }

  /** Sends msg to id and counts its answer; null after a failure (the loop backs off). */
  private async exchange(id: string, msg: AppendRequest): Promise<StepResult | null> {
    const sentAtMs = this.io.nowMs();
    this.lastSentMs.set(id, sentAtMs);
    this.counts.appends.set(id, (this.counts.appends.get(id) ?? 0) + 1);
    let resp;
    try {
      resp = await withTimeout(this.io, this.io.link(id).append(msg), replicaRpcTimeoutMs, `append to ${id}`);
    } catch (err) {
      if (this.stopped) return null;
      this.core.onAppendFailure(id);
      this.backOff(id, String(err));
      return null;
    }
    if (this.stopped) return null;
    // Heard at this epoch: the lease a linearizable read's index relies on.
    // (Not a replica with no state: it keeps no record of acknowledging, so a successor's fence could not report it.)
    if (resp.ok || (resp.reason !== "stale_epoch" && resp.reason !== "not_initialized")) this.ackedSentMs.set(id, sentAtMs);
    const step = this.core.onAppendResponse(id, resp, this.io.nowMs());
    if (step.quarantined) this.learnedQuarantine(id, "its append answer");
    this.checkConfirmations();
    return step;
  }

  /** Settles once the direct replica's answer to its append in progress is counted (see sendLoop). */
  private directTurn: Promise<void> | null = null;
  /**
   * Whether the direct replica's last turn took longer than directTurnSlowMs: remote loops then
   * build their messages without waiting for its turns (one slow turn at most is waited out),
   * until a turn is quick again. Its call is in this object and answers within microtasks, but a
   * test's slow fault delays it: waited for every round, a 1 s delay of the co-located replica
   * took a group from 70 writes/s to 2.5, its two healthy voters a quorum (a probe). No timer: a
   * send loop awaiting a timer after its request had answered never resumed in workerd (backOff).
   */
  private directSlow = false;

  private takeDirectTurn(): (called: boolean) => void {
    let release!: () => void;
    const turn = new Promise<void>((resolve) => (release = resolve));
    const startedMs = this.io.nowMs();
    this.directTurn = turn;
    return (called) => {
      if (this.directTurn === turn) {
        this.directTurn = null;
        // Only a turn that called the replica says whether it is slow (an empty round is always quick).
        if (called) this.directSlow = this.io.nowMs() - startedMs > directTurnSlowMs;
      }
      release();
    };
  }

  /** Whether a loop is waiting for a remote replica's answer (it will flush when the answer comes). */
  private remoteInFlight(): boolean {
    for (const id of this.sending) if (id !== this.io.directReplica) return true;
    return false;
  }

  /**
   * Ends a send loop after a miss; a timer callback kicks a new loop once the backoff is over.
   * Why not await the timer: in a workerd test a send loop that awaited a (2 ms) timer after the
   * request that started it had answered never resumed, and a loop that never resumes never sends
   * again. A timer callback does run.
   */
  private backOff(id: string, why: string): void {
    const misses = this.core.backoffMisses(id);
    this.io.log("warn", `append to ${this.core.config.group}/${id} failed (${misses} misses): ${why}`);
    this.retryAfter(id, misses);
  }

  /** Keeps kickAll from starting id's loop for a pause doubled per consecutive failure, capped. */
  private retryAfter(id: string, failures: number): void {
    const backoffMs = Math.min(replicaRetryMaxMs, replicaRetryBaseMs * 2 ** (failures - 1));
    const atMs = this.io.nowMs() + backoffMs;
    this.retryAtMs.set(id, atMs);
    // Asleep, a replica that is down is caught up once the group wakes (its heartbeats retry it):
    // a timer here retried it every 2 s for as long as the group slept, and kept the object in
    // memory (a probe: 38 misses logged in 76 s of sleep).
    if (this.sleepState === "asleep") return;
    // The timer is the end of the backoff, whatever the clock says then: a timer can fire a
    // millisecond before nowMs() reaches atMs (Node's timers and Date.now() are different clocks),
    // and kickAll then skipped the replica, whose loop waited for the next heartbeat, or, with no
    // heartbeats, for ever (a unit test's membership change timed out so, one run in six).
    this.io.setTimer(backoffMs, () => {
      if (this.retryAtMs.get(id) === atMs) this.retryAtMs.delete(id);
      this.kickAll();
    });
  }

  // ---- heartbeats and the read lease -----------------------------------------------------------

  /** When each replica was last sent a message, and the send time of the last one it acknowledged. */
  private readonly lastSentMs = new Map<string, number>();
  private readonly ackedSentMs = new Map<string, number>();
  /** Replicas owed a heartbeat even though nothing else is due. */
  private readonly beatDue = new Set<string>();
  private confirmations: { sinceMs: number; quorum?: MajorityConfig; done: (ok: boolean) => void }[] = [];

  /**
   * Every heartbeatMs, a heartbeat to each replica sent nothing for that long: silence then means
   * failure, not idleness (a timer callback, never an awaited sleep: see the backoff above).
   */
  startHeartbeats(): void {
    // A recovered sequencer's quarantined replicas (from their flags and the directory's list) are
    // told again, and the directory gets this sequencer's list.
    for (const id of this.core.quarantinedIds()) this.tellQuarantined(id);
    this.noteQuarantines();
    // Said at every start, asleep or not: a successor (a failover's, a move's) or a restart after
    // a lost note must not leave the cron taking a busy group for an asleep one (once a day), nor
    // an asleep one for a busy one (every lap, its objects loaded each time).
    if (this.sleepState === "asleep") return this.io.onSleep?.(this.sleepSinceMs, false);
    this.core.noteSleep(null);
    this.io.onSleep?.(null, false);
    this.armBeat();
  }

  /** Whether the heartbeat timer is set (one at a time; none while asleep). */
  private beating = false;

  private armBeat(): void {
    if (this.beating || this.stopped) return;
    this.beating = true;
    this.io.setTimer(heartbeatMs, () => {
      this.beating = false;
      this.beat();
    });
  }

  private beat(): void {
    if (this.stopped) return;
    const now = this.io.nowMs();
    this.forgetRemoved();
    this.retireAgainNow();
    if (this.leftoversUnread) (this.leftoversUnread = false), void this.retireLeftovers();
    const quarantined = new Set(this.core.quarantinedIds());
    // Not one being rebuilt: a late "quarantined" could land after its install ended it.
    for (const id of [...this.untold.keys()]) if (!quarantined.has(id)) this.untold.delete(id);
    else if (!this.core.isRepairing(id) && !this.releasing.has(id)) this.tellQuarantined(id);
    if (this.quarantineRecorded === null) this.noteQuarantines();
    this.recordMembershipIfDue();
    if (this.cutOff()) this.expireWaiting();
    if (this.sleepTick(now)) return; // asleep: no heartbeat and no timer until wake()
    const notice = this.sleepState === "sleeping";
    for (const id of this.core.replicaIds()) {
      if ((this.retryAtMs.get(id) ?? 0) > now) continue;
      if (!notice && (this.lastSentMs.get(id) ?? 0) > now - heartbeatMs) continue;
      this.beatDue.add(id);
      void this.sendLoop(id);
    }
    this.armBeat();
  }

  // ---- sleep ---------------------------------------------------------------------------------

  /**
   * `awake`: heartbeats every heartbeatMs. `sleeping`: no client work for io.sleepAfterMs and
   * nothing under way; each heartbeat says so (AppendRequest.sleep) until a quorum of voters has
   * acknowledged one sent since. `asleep`: no heartbeat and no timer, so the platform can evict
   * the group's objects; every message still says `sleep`, and wake() ends it.
   */
  private sleepState: "awake" | "sleeping" | "asleep" = "awake";
  private sleepSinceMs = 0;
  /** The last client work (a command, a linearizable read, a change, a restore, a repair); the start counts. */
  private activeMs = 0;
  /** When it last woke from `asleep`: no quorum was expected before (quorumLostMs counts from here). */
  private wokeMs = 0;

  /** Since when it is asleep (its replicas told, its heartbeats stopped); null: awake or sleeping. */
  get asleepSinceMs(): number | null {
    return this.sleepState === "asleep" ? this.sleepSinceMs : null;
  }

  /**
   * Since when it sleeps or is falling asleep (its notice sent); null: awake. What a replica's
   * probe is answered: one that had the notice and asked in the notice round was told "awake",
   * ended its sleep, and later woke the group through its watches (a review).
   */
  get sleepingSinceMs(): number | null {
    return this.sleepState === "awake" ? null : this.sleepSinceMs;
  }

  /** Client work arrived: counts as activity, and heartbeats resume at once if it was asleep. */
  wake(): void {
    if (this.stopped) return;
    const now = this.io.nowMs();
    this.activeMs = now;
    this.core.noteActive(now);
    const was = this.sleepState;
    this.sleepState = "awake";
    if (was !== "asleep") return; // sleeping: the next heartbeat goes out without `sleep`
    this.wokeMs = now;
    this.core.noteSleep(null);
    this.io.onSleep?.(null, true);
    for (const id of this.core.replicaIds()) this.beatDue.add(id);
    this.kickAll();
    this.armBeat();
  }

  /** A heartbeat tick's step of the sleep states; true once asleep (the tick then sends nothing and sets no timer). */
  private sleepTick(now: number): boolean {
    const afterMs = this.io.sleepAfterMs;
    if (afterMs === undefined) return false;
    if (!this.quiet()) {
      if (this.sleepState === "sleeping") this.sleepState = "awake";
      return false;
    }
    if (this.sleepState === "awake") {
      if (now - this.activeMs < afterMs) return this.startAtSleep(afterMs), false;
      this.sleepState = "sleeping";
      this.sleepSinceMs = now;
      return false;
    }
    // A quorum of voters of the membership acknowledged a notice: they answer a PreVote by waking
    // this sequencer (ReplicaDriver.vote), not by voting it gone for a silence that is idleness.
    // Sent after the millisecond the sleep began: a message sent earlier in that millisecond
    // carried no notice, and its acknowledgement counted (the notice's first heartbeat, sent in
    // it too, is not needed: the next one a heartbeat later is).
    const heard = this.quorumHeardSinceMs();
    if (heard === null || heard <= this.sleepSinceMs) return false;
    this.sleepState = "asleep";
    this.core.noteSleep(this.sleepSinceMs);
    this.io.onSleep?.(this.sleepSinceMs, true);
    return true;
  }

  /** When this object is to be started if not running (io.startAt); 0: not asked yet. */
  private startAtMs = 0;

  /**
   * Asks the host to start this object when its sleep is due, once per due time: again only once
   * the last asked time has passed (a storage write each time, so not at every command).
   */
  private startAtSleep(afterMs: number): void {
    if (!this.io.startAt || this.startAtMs > this.io.nowMs()) return;
    this.startAtMs = this.activeMs + afterMs + heartbeatMs;
    // Written now: a group with no client work since its start (nothing committed) kept none,
    // and each start the alarm made counted from itself, evicted again before its sleep.
    this.core.keepActive(this.activeMs);
    this.io.startAt(this.startAtMs);
  }

  /**
   * Nothing under way that needs the heartbeats: no command queued or waiting, every ordered entry
   * committed, no change, restore, transfer, confirmation, or record left to write, no replica
   * awaiting its rebuild. A replica still catching up is not waited for: its send loop goes on
   * without the timer, and one that is down is caught up once the group wakes. One quarantined
   * has no vote until rebuilt, and asleep nothing retries a rebuild that failed: it stayed
   * quarantined until the next client work or the daily audit (a probe). Nor a removed replica's
   * destroy owed for less than retireAwakeMs (see retiresOwed).
   */
  private quiet(): boolean {
    const c = this.core;
    return (
      c.pendingCount === 0 && this.waitingPending.size === 0 && this.waitingSeq.size === 0 && this.commitWatchers.length === 0 &&
      c.commitSeq >= c.lastLogSeq && this.confirmations.length === 0 &&
      !this.reconfiguring && !c.configChangePending && !this.restoring && this.repairing === 0 && this.startSettled && this.rebuildsOwed() === 0 &&
      this.untold.size === 0 && !this.retiresOwed() && !this.leftoversUnread && !this.leftoversReading && this.quarantineRecorded !== null && this.recordAtSeq === null
    );
  }

  /**
   * Replicas awaiting a rebuild that a retry may yet do: one only an operator can mend (every
   * source failed its scrub: repairRefusal's conflict) does not keep the group awake, logging a
   * failed repair every 2 s for ever (a review).
   */
  private rebuildsOwed(): number {
    return this.core.awaitingRebuild().filter((id) => this.repairRefusal(id)?.code !== "conflict").length;
  }

  /**
   * Waits at most waitMs for a first answer from each replica this driver has not heard from yet,
   * sending each a heartbeat now. A restarted sequencer knows no replica's position until its first
   * round, so a status asked then showed every replica lagging at seq 0 with no contact. A replica
   * that fails to answer counts a miss and is waited for no longer. Asleep, so is each replica not
   * heard from for asleepContactStaleMs: no heartbeat asks it, and one cut off since the sleep
   * showed healthy until the daily audit (a probe).
   */
  async hearUnheard(waitMs: number): Promise<void> {
    const startMs = this.io.nowMs();
    const deadlineMs = startMs + waitMs;
    // Asked (not answered) that long ago: one that stays silent was asked at every status (a review).
    const stale = this.sleepState === "asleep" ? this.core.unheardSince(startMs - asleepContactStaleMs).filter((id) => (this.lastSentMs.get(id) ?? 0) <= startMs - asleepContactStaleMs) : [];
    for (const id of [...this.core.unheardIds(), ...stale]) {
      this.beatDue.add(id);
      void this.sendLoop(id);
    }
    const waiting = () => this.core.unheardIds().length > 0 || stale.some((id) => this.sending.has(id));
    while (!this.stopped && waiting() && this.io.nowMs() < deadlineMs) {
      await new Promise<void>((resolve) => this.io.setTimer(unheardPollMs, resolve));
    }
  }

  /** The per-replica maps above, less the replicas no longer in the group: they stay bounded by its size. */
  private forgetRemoved(): void {
    const ids = new Set(this.core.replicaIds());
    for (const map of this.perReplicaMaps()) {
      for (const id of map.keys()) if (!ids.has(id)) map.delete(id);
    }
  }

  /** Every replica id this driver keeps per-replica state for (a removed one is forgotten within a heartbeat). */
  trackedIds(): string[] {
    const ids = new Set<string>();
    for (const map of this.perReplicaMaps()) for (const id of map.keys()) ids.add(id);
    return [...ids].sort();
  }

  private perReplicaMaps(): Map<string, unknown>[] {
    return [this.retryAtMs, this.repairFailures, this.badSources, this.scrubFailed, this.copySuspects, this.installFailed, this.lastRepairError, this.lastSentMs, this.ackedSentMs, this.heldSinceMs, this.rebuilds, this.unendedInstalls];
  }

  /**
   * When a quorum of voters last installed a restore from this sequencer: counted as hearing it for
   * the cut-off report only (not for the read lease, whose acknowledgements a fence reports). A
   * large restore holds the object's thread for many seconds, no heartbeat goes out, and its 200
   * said the sequencer was cut off from its replicas (`noQuorumMs`), though a quorum had just
   * installed the file (a probe).
   */
  restoredAtMs = 0;

  /** The latest time at which a quorum of voters had acknowledged a message sent then (null: never). */
  private quorumHeardSinceMs(): number | null {
    return this.core.votingConfig().committed((id) => this.ackedSentMs.get(id) ?? null);
  }

  /**
   * How long this sequencer has gone without a quorum of voters acknowledging a message in time
   * (since its start if never): what it tells a router that may fail it over when cut off
   * (failover.ts, "cut off"). Acknowledgements count by send time and only within the append
   * timeout, so late answers over a slow link never make it look heard.
   */
  quorumLostMs(): number {
    // Never heard reads as 0 (a voter without an acknowledgement counts as position 0).
    // Asleep it sends nothing and expects no answer: how far it reaches is unknown, not lost.
    if (this.sleepState === "asleep") return 0;
    return this.io.nowMs() - Math.max(this.quorumHeardSinceMs() ?? 0, this.startedMs, this.restoredAtMs, this.wokeMs);
  }

  /** Why there is no quorum: how many voters answer lately, or (all answer, late) that none acknowledges in time. */
  private noQuorum(): string {
    const reach = this.core.reachableVoters();
    if (reach.count < reach.need) return `only ${reach.count} voting ${reach.count === 1 ? "replica" : "replicas"} reachable, ${reach.need} needed`;
    return "this sequencer cannot reach a quorum of voters in time";
  }

  /** Whether this sequencer reaches a quorum of the voters in force now (else it may be the one cut off). */
  reachesQuorum(): boolean {
    const reach = this.core.reachableVoters();
    return reach.count >= reach.need;
  }

  /** How long without a quorum, once that is sequencerTimeoutMs or more while serving (cut off); else null. */
  cutOffMs(): number | null {
    if (this.stopped || this.core.fenced) return null;
    const lostMs = this.quorumLostMs();
    return lostMs >= sequencerTimeoutMs ? lostMs : null;
  }

  private cutOff(): boolean {
    return this.cutOffMs() !== null;
  }

  /** A 503 answer; past sequencerTimeoutMs without a quorum it says so (cutOffMs), which a router may act on. */
  private refuse(message: string): Unavailable {
    const lostMs = this.cutOffMs();
    if (lostMs === null) return { kind: "unavailable", message };
    return { kind: "unavailable", message: `${message}; no quorum of voters has acknowledged this sequencer for ${lostMs} ms`, cutOffMs: lostMs };
  }

  /** One heartbeat round: true once a quorum (of the voters, or of `quorum`) acknowledged a message sent at or after now. */
  private confirm(quorum?: MajorityConfig): Promise<boolean> {
    const sinceMs = this.io.nowMs();
    return new Promise((resolve) => {
      const entry = {
        sinceMs,
        quorum,
        done: (ok: boolean) => {
          cancel();
          resolve(ok);
        },
      };
      const cancel = this.io.setTimer(confirmWaitMs, () => {
        this.confirmations = this.confirmations.filter((c) => c !== entry);
        resolve(false);
      });
      this.confirmations.push(entry);
      for (const id of this.core.replicaIds()) {
        this.beatDue.add(id);
        void this.sendLoop(id);
      }
    });
  }

  private checkConfirmations(): void {
    if (this.confirmations.length === 0) return;
    const ofVoters = this.quorumHeardSinceMs();
    const heard = (c: { quorum?: MajorityConfig }) => (c.quorum ? c.quorum.committed((id) => this.ackedSentMs.get(id) ?? null) : ofVoters);
    const ready = this.confirmations.filter((c) => (heard(c) ?? -Infinity) >= c.sinceMs);
    if (ready.length === 0) return;
    this.confirmations = this.confirmations.filter((c) => !ready.includes(c));
    for (const c of ready) c.done(true);
  }

  /** Replicas whose next message is being held back, since when. */
  private readonly heldSinceMs = new Map<string, number>();
  private holdTimerArmed = false;

  /**
   * Whether a message may wait (nextAppend says it could; at most holdMessageMs, then a timer kicks the
   * loops and it goes). Two kinds:
   * - commit-only, "first" outputs: one prompt output answers the client, so only the replica
   *   whose own answer advanced the commit is told at once; the others learn it with their next
   *   entries, which under load follow within a millisecond or two. "majority" outputs need
   *   every vote: no waiting.
   * - new entries another voter has in flight, under load only (holdWhenWaitingMin commands
   *   waiting): once that ack is in, the message carries the commit of those entries and this
   *   replica answers with their outputs at once, instead of an append now and a commit-only
   *   message later. A lone client never waits.
   * (A timer callback, not an awaited sleep: see the backoff above.)
   */
  private holdBack(id: string, why: HoldReason, advancedCommit: boolean): boolean {
    if (why === "commit-only" && (advancedCommit || this.core.config.outputs !== "first")) return false;
    if (why === "in-flight-elsewhere" && this.waitingPending.size + this.waitingSeq.size < holdWhenWaitingMin) return false;
    const now = this.io.nowMs();
    const since = this.heldSinceMs.get(id);
    if (since === undefined) this.heldSinceMs.set(id, now);
    else if (now - since >= holdMessageMs) return false;
    if (!this.holdTimerArmed) {
      this.holdTimerArmed = true;
      this.io.setTimer(holdMessageMs, () => {
        this.holdTimerArmed = false;
        this.kickAll();
      });
    }
    return true;
  }

  private applyStep(step: StepResult): void {
    for (const d of step.decided) {
      const list = this.waitingSeq.get(d.seq);
      this.waitingSeq.delete(d.seq);
      for (const r of list ?? []) r(d.outcome);
    }
    for (const id of step.diverged) this.quarantine(id, step.divergedAt?.get(id));
    if (step.promote) this.promote(step.promote);
    if (step.fenced && !this.stopped) {
      // A warning, said as what follows: every deposition (a failover's, a move's) logged an error
      // that said "recovering" of an object that then only asks whether it is still in office (a probe).
      this.io.log("warn", `sequencer ${this.core.config.group} at epoch ${this.core.epoch} fenced by a newer epoch: it stops, and recovers only if the group's directory still names it`);
      this.stop();
      this.io.onFenced?.();
      return;
    }
    if (step.commitAdvanced) {
      this.recordMembershipIfDue();
      this.core.compact(this.retention.entries, this.retention.slack);
      const commit = this.core.commitSeq;
      const ready = this.commitWatchers.filter((w) => w.seq <= commit);
      this.commitWatchers = this.commitWatchers.filter((w) => w.seq > commit);
      for (const w of ready) w.wake();
      this.kickAll();
    }
  }

  /**
   * A member answered that it has no state: it lost its storage (a co-located replica loses it
   * with the sequencer's object). It is made again quarantined, so a state transfer rebuilds it
   * and its acks count for nothing meanwhile, and it refuses fences until its log is back past
   * everything it may have acknowledged before (the end of this log bounds that).
   */
  private async rejoin(id: string): Promise<boolean> {
    // Not a replica removed meanwhile: a repair of it begun before its removal asks it first, and
    // its answer after the destroy ("no state") made it again, and the repair then copied the whole
    // state into it, which no membership named and no destroy was owed (a probe).
    if (!this.core.replicaIds().includes(id)) return false;
    // An empty log: nothing to have forgotten (a creation whose init has not reached it yet).
    // It counts its installs on from the most this sequencer knew of (its stamps included): from 0,
    // a tell stamped before its storage was lost was taken once it was rebuilt (a review).
    const installs = this.core.installsKnown(id);
    const rejoin = this.core.lastLogSeq > 0 ? { epoch: this.core.epoch, throughSeq: this.core.lastLogSeq, installs } : undefined;
    let made: unknown;
    let init: Promise<unknown> | null = null;
    try {
      init = this.io.link(id).init(rejoin);
      // Bounded as every replica call: a hung init held this replica's send loop (and a repair
      // that asked it) for good, its appends and heartbeats skipped once it answered again (a review).
      made = await withTimeout(this.io, init, replicaRpcTimeoutMs, `init of ${id}`);
    } catch (err) {
      this.io.log("warn", `init ${id}: ${String(err)}`);
      // Timed out, it is still on its way: one that lands after a removal's destroy is destroyed
      // again, as below (a slow replica is the one an operator replaces: a review).
      init?.then((late) => void (late !== null && !this.stopped && !this.core.replicaIds().includes(id) && this.retireOnceRecorded(id)), () => undefined);
      return false;
    }
    // Null: it belongs to a newer incarnation of the group (this one was deleted): nothing made.
    if (made === null) return false;
    // Removed while the init was on its way: it may have landed after the destroy, so it is destroyed again.
    if (!this.core.replicaIds().includes(id)) {
      if (!this.stopped) void this.retireOnceRecorded(id);
      return false;
    }
    if (rejoin && !this.stopped && this.core.setQuarantined(id, true, installs)) {
      this.io.event?.("quarantine", `replica ${id} had no state (its storage lost, or not made when the group was created): made now, quarantined until a state transfer rebuilds it`, { replica: id, action: "rejoin" });
      this.noteQuarantines();
    }
    return true;
  }

  /**
   * A quarantine the replica reported (it put itself in one: a replay that missed its digest; or
   * a sequencer before this one did), now this sequencer's too: recorded, reported, and rebuilt
   * like any. Learned from an audit only, it was a silent minute (see ReplicaCore.damage).
   */
  private learnedQuarantine(id: string, from: string): void {
    this.io.log("warn", `replica ${this.core.config.group}/${id} is quarantined (${from} said so)`);
    this.io.event?.("quarantine", `replica ${id} says it is quarantined (it quarantined itself, its state not replaying to its recorded digest, or an earlier sequencer did): rebuilt from a healthy replica if one is left`, { replica: id });
    this.noteQuarantines();
    // Rebuilt now, as an audit's quarantine is: its send loop, busy sending it the log it still
    // stores, would start the transfer only once it had nothing to send (a review).
    if (this.core.transferCandidates().includes(id)) void this.repair(id);
  }

  private quarantine(id: string, stamp?: number): void {
    const before = this.core.quarantineStamp(id);
    if (!this.core.setQuarantined(id, true, stamp)) {
      // Held quarantined already, now on newer evidence (its stamp raised): told again with it.
      if (this.core.quarantineStamp(id) !== before) this.tellQuarantined(id), this.noteQuarantines();
      return;
    }
    this.io.log("warn", `replica ${this.core.config.group}/${id} quarantined`);
    this.io.event?.("quarantine", `replica ${id} quarantined`, { replica: id });
    this.tellQuarantined(id);
    this.noteQuarantines();
  }

  /** Quarantined replicas not known to have heard it (they would serve reads): told on every heartbeat until one answers. */
  private readonly untold = new Map<string, number>();
  /** The quarantine list last given to the directory (null: to write; its ids with their stamps, `r2@1`), and the write under way (one at a time, in order). */
  private quarantineRecorded: string | null = null;
  private recordingQuarantine: Promise<void> = Promise.resolve();
  /** The quarantine list the directory is known to hold (its write answered; null: none known). */
  private quarantineLanded: string | null = null;

  /**
   * After any change of the quarantined set, the directory keeps the list (a successor keeps them
   * quarantined). The replica's own flag was the only record before: told once, without retry, a
   * replica cut off or slow never knew, and after a failover it was reported healthy and served
   * its corrupt rows. (Replicas quarantined otherwise, by a failed replay or a rejoin, know.)
   */
  private noteQuarantines(): void {
    if (this.stopped) return;
    const ids = this.core.quarantinedIds().filter((id) => !this.installing.has(id)).sort();
    const stamps = this.core.quarantineStamps();
    // The stamps too: one raised by newer evidence is written again (a successor tells it).
    const key = ids.map((id) => `${id}@${stamps[id] ?? ""}`).join(",");
    if (key === this.quarantineRecorded) return;
    this.quarantineRecorded = key;
    const write = async () => {
      const kept = await this.io.recordQuarantined?.(ids, Object.fromEntries(ids.filter((id) => stamps[id] !== undefined).map((id) => [id, stamps[id]!]))).then(
        (k) => (k !== false && (this.quarantineLanded = key), k), // refused (deposed): not held there
        (err) => {
          this.quarantineRecorded = null; // written again at the next change or heartbeat
          this.io.log("warn", `recording the quarantined replicas of ${this.core.config.group}: ${String(err)}`);
          return true;
        },
      );
      // Refused: deposed (the lifecycle stops it) or the group is being deleted, whose DELETE
      // woke this object. Logged as a warning, 81 of 204 idle groups deleted said so (a probe).
      if (kept === false) this.io.log("info", `the directory of ${this.core.config.group} did not take its quarantine list (this sequencer is no longer in office, or the group is being deleted)`);
    };
    this.recordingQuarantine = this.recordingQuarantine.then(write, write);
  }

  /**
   * Replicas whose install has begun: each holds its own quarantine flag (beginInstall wrote it)
   * until the install ends, so the directory's list leaves them out, and the install does not
   * end before the directory has taken that list (untilListedWithout). Listed there when the
   * install ended, a replica rebuilt just before a move or a failover was told "quarantined" by
   * the successor, which recovers from that list: rebuilt again, its log emptied, it refused every
   * fence until it caught up, and with one more replica lost no recovery could take office (the
   * simulator, seed 276791773: a move 42 ms after the install ended).
   */
  private readonly installing = new Set<string>();
  /** Replicas whose install's begin is under way (beginInstallOn), not yet in `installing`. */
  private readonly beginning = new Set<string>();
  /** A source's snapshot end under way (copyTo): its next snapshot waits for it (bounded by the call's timeout). */
  private readonly snapshotEnds = new Map<string, Promise<unknown>>();

  /** True once the directory holds a quarantine list without `id` (a write under way waited for, bounded). */
  private async untilListedWithout(id: string): Promise<boolean> {
    this.noteQuarantines();
    await withTimeout(this.io, this.recordingQuarantine, directoryWriteTimeoutMs, "the quarantine list").catch(() => undefined);
    // Its write answered, not only asked (one still under way past the wait may land after the
    // install's end). Writes go in order, and every one after it leaves `id` out as well.
    const landed = this.io.recordQuarantined ? this.quarantineLanded : this.quarantineRecorded; // no directory: nothing to wait for
    return landed !== null && !landed.split(",").some((entry) => entry.split("@")[0] === id);
  }

  /**
   * An install's begin and end on `target`, the directory's list and the tells kept in step (see
   * `installing`): a tell still under way waits first, as a release's does (sent before the
   * rebuild began, it landed after its install ended and quarantined the rebuilt replica again:
   * the simulator, seed 1367861615; one that outlives its call's timeout still can, see
   * docs/PROTOCOL.md), and the end waits for the directory.
   */
  private async beginInstallOn(target: string, progress: InstallProgress, begin: () => Promise<boolean>): Promise<boolean> {
    await withTimeout(this.io, this.telling.get(target) ?? Promise.resolve(), replicaRpcTimeoutMs, `the quarantine told to ${target}`).catch(() => undefined);
    // The tell was refused as older than the target's last install (staleQuarantine): rebuilt
    // already, it needs no transfer, and one now would empty its log for nothing. (An operator's
    // repair of a replica that needed none goes on.)
    if (progress.needed && !this.core.needsRebuild(target)) throw new Unneeded(`${target} was rebuilt after its quarantine was decided`);
    progress.begun = true; // from here the target may hold a half-done transfer
    // No stale tell ends the quarantine while the install is being begun (a review: in that window
    // the sequencer's quarantine ended mid-install, and its list flapped).
    this.beginning.add(target);
    try {
      if (!(await begin())) return false;
    } finally {
      this.beginning.delete(target);
    }
    this.installing.add(target);
    return true;
  }

  private async endInstallOn<T>(target: string, end: () => Promise<T>, install?: { transferId: string; seq: number; source: string }): Promise<T> {
    if (!(await this.untilListedWithout(target))) throw new Error(`the directory did not take the quarantine list without ${target} within ${directoryWriteTimeoutMs / 1000} s: its install is not ended (a successor would quarantine it again)`);
    // Asked once more when no answer came: the end may have happened, and the target answers the
    // same transfer's end again with its outcome (ReplicaMeta.installed). Taken for a failure, the
    // rebuilt replica was told "quarantined" and rebuilt once more (the simulator, seed 1184612567).
    // Both unanswered: the next repair asks again before it begins another install (unendedInstalls;
    // the caller forgets it once an answer came).
    if (install) this.unendedInstalls.set(target, install);
    return end().catch((err: unknown) => (this.stopped ? Promise.reject(err) : end()));
  }

  /**
   * The end of an install whose answer never came, asked again (the target answers a repeated end
   * with its outcome): ended, the target holds a verified copy at that seq and needs no other
   * (the position installed); not that transfer's, or it failed, null and a repair as usual. No
   * answer again: this repair fails, and begins no install on a target that may be rebuilt.
   */
  private async endUnanswered(target: string, progress: InstallProgress): Promise<number | null> {
    const install = this.unendedInstalls.get(target);
    if (install === undefined) return null;
    progress.begun = true; // it may hold that half-done transfer (no answer: endRepair notes it rebuilding)
    this.installing.add(target);
    const done = await this.endInstallOn(target, () => this.targetCall(target)(this.io.link(target).endInstall(install.transferId), `install end on ${target}`), install);
    this.unendedInstalls.delete(target);
    // Not ended: a repair as usual, whose sources each have their chance (nothing of this repair's
    // is on the target yet: begun, the first source's refusal failed the whole repair).
    if (!done?.ok) return (progress.begun = false), null;
    // Ended, but judged diverged since (a quarantine decided on an answer at that install's count or
    // later: damage found after it): that install's end says nothing of the rows it holds now.
    const stamp = this.core.quarantineStamp(target);
    if (stamp !== undefined && (done.installs ?? 0) <= stamp) return (progress.begun = false), null;
    progress.installs = done.installs ?? 0;
    if (done.storageBytes !== undefined) this.core.noteStorage(target, done.storageBytes);
    this.io.log("warn", `replica ${this.core.config.group}/${target} rebuilt from ${install.source} at seq ${install.seq} (its install's end answered late)`);
    this.io.event?.("repair", `replica ${target} rebuilt from ${install.source} at seq ${install.seq}`, { replica: target, source: install.source, seq: install.seq });
    return install.seq;
  }

  /** Tells under way to each replica (a release waits for them: see release). */
  private readonly telling = new Map<string, Promise<unknown>>();
  /** Replicas an operator's release is under way for: not told "quarantined" meanwhile. */
  private readonly releasing = new Set<string>();

  private tellQuarantined(id: string): void {
    // Each tell has its generation: only the newest one's answer settles it (an old one's success
    // must not clear a newer tell that failed, after a release and a second quarantine).
    const generation = (this.untold.get(id) ?? 0) + 1;
    this.untold.set(id, generation);
    const stamp = this.core.quarantineStamp(id);
    const told = this.io.link(id).setQuarantined(true, this.core.epoch, stamp);
    // Its answer is acted on before a repair waiting for the tell (beginInstallOn) goes on.
    told.then(
      (answer) => {
        if (this.untold.get(id) === generation) this.untold.delete(id);
        if (answer?.stale && stamp !== undefined) this.staleQuarantine(id, stamp, answer.installs);
      },
      (err) => this.io.log("warn", `telling ${id} it is quarantined (told again at the next heartbeat): ${String(err)}`),
    );
    const settled = told.catch(() => undefined);
    this.telling.set(id, settled);
    void settled.then(() => this.telling.get(id) === settled && this.telling.delete(id));
  }

  /**
   * The replica refused a quarantine decided at install count `stamp`: it has installed a state
   * transfer since (`installs`), a verified copy of a healthy replica's rows, newer than what the
   * quarantine judged. The quarantine ends here too. A sequencer that restarted between an
   * install's end and its answer held the rebuilt replica quarantined and rebuilt it again (a
   * needless rebuild: its log emptied, it refused every fence until caught up).
   */
  private staleQuarantine(id: string, stamp: number, installs: number): void {
    // Decided again since (another stamp), or an install of this sequencer's own under way.
    if (this.stopped || this.core.quarantineStamp(id) !== stamp || this.installing.has(id) || this.beginning.has(id) || this.releasing.has(id)) return;
    if (!this.core.setQuarantined(id, false)) return;
    this.io.log("info", `replica ${this.core.config.group}/${id} was rebuilt (install ${installs}) after its quarantine was decided (at install ${stamp}): no longer quarantined`);
    this.io.event?.("quarantine", `replica ${id} was rebuilt by a state transfer after it was quarantined: the quarantine is over`, { replica: id, action: "rebuilt" });
    this.noteQuarantines();
    this.kickAll();
  }

  /**
   * The operator's new storage quota: in force here at once, and recorded in the directory, whose
   * config a successor (a failover, a move, a recovery) starts from. Not recorded (this sequencer
   * deposed meanwhile, the directory out of reach): `unknown` (a 504), since this sequencer keeps
   * it and may record it later; a retry records it.
   */
  async setQuota(mib: number): Promise<{ ok: true } | { ok: false; reason: string; unknown?: true }> {
    await this.untilSettled();
    if (this.stopped) return { ok: false, reason: "the sequencer is stopping" };
    // The record is the whole config: written during a membership change, it dropped the change's
    // write-ahead (inFlight) from the directory, which a successor recovers by (a review).
    // Pending also while a new sequencer's start (a move, a failover) is not known committed: the
    // message named a membership change where there was only a move (a probe).
    if (this.reconfiguring) return { ok: false, reason: "a membership change is under way; retry once it is done" };
    if (this.core.configChangePending) return { ok: false, reason: "the log holds a membership change not known committed yet (a change under way, or a new sequencer's start after a move or a failover); retry in a moment" };
    const before = storageQuotaMiBOf(this.core.config);
    this.core.setQuota(mib);
    if (before !== mib) this.io.log("info", `the storage quota of ${this.core.config.group} is ${mib} MiB (was ${before})`);
    this.wake();
    // In force here whatever the record does, and recorded later (the next membership record):
    // not "certainly not done" (a 503), but unknown for a successor until a retry records it.
    if (!(await this.record(this.core.config))) return { ok: false, unknown: true, reason: `the quota of ${mib} MiB is in force at this sequencer, but the directory did not take it in time (this sequencer may be leaving office): a successor may start from the one before; retry to record it` };
    return { ok: true };
  }

  /** The operator's release of a quarantined replica (see ReplicaCore.release). */
  async release(id: string, rebase: boolean): Promise<{ ok: true } | { ok: false; reason: string; unavailable?: boolean }> {
    if (this.stopped) return { ok: false, reason: "the sequencer is stopping", unavailable: true };
    if (!this.core.replicaIds().includes(id)) return { ok: false, reason: `no replica ${id} in this group` };
    // Released between a repair's start and its install, it voted with a log the install then
    // cleared (a review): the rebuild releases it when it ends.
    const rebuilding = { ok: false as const, reason: `replica ${id} is being rebuilt (a state transfer is under way; its status shows the progress): it is released when the rebuild ends; retry after it if it is still quarantined`, unavailable: true };
    if (this.core.isRepairing(id)) return rebuilding;
    if (this.releasing.has(id)) return { ok: false, reason: `a release of replica ${id} is under way; retry`, unavailable: true };
    this.releasing.add(id);
    try {
      return await this.releaseNow(id, rebase, rebuilding);
    } finally {
      this.releasing.delete(id);
    }
  }

  /**
   * release, one at a time per replica. A tell of "quarantined" still on its way (sent before, or
   * by a heartbeat's re-tell during the release's calls) landed after the release and quarantined
   * the replica again, which its next append answer then reported as its own doing (a review):
   * none is sent while a release is under way, and the ones under way are waited for first.
   */
  private async releaseNow(id: string, rebase: boolean, rebuilding: { ok: false; reason: string; unavailable: boolean }): Promise<{ ok: true } | { ok: false; reason: string; unavailable?: boolean }> {
    // `untold` stays: a release that fails leaves the replica quarantined, and the heartbeats must
    // go on telling it (dropped here, a replica that had not heard it served its suspect rows: a
    // review); one that succeeds is cleared from it by the next heartbeat.
    await withTimeout(this.io, this.telling.get(id) ?? Promise.resolve(), replicaRpcTimeoutMs, `the quarantine told to ${id}`).catch(() => undefined);
    const repairs = this.core.repairsOf(id);
    this.wake();
    // Quarantined by neither this sequencer nor its own flag: nothing to release. It answered 200
    // and wrote a "released by an operator" event for a healthy replica each time (a probe).
    if (!this.core.quarantinedIds().includes(id)) {
      const p = await withTimeout(this.io, this.io.link(id).position(), replicaRpcTimeoutMs, `position of ${id}`).catch(() => null);
      // But a rebase of one whose rows failed the scrub, when a quorum did and nobody was
      // quarantined (the audit's alarm): the way to a replica the others can be repaired from.
      // (Its own word counts: this sequencer may have started since the audit.)
      if (p && !p.quarantined && !(rebase && (this.scrubFailed.has(id) || p.scrubFailed))) return { ok: false, reason: `replica ${id} is not quarantined: nothing to release${p.scrubFailed ? "; its rows failed its last scrub: release it with rebase to take them as they are" : ""}` };
    }
    // Not reached is a 503 to retry, not the replica's refusal (a probe saw a 409 quoting the error).
    const r = await withTimeout(this.io, this.io.link(id).release(rebase), replicaRpcTimeoutMs, `release of ${id}`).catch((err: unknown) => ({
      ok: false,
      digest: "",
      reason: `replica ${id} did not answer (${err instanceof Error ? err.message : String(err)}); retry`,
      unavailable: true,
    }));
    if (!r.ok) return { ok: false, reason: r.reason ?? "refused", ...("unavailable" in r ? { unavailable: true } : {}) };
    if (this.stopped) return { ok: false, reason: "the sequencer is stopping", unavailable: true };
    // A repair begun (or ended) while it was asked: the rebuild decides (checked before the calls only, a review).
    if (this.core.isRepairing(id) || this.core.repairsOf(id) !== repairs) return rebuilding;
    this.markScrub(id, false); // its rows are its digest's now
    this.core.setQuarantined(id, false);
    this.noteQuarantines();
    this.core.noteContact(id, true, this.io.nowMs());
    this.io.event?.("quarantine", `replica ${id} released by an operator${rebase ? " (rebased on its rows)" : ""}`, { replica: id, digest: r.digest, action: "release" });
    this.kickAll();
    return { ok: true };
  }

  // ---- reconfiguration ----------------------------------------------------------------------

  /**
   * Adds a replica: it is created, joins (receives the log, or a state transfer if the log it
   * needs is compacted), and gets its vote once caught up. Answers once the add is committed.
   */
  async addReplica(location: string | null): Promise<{ ok: true; id: string } | ({ ok: false } & Refused)> {
    await this.untilSettled();
    // Refused before anything is provisioned (a full group stays a 409 whatever else is under way).
    const id = `r${nextReplicaNo(this.core.config)}`;
    const refused = this.changeCheck({ op: "add", id, location }) ?? (this.reconfiguring ? refusal("change_pending") : null);
    if (refused !== null) return { ok: false, ...refused };
    this.wake();
    // The change is under way from here, through the provision: a second add begun while this
    // one provisioned took the same id and provisioned it again (destroying the replica this one
    // was about to order), and a removal or promotion begun meanwhile was ordered first, so this
    // add was refused after its replica was made, which nothing destroyed, not even the group's
    // DELETE (it destroys the ids up to lastReplicaNo): a probe's concurrent adds and removes.
    this.reconfiguring = true;
    try {
      try {
        await this.io.provision?.(id, location);
      } catch (err) {
        // Answered as a refusal: thrown, it reached the router as the sequencer's own exception (a 500).
        return { ok: false, ...refusal("not_made", id, String(err)) };
      }
      // Refused after the provision (deposed, a restore begun, the membership moved on), the
      // replica just made stays: no config names it, so the next add takes its id and provisions
      // it again, and the group's DELETE destroys one id past lastReplicaNo (SequencerObject.destroy).
      // Destroying it here raced that next add, or a successor's after a failover: a review.
      const r = await this.reconfigureHeld({ op: "add", id, location });
      return r.ok ? { ok: true, id } : r;
    } finally {
      this.reconfiguring = false;
    }
  }

  /**
   * Removes a replica; once the removal is committed its storage is destroyed, after the answer
   * (a failed destroy is tried again at the next heartbeat, see retireAwakeMs): awaited, a replica
   * slowed 15 s held the removal's answer 10 s (replicaDestroyTimeoutMs) after it had committed (a probe).
   */
  async removeReplica(id: string): Promise<{ ok: true } | ({ ok: false } & Refused)> {
    const r = await this.reconfigure({ op: "remove", id });
    if (r.ok) void this.retireOnceRecorded(id);
    return r;
  }

  /** Removed replicas whose destruction was tried and has not succeeded: tried again at each heartbeat (a removed member's id never comes back, so at most one per removal). */
  private readonly retireAgain = new Set<string>();
  /** Removed replicas whose destroy is under way: one try at a time (a slow one spans heartbeats). */
  private readonly retiring = new Set<string>();
  /** Removed replicas asked to be destroyed again while a destroy of theirs was under way: destroyed once more after it. */
  private readonly retireRerun = new Set<string>();
  /** Since when each removed replica's destroy is owed (due, under way, failed or awaiting its record), until it succeeds. */
  private readonly retireOwedMs = new Map<string, number>();

  /**
   * Whether a removed replica's destroy owed for less than retireAwakeMs keeps the group awake.
   * quiet() asked retireAgain alone, which each heartbeat emptied before its try, and the try's
   * failure came after the heartbeat had put the group to sleep: asleep, nothing tried again, and
   * the removed replica kept its whole state until client work woke the group (a probe). Bounded:
   * one that never answers must not keep the group awake for good.
   */
  private retiresOwed(): boolean {
    const now = this.io.nowMs();
    for (const sinceMs of this.retireOwedMs.values()) if (now - sinceMs < retireAwakeMs) return true;
    return false;
  }

  /** Tries again each destroy that failed (not one under way): at each heartbeat, at a wake's first, and at each audit (asleep: the cron's, once a day). */
  private retireAgainNow(): void {
    for (const id of this.retireAgain) if (!this.retiring.has(id)) void this.retire(id);
  }

  /**
   * Whether `id` has left the membership for good: its removal committed. Appended only, a
   * failover could lose it and leave `id` a member, so a change in flight is waited for (up to a
   * command's timeout). A repair answered 404 "removed" for a removal that was then lost (a review).
   */
  async removedForGood(id: string): Promise<boolean> {
    if (this.core.replicaIds().includes(id)) return false;
    if (!this.core.configChangePending) return true;
    const committed = await this.waitCommitted(this.core.configChangeSeq, commandTimeoutMs);
    return committed && !this.core.replicaIds().includes(id);
  }

  private async retire(id: string): Promise<void> {
    // One under way may have erased the replica before what asks again made it (a rejoin's init
    // landing after the erase, before the directory's `retired` answered): once more after it.
    if (this.retiring.has(id)) return void this.retireRerun.add(id);
    // Never a replica the membership names (or a change in flight, or an add under way): checked
    // at each try, as a retry comes a heartbeat or more after the list was read.
    if (this.named(id)) {
      this.retireAgain.delete(id);
      this.retireOwedMs.delete(id);
      return;
    }
    if (!this.retireOwedMs.has(id)) this.retireOwedMs.set(id, this.io.nowMs());
    // Listed in retireAgain until it succeeds, not only once it failed: see retiresOwed.
    this.retireAgain.add(id);
    this.retiring.add(id);
    try {
      await this.io.retire?.(id);
      this.retireAgain.delete(id);
      this.retireOwedMs.delete(id);
    } catch (err) {
      // It was logged and dropped: the removed replica's storage stayed until the group was deleted.
      if (this.stopped) this.retireAgain.delete(id);
      this.io.log("warn", `destroying removed ${id} (tried again at the next heartbeat): ${String(err)}`);
    } finally {
      this.retiring.delete(id);
      if (this.retireRerun.delete(id) && !this.stopped) void this.retire(id);
    }
  }

  /** The last membership the directory took with no change in flight (null: none since this start). */
  private lastRecorded: Set<string> | null = null;
  /** Removed replicas whose storage waits for the directory to stop naming them (bounded by replicasMax changes in flight). */
  private readonly retireWhenRecorded = new Set<string>();

  /**
   * Destroys a removed replica's storage once the directory records a membership without it, not
   * before: until then its record may still hold the change in flight, and any recovery must fence a
   * quorum of the old membership, the removed replica included. Destroyed first, a group of two
   * that removed one could never recover again once the directory was unreachable at the commit
   * and the sequencer was then lost (a review's finding, reproduced in a unit test).
   */
  private async retireOnceRecorded(id: string): Promise<void> {
    if (this.lastRecorded !== null && !this.lastRecorded.has(id)) return this.retire(id);
    this.retireWhenRecorded.add(id);
    // Owed from now: a group asleep before the record landed left its retry to the wake.
    if (!this.retireOwedMs.has(id)) this.retireOwedMs.set(id, this.io.nowMs());
  }

  private recorded(config: GroupConfig): void {
    this.lastRecorded = new Set(membersOf(config).map((m) => m.id));
    for (const id of this.retireWhenRecorded) {
      if (this.lastRecorded.has(id)) continue;
      this.retireWhenRecorded.delete(id);
      void this.retire(id);
    }
  }

  /**
   * False from a start until the directory's record has been read (settleStart): a change begun
   * before would have its own write-ahead read back and finished as the inherited one (its event
   * written before it committed, and twice; a review's finding).
   */
  private get startSettled(): boolean {
    return this.settled === null;
  }
  /** Set from a start until it settles (or the driver stops): changes wait for it (untilSettled). */
  private settled: { promise: Promise<void>; resolve: () => void } | null = null;

  holdChanges(): void {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    this.settled = { promise, resolve };
  }

  /**
   * Waits at most startSettleWaitMs for the start to settle. A change was refused at once before,
   * as "another membership change is not committed yet" with none under way: the first change after
   * every wake from idle, move or failover (a probe: the request that woke the sequencer).
   */
  private async untilSettled(): Promise<void> {
    if (this.settled === null) return;
    let cancel = () => {};
    const waited = new Promise<void>((resolve) => (cancel = this.io.setTimer(startSettleWaitMs, resolve)));
    await Promise.race([this.settled.promise, waited]);
    cancel();
  }

  private releaseSettled(): void {
    this.settled?.resolve();
    this.settled = null;
  }

  /**
   * A start's settling, once the directory's record (`directory`: null if none of this
   * sequencer's) is read: the replica numbers it names are never given again (an add cut short by
   * a restart had provisioned one the log never got, a retried add got the same id, and finishing
   * the inherited change then destroyed the new member's storage: a review's finding), the change
   * it holds in flight is finished, and the log's membership is recorded once committed.
   */
  settleStart(directory: GroupConfig | null, changes: { seq: number; change: ConfigChange }[], atSeq: number): void {
    this.releaseSettled();
    if (directory) {
      const named = [...membersOf(directory), ...(directory.inFlight ?? []).flat()].map((m) => Number(m.id.slice(1)));
      this.core.reserveReplicaNo(Math.max(directory.lastReplicaNo ?? 0, ...named));
      if (directory.inFlight) this.finishInherited(directory.inFlight, changes, atSeq);
    }
    this.recordMembershipAt(atSeq);
    void this.retireLeftovers();
  }

  /**
   * Destroys the removed replicas an earlier sequencer (or this one, before a restart) did not:
   * the directory lists them until one is destroyed (only removed members, whose ids never come
   * back). Failures are tried again at each heartbeat.
   */
  private async retireLeftovers(): Promise<void> {
    let ids: string[];
    // Owed while it is read (see retiresOwed): a read slower than the fall asleep let the group
    // sleep first, and the destroy that then failed waited for a wake or an audit (a review).
    // Bounded: one that never answers is a failed read, read again at the next heartbeat.
    this.leftoversReading = true;
    try {
      ids = (await withTimeout(this.io, this.io.leftovers?.() ?? Promise.resolve([]), directoryWriteTimeoutMs, `the replicas of ${this.core.config.group} to destroy`)) ?? [];
    } catch (err) {
      // Read again at the next heartbeat: once, a failed read left the list for the next sequencer (a review).
      this.leftoversUnread = true;
      this.io.log("warn", `reading the replicas of ${this.core.config.group} to destroy (read again at the next heartbeat): ${String(err)}`);
      return;
    } finally {
      this.leftoversReading = false;
    }
    this.leftoversUnread = false;
    if (this.stopped) return;
    for (const id of ids) void this.retire(id);
  }

  /** The start's read of the replicas to destroy failed: tried again at the heartbeats. */
  private leftoversUnread = false;
  /** The read of the replicas to destroy is on its way. */
  private leftoversReading = false;

  /** Whether the membership names this replica, a change in flight does, or an add under way may be making it. */
  private named(id: string): boolean {
    const config = this.core.config;
    if ([...membersOf(config), ...(config.inFlight ?? []).flat()].some((m) => m.id === id)) return true;
    return this.reconfiguring && id === `r${nextReplicaNo(config)}`;
  }

  /**
   * At a start whose directory record still held a change in flight (this sequencer restarted, or
   * its predecessor was lost, before the end was recorded): once the log up to `atSeq` commits (a
   * recovery's no-op), its membership is the group's for good, and the change is finished as its
   * own sequencer would have: the event of each replica it added or removed, and the storage of a removed one
   * destroyed (once the directory records it gone: retireOnceRecorded), as is that of a replica
   * provisioned for an add that never reached the log. Not before the commit: until then a later
   * recovery fencing another quorum could make a replica destroyed here a voter again. (If the
   * predecessor saw the commit and only its record was lost, its events were written already and
   * are written again here.)
   */
  finishInherited(inFlight: Member[][], changes: { seq: number; change: ConfigChange }[], atSeq: number): void {
    const members = new Set(membersOf(this.core.config).map((m) => m.id));
    const before = new Set(inFlight[0]!.map((m) => m.id));
    const named = [...new Set(inFlight.flat().map((m) => m.id))];
    const seqOf = (id: string) => changes.findLast((c) => c.change.id === id && c.change.op !== "promote")?.seq ?? atSeq;
    const finish = () => {
      for (const id of named) {
        if (members.has(id) && !before.has(id)) this.changeCommitted({ op: "add", id, location: null }, seqOf(id));
        if (members.has(id)) continue;
        if (before.has(id)) this.changeCommitted({ op: "remove", id }, seqOf(id));
        void this.retireOnceRecorded(id);
      }
    };
    if (this.core.commitSeq >= atSeq) finish();
    else this.whenCommitted(atSeq, finish);
  }

  /** A committed change's event (a promotion is part of an add: none of its own). */
  private changeCommitted(change: ConfigChange, seq: number): void {
    if (change.op === "promote") return;
    const added = change.op === "add";
    this.io.event?.(added ? "replica-added" : "replica-removed", `replica ${change.id} ${added ? "added" : "removed"} at seq ${seq}`, { replica: change.id, seq });
  }

  private reconfiguring = false;
  /**
   * Once this seq commits, the membership of the log is recorded in the directory (its `inFlight`
   * cleared): after a recovery (its no-op), after a start (everything the log held), after a
   * change whose commit was not seen in time. Left in the directory, a finished change's joint
   * membership kept demanding a quorum of the old one: the simulator found a group whose old
   * membership had two voters, one of them lost with the sequencer's storage, that could never
   * recover again (seed 1690053799).
   */
  private recordAtSeq: number | null = null;
  /** Directory writes of the membership, one at a time and in order (a write-ahead must not be overtaken). */
  private recording: Promise<boolean> = Promise.resolve(true);
  /** Directory writes queued and not settled (a hung one included). */
  private recordsPending = 0;

  /** Records the log's membership once everything up to seq is committed (at once if it is). */
  recordMembershipAt(seq: number): void {
    this.recordAtSeq = Math.max(this.recordAtSeq ?? 0, seq);
    this.recordMembershipIfDue();
  }

  private recordMembershipIfDue(): void {
    if (this.recordAtSeq === null || this.core.commitSeq < this.recordAtSeq || this.stopped) return;
    // A change under way records its own membership when it ends (or sets recordAtSeq again).
    if (this.reconfiguring || this.core.configChangePending) return;
    // Nor behind a write not settled: due again at a heartbeat once it is. Each timed-out record
    // queued one more behind a hung write, every 5 s, all landing at once later (a review).
    if (this.recordsPending > 0) return;
    const seq = this.recordAtSeq;
    this.recordAtSeq = null;
    // A write that fails is due again (the next commit advance or heartbeat tries it): left in
    // the directory, a finished change's inFlight makes a later recovery start from the old
    // membership, and once compaction drops the change's entry it cannot see the change at all.
    void this.record(this.core.config).then((ok) => {
      if (!ok && !this.stopped) this.recordAtSeq = Math.max(this.recordAtSeq ?? 0, seq);
    });
  }

  private async reconfigure(change: ConfigChange): Promise<{ ok: true } | ({ ok: false } & Refused)> {
    await this.untilSettled();
    if (this.reconfiguring) return { ok: false, ...refusal("change_pending") };
    this.wake();
    this.reconfiguring = true;
    try {
      return await this.reconfigureHeld(change);
    } finally {
      this.reconfiguring = false;
    }
  }

  /**
   * Why `change` cannot go now (null: it may), the driver's state first, then the core's. A
   * restore being staged or installed refuses it as it does commands: the core's mark
   * (restoreRefusal) covers only the install, so a change while the file was uploading was
   * ordered, its config entry gave the group an entry, and the restore was refused (409) once the
   * whole file had been sent (a probe); one begun while an add provisioned refuses the add.
   */
  private changeCheck(change: ConfigChange): Refused | null {
    if (this.stopped) return refusal("stopping");
    if (this.restoring) return refusal("restoring");
    const shape = this.core.shapeRefusal(change);
    if (shape !== null) return shape;
    if (!this.startSettled) return refusal("starting");
    if (this.core.configChangePending) return refusal("change_pending");
    return this.core.changeRefusal(change);
  }

  /** A change, with `reconfiguring` already set by the caller (who clears it). */
  private async reconfigureHeld(change: ConfigChange): Promise<{ ok: true } | ({ ok: false } & Refused)> {
    let early = this.changeCheck(change);
    // The strict check (changeRefusal) counts missed appends, and a replica cut off from an idle
    // group has missed none until its next heartbeat: a probe removed a healthy replica 1.5 s
    // after cutting another, and the two left could commit nothing (the change included) until
    // the cut one came back. So a quorum of the next membership's voters must also answer a
    // heartbeat sent now, before anything is recorded.
    if (early === null) {
      const voters = this.core.votersAfter(change);
      const quorum = new MajorityConfig(voters);
      if (!(await this.confirm(quorum))) early = refusal("no_quorum", change.id, `fewer than ${quorum.need} of its ${voters.length} voters answering a heartbeat within ${confirmWaitMs} ms`);
      else early = this.changeCheck(change);
    }
    if (early !== null) return { ok: false, ...early };
    const current = this.core.config;
    const next = configAfter(current, change);
    // Write-ahead: a sequencer recovering from here on must fence a quorum of both memberships.
    // (Refused when the directory no longer names this sequencer: a failover deposed it.)
    if (!(await this.record({ ...next, inFlight: [membersOf(current), membersOf(next)] }))) {
      // Not taken in time, it may still land: the membership in force is recorded after it (in
      // order), and again at the next commit advance or heartbeat until it is taken.
      this.recordAtSeq = Math.max(this.recordAtSeq ?? 0, this.core.commitSeq);
      return { ok: false, ...(this.stopped ? refusal("stopping") : refusal("not_recorded", change.id, `unreachable, slower than ${directoryWriteTimeoutMs / 1000} s, or it names another sequencer`)) };
    }
    if (this.stopped) return { ok: false, ...refusal("stopping") };
    this.flush(); // queued commands keep their place before the change
    const e = this.core.appendConfig(change, new Date(this.io.nowMs()).toISOString());
    if ("refused" in e) {
      await this.record(this.core.config);
      return { ok: false, ...e };
    }
    this.io.log("info", `group ${this.core.config.group}: ${change.op} ${change.id} at seq ${e.seq}`);
    this.kickAll();
    if (!(await this.waitCommitted(e.seq, commandTimeoutMs))) {
      // It may still commit: then its membership is recorded, and the directory stops demanding
      // both; its event is written, and a removed replica's storage destroyed, then.
      this.recordAtSeq = Math.max(this.recordAtSeq ?? 0, e.seq);
      this.whenCommitted(e.seq, () => {
        this.changeCommitted(change, e.seq);
        if (change.op === "remove") void this.retireOnceRecorded(change.id);
      });
      return { ok: false, ...refusal("not_committed", change.id) };
    }
    if (!this.stopped && !(await this.record(this.core.config))) this.recordAtSeq = Math.max(this.recordAtSeq ?? 0, e.seq);
    this.changeCommitted(change, e.seq);
    this.kickAll();
    return { ok: true };
  }

  /** Records the memberships in force in the directory, after any earlier write; false (logged) if it could not. */
  private record(config: GroupConfig): Promise<boolean> {
    const write = async () => {
      try {
        await this.io.recordMemberships?.(config);
        // A write-ahead names both memberships: until a record without one succeeds, no removed
        // replica is known to be out of the directory (a review: a stale lastRecorded from before
        // the change let a removal destroy a replica the directory still held in flight).
        if (config.inFlight) this.lastRecorded = null;
        else this.recorded(config);
        return true;
      } catch (err) {
        this.io.log("warn", `recording the membership of ${config.group}: ${String(err)}`);
        return false;
      }
    };
    this.recordsPending++;
    this.recording = this.recording.then(write, write).finally(() => void this.recordsPending--);
    // The caller waits a bounded time; the write keeps its place in the chain (see directoryWriteTimeoutMs).
    return withTimeout(this.io, this.recording, directoryWriteTimeoutMs, `recording the membership of ${config.group}`).catch((err) => {
      this.io.log("warn", String(err));
      return false;
    });
  }

  private promoting = false;

  private promote(id: string): void {
    if (this.promoting || this.reconfiguring || this.core.configChangePending) return;
    this.promoting = true;
    void this.reconfigure({ op: "promote", id }).finally(() => {
      this.promoting = false;
    });
  }

  // ---- reads --------------------------------------------------------------------------------

  /**
   * A linearizable read's index: the core's readIndexSeq now, the commitSeq or the highest commit
   * sent to a replica if higher. Every command acknowledged before the read arrived is at or below
   * it (a command is answered only after its commit is known here), and so is every state a
   * replica has served, so a replica that has applied it, any replica, the nearest one, can answer. Refused (certainly no
   * answer) while this sequencer cannot reach a quorum of voters: it may no longer be the one in
   * office.
   */
  async readIndex(): Promise<ReadIndexAnswer> {
    if (this.stopped || this.core.fenced) return { kind: "unavailable", message: "the sequencer is stopping" };
    this.wake();
    const reach = this.core.reachableVoters();
    if (this.cutOff() || reach.count < reach.need) return this.refuse(this.noQuorum());
    const index = this.core.readIndexSeq;
    // Still in office? Within the lease no other sequencer can be; past it, one heartbeat round.
    const heard = this.quorumHeardSinceMs();
    if ((heard === null || heard <= this.io.nowMs() - readLeaseMs) && !(await this.confirm())) {
      return this.refuse("could not confirm with a quorum of voters that this sequencer is still in office");
    }
    if (this.stopped || this.core.fenced) return { kind: "unavailable", message: "the sequencer is stopping" };
    this.kickAll();
    return { kind: "ok", seq: index };
  }

  // ---- audits -------------------------------------------------------------------------------

  /** The audit under way, and the one that follows it for the calls made meanwhile (see audit). */
  private auditing: Promise<AuditReport> | null = null;
  private auditNext: Promise<AuditReport> | null = null;

  /**
   * Asks every replica, decides, quarantines the diverged; the caller keeps the report. One at a
   * time: each sets its mark (auditInfo's markSeq) on every replica, and a replica keeps one, so
   * two at once (the cron's and the one after a repair, or an operator's) could replace each
   * other's marks under writes and one say `insufficient` (a review). The calls made while one
   * runs share one that starts after it: each gets a report begun after its call (given the one
   * under way, the audit after a repair reported the replica as it was before, a review).
   */
  audit(): Promise<AuditReport> {
    // Asleep, the cron's daily audit is the only call a group may get: a destroy left past
    // retireAwakeMs is tried again here too, or it waited for client work (see retireAwakeMs).
    this.retireAgainNow();
    if (this.auditing === null) {
      const run = this.auditOnce().finally(() => {
        if (this.auditing === run) this.auditing = null;
      });
      this.auditing = run;
      return run;
    }
    this.auditNext ??= this.auditing.then(
      () => this.nextAudit(),
      () => this.nextAudit(),
    );
    return this.auditNext;
  }

  private nextAudit(): Promise<AuditReport> {
    this.auditNext = null;
    return this.audit();
  }

  private async auditOnce(): Promise<AuditReport> {
    // The next entry's seq: each replica records a checkpoint there (see ReplicaCore.auditInfo).
    // Once per audit: a later round's mark replaced an earlier one a slow replica had not reached
    // yet, and that replica never recorded it (a review).
    const markSeq = this.core.lastLogSeq + 1;
    for (let attempt = 1; ; attempt++) {
      const { decided, answered, infos } = await this.auditRound(markSeq);
      if (this.stopped) return decided.report;
      // Replicas that all answered but share no position (no periodic checkpoint yet, and a commit still
      // on its way to some): the commit is sent, and they are asked again before the audit says
      // `insufficient`, which the health reads as degraded (a review: seq 0, counted for everyone
      // before, hid this behind a vacuous "consistent").
      // Only when every replica answered: one that did not would hold each round for its whole
      // timeout (three rounds outlasted the router's call, a review) and count a miss each time.
      const allAnswered = answered.length === this.core.replicaIds().length;
      // So is a replica flagged (its scrub failed) with no healthy quorum to confirm it, for want
      // of a shared position: it stayed in service until the next audit, where a clean group of
      // the same shape was asked again (a probe). An alarm (a quorum flagged) is not asked again.
      const unconfirmed = decided.report.verdict === "diverged" && decided.diverged.length === 0 && decided.alarm === null;
      if ((decided.report.verdict === "insufficient" || unconfirmed) && allAnswered && attempt < auditTriesMax) {
        this.kickAll();
        await new Promise<void>((resolve) => this.io.setTimer(auditRetryMs, resolve));
        continue;
      }
      return this.actOnAudit(decided, infos);
    }
  }

  /** One round of an audit: every replica's audit info, noted, and the verdict on it. */
  private async auditRound(markSeq: number): Promise<{ decided: ReturnType<typeof decideAudit>; answered: string[]; infos: Map<string, AuditInfo | null> }> {
    const ids = this.core.replicaIds();
    const repairs = ids.map((id) => this.core.repairsOf(id));
    const sent = await Promise.all(
      ids.map((id) =>
        withTimeout(this.io, this.io.link(id).auditInfo(markSeq), auditRpcTimeoutMs, `audit of ${id}`).catch((err) => {
          this.io.log("warn", `audit of ${this.core.config.group}/${id}: ${String(err)}`);
          return null;
        }),
      ),
    );
    // An answer from before a repair of its replica began or ended is left out, as if not given:
    // applied after a repair that ended meanwhile, a quarantined answer quarantined the rebuilt
    // replica again and started a second transfer (a review).
    const answers = sent.map((a, i) => (this.core.repairsOf(ids[i]!) === repairs[i] ? a : null));
    const infos = new Map<string, AuditInfo | null>();
    const now = this.io.nowMs();
    // A stopped incarnation (crashed, destroyed) must not write: its state is stale.
    const voters = this.core.voterIds();
    if (this.stopped) return { decided: decideAudit(this.core.config.group, new Date(now).toISOString(), voters, new Map()), answered: [], infos };
    ids.forEach((id, i) => {
      const info = answers[i] ?? null;
      infos.set(id, info);
      if (info === null && sent[i]) return; // stale (above): neither a contact nor a miss
      this.core.noteContact(id, info !== null, now, info ?? undefined);
      if (info !== null) this.core.noteSize(id, info);
      // Cleared only by a pass that finished and passed (stateRows is its count): before a large
      // state's first pass ends the digests read equal, and a damaged replica was a source again.
      if (info !== null && !info.rebuilding) {
        if (info.scrub.actualDigest !== info.scrub.recordedDigest) this.markScrub(id, true, now);
        else if (info.stateRows !== undefined) this.markScrub(id, false), this.copySuspects.delete(id);
      }
      // A replica that quarantined itself (a failed replay) or that a lost sequencer had
      // quarantined: the sequencer learns it here, so it is rebuilt rather than voted with.
      if (info?.quarantined && !info.rebuilding && this.core.setQuarantined(id, true)) this.learnedQuarantine(id, "its audit answer");
    });
    this.noteQuarantines();
    const stale = new Set(ids.filter((id, i) => sent[i] && answers[i] === null));
    const decided = decideAudit(this.core.config.group, new Date(now).toISOString(), voters, infos, stale);
    return { decided, answered: ids.filter((_, i) => answers[i] !== null && answers[i] !== undefined), infos };
  }

  /** The alarm the last audit raised (null: none): the same one again is not another event. */
  private alarmRaised: string | null = null;

  /** Quarantines what the audit found diverged, raises its alarm, and starts the repairs. */
  private actOnAudit({ report, diverged, alarm }: ReturnType<typeof decideAudit>, infos: Map<string, AuditInfo | null>): AuditReport {
    if (alarm !== null) {
      // No seq when nothing was compared: seq 0 read as a position (every replica failed its scrub).
      const at = report.compared === false ? {} : { seq: report.seq };
      this.io.log("error", `AUDIT ALARM group ${this.core.config.group} epoch ${this.core.epoch}${at.seq === undefined ? "" : ` seq ${at.seq}`}: ${alarm}`);
      // One event while the same alarm stands: one per audit (the cron's every minute) pushed the
      // group's failovers, moves and repairs out of its bounded event list in hours (a probe).
      if (alarm !== this.alarmRaised) this.io.event?.("quarantine", alarm, { ...at, action: "alarm" });
    }
    this.alarmRaised = alarm;
    // Stamped with the install count of the answer judged (a tell of it is refused by a replica rebuilt since).
    for (const id of diverged) this.quarantine(id, infos.get(id)?.installs ?? 0);
    // An audit is not client work (the cron's every minute would keep a group awake), but one that
    // leaves a repair to do wakes it: a rebuild and a catch-up need the send loops.
    const candidates = this.core.transferCandidates();
    if (diverged.length > 0 || candidates.length > 0) this.wake();
    // Quarantined replicas are rebuilt from a healthy one; unreachable or lagging ones are caught
    // up from the log by their send loops.
    for (const id of candidates) void this.repair(id);
    this.kickAll();
    return report;
  }

  /**
   * Stops ordering in this epoch for good: the lifecycle recovers from the replicas at a new one,
   * as when fenced (a restore's position may be held where the next entry would go).
   */
  stopForNewEpoch(): void {
    if (this.stopped) return;
    this.stop();
    this.io.onFenced?.();
  }

  /** Loads a verified snapshot into this group (see restoreInto). */
  restore(digest: string, pages: RowPages): Promise<RestoreResult> {
    this.wake();
    return restoreInto(this, this.io, digest, pages);
  }

  // ---- state transfer -----------------------------------------------------------------------

  /**
   * Rebuilds a replica from a healthy one: the source freezes its state at its appliedSeq, the
   * target installs it page by page and checks the digest, then catches up from the log. Writes
   * go on meanwhile (the target has no vote until it is done). Returns whether it succeeded.
   */
  async repair(target: string): Promise<boolean> {
    if (this.stopped || this.restoring || !this.core.beginRepair(target)) return false;
    // A source whose last copy to this target did not match its own digest is tried last: its
    // rows may be what is corrupt (the co-located replica, first by applied position, otherwise
    // stayed the source of every try, and the target was never rebuilt: seed 108817061).
    const suspect = this.badSources.get(target);
    const candidates = this.repairSources(target);
    const sources = [...candidates.filter((id) => id !== suspect), ...candidates.filter((id) => id === suspect)];
    let installed: number | null = null;
    const progress: InstallProgress = { begun: false, needed: this.core.needsRebuild(target) };
    this.repairing++;
    try {
      const installBad = this.installFailedWhy(target);
      if (installBad !== null) throw new Error(installBad);
      await this.askTarget(target);
      if (this.unendedInstalls.has(target)) installed = await this.endUnanswered(target, progress);
      // Each source in turn until one begins: one that refuses before the target is touched (its
      // rows failed its last scrub, it is being rebuilt, or it is out of reach) leaves the next
      // its chance. The first alone was tried, and after a sequencer's restart that was a damaged
      // replica the sequencer did not yet know of (a probe).
      const refusals: string[] = [];
      for (const source of sources) {
        if (installed !== null) break;
        installed = await this.copyTo(target, source, progress).catch((err: unknown) => {
          // Deposed (a source serves a newer sequencer): no rebuild at all, from another source or
          // the log (a review: the next step wiped a target the successor had not fenced yet).
          if (progress.begun || this.stopped || err instanceof Deposed || err instanceof Unneeded) throw err;
          refusals.push(String(err));
          return null;
        });
      }
      // Nothing to copy from, but a log that holds every entry from the first (nothing compacted,
      // no restore adopted): the empty state at 0 and the log rebuild any replica. Every replica
      // was left halfway through a restore's install when the server died (a probe: all three
      // quarantined and "rebuilding" for good, every command a 503, only a DELETE got out).
      if (installed === null && this.core.baseSeq === 0) installed = await this.installEmpty(target, progress);
      else if (installed === null) {
        const scrub = refusals.some((r) => /failed its last scrub/.test(r)) ? "; if every replica's rows failed the scrub, release one with rebase and repair the others from it" : "";
        // None tried: why, and the way out (the others' rows failed a scrub or a copy's check).
        const why = refusals.length > 0 ? null : this.repairRefusal(target);
        throw new Error(why ? why.reason : `no healthy replica to copy from${refusals.length > 0 ? ` (${refusals.join("; ")})` : ""}${scrub}`);
      }
    } catch (err) {
      if (err instanceof Unneeded) {
        this.io.log("info", `repair of ${this.core.config.group}/${target} not needed: ${err.message}`);
        return this.endRepairUnneeded(target);
      }
      // Said once while it stays the same: a retry every 2 s logged it every time (a review).
      if (this.lastRepairError.get(target) !== String(err)) this.io.log("warn", `repair of ${this.core.config.group}/${target} failed: ${String(err)}`);
      this.lastRepairError.set(target, String(err));
      // A replica at a newer epoch was fenced by a newer sequencer (or a recovery that got no
      // further): as an append's stale_epoch, this one stops and recovers; a target that gets
      // no appends told it nothing else, and the rebuild was retried for ever (a review).
      if (err instanceof Deposed) this.stopForNewEpoch();
    } finally {
      this.repairing--;
    }
    if (this.stopped) return false;
    this.endRepair(target, installed, progress);
    return installed !== null;
  }

  /** A repair given up before its install began, its target rebuilt already: no retry, no failure counted. */
  private endRepairUnneeded(target: string): false {
    if (this.stopped) return false;
    this.core.endRepair(target, null, this.io.nowMs());
    this.kickAll();
    return false;
  }

  /** A repair's end: the target's progress, and its retry after a pause, or what it was owed cleared. */
  private endRepair(target: string, installed: number | null, { begun, installs }: InstallProgress): void {
    // Ended or not, the replica's own flag is what it is (cleared, or still set by the install
    // left halfway): the directory's list names it again while the sequencer holds it quarantined.
    this.installing.delete(target);
    this.core.endRepair(target, installed, this.io.nowMs(), installs);
    if (installed === null && begun) this.core.noteRebuilding(target);
    this.noteQuarantines();
    // A failed repair is tried again by the target's send loop, after a pause: a source or target
    // that fails at once (unreachable, refusing) otherwise made repair and loop call each other
    // with no wait between (the simulator spun on one virtual instant, seed 1438301466).
    if (installed === null) {
      const failures = (this.repairFailures.get(target) ?? 0) + 1;
      this.repairFailures.set(target, failures);
      this.retryAfter(target, failures);
    } else {
      this.repairFailures.delete(target);
      this.lastRepairError.delete(target);
      this.badSources.delete(target);
      this.markScrub(target, false); // rebuilt from rows that passed, or from the log
      this.copySuspects.delete(target);
      this.installFailed.delete(target); // rebuilt: a later failure starts the count again
      this.io.onRepaired?.(target);
    }
    this.kickAll();
  }

  /**
   * The replicas a repair of `target` may copy from, best first. Not one that needs a transfer
   * itself: a replica a restore left at seq 0 was a source (its empty state copied, the target
   * behind again: it converged, one transfer wasted; a review). Nor one whose rows failed the last
   * scrub (scrubFailed). Of those that answer, the replica in this sequencer's object last:
   * freezing its state runs on the sequencer's thread, and every write waited for it (a probe: 2.7
   * to 5 s at 154,000 and 189,000 rows; none from another source), as a snapshot download avoids
   * it. Still before one that missed its last contact (a review: a hung r2 first cost 3 s).
   */
  private repairSources(target: string): string[] {
    const sources = this.core.readCandidates().filter((id) => id !== target && !this.core.needsTransfer(id) && !this.scrubFailed.has(id) && !this.suspected(id));
    const answering = new Set(this.core.replicaStatuses().filter((r) => r.status !== "suspect" && r.status !== "down").map((r) => r.id));
    const rank = (id: string) => (answering.has(id) ? 0 : 2) + (id === this.io.directReplica ? 1 : 0);
    return sources.map((id, i) => ({ id, i })).sort((a, b) => rank(a.id) - rank(b.id) || a.i - b.i).map((s) => s.id);
  }

  /**
   * A rebuild of `target` under way: its source, the position copied and the rows installed so
   * far. A 3.5 MiB rebuild showed only `repairing` for 15 s, with nothing moving (a probe).
   */
  /**
   * What a scrub found of a replica's rows: kept here (no source while failed) and in the status's
   * tracker (`damaged`), which the replica's own append answers also set, after a restart too.
   */
  private markScrub(id: string, failed: boolean, atMs = this.io.nowMs()): void {
    if (failed) this.scrubFailed.set(id, atMs);
    else this.scrubFailed.delete(id);
    this.core.noteScrub(id, failed);
  }

  rebuildProgress(target: string): RebuildProgress | undefined {
    const p = this.rebuilds.get(target);
    return p && { ...p };
  }

  /** Why the last repair of `target` failed (undefined: it did not, or none was tried). */
  repairFailure(target: string): string | undefined {
    return this.lastRepairError.get(target);
  }

  /**
   * Why an operator's repair of `target` cannot start (null: it can): no source, and a log that
   * no longer holds every entry from the first (with one, the empty state and the log rebuild it).
   * Refused before anything is touched: begun, the target's rows were cleared for nothing.
   */
  repairRefusal(target: string): { code: "conflict" | "unavailable"; reason: string } | null {
    const installBad = this.installFailedWhy(target);
    if (installBad !== null) return { code: "unavailable", reason: installBad };
    if (this.repairSources(target).length > 0 || this.core.baseSeq === 0) return null;
    const failed = [...this.scrubFailed.keys()].filter((id) => id !== target).sort();
    // The only replica: a retry finds no source either (it said "retry": a probe).
    if (this.core.replicaIds().every((id) => id === target)) {
      return { code: "conflict", reason: `${target} is the group's only replica and its log no longer holds every entry: there is nothing to rebuild it from; release it (with rebase if its rows fail their digest), or restore a backup into a new group` };
    }
    // None reachable and caught up now: a retry may find one (a 503), as the audit's retries do.
    // So while one that did not fail its scrub is only out of reach (it said "conflict" then).
    const others = this.core.replicaIds().filter((id) => id !== target);
    // Suspected after a bad copy: tried again later (a retry may find one), so never only an operator's.
    const suspects = others.filter((id) => !failed.includes(id) && this.suspected(id));
    if (suspects.length > 0) return { code: "unavailable", reason: `no replica to copy ${target} from now: a copy from ${suspects.join(", ")} did not sum to its digest lately; tried again once a scrub passes ${suspects.length === 1 ? "it" : "them"}, or ${copySuspectMs / 60_000} min after` };
    const failedNote = failed.length > 0 ? ` (${failed.join(", ")} failed the last audit's scrub)` : "";
    // One that needs a state transfer itself is no source until it has had one, which needs a
    // source too: with only such ones and failed ones, a retry never finds one (a probe's 503).
    const rebuilding = others.filter((id) => !failed.includes(id) && this.core.needsTransfer(id));
    if (!others.every((id) => failed.includes(id) || rebuilding.includes(id))) return { code: "unavailable", reason: `no healthy replica to copy ${target} from now${failedNote}; retry, or let the audit retry it` };
    const waiting = rebuilding.length > 0 ? ` and ${rebuilding.join(", ")} ${rebuilding.length === 1 ? "needs" : "need"} a state transfer itself` : "";
    if (failed.length === 0) return { code: "conflict", reason: `no replica to copy ${target} from: ${rebuilding.join(", ")} ${rebuilding.length === 1 ? "needs" : "need"} a state transfer itself; release one with rebase to take its rows as they are, then repair the others from it, or restore a backup into a new group` };
    return {
      code: "conflict",
      reason: `no replica to copy ${target} from: ${failed.join(", ")} failed the last audit's scrub (their rows do not match their digests)${waiting}; release one that failed with rebase to take its rows as they are, then repair the others from it, or restore a backup into a new group`,
    };
  }

  /**
   * A rebuild's target first: one out of reach froze a healthy source's whole state (a copy of
   * every row) at each retry, every 2 s, for nothing (a review). So did one with no state (it
   * refuses the install) and one a successor already serves (it refuses this epoch). One with no
   * state (its storage lost) is made first, as an append's not_initialized would have it: a
   * replica awaiting a transfer gets no appends (a review: it stayed unrebuilt for good).
   */
  private async askTarget(target: string): Promise<void> {
    const at = await this.targetCall(target)(this.io.link(target).position(), `position of ${target}`);
    if (at !== null && at.epoch > this.core.epoch) throw new Deposed(`${target} is at epoch ${at.epoch}: a newer sequencer is in office`);
    if (at === null && !(await this.rejoin(target))) throw new Error(`${target} has no state, and could not be made yet`);
  }

  /** A replica's answer within replicaRpcTimeoutMs (a transfer's calls). */
  private readonly replicaCall = <T>(p: Promise<T>, what: string): Promise<T> => withTimeout(this.io, p, replicaRpcTimeoutMs, what);

  /**
   * A call to a transfer's target within replicaRpcTimeoutMs, counted as contact with it: one that
   * cannot be reached misses, so it shows suspect, then down. A replica waiting for a transfer
   * got no appends, so no misses, and showed "lagging" for as long as it was unreachable (a probe).
   */
  private targetCall(target: string): <T>(p: Promise<T>, what: string) => Promise<T> {
    return (p, what) =>
      this.replicaCall(p, what).then(
        (answer) => (this.core.noteContact(target, true, this.io.nowMs()), answer),
        (err: unknown) => {
          if (!this.stopped) this.core.noteContact(target, false, this.io.nowMs());
          throw err;
        },
      );
  }

  /** A state transfer from `source` to `target`: the position it installed. */
  private async copyTo(target: string, source: string, progress: InstallProgress): Promise<number> {
    const call = this.replicaCall;
    const toTarget = this.targetCall(target);
    const src = this.io.link(source);
    const dst = this.io.link(target);
    await this.snapshotEnds.get(source);
    const info = await call(src.beginSnapshot(), `snapshot of ${source}`);
    if (!info) throw new Error(`${source} cannot serve a snapshot (it is being rebuilt, or its rows failed its last scrub)`);
    try {
      // A source ahead of this sequencer serves a newer epoch's sequencer: this one was deposed
      // (a failover) and must not rebuild anyone.
      if (info.epoch > this.core.epoch || info.seq > this.core.lastLogSeq) throw new Deposed(`${source} is at epoch ${info.epoch}, seq ${info.seq}: a newer sequencer is in office`);
      // A source whose log differs from this one's at its position holds a state the group never
      // had (one that kept a restore cut off midway, left out of the recovery's quorum): copied,
      // the target would serve it (a review). Its next append's mismatch sends it to a repair.
      const logHash = this.core.logHashAt(info.seq);
      if (logHash !== null && logHash !== info.logHash) {
        this.badSources.set(target, source);
        throw new Error(`${source}'s log differs from the sequencer's at seq ${info.seq}: not a source`);
      }
      // Pages of an older transfer to the same target (a stopped incarnation's) are refused by id.
      const transferId = `${this.core.epoch}:${info.seq}:${++this.transfers}:${this.io.nowMs()}`;
      if (!(await this.beginInstallOn(target, progress, () => toTarget(dst.beginInstall(info, transferId, this.core.epoch), `install on ${target}`)))) throw new Error(`${target} cannot install (or a newer sequencer fenced it)`);
      let after: string | null = null;
      const shown: RebuildProgress = { source, seq: info.seq, rows: 0, sinceMs: this.io.nowMs() };
      this.rebuilds.set(target, shown);
      for (;;) {
        if (this.stopped) throw new Error("sequencer stopped");
        const page: [string, string][] | null = await call(src.snapshotPage(info.seq, after, transferPageBytes), `page from ${source}`);
        if (page === null) throw new Error(`${source} lost its snapshot`);
        if (page.length === 0) break;
        if (!(await toTarget(dst.installPage(transferId, page), `page to ${target}`))) throw new Error(`${target} is installing another transfer`);
        shown.rows += page.length;
        after = page[page.length - 1]![0];
      }
      const rows = shown.rows;
      const done = await this.endInstallOn(target, () => toTarget(dst.endInstall(transferId), `install end on ${target}`), { transferId, seq: info.seq, source });
      this.unendedInstalls.delete(target);
      if (done && !done.ok) this.noteBadCopy(target, source, info, done.digest);
      if (!done?.ok) throw new Error(`${target}'s installed state has digest ${done?.digest}, expected ${info.digest}`);
      progress.installs = done.installs ?? 0;
      // Its size is the rebuilt state's: the status showed the old one until the next audit (a probe).
      if (done.storageBytes !== undefined) this.core.noteStorage(target, done.storageBytes);
      this.io.log("warn", `replica ${this.core.config.group}/${target} rebuilt from ${source} at seq ${info.seq} (${rows} rows)`);
      this.io.event?.("repair", `replica ${target} rebuilt from ${source} at seq ${info.seq} (${rows} rows)`, { replica: target, source, seq: info.seq });
      return info.seq;
    } finally {
      this.rebuilds.delete(target);
      // Not waited for here: the install's end is recorded first (endRepair). Awaited, a slow
      // source held it a call's timeout, and a sequencer that restarted meanwhile still held the
      // rebuilt replica quarantined and told it so again (the simulator, seed 435890705). The
      // source's next snapshot waits for it instead (one snapshot per replica: a late end dropped it).
      const ended: Promise<unknown> = call(src.endSnapshot(), `end snapshot of ${source}`).catch(() => undefined);
      this.snapshotEnds.set(source, ended);
      void ended.then(() => this.snapshotEnds.get(source) === ended && this.snapshotEnds.delete(source));
    }
  }

  /**
   * A copy from `source` whose rows did not sum to its digest: its rows are likely what is
   * damaged, so it is no source for copySuspectMs, or until an audit's scrub passes it or it is
   * rebuilt. Only reordering the sources, with two of three replicas damaged alike, repeated a
   * whole transfer every 1 to 2 s for good, one from each in turn, and said nothing (a probe).
   * Not marked as failing its scrub: the target's install may be what went wrong, and with every
   * source so marked the group slept, its target quarantined, until the daily audit (a review).
   */
  private noteBadCopy(target: string, source: string, info: SnapshotInfo, installed: string): void {
    this.badSources.set(target, source);
    this.copySuspects.set(source, this.io.nowMs());
    void this.judgeSuspect(source, target);
    const message = `a rebuild of ${target} from ${source} at seq ${info.seq} failed: the rows copied sum to ${installed.slice(0, 12)}, not ${source}'s digest ${info.digest.slice(0, 12)}; ${source} is no source for ${copySuspectMs / 60_000} min, or until its rows pass a scrub`;
    this.io.event?.("repair", message, { replica: target, source, seq: info.seq, action: "failed" });
  }

  /**
   * Judges a suspect source at once: its scrub taken through a whole pass begun after the bad copy
   * (each step its own call, so it serves between them), then its verdict read. Damaged: it
   * failed its scrub, as an audit would find. Sound: the target's install is what failed, so the
   * target, not the source, waits copySuspectMs (a review: a target whose installs fail had every
   * source suspected in turn, a whole copy every 5 minutes, for good).
   */
  private async judgeSuspect(source: string, target: string): Promise<void> {
    // Not the replica in this object: its calls are direct, so the whole scrub would run in one go
    // on the sequencer's thread, every write waiting (a review: 9 s at a million rows). The
    // audits' paced steps judge it; it stays a suspect until then, or copySuspectMs.
    if (this.judging.has(source) || source === this.io.directReplica) return;
    this.judging.add(source);
    try {
      const link = this.io.link(source);
      for (let step = 0, ends = 0; ends < 2; step++) {
        const r = step < scrubNowStepsMax ? await this.replicaCall(link.scrubNow(), `scrub of ${source}`).catch(() => null) : null;
        if (r === null || this.stopped) return; // unreachable, or too large: suspect until copySuspectMs
        if (r.finished) ends++;
      }
      const at = await this.replicaCall(link.position(), `position of ${source}`).catch(() => null);
      if (at === null || this.stopped) return;
      const judged = (verdict: string, message: string) => this.io.event?.("repair", message, { replica: source, target, verdict, action: "judged" });
      if (at.scrubFailed) {
        this.markScrub(source, true, this.io.nowMs());
        return judged("damaged", `replica ${source} failed a whole scrub after a copy from it failed on ${target}: its rows do not match its digest, and it is no source until a scrub passes it`);
      }
      this.copySuspects.delete(source);
      // Blamed only while it still awaits a rebuild (another source may have rebuilt it meanwhile: a review).
      if (!this.core.awaitingRebuild().includes(target) && !this.core.transferCandidates().includes(target)) return;
      const count = (this.installFailed.get(target)?.count ?? 0) + 1;
      this.installFailed.set(target, { atMs: this.io.nowMs(), count });
      judged("sound", `replica ${source} passed a whole scrub after a copy from it failed on ${target}: ${target}'s install is what failed (its storage may be failing; remove it and add a replica)`);
    } finally {
      this.judging.delete(source);
    }
  }

  /**
   * Why `target` is not rebuilt now: its install failed from a source judged sound, within
   * copySuspectMs doubled for each such failure in a row, up to a day (null: it is). A whole copy
   * every 5 minutes for good was the cost of a target whose storage fails (a review).
   */
  private installFailedWhy(target: string): string | null {
    const failed = this.installFailed.get(target);
    if (failed === undefined) return null;
    const waitMs = Math.min(installRetryMaxMs, copySuspectMs * 2 ** (failed.count - 1));
    if (this.io.nowMs() - failed.atMs >= waitMs) return null;
    return `${target}'s install did not sum to the digest of a source that then passed a whole scrub (${failed.count} ${failed.count === 1 ? "time" : "times"} in a row): its storage may be failing; tried again ${Math.round(waitMs / 60_000)} min after, or remove it and add a replica`;
  }

  /** Whether a copy from `id` failed its digest check within copySuspectMs (noteBadCopy). */
  private suspected(id: string): boolean {
    const atMs = this.copySuspects.get(id);
    return atMs !== undefined && this.io.nowMs() - atMs < copySuspectMs;
  }

  /**
   * The empty state installed on `target` at position 0, as a transfer would install it; the log
   * (all of it: baseSeq 0) then brings it up to date. A replica's state at 0 is the empty one
   * whatever it held (a restore never adopted holds no position).
   */
  private async installEmpty(target: string, progress: InstallProgress): Promise<number> {
    const call = this.targetCall(target);
    const dst = this.io.link(target);
    const info: SnapshotInfo = { seq: 0, digest: zeroHash, logHash: zeroHash, entryEpoch: 0, timestamp: null, epoch: this.core.epoch };
    const transferId = `${this.core.epoch}:0:${++this.transfers}:${this.io.nowMs()}:empty`;
    if (!(await this.beginInstallOn(target, progress, () => call(dst.beginInstall(info, transferId, this.core.epoch), `install on ${target}`)))) throw new Error(`${target} cannot install (or a newer sequencer fenced it)`);
    const done = await this.endInstallOn(target, () => call(dst.endInstall(transferId), `install end on ${target}`), { transferId, seq: 0, source: "the log" });
    this.unendedInstalls.delete(target);
    if (!done?.ok) throw new Error(`${target}'s empty state has digest ${done?.digest}`);
    progress.installs = done.installs ?? 0;
    if (done.storageBytes !== undefined) this.core.noteStorage(target, done.storageBytes);
    this.io.log("warn", `replica ${this.core.config.group}/${target} rebuilt empty at seq 0: no replica could be copied; the log brings it up to date`);
    this.io.event?.("repair", `replica ${target} rebuilt empty at seq 0: no replica could be copied; the log brings it up to date`, { replica: target, seq: 0 });
    return 0;
  }
}

/** Where a restore's rows come from: pages of [stored key, value] in key order. */
export type RowPages = (after: string | null) => Promise<[string, string][]>;

/** Why a restore waits while a state transfer installs (the driver's and the staging route's word). */
export const repairingRefusal = "a replica is being rebuilt by a state transfer; retry when it is done";

/** A state transfer's source serves a newer sequencer: this one was deposed. */
class Deposed extends Error {}

/** A repair's install: whether it began on the target (it may then hold a half-done transfer), and the target's install count once it ended. */
interface InstallProgress {
  begun: boolean;
  /** The target needed a rebuild when the repair began (quarantined, or behind the compacted log). */
  needed: boolean;
  installs?: number;
}

/** A repair's target turned out rebuilt already (a stale quarantine, see staleQuarantine): nothing to do. */
class Unneeded extends Error {}

/** Restores begun in this isolate: part of each attempt's hash (see restoreInto). */
let restoreAttempts = 0;

/**
 * Loads a verified snapshot into a group that has no entries but no-ops (API.md "Snapshot and
 * restore"; SequencerCore.restoreRefusal): every member installs the rows as a state transfer at
 * the position after the no-ops (quarantined, serving nothing, until its digest matches), then the
 * sequencer takes that position as its base once a quorum of voters has (the others get a state
 * transfer later). If no quorum installs it, the members are emptied again, back at the last
 * no-op, and the group stays as it was (a retry starts over). Commands wait (503) meanwhile.
 * One restore at a time: they share the mark (restoreEpoch), and one's undo would clear it, or
 * empty replicas that acknowledged entries ordered once it was cleared, while the other installs.
 */
/**
 * A restore's outcome. `unknown` (the route's 504): it may or may not have taken, as when an undo
 * did not reach a replica that may hold it, or the sequencer stopped (moved) while the replicas
 * installed: the recovery that follows may keep it. Those were 503s, "certainly not", and a
 * probe's group came back restored 0.1 s after one (its retry then a 409).
 */
export type RestoreResult = { ok: true } | { ok: false; reason: string; code?: "conflict" | "unknown" };

export async function restoreInto(driver: SequencerDriver, io: DriverIO, digest: string, pages: RowPages): Promise<RestoreResult> {
  const core = driver.core;
  const refused = core.restoreRefusal();
  if (refused) return { ok: false, reason: refused.reason, ...(refused.code === "conflict" ? { code: refused.code } : {}) };
  // A repair's install on a replica that had just installed the restore would empty it (a review).
  if (driver.repairsUnderway) return { ok: false, reason: repairingRefusal };
  const noop = core.lastLogSeq > 0 ? core.readEntries(core.lastLogSeq, core.lastLogSeq)[0]! : null;
  // Each attempt's position has its own hash, so that an undo names the attempt it undoes: a late
  // undo of a failed attempt emptied a replica holding a retry that was adopted (a review).
  const hash = sha256Hex(`restore\n${digest}\n${core.epoch}:${io.nowMs()}:${++restoreAttempts}`);
  // The restore's position has no entry: its floor for later timestamps is the last no-op's.
  const timestamp = noop?.timestamp ?? null;
  const info: SnapshotInfo = { seq: core.lastLogSeq + 1, digest, logHash: hash, entryEpoch: core.epoch, timestamp, epoch: core.epoch, restore: true };
  const empty: SnapshotInfo = { seq: noop?.seq ?? 0, digest: zeroHash, logHash: noop?.hash ?? zeroHash, entryEpoch: noop?.epoch ?? 0, timestamp, epoch: core.epoch, undo: true, undoes: hash };
  const ids = core.replicaIds();
  // Members left behind by a quorum (installOnQuorum): each stops at its next call.
  const leftBehind = new Set<string>();
  // Those sent the restore's end: from then each may hold it, whatever the answer.
  const sentEnd = new Set<string>();
  const install = (id: string, what: SnapshotInfo, rows: RowPages) =>
    installOn(io, core.epoch, id, what, rows, leftBehind, () => what === info && sentEnd.add(id), (bytes) => core.noteStorage(id, bytes));
  driver.restoring = true;
  try {
    // Inside the try: a storage error here may leave the mark set in memory and not on disk.
    core.markRestore();
    // A quorum of voters is enough, as for an entry: the others are behind the restored position,
    // where the log holds nothing, so each gets a state transfer from one that installed (as a
    // replica behind a compacted log does) once it answers. Every replica had to install before:
    // one unreachable replica made every restore a 503 until it was back (a probe).
    const voters = core.voterIds();
    const { installed, failed } = await installOnQuorum(io, ids, voters, (id) => install(id, info, pages), (id) => leftBehind.add(id));
    // Deleted or handed over while the replicas installed: its storage is gone, write nothing.
    if (driver.isStopped) return { ok: false, code: "unknown", reason: "the group's sequencer stopped meanwhile (deleted or moved); if moved, its successor recovers from the replicas and may keep the restore: read the group's state (another restore answers 409 if it was)" };
    if (!new MajorityConfig(voters).reached(installed)) {
      const installedVoters = installed.filter((id) => voters.includes(id)).length;
      const reason = `only ${installedVoters} of the ${voters.length} voters could install the snapshot, not a quorum (${failed.join("; ")})`;
      return await undoRestore(driver, io, ids, sentEnd, (id) => install(id, empty, async () => []), reason);
    }
    core.adoptRestore(info.seq, hash);
    driver.restoredAtMs = io.nowMs();
    for (const id of installed) {
      core.endRepair(id, info.seq, io.nowMs());
      core.noteContact(id, true, io.nowMs(), { lastSeq: info.seq, appliedSeq: info.seq, digest });
    }
    // One that failed may have stopped halfway (it refuses fences until it is rebuilt).
    const left = ids.filter((id) => !installed.includes(id));
    for (const id of left) core.noteRebuilding(id);
    // The replicas serve the restore once a message from its position says it is adopted: one
    // now, so reads after the answer find it served (ReplicaMeta.unadoptedSeq); the heartbeats
    // tell any it misses.
    const adopted: AppendRequest = { epoch: core.epoch, prevSeq: info.seq, prevHash: hash, entries: [], commitSeq: info.seq, adopted: info.seq };
    await Promise.allSettled(installed.map((id) => withTimeout(io, io.link(id).append(adopted), replicaRpcTimeoutMs, `append to ${id}`)));
    const behind = left.length > 0 ? `; ${left.join(", ")} will be rebuilt from it (${failed.join("; ")})` : "";
    io.event?.("recovery", `state restored at seq ${info.seq} (digest ${digest.slice(0, 12)})${behind}`, { seq: info.seq, digest, action: "restore" });
    return { ok: true };
  } catch (err) {
    // Midway (a storage error in adoptRestore, say), the mark may be cleared in memory but not
    // stored, or the other way round: take a new epoch, as for an undo that did not reach a holder.
    // The recovery may keep the restore: its outcome is unknown (a 504; thrown, it was a 500).
    driver.stopForNewEpoch();
    io.log("error", `sequencer ${core.config.group}: the restore failed midway (${String(err)}); recovering at a new epoch`);
    return { ok: false, code: "unknown", reason: `the restore failed midway (${String(err)}): the group recovers from its replicas at a new epoch and may come back restored; read it (another restore answers 409 if it did) before retrying` };
  } finally {
    driver.restoring = false;
    driver.kickAll();
  }
}

/**
 * One member's install of `what` (a restore's rows, or an undo's none) as a state transfer; throws
 * if it refuses, fails, or is left behind by a quorum (checked before each call is sent: a call
 * made first went out, its answer unheard, a review). `sendingEnd` runs just before the end is
 * sent: from there the replica may hold `what` whatever the answer (it may be lost on the way back).
 */
async function installOn(io: DriverIO, epoch: number, id: string, what: SnapshotInfo, rows: RowPages, leftBehind: Set<string>, sendingEnd: () => void, measured: (storageBytes: number) => void): Promise<void> {
  const link = io.link(id);
  const goOn = () => {
    if (leftBehind.has(id)) throw new Error(`${id} was slower than a quorum of voters`);
  };
  const call = <T>(send: () => Promise<T>) => (goOn(), withTimeout(io, send(), replicaRpcTimeoutMs, `restore on ${id}`));
  const transferId = `restore:${epoch}:${what.seq}:${io.nowMs()}:${id}`;
  if (!(await call(() => link.beginInstall(what, transferId, epoch)))) throw new Error(`${id} refused to install`);
  for (let after: string | null = null; ; ) {
    goOn();
    const page = await rows(after);
    if (page.length === 0) break;
    if (!(await call(() => link.installPage(transferId, page)))) throw new Error(`${id} is installing another transfer`);
    after = page[page.length - 1]![0];
  }
  goOn();
  sendingEnd();
  const done = await call(() => link.endInstall(transferId));
  if (!done?.ok) throw new Error(`${id}'s installed rows have digest ${done?.digest}, expected ${what.digest}`);
  // The restored state's size: the status and the quota kept the empty group's, and a 16 MiB
  // group restored with 54 MB took writes (a probe).
  if (done.storageBytes !== undefined) measured(done.storageBytes);
}

/**
 * Installs on every member at once; settles when every install has, or once a quorum of voters
 * has and the others have had as long again as the quorum took (restoreLaggardGraceMinMs at
 * least): those are left behind (`leave`: they stop at their next call) and counted as failed, to
 * be rebuilt by a state transfer. A slow replica held every restore, and the group's commands.
 */
async function installOnQuorum(io: DriverIO, ids: string[], voters: string[], install: (id: string) => Promise<void>, leave: (id: string) => void): Promise<{ installed: string[]; failed: string[] }> {
  const quorum = new MajorityConfig(voters);
  const startedMs = io.nowMs();
  const installed: string[] = [];
  const failed = new Map<string, string>();
  await new Promise<void>((resolve) => {
    let cancelGrace: (() => void) | null = null;
    const settle = () => {
      if (installed.length + failed.size < ids.length) {
        if (cancelGrace === null && quorum.reached(installed)) cancelGrace = io.setTimer(Math.max(restoreLaggardGraceMinMs, io.nowMs() - startedMs), cutOff);
        return;
      }
      cancelGrace?.();
      resolve();
    };
    const cutOff = () => {
      for (const id of ids) if (!installed.includes(id) && !failed.has(id)) (leave(id), failed.set(id, `${id}: slower than a quorum of voters (left to a state transfer)`));
      resolve();
    };
    for (const id of ids)
      install(id).then(
        () => void (failed.has(id) || installed.push(id), settle()),
        (err) => void (failed.has(id) || failed.set(id, `${id}: ${String(err)}`), settle()),
      );
  });
  return { installed: [...installed], failed: [...failed.values()] };
}

/**
 * A restore that no quorum installed is undone: every replica is emptied again. If each that may
 * hold it (those sent its end) confirms, the group goes on in its epoch as if nothing had been
 * tried. If one does not, it may keep the restore at its position, where this sequencer's next
 * entry would go: the two would tie in a recovery, which could keep the restore and drop that entry,
 * acknowledged or not. So the sequencer stops and recovers from its replicas at a new epoch (the
 * lifecycle's reaction to being fenced); that recovery may find the restore on a replica and keep
 * it, the only state any replica then holds.
 */
async function undoRestore(driver: SequencerDriver, io: DriverIO, ids: string[], holders: Set<string>, empty: (id: string) => Promise<void>, reason: string): Promise<Extract<RestoreResult, { ok: false }>> {
  // Every replica, so that one the restore left halfway is not left rebuilding (refusing fences).
  const undone = await Promise.allSettled(ids.map(empty));
  const kept = ids.filter((id, i) => holders.has(id) && undone[i]!.status === "rejected");
  if (kept.length === 0) {
    if (!driver.isStopped) driver.core.unmarkRestore();
    return { ok: false, reason: `${reason}; nothing was restored, retry` };
  }
  io.log("warn", `sequencer ${driver.core.config.group}: a failed restore could not be undone on ${kept.join(", ")}; recovering at a new epoch`);
  driver.stopForNewEpoch();
  return { ok: false, code: "unknown", reason: `${reason}; it could not be undone on ${kept.join(", ")}, so the group recovers from its replicas at a new epoch and may come back restored; if it does not, retry the restore` };
}

/** Drops one waiter from its list under key (and the key with its last waiter). */
function dropWaiter<K>(map: Map<K, Resolver[]>, key: K, r: Resolver): void {
  const now = map.get(key);
  if (!now) return;
  const rest = now.filter((x) => x !== r);
  if (rest.length > 0) map.set(key, rest);
  else map.delete(key);
}
