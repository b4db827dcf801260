// The replica's event handling around ReplicaCore: reads that wait for a position. Shared by
// the Durable Object and the simulator.
import { readWaitersMax, resendMs, sequencerTimeoutMs, snapshotIdleMs, snapshotsPerReplicaMax } from "../limits.js";
import type { Clock, ReadAnswer, ReplicaApi, SessionAnswer, VoteReply } from "./io.js";
import type { ExportInfo, ReplicaCore, SnapshotInfo } from "./replica.js";
import { WatchHub } from "./watch.js";
import { QueryWrote, ResultTooLarge } from "../machines/types.js";
import type { AppendRequest, AppendResponse, AuditInfo, FenceReply, ReplicaPosition } from "./types.js";
import type { Entry } from "../api/types.js";

interface Waiter {
  minSeq: number;
  wake: () => void;
}

export class ReplicaDriver implements ReplicaApi {
  private waiters: Waiter[] = [];
  /** Open watch streams: fed after every step that applies entries, ended by a quarantine or a rebuild. */
  readonly watches: WatchHub;
  /** When this replica last heard from the sequencer of its epoch (its start counts: no vote right after a restart). */
  private heardMs: number;
  /**
   * When it last acknowledged an append (its start counts: what it acknowledged before a restart
   * is not known). A fence reports how long ago, so the successor waits out the old read lease.
   */
  private ackedMs: number;
  /**
   * Since when the sequencer it hears has had no quorum, as its last append said (null: it has
   * one). A replica on a cut-off sequencer's side of a partition (the co-located one always is)
   * hears its heartbeats, so its own silence never shows that it has lost the rest of the group.
   */
  private senderCutOffSinceMs: number | null = null;
  /** When anything last reached it: a call of any kind, from the sequencer or a router. */
  private contactMs: number;
  /** Its start, or its return: the first call after nothing reached it for sequencerTimeoutMs (see contact()). */
  private upSinceMs: number;
  private cancelSilenceCheck: (() => void) | null = null;
  /** Its sequencer said it sleeps (AppendRequest.sleep): no silence is recorded, watches stay, a vote wakes it. */
  private asleep = false;
  /** Sleeps begun here (a probe's answer is for the sleep it asked about, not a later one). */
  private sleeps = 0;
  /** When a PreVote ended its sleep (wakeFromSleep); null once it hears the sequencer. */
  private wokeMs: number | null = null;
  /** Asks the group's sequencer to show itself while watches wait in a silence, or a PreVote found it asleep (set by the host). */
  wakeSequencer: (() => void) | null = null;
  /** Asks whether the group's sequencer still sleeps, without waking it (set by the host; see probeSleep). */
  sequencerAsleep: (() => Promise<boolean>) | null = null;
  private probedMs = -Infinity;

  constructor(
    public core: ReplicaCore | null,
    private readonly clock: Clock,
  ) {
    this.heardMs = clock.nowMs();
    this.ackedMs = this.heardMs;
    this.contactMs = this.heardMs;
    this.upSinceMs = this.heardMs;
    this.asleep = core?.config.asleepSinceMs !== undefined;
    this.watches = new WatchHub(
      {
        appliedSeq: () => this.core?.appliedSeq ?? 0,
        readEvents: (from, limit, bytesMax) => this.core?.readEvents(from, limit, bytesMax) ?? [],
        silentMs: () => this.silentMs(),
        wake: () => this.wakeSequencer?.(),
      },
      clock,
    );
  }

  /**
   * Notes a call. One after nothing at all reached this replica for sequencerTimeoutMs is a
   * return: it may have been away itself (partitioned), and then its silence is not the
   * sequencer's. It cannot tell (nothing reaches it either while a sequencer isolated in a
   * hold-down is silent), so it only says so in its vote (`upMs`) and the PreVote judges.
   */
  private contact(): void {
    const now = this.clock.nowMs();
    if (now - this.contactMs >= sequencerTimeoutMs) this.upSinceMs = now;
    this.contactMs = now;
  }

  append(req: AppendRequest): AppendResponse {
    this.contact();
    if (!this.core) return { ok: false, reason: "not_initialized" };
    const appliedBefore = this.core.appliedSeq;
    const resp = this.core.append(req, this.watches.lowestSeq());
    if (resp.ok || resp.reason !== "stale_epoch") {
      this.noteSleep(req.sleep === true);
      this.heard();
      this.ackedMs = this.heardMs;
      this.senderCutOffSinceMs = req.cutOffMs === undefined ? null : this.heardMs - req.cutOffMs;
    }
    if (resp.ok && resp.appliedSeq > appliedBefore) {
      this.wakeWaiters();
      if (this.watches.count > 0) this.watches.pump();
    }
    return resp;
  }

  private wakeWaiters(): void {
    const applied = this.core?.appliedSeq ?? Infinity;
    const ready = this.waiters.filter((w) => w.minSeq <= applied);
    if (ready.length === 0) return;
    this.waiters = this.waiters.filter((w) => w.minSeq > applied);
    for (const w of ready) w.wake();
  }

  /** Resolves true once appliedSeq >= minSeq, false after waitMs (or if the replica goes away). */
  private waitApplied(minSeq: number, waitMs: number): Promise<boolean> {
    if (!this.core) return Promise.resolve(false);
    if (this.core.appliedSeq >= minSeq) return Promise.resolve(true);
    if (waitMs <= 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      const w: Waiter = {
        minSeq,
        wake: () => {
          cancel();
          resolve(this.core !== null && this.core.appliedSeq >= minSeq);
        },
      };
      const cancel = this.clock.setTimer(waitMs, () => {
        this.waiters = this.waiters.filter((x) => x !== w);
        resolve(false);
      });
      this.waiters.push(w);
    });
  }

  /**
   * `evenDamaged`: served though this replica's rows failed its last scrub. Without it such a
   * replica refuses ("damaged"), and the router asks it again so only when no other serves (every
   * replica damaged: the audit's alarm). A scrub's failure needs no quorum to prove the rows bad,
   * yet the replica stayed unquarantined while another was down, serving its damage (a probe).
   */
  async query(q: unknown, minSeq: number, waitMs: number, evenDamaged = false): Promise<ReadAnswer> {
    this.contact();
    if (!this.core) return { kind: "not_found" };
    const replica = this.core.id;
    if (this.core.withheld) return { kind: "quarantined", replica };
    if (this.core.scrubFailed && !evenDamaged) return { kind: "damaged", replica };
    if (this.core.appliedSeq < minSeq && this.waiters.length >= readWaitersMax) return { kind: "busy", replica };
    if (!(await this.waitApplied(minSeq, waitMs))) {
      // Destroyed while it waited (the group deleted): no state, not a position missed in time
      // (a probe's read got a 504 "did not reach the position in 2000 ms (it is at 0)" at 0.3 s).
      if (!this.core) return { kind: "not_found" };
      return { kind: "timeout", replica, appliedSeq: this.core.appliedSeq };
    }
    if (this.core.withheld) return { kind: "quarantined", replica };
    let result: unknown;
    try {
      result = this.core.query(q);
    } catch (err) {
      if (err instanceof ResultTooLarge) return { kind: "too_large", replica, message: err.message };
      if (err instanceof QueryWrote) return { kind: "query_wrote", replica, message: err.message };
      throw err;
    }
    return { kind: "ok", result, seq: this.core.appliedSeq, epoch: this.core.position().epoch, replica, ...(this.core.scrubFailed ? { damaged: true as const } : {}) };
  }

  /** The recorded outcome of (client, request), once this replica has applied minSeq. */
  async session(client: string, request: number, minSeq: number, waitMs: number): Promise<SessionAnswer> {
    this.contact();
    // No state, or state it must not serve (quarantined, rebuilding): it abstains. Its "missing"
    // counted as an answer, and with outputs "first" it alone told a retry of an executed command
    // that its request id had expired (the simulator, seed 1066322991).
    if (!this.core || this.core.withheld) return { kind: "timeout" };
    // Bounded as reads are: a retry's lookup is asked again every resendMs (askAgain), and a storm
    // of retries against a lagging replica added a waiter and a timer per ask (a review).
    if (this.core.appliedSeq < minSeq && this.waiters.length >= readWaitersMax) return { kind: "timeout" };
    if (!(await this.waitApplied(minSeq, waitMs))) return { kind: "timeout" };
    if (!this.core || this.core.withheld) return { kind: "timeout" }; // quarantined while it waited
    return this.core.session(client, request);
  }

  fence(epoch: number, by?: string): FenceReply | null {
    this.contact();
    const r = this.core?.fence(epoch, by) ?? null;
    if (!r) return null;
    // A new sequencer is recovering: give it the whole timeout before voting it gone.
    if (r.accepted) {
      this.noteSleep(false); // what the old one said no longer holds either
      this.heard();
      this.senderCutOffSinceMs = null; // a new sequencer: what the old one said no longer holds
    }
    return { ...r, ackedAgoMs: this.clock.nowMs() - this.ackedMs };
  }

  position(): (ReplicaPosition & { quarantined: boolean; scrubFailed?: true }) | null {
    this.contact();
    return this.core ? { ...this.core.position(), quarantined: this.core.quarantined, ...(this.core.scrubFailed ? { scrubFailed: true as const } : {}) } : null;
  }

  /** How long this replica has heard nothing from a serving sequencer (watches end past watchSilenceMs); 0 while it sleeps. */
  silentMs(): number {
    if (this.asleep) {
      this.probeSleep();
      return 0;
    }
    const now = this.clock.nowMs();
    return Math.max(now - this.lastHeardMs(), this.senderCutOffSinceMs === null ? 0 : now - this.senderCutOffSinceMs);
  }

  /**
   * When it last heard from its epoch's sequencer: in memory since this start, or, if it started
   * in a silence it had recorded (an object evicted while nothing reached it), the recorded start
   * of that silence, so a restart does not count as contact.
   */
  private lastHeardMs(): number {
    return Math.min(this.heardMs, this.core?.config.silentSinceMs ?? Infinity);
  }

  private heard(): void {
    this.heardMs = this.clock.nowMs();
    this.wokeMs = null;
    this.core?.noteSilence(null);
    this.watchSilence();
  }

  /**
   * One timer at a time (not one per append): once sequencerTimeoutMs have passed without
   * contact, the start of the silence is written down (one write per silence, none while it hears).
   */
  private watchSilence(): void {
    if (this.asleep || this.cancelSilenceCheck || !this.core) return;
    const dueMs = Math.max(0, this.heardMs + sequencerTimeoutMs - this.clock.nowMs());
    this.cancelSilenceCheck = this.clock.setTimer(dueMs, () => {
      this.cancelSilenceCheck = null;
      if (!this.core || this.asleep) return;
      if (this.clock.nowMs() - this.heardMs < sequencerTimeoutMs) return this.watchSilence();
      if (this.core.config.silentSinceMs === undefined) this.core.noteSilence(this.heardMs);
    });
  }

  /** Its sequencer's sleep began (a message with `sleep`) or ended (one without). */
  private noteSleep(asleep: boolean): void {
    if (asleep === this.asleep) return;
    this.asleep = asleep;
    if (asleep) this.sleeps++;
    this.core?.noteSleep(asleep ? this.clock.nowMs() : null, null);
    if (!asleep) return;
    this.cancelSilenceCheck?.();
    this.cancelSilenceCheck = null;
  }

  /**
   * A PreVote while its sequencer sleeps: a router could not reach the sequencer, which sends
   * nothing asleep, so the silence says nothing yet. The replica wakes it (a call of its own: one
   * that is up heartbeats again and keeps office, even if that router cannot reach it) and counts
   * its silence from now, written down at once (an eviction before the next vote must not reset
   * it): one that is down is voted gone sequencerTimeoutMs later, as if it had just gone quiet.
   */
  private wakeFromSleep(): void {
    const now = this.clock.nowMs();
    this.asleep = false;
    this.heardMs = now;
    this.wokeMs = now;
    this.core?.noteSleep(null, now);
    this.wakeSequencer?.();
    // Asked again each resendMs until it is heard: one lost call must not leave a sequencer that
    // is up, and reaches this replica, voted gone for a silence it never knew of (a review).
    const again = () => {
      if (this.asleep || this.heardMs !== now || this.clock.nowMs() - now >= sequencerTimeoutMs) return;
      this.wakeSequencer?.();
      this.clock.setTimer(resendMs, again);
    };
    this.clock.setTimer(resendMs, again);
  }

  /**
   * Asleep, a replica takes its silence for idleness. One cut off from the sequencer when the
   * group woke never hears the message that ends its sleep, and kept its watches open with
   * keepalives only while the group wrote on elsewhere (a review). So while anyone asks about its
   * silence (a watch's keepalive tick, a fresh watch), it asks the sequencer every
   * sequencerTimeoutMs whether it still sleeps, without waking it; awake, or no answer, and the
   * sleep ends unheard: its silence counts from then, and its watches end watchSilenceMs later
   * unless a message comes (an awake sequencer in reach sends one within heartbeatMs).
   */
  private probeSleep(): void {
    const now = this.clock.nowMs();
    if (!this.sequencerAsleep || now - this.probedMs < sequencerTimeoutMs) return;
    this.probedMs = now;
    const sleep = this.sleeps;
    const unheard = () => {
      if (!this.asleep || this.sleeps !== sleep || !this.core) return;
      this.asleep = false;
      this.heardMs = this.clock.nowMs();
      this.core.noteSleep(null, null);
      this.watchSilence();
    };
    this.sequencerAsleep().then((asleep) => (asleep ? undefined : unheard()), unheard);
  }

  /** The PreVote: how long since this replica heard from the sequencer of its epoch. */
  vote(): VoteReply | null {
    this.contact();
    if (!this.core) return null;
    if (this.asleep) this.wakeFromSleep();
    this.watchSilence(); // woken by this vote: its silence from now on is recorded too
    const heardAgoMs = this.clock.nowMs() - this.lastHeardMs();
    const gone = heardAgoMs >= sequencerTimeoutMs;
    const waking = !gone && this.wokeMs !== null;
    return { epoch: this.core.position().epoch, heardAgoMs, gone, amnesiac: this.core.amnesiac, upMs: this.clock.nowMs() - this.upSinceMs, ...(waking ? { waking } : {}) };
  }

  readLog(fromSeq: number, toSeq: number): Entry[] {
    return this.core?.readLog(fromSeq, toSeq) ?? [];
  }

  beginSnapshot(): SnapshotInfo | null {
    return this.core?.beginSnapshot() ?? null;
  }
  snapshotPage(seq: number, after: string | null, maxBytes: number): [string, string][] | null {
    return this.core?.snapshotPage(seq, after, maxBytes) ?? null;
  }
  endSnapshot(): void {
    this.core?.endSnapshot();
  }
  beginInstall(info: SnapshotInfo, transferId: string, sequencerEpoch: number): boolean {
    if (!this.core) return false;
    const ok = this.core.beginInstall(info, transferId, sequencerEpoch);
    if (ok) {
      this.watches.closeAll();
      this.heard(); // a transfer's pages come instead of appends: its sequencer is there
    }
    return ok;
  }
  installPage(transferId: string, rows: [string, string][]): boolean {
    const ok = this.core?.installPage(transferId, rows) ?? false;
    if (ok) this.heard();
    return ok;
  }
  endInstall(transferId: string): { ok: boolean; digest: string; storageBytes?: number; installs?: number } | null {
    const r = this.core?.endInstall(transferId) ?? null;
    if (r?.ok) {
      this.heard();
      this.wakeWaiters();
    }
    return r;
  }

  /** Frozen copies being downloaded, and when each was last read (an idle one is dropped). */
  private readonly exports = new Map<string, number>();
  private exportsMade = 0;
  private cancelExportSweep: (() => void) | null = null;

  /**
   * Drops the copies unread for snapshotIdleMs, and looks again later while any is kept. Swept
   * only when the next download began, a download cut off by a fault (its end never came) left
   * its copy, a full copy of the state, until then: 305 MB for minutes (a probe).
   */
  private sweepExports(): void {
    const now = this.clock.nowMs();
    for (const [id, usedMs] of this.exports) if (now - usedMs > snapshotIdleMs) this.endExport(id);
    this.cancelExportSweep?.();
    this.cancelExportSweep = null;
    if (this.exports.size === 0) return;
    this.cancelExportSweep = this.clock.setTimer(snapshotIdleMs, () => {
      this.cancelExportSweep = null;
      this.sweepExports();
    });
  }

  async beginExport(minSeq = 0, waitMs = 0): Promise<ExportInfo | null> {
    if (!this.core) return null;
    // Waiting shares the reads' bound on waiters.
    if (this.core.appliedSeq < minSeq && this.waiters.length >= readWaitersMax) return null;
    if (!(await this.waitApplied(minSeq, waitMs)) || !this.core) return null;
    this.sweepExports();
    if (this.exports.size >= snapshotsPerReplicaMax) return null;
    const id = `export_${++this.exportsMade}`;
    const info = this.core.beginExport(id);
    if (info) {
      this.exports.set(id, this.clock.nowMs());
      this.sweepExports();
    }
    return info;
  }
  exportPage(id: string, after: string | null, maxBytes: number): [string, string][] | null {
    if (!this.core || !this.exports.has(id)) return null;
    this.exports.set(id, this.clock.nowMs());
    return this.core.exportPage(id, after, maxBytes);
  }
  endExport(id: string): void {
    if (!this.exports.delete(id)) return;
    this.core?.endExport(id);
  }

  auditInfo(markSeq?: number): AuditInfo | null {
    this.contact();
    return this.core?.auditInfo(markSeq) ?? null;
  }

  scrubNow(): { finished: boolean } | null {
    return this.core?.scrubNow() ?? null;
  }

  setQuarantined(quarantined: boolean, epoch?: number, stamp?: number): { stale: true; installs: number } | undefined {
    if (!this.core || (epoch !== undefined && epoch < this.core.position().epoch)) return undefined;
    const stale = this.core.setQuarantined(quarantined, stamp);
    if (quarantined && !stale) this.watches.closeAll();
    return stale;
  }

  release(rebase: boolean): { ok: boolean; digest: string; reason?: string } {
    return this.core?.release(rebase) ?? { ok: false, digest: "", reason: "no such replica" };
  }

  /**
   * Serves a replica it did not serve before: one loaded at the object's start, or made by an
   * init (a new incarnation's, after a deleted group's state was erased here, or a rejoin's).
   * Its start counts as contact, as a new object's does: what this object heard and acknowledged
   * for the replica before (a deleted group's sequencer, silent for minutes before the DELETE) is
   * not this one's. Kept, it made a re-created group's replicas vote its sequencer gone the
   * moment they were made, with the old group's silence as the new failover's downMs.
   */
  attach(core: ReplicaCore): void {
    const now = this.clock.nowMs();
    this.core = core;
    this.heardMs = now;
    this.ackedMs = now;
    this.contactMs = now;
    this.upSinceMs = now;
    this.senderCutOffSinceMs = null;
    this.asleep = core.config.asleepSinceMs !== undefined;
    this.wokeMs = null;
  }

  /** Drops the core (storage gone or memory lost); waiting reads end. */
  detach(): void {
    this.core = null;
    // Its copies went with the storage.
    this.exports.clear();
    this.cancelExportSweep?.();
    this.cancelExportSweep = null;
    this.cancelSilenceCheck?.();
    this.cancelSilenceCheck = null;
    this.watches.closeAll();
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.wake();
  }
}
