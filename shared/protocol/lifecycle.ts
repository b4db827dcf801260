// The sequencer's lifecycle, once: start from persisted state, create a group, recover after the
// loss of storage (or as the new object of a move), the reaction to being fenced, hand-over and
// destroy, with incarnations and one operation at a time. The Durable Object (workers/sequencer.ts)
// and the simulator (test/sim/nodes.ts) both run this class, each behind a small host interface,
// so the simulator exercises the real shell and not a copy.
import { heartbeatMs, replicaRpcTimeoutMs } from "../limits.js";
import { SequencerDriver } from "./driver.js";
import { type DriverIO, withTimeout } from "./io.js";
import { MajorityConfig } from "./quorum.js";
import { recoverSequencer } from "./recovery.js";
import { SequencerCore, type SequencerMeta, type SequencerStorage } from "./sequencer.js";
import type { ConfigChange, GroupConfig, ReplicaPosition } from "./types.js";
import { creationConfig, membersOf, sequencerName } from "./types.js";

/** What a sequencer's home provides. */
export interface SequencerHost {
  /** The durable storage (it may be a new object after wipe(), in the simulator). */
  storage(): SequencerStorage;
  /** Creates the empty tables before a creation or a recovery writes. */
  prepare(): void;
  /** Deletes everything stored. */
  wipe(): Promise<void>;
  /** The driver's I/O for a config: clock, timers, links to its replicas, the directory, events. */
  io(config: GroupConfig): DriverIO;
  /** The sequencer was fenced by a newer epoch and discards its log (then recovers, if still in office). */
  fenced?(config: GroupConfig): void;
  /**
   * Whether the directory still names this sequencer. A sequencer fenced out by a failover's
   * successor must not recover (it would depose the new one in turn); one fenced by an
   * interrupted recovery of its own does.
   */
  inOffice?(config: GroupConfig): Promise<boolean>;
  /** The config the group's directory holds now (its memberships in flight, if a change was under way). */
  directoryConfig?(config: GroupConfig): Promise<GroupConfig | null>;
  /**
   * Whether the directory's record is of this life and not being deleted. The lives a DELETE closed
   * are kept in memory (closedThrough): an init that landed after its DELETE's destroy and a
   * restart of this object would make a deleted life's objects, storage nothing would free (a review).
   */
  creatable?(config: GroupConfig): Promise<boolean>;
  /** A recovery after a fencing failed: the host retries later (the simulator) or waits for the next request (the Durable Object). */
  recoveryFailed?(config: GroupConfig, reason: string): void;
  /**
   * Keeps the recovery's event, awaited (bounded; its time once kept, null if not): with it the
   * directory keeps the event of the move or failover that named this sequencer (SequencerChange),
   * whoever asked for the recovery, at that time. Without it, the event goes as every other
   * (DriverIO.event, in the background).
   */
  recovered?(config: GroupConfig, epoch: number, message: string, fields: Record<string, unknown>): Promise<string | null>;
}

/** Variants for the simulator's deliberately broken protocols; production uses the defaults. */
export interface LifecycleOptions {
  makeCore?(storage: SequencerStorage, meta: SequencerMeta): SequencerCore;
  makeDriver?(core: SequencerCore, io: DriverIO): SequencerDriver;
}

/**
 * `deposed`: the directory names another sequencer; this one must not recover (and need not retry).
 * `eventKept`: the recovery at this epoch (this call's, or another call's that came first) had its
 * event kept (with the event of the change that named it),
 * `eventAt` its time: the change's event is kept with it, and the router's log line says the same
 * down time (it reckoned its own, from its own later clock: 20 ms apart, an operator probe).
 */
export type Recovered = { ok: true; epoch: number; eventKept?: boolean; eventAt?: string } | { ok: false; reason: string; deposed?: boolean };
/** A recovery event's fields; `again`: not this sequencer's first recovery (SequencerChange). */
type RecoveryFields = { sequencer: string; again?: true };
/** A recovery's event, reported once the recovery is done. */
type RecoveryReport = (message: string, fields: RecoveryFields) => void;
/** `unavailable`: made, but fewer than a quorum of its replicas could be (a retry finishes it). */
export type InitResult = { kind: "created" | "exists" } | { kind: "conflict" } | { kind: "unavailable"; reason: string };

export class SequencerLifecycle {
  driver: SequencerDriver | null = null;
  /** Incarnations destroyed while this lives: a recovery of one of them never starts serving. */
  private closedThrough = -1;
  /** False once the process this lives in is gone (the simulator's crash): nothing more is written. */
  private alive = true;
  /**
   * One operation at a time: a recovery that failed used to wipe the storage a concurrent creation
   * had just made (a late writer's recovery racing the PUT that recreated its group).
   */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly host: SequencerHost,
    private readonly options: LifecycleOptions = {},
  ) {}

  get core(): SequencerCore | null {
    return this.driver?.core ?? null;
  }

  private serially<T>(op: () => Promise<T>): Promise<T> {
    const run = this.queue.then(op, op);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Serves from persisted state (after a restart, or a recovery: `changes` are the config entries
   * it recovered, `recorded` the directory's config it recovered from); nothing if there is none.
   * `readDirectory` false: `recorded` is the directory's record as it stands (a creation's).
   */
  start(meta: SequencerMeta | null, changes: { seq: number; change: ConfigChange }[] = [], recorded: GroupConfig | null = null, readDirectory = true): void {
    if (!meta) return;
    if (meta.restoreEpoch === meta.epoch) {
      // It stopped while a restore installed: a replica may hold the restore where its next entry
      // would go (SequencerMeta.restoreEpoch). Recover at a new epoch first.
      this.fenced(meta.config);
      return;
    }
    const storage = this.host.storage();
    const core = this.options.makeCore?.(storage, meta) ?? new SequencerCore(storage, meta);
    const io = this.host.io(meta.config);
    const driver = this.options.makeDriver?.(core, io) ?? new SequencerDriver(core, io);
    // Its membership now, not at its start: a recovery falls back to it if the directory cannot be read.
    io.onFenced = () => this.fenced(core.config);
    this.driver = driver;
    // Entries ordered before a restart but not yet known committed: finish replicating them.
    driver.kickAll();
    driver.startHeartbeats();
    // The directory may still name a change in flight whose end this sequencer did not see: it
    // restarted (a deploy restarts every object) or was fenced, or its predecessor was lost. Once
    // the log is committed, its membership is the one in force: the change is finished
    // (finishInherited: its events, a removed replica's storage) and the membership recorded. The
    // record comes after the read, since it clears what the read must see. (Only a recovery from
    // the directory's own record did this before; a restart mid-removal left the removed
    // replica's storage for ever and wrote no event.)
    // No change may begin before (driver.holdChanges); a read that fails is tried again each
    // heartbeat (recording first would clear the change for good: a review's finding).
    const atSeq = core.lastLogSeq;
    driver.holdChanges();
    const ours = (d: GroupConfig | null) => (d !== null && d.incarnation === meta.config.incarnation && sequencerName(d) === sequencerName(meta.config) ? d : null);
    const settle = (d: GroupConfig | null) => {
      if (this.driver === driver) driver.settleStart(ours(d), changes, atSeq);
    };
    const read = (): void => {
      if (this.driver !== driver) return;
      if (!this.host.directoryConfig || !readDirectory) return settle(recorded);
      this.host.directoryConfig(meta.config).then(
        (d) => settle(d ?? recorded),
        () => (recorded ? settle(recorded) : void io.setTimer(heartbeatMs, read)),
      );
    };
    read();
  }

  /** The process is gone (simulator): waiting clients get no outcome and nothing more is written. */
  stop(): void {
    this.alive = false;
    this.driver?.stop();
    this.driver = null;
  }

  /** Stops the driver and erases the storage; a stopped lifecycle (its process gone) erases nothing. */
  private async wipe(): Promise<void> {
    this.driver?.stop();
    this.driver = null;
    if (this.alive) await this.host.wipe();
  }

  /** Whether a destroy of this incarnation has begun here (a DELETE): nothing of it may be made again. */
  closed(incarnation: number): boolean {
    return incarnation <= this.closedThrough;
  }

  /** Whether a call for this incarnation may act here; a newer one first wipes a leftover. */
  private async admit(incarnation: number): Promise<boolean> {
    if (!this.alive || incarnation <= this.closedThrough) return false;
    const mine = this.core?.config.incarnation;
    if (mine !== undefined && mine > incarnation) return false;
    if (mine !== undefined && mine < incarnation) await this.wipe();
    return true;
  }

  /**
   * The group exists but this sequencer has no state: its storage was lost, or it is the new
   * object of a move or a failover. Rebuild the log from a quorum of replicas at a new epoch.
   */
  recover(config: GroupConfig): Promise<Recovered> {
    // A fencing's own recovery is not the first, nor, if that one failed, the next request's (a review).
    return this.recoverReporting(config, this.fencedIn === config.incarnation);
  }

  /**
   * The incarnation in which this sequencer was last fenced (or restarted into a recovery) since
   * this object started; null: never. Per incarnation, not per object: names repeat across
   * incarnations (a deleted group's `g~s1` and the re-created one's are one object), and a flag
   * set by the old incarnation's fencing made the new one's first recovery say `again`, so the
   * failover that named it was kept with epoch 0, "its recovery was not recorded" (a probe).
   */
  private fencedIn: number | null = null;

  /** The last recovery's event as host.recovered keeps it (its time once kept, null if not). */
  private reported: { incarnation: number; epoch: number; at: Promise<string | null> } | null = null;

  /**
   * `again`: this sequencer recovered (or served) before, so a move's or failover's event waiting
   * for its first recovery must not take this one's epoch (a review: the first one's event lost,
   * a fencing days later kept it with that epoch and days of down time). The event is awaited
   * outside the queue: a slow directory must not hold a DELETE's destroy or a hand-over.
   */
  private async recoverReporting(config: GroupConfig, again: boolean): Promise<Recovered> {
    let event: { message: string; fields: RecoveryFields } | null = null;
    const r = await this.serially(() => this.recoverNow(config, again, (message, fields) => (event = { message, fields })));
    if (!r.ok) return r;
    if (event === null) {
      // Serving already: another call's recovery (of this epoch) kept the event, or is keeping it.
      // Its time, so the router that named this sequencer logs the down time the event keeps (a
      // review: another router's request recovered it first, and the log line reckoned its own).
      const last = this.reported;
      if (last === null || last.incarnation !== config.incarnation || last.epoch !== r.epoch) return r;
      const at = await last.at;
      return at === null ? r : { ...r, eventKept: true, eventAt: at };
    }
    const { message, fields } = event;
    if (this.host.recovered) {
      const kept = this.host.recovered(config, r.epoch, message, fields).catch(() => null);
      this.reported = { incarnation: config.incarnation, epoch: r.epoch, at: kept };
      const at = await kept;
      return { ...r, eventKept: at !== null, ...(at !== null ? { eventAt: at } : {}) };
    }
    this.host.io(config).event?.("recovery", message, fields);
    return r;
  }

  private async recoverNow(given: GroupConfig, again: boolean, report: RecoveryReport): Promise<Recovered> {
    if (!(await this.admit(given.incarnation))) return { ok: false, reason: `incarnation ${given.incarnation} of ${given.group} is over here` };
    if (this.core) return { ok: true, epoch: this.core.epoch };
    // Only the sequencer the directory names recovers: a deposed one restarted without storage
    // would fence its successor out, and the two would depose each other at ever higher epochs.
    // (inOffice is the host's own answer: it knows which object it is, where `given` may name
    // another; one directory read for both let the simulator's deposed objects recover.)
    if (this.host.inOffice && !(await this.host.inOffice(given).catch(() => false))) return { ok: false, reason: "the directory names another sequencer", deposed: true };
    // With the directory's membership: a change is recorded there (write-ahead) before its entry
    // is ordered, so it is never older than the membership the sequencer before held; the given
    // one may be, and the wait for the old read lease counts on it (recovery.ts, oldLeaseEndMs).
    const config = await this.named(given);
    this.host.prepare();
    const owner = () => this.alive && config.incarnation > this.closedThrough;
    const io = this.host.io(config);
    const r = await recoverSequencer(config, this.host.storage(), io, owner);
    if (!r.ok || !owner()) {
      if (this.alive) await this.host.wipe();
      return { ok: false, reason: r.ok ? "the group was deleted meanwhile" : r.reason };
    }
    r.meta.since = new Date(io.nowMs()).toISOString();
    this.host.storage().saveMeta(r.meta);
    this.start(r.meta, r.changes, config); // it finishes a change in flight and records the membership once the no-op commits
    report(`sequencer ${sequencerName(config)} recovered ${r.recoveredSeq} entries at epoch ${r.meta.epoch}`, { sequencer: sequencerName(config), ...(again ? { again: true as const } : {}) });
    return { ok: true, epoch: r.meta.epoch };
  }

  /**
   * Fenced out by a newer epoch (an interrupted recovery, a message from a dead incarnation):
   * this log may hold entries no majority has; discard it and recover from the replicas.
   */
  private fenced(config: GroupConfig): void {
    this.fencedIn = config.incarnation;
    this.driver = null;
    this.host.fenced?.(config);
    // A deposed sequencer's recovery is refused (the directory names its successor): it stays wiped.
    void this.serially(() => this.host.wipe())
      .then(() => this.recover(config))
      .then((r) => {
        if (!r.ok && !r.deposed) this.host.recoveryFailed?.(config, r.reason);
      });
  }

  /**
   * The host heard that the directory names another sequencer, or no longer has the group (a
   * rejoin it refused): this one is deposed. A deposed sequencer is usually told by a fence, but
   * one cut off while its group was deleted meets only replicas with no state, whose rejoin it must
   * refuse; it stopped no loop and kept its log for ever (a DELETE destroys only the sequencer in
   * office and the object named like the group). It stops and wipes, as a fenced deposed one does,
   * unless the directory names it again by then (asked once more, behind any recovery queued).
   */
  resign(config: GroupConfig): Promise<boolean> {
    return this.serially(async () => {
      const core = this.core;
      if (!core || core.config.incarnation !== config.incarnation || sequencerName(core.config) !== sequencerName(config)) return false;
      const inOffice = await this.host.inOffice?.(config).catch(() => true);
      if (inOffice !== false || this.core !== core || !this.alive) return false;
      await this.wipe();
      return true;
    });
  }

  /** The directory's config if it names the sequencer `given` does, else `given` (also if it cannot be read). */
  private async named(given: GroupConfig): Promise<GroupConfig> {
    const d = await this.host.directoryConfig?.(given).catch(() => null);
    return d && d.incarnation === given.incarnation && sequencerName(d) === sequencerName(given) ? d : given;
  }

  /** Creates the group's sequencer and replicas; idempotent for the same config and incarnation. */
  init(config: GroupConfig): Promise<InitResult> {
    return this.serially(() => this.initNow(config));
  }

  private async initNow(config: GroupConfig): Promise<InitResult> {
    if (!(await this.admit(config.incarnation))) return { kind: "conflict" };
    if (!this.core && this.host.creatable) {
      const creatable = await this.host.creatable(config).catch((err: unknown) => String(err));
      if (creatable === false) return { kind: "conflict" };
      if (creatable !== true) return { kind: "unavailable", reason: `the group's directory cannot be read (${creatable})` };
    }
    let kind: "created" | "exists" = "exists";
    if (!this.core && (await this.replicasHoldState(config))) {
      // The group was created before and this sequencer lost its storage: recover, never restart at seq 1.
      const r = await this.recoverNow(config, true, (message, fields) => this.host.io(config).event?.("recovery", message, fields));
      if (!r.ok) throw new Error(`group ${config.group} exists but its sequencer cannot recover: ${r.reason}`);
    }
    const io = this.host.io(config);
    if (!this.core) {
      const meta: SequencerMeta = { config, epoch: 1, commitSeq: 0, quarantined: [], since: new Date(io.nowMs()).toISOString() };
      const storage = this.host.storage();
      storage.transaction(() => {
        this.host.prepare();
        storage.saveMeta(meta);
      });
      this.start(meta, [], config, false); // nothing can be in flight in a group just made
      kind = "created";
    } else if (JSON.stringify(creationConfig(this.core.config)) !== JSON.stringify(creationConfig(config))) {
      return { kind: "conflict" };
    }
    const driver = this.driver;
    const unmade = await this.initReplicas(io);
    // Fenced by a newer epoch meanwhile (fenced() is not queued behind this): its recovery decides
    // now. The driver was dereferenced as it was, a TypeError, and a retried PUT answered 500 (a review).
    if (this.driver === null || this.driver !== driver || !this.core) return { kind: "unavailable", reason: "the group's sequencer was fenced by a newer epoch while its replicas were made; retry" };
    this.driver.kickAll();
    const voters = membersOf(this.core.config).filter((m) => m.voter);
    const made = voters.filter((m) => !unmade.has(m.id));
    if (new MajorityConfig(voters.map((m) => m.id)).reached(made.map((m) => m.id))) return { kind };
    const why = [...unmade].map(([id, reason]) => `${id}: ${reason}`).join("; ");
    return { kind: "unavailable", reason: `only ${made.length} of ${voters.length} replicas could be made, and a quorum is needed (${why})` };
  }

  /**
   * Makes every member's replica, each bounded by replicaRpcTimeoutMs; answers the ones not made
   * and why. A creation needs a quorum of them, as a write does: one whose location does not
   * answer is made later, when an append finds it without state (the driver's rejoin; with
   * entries in the log by then, quarantined until a state transfer rebuilds it). A review found
   * the PUT answered 500 with one replica of three unreachable, and a slow one hung it.
   */
  private async initReplicas(io: DriverIO): Promise<Map<string, string>> {
    const core = this.core!;
    const members = membersOf(core.config);
    const answers = await Promise.all(
      members.map((m) =>
        withTimeout(io, io.link(m.id).init(), replicaRpcTimeoutMs, `the init of replica ${m.id}`).then(
          (position) => (position === null ? "it belongs to a newer creation of the group" : (position as ReplicaPosition)),
          (err: unknown) => String(err),
        ),
      ),
    );
    const unmade = new Map<string, string>();
    members.forEach((m, i) => {
      const a = answers[i]!;
      if (typeof a === "string") unmade.set(m.id, a);
      core.noteContact(m.id, typeof a !== "string", io.nowMs(), typeof a === "string" ? undefined : a);
    });
    return unmade;
  }

  /** Whether any member's replica holds state (a fence's probe; one that does not answer in replicaRpcTimeoutMs counts as none). */
  private async replicasHoldState(config: GroupConfig): Promise<boolean> {
    const io = this.host.io(config);
    const probe = (id: string) => withTimeout(io, io.link(id).fence(0), replicaRpcTimeoutMs, `the probe of replica ${id}`).catch(() => null);
    const replies = await Promise.all(membersOf(config).map((m) => probe(m.id)));
    return replies.some((r) => r !== null);
  }

  /** A move: this sequencer stops and forgets everything; its successor recovers from the replicas. Answers the epoch it had. */
  handOver(): Promise<{ epoch: number }> {
    return this.serially(async () => {
      const epoch = this.core?.epoch ?? 0;
      await this.wipe();
      return { epoch };
    });
  }

  /**
   * Destroys the group's replicas and this sequencer's storage, unless it belongs to a newer
   * incarnation. Closed at once, so a recovery of this incarnation queued behind gives up.
   */
  destroy(incarnation: number, destroyReplicas: (config: GroupConfig | null) => Promise<void>): Promise<boolean> {
    this.closedThrough = Math.max(this.closedThrough, incarnation);
    // Every request to a group being deleted finishes the delete: one destroy under way of the
    // same incarnation is joined, not queued behind. Queued, each waited for all the destroys
    // before its own, and with a slow replica the requests' waits grew by a whole destroy each
    // (a probe: 20 s per destroy, a GET answered after 40 s). One that failed is not joined: the
    // next call tries again.
    const running = this.destroying;
    if (running && running.incarnation === incarnation) return running.run;
    const run = this.destroyNow(incarnation, destroyReplicas);
    this.destroying = { incarnation, run };
    const done = () => {
      if (this.destroying?.run === run) this.destroying = null;
    };
    run.then(done, done);
    return run;
  }

  /** The destroy under way (queued or running), which a second call for its incarnation joins. */
  private destroying: { incarnation: number; run: Promise<boolean> } | null = null;

  private destroyNow(incarnation: number, destroyReplicas: (config: GroupConfig | null) => Promise<void>): Promise<boolean> {
    return this.serially(async () => {
      const mine = this.core?.config.incarnation;
      if (mine !== undefined && mine > incarnation) return false;
      const config = this.core?.config ?? null;
      this.driver?.stop(true);
      this.driver = null;
      await destroyReplicas(config);
      await this.host.wipe();
      return config !== null;
    });
  }
}
