import { batchOutputCharsMax, directoryWriteTimeoutMs, sessionOutputFreeCharsDefault, eventKeepTimeoutMs, heartbeatMs, pageBytesMax, sleepNoteRetryMaxMs, replicaDestroyTimeoutMs, replicaInitTimeoutMs, snapshotIdleMs, statusContactWaitMs, storageQuotaMiBOf, transferPageBytes } from "../shared/limits.js";
import type { LogPage } from "../shared/api/results.js";
import { repairingRefusal, type SequencerDriver } from "../shared/protocol/driver.js";
import { type InitResult, SequencerLifecycle, type Recovered } from "../shared/protocol/lifecycle.js";
import { type DriverIO, type ReadIndexAnswer, type ReplicaArgs, type ReplicaLink, type ReplicaMethod, type ReplicaResult, type ReplicaTransport, type SubmitAnswer, type Unavailable, linkOver, withTimeout } from "../shared/protocol/io.js";
import type { Refusal, Refused, SequencerCore, SequencerMeta } from "../shared/protocol/sequencer.js";
import type { AppendRequest, AppendResponse, GroupConfig, ReplicaPosition } from "../shared/protocol/types.js";
import type { AuditReport, Entry, EventKind, GroupStatus, ReplicaStatus } from "../shared/api/types.js";
import { withAuditedPositions } from "./replica-view.js";
import { isColocated, membersOf, sequencerLocationOf, sequencerName, withCurrentSequencer } from "../shared/protocol/types.js";
import { replicaIds } from "../shared/protocol/types.js";
import { type Env, directoryStub, realClock, registryStub, replicaStub, rpc, sequencerStub, sleepAfterMs } from "./env.js";
import { Predecessors, type ResignAnswer } from "./predecessors.js";
import { sequencerAsleep, wakeSequencer } from "./groups.js";
import { RestoreStage, SqlSequencerStorage, dropReplicaTables, dropSequencerTables, readMeta } from "./sqlite.js";
import { ReplicaHost, type ReplicaInit, ReplicaServing } from "./replica-host.js";
import { guarded } from "./faults.js";
import { type Rejoin, sessionRulesOf } from "../shared/protocol/replica.js";
import { digestOfPages } from "../shared/protocol/state.js";
import { shareCommandHashes } from "../shared/protocol/entry.js";
import { decodeAppend, encodeAppend } from "./wire.js";
import { type LogLevel, logEvent } from "../shared/log.js";
import type { SequencerWork } from "../shared/api/metrics.js";
import type { GroupRecord } from "../shared/control/directory.js";

/**
 * Events an operator should see without searching (a quarantine, a rejoin, an audit alarm), by the
 * event's action if it has one (an operator's release is no warning), else its kind.
 */
const eventLevels: Record<string, LogLevel> = { quarantine: "warn", rejoin: "warn", alarm: "error" };

export type { SubmitAnswer };

/** incarnation (an end's): the group's life that adopted the restore, which the answer's bookmark names. */
export type RestoreAnswer = { kind: "ok"; id: string; incarnation?: number } | { kind: "not_found" | "conflict" | "unavailable" | "timeout" | "bad"; message: string };

/** A destroy: whether this object held the group (false: nothing, or a newer incarnation's), or why it could not finish. */
export type DestroyAnswer = boolean | { failed: string };

/** An older sequencer's hand-over answered nothing (undefined). */
export type HandOverAnswer = { epoch: number } | undefined;
/**
 * `why`: the error's reason (errors.ts), for a refusal no quick retry mends. `noQuorum`: refused
 * for want of a quorum this sequencer does not reach either, so it cannot tell whether it or the
 * replicas are cut off: the router asks the voters itself (routes/members.ts).
 */
export type ChangeRefused = { ok: false; reason: string; code: "not_found" | "conflict" | "unavailable" | "timeout"; why?: "unreachable"; noQuorum?: true };
export type AddReplicaAnswer = { ok: true; replica: ReplicaStatus } | ChangeRefused;
export type RemoveReplicaAnswer = { ok: true; replica: ReplicaStatus } | ChangeRefused;
export type ReleaseAnswer = { ok: true } | { ok: false; reason: string; code: "not_found" | "conflict" | "unavailable" };

/**
 * The API's code for a refused membership change. Ordered but not committed in time is a 504: it
 * may still take effect (a 503 says "certainly not ordered", and a retry then met "no replica").
 */
function changeRefused(r: Refused, driver: SequencerDriver): ChangeRefused {
  const codes: Partial<Record<Refusal, ChangeRefused["code"]>> = { full: "conflict", last_voter: "conflict", not_member: "not_found", not_committed: "timeout" };
  // `unreachable` (retried for seconds only) while this sequencer reaches its voters: the replicas
  // the change needs are down. Cut off itself, a failover may mend it: retried as any 503 (a review).
  const noQuorum = r.refused === "no_quorum";
  const unreachable = noQuorum && driver.reachesQuorum();
  const why = unreachable ? { why: "unreachable" as const } : noQuorum ? { noQuorum: true as const } : {};
  return { ok: false, reason: r.reason, code: codes[r.refused] ?? "unavailable", ...why };
}

/** The co-located replica's log table: the sequencer's own log is `log`. */
const colocatedLogTable = "replica_log";
/** The longest an audit after a repair is waited for before the next may start. */
const repairAuditTimeoutMs = 60_000;

/**
 * The sequencer of one group: a thin shell. Ordering, commit and voting are SequencerCore's; the
 * send loops and waiting clients are SequencerDriver's; start, creation, recovery, fencing,
 * hand-over and destroy are SequencerLifecycle's (shared with the simulator). This class gives
 * them SQLite, RPC stubs and the group's directory.
 *
 * The object named like the group also hosts the co-located replica (GroupConfig.colocated),
 * with the replica methods of ReplicaObject: its own tables beside the sequencer's, each erased
 * alone, so a deposed sequencer that wipes its log leaves the replica serving.
 */
export class SequencerObject extends ReplicaServing {
  private readonly store: SqlSequencerStorage;
  private readonly stage: RestoreStage;
  private readonly lifecycle: SequencerLifecycle;
  protected readonly replica: ReplicaHost;
  private readonly predecessors: Predecessors;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const sql = ctx.storage.sql;
    this.store = new SqlSequencerStorage(ctx.storage);
    this.stage = new RestoreStage(sql);
    this.replica = new ReplicaHost({
      storage: ctx.storage,
      logTable: colocatedLogTable,
      erase: async () => (readMeta(sql, "sequencer") ? dropReplicaTables(sql, colocatedLogTable) : ctx.storage.deleteAll()),
      // After a move the sequencer lives elsewhere: this replica's watches wake it as any replica's.
      wakeSequencer: (group, incarnation) => wakeSequencer(env, group, incarnation),
      sequencerAsleep: (group, incarnation) => sequencerAsleep(env, group, incarnation),
      transientBytes: () => this.stage.bytes,
    });
    this.lifecycle = new SequencerLifecycle({
      storage: () => this.store,
      prepare: () => SqlSequencerStorage.create(sql),
      wipe: async () => {
        // A restore being staged goes with the tables (its next page found no table: a 500), and
        // its bytes with it: the co-located replica's size left them out for good (a review).
        this.restoring = null;
        this.stage.drop();
        // Its alarm (DriverIO.startAt) too: it would start the object of a deleted group or of a
        // deposed sequencer again, for nothing.
        await ctx.storage.deleteAlarm();
        await (this.replica.exists ? dropSequencerTables(sql) : ctx.storage.deleteAll());
      },
      io: (cfg) => this.io(cfg),
      recoveryFailed: (cfg, reason) => console.error(`sequencer ${cfg.group} could not recover: ${reason}`),
      inOffice: (cfg) => this.inOffice(cfg),
      recovered: (cfg, epoch, message, fields) => {
        this.predecessors.begin(this.core?.config ?? cfg);
        const at = new Date().toISOString();
        return this.event(cfg, "recovery", message, fields, epoch, at).then((kept) => (kept ? at : null));
      },
      directoryConfig: (cfg) => this.directoryConfig(cfg),
      creatable: async (cfg) => {
        // Bounded as a directory write is: the init holds the lifecycle queue (a DELETE waits behind it; a review).
        const record = await withTimeout(realClock, this.directoryRecord(cfg), directoryWriteTimeoutMs, "the directory");
        return record !== null && record.config.incarnation === cfg.incarnation && record.state !== "deleting";
      },
    });
    this.predecessors = new Predecessors(sql, (name, group, incarnation) => rpc<ResignAnswer>(sequencerStub(env, name).resign(group, incarnation)), () => this.core?.config ?? null);
    ctx.blockConcurrencyWhile(async () => {
      this.replica.load();
      // A restore's staged rows belong to the life that staged them (`restoring` is memory): the
      // uploader of one cut off by an eviction or a deploy is refused (its id is unknown here) and
      // its abort found nothing to drop, so the rows (up to 64 MiB) stayed until the group's next
      // restore, which a group that has taken a write never gets.
      this.stage.drop();
      this.lifecycle.start(readMeta<SequencerMeta>(sql, "sequencer"));
      this.predecessors.resume();
    });
  }

  /** The group's record in its directory now (null: none). */
  private async directoryRecord(cfg: GroupConfig): Promise<GroupRecord | null> {
    return (await directoryStub(this.env, cfg.group).get()) as GroupRecord | null;
  }

  /** The config the group's directory holds now (null: no record). */
  private async directoryConfig(cfg: GroupConfig): Promise<GroupConfig | null> {
    return (await this.directoryRecord(cfg))?.config ?? null;
  }

  private async inOffice(cfg: GroupConfig): Promise<boolean> {
    const config = await this.directoryConfig(cfg);
    return config !== null && sequencerName(config) === sequencerName(cfg);
  }

  /** Whether replica `id` of the group this object sequences lives here (this object is named like the group). */
  private hosts(cfg: GroupConfig, id: string): boolean {
    return isColocated(cfg, id) && sequencerName(cfg) === cfg.group;
  }

  private get driver(): SequencerDriver | null {
    return this.lifecycle.driver;
  }

  private get core(): SequencerCore | null {
    return this.lifecycle.core;
  }

  private linkTo(cfg: GroupConfig, id: string, location: string | null): ReplicaLink {
    const inc = cfg.incarnation;
    const local = this.hosts(cfg, id) ? this.localReplica(cfg, id) : null;
    const stub = local ?? replicaStub(this.env, cfg, id, location, sequencerName(cfg));
    const transport: ReplicaTransport = (method, args) => {
      if (method !== "append") return rpc(stub.call(inc, method, args as never));
      const msg = args[0] as AppendRequest;
      return rpc(local ? local.appendText(inc, encodeAppend(msg), msg.entries) : stub.appendText(inc, encodeAppend(msg)));
    };
    return linkOver(transport, async (rejoin?: Rejoin) => {
      // A deposed sequencer must not re-create a replica that lost its storage: at its old epoch
      // it would take that replica's forgotten promise for its own (see ReplicaMeta.rejoinSeq).
      if (rejoin && !(await this.inOffice(cfg))) {
        this.ctx.waitUntil(this.lifecycle.resign(cfg).catch((err) => console.error(`${sequencerName(cfg)} of ${cfg.group}, deposed, could not wipe: ${String(err)}`)));
        throw new Error(`${sequencerName(cfg)} is not in office: no rejoin of ${id}`);
      }
      return stub.replicaInit({ group: cfg.group, incarnation: inc, id, machine: cfg.machine, checkpointEvery: cfg.checkpointEvery, ...sessionRulesOf(cfg), ...(rejoin ? { rejoin } : {}) });
    });
  }

  /**
   * The replica in this object, reached by a direct call: no RPC, and its step's writes go out
   * with the sequencer's in one storage commit. The append is decoded from the same JSON a remote
   * replica gets (a copy: a machine can never change the sequencer's entries). Injected faults of
   * that replica apply, so a test can cut it off like any other.
   */
  private localReplica(cfg: GroupConfig, id: string) {
    const local = {
      appendText: async (inc: number, text: string, originals: Entry[] = []): Promise<AppendResponse> => {
        const copy = decodeAppend(text);
        shareCommandHashes(originals, copy.entries);
        return this.replica.append(inc, copy);
      },
      call: async <K extends ReplicaMethod>(inc: number, method: K, args: ReplicaArgs<K>): Promise<ReplicaResult<K>> => this.replica.call(inc, method, args),
      replicaInit: async (init: ReplicaInit): Promise<ReplicaPosition | null> => this.replica.init(init),
    };
    return guarded(this.env, local, cfg.group, [id]);
  }

  /** Destroys replica `id` of the group: here, or in its own object. */
  private async destroyReplica(cfg: Pick<GroupConfig, "group" | "colocated">, id: string, incarnation: number): Promise<void> {
    if (isColocated(cfg, id) && this.replica.core?.config.group === cfg.group && this.replica.core.id === id) return this.replica.destroy(incarnation);
    const call = rpc<void>(replicaStub(this.env, cfg, id).replicaDestroy(incarnation));
    // Named: the platform's errors ("Network connection lost") do not say which replica failed.
    await withTimeout(realClock, call, replicaDestroyTimeoutMs, `the destroy of replica ${id} of ${cfg.group}`).catch((err: unknown) => {
      throw new Error(`replica ${id}: ${String(err)}`);
    });
  }

  private io(cfg: GroupConfig): DriverIO {
    const links = new Map<string, ReplicaLink>();
    // Members change with reconfiguration: links are made on first use, placed by the current membership.
    const link = (id: string) => {
      let l = links.get(id);
      if (!l) {
        const members = membersOf(this.core?.config ?? cfg);
        l = this.linkTo(cfg, id, members.find((m) => m.id === id)?.location ?? null);
        links.set(id, l);
      }
      return l;
    };
    const directory = directoryStub(this.env, cfg.group);
    return {
      ...realClock,
      link,
      directReplica: cfg.colocated && this.hosts(cfg, cfg.colocated) ? cfg.colocated : null,
      log: (level, message) => console[level](message),
      provision: async (id, location) => {
        // A deposed sequencer's add must not wipe the replica its successor gave this id (an unordered
        // id comes round again): a replica's destroy checks the incarnation only (a review).
        if (!(await this.inOffice(cfg))) throw new Error(`${sequencerName(cfg)} is not in office (the directory names another sequencer, or cannot be read)`);
        // Start from nothing: an id can come round again if an add was lost with this sequencer's storage.
        await this.destroyReplica(cfg, id, cfg.incarnation);
        const l = this.linkTo(cfg, id, location);
        links.set(id, l);
        const init = l.init();
        // A DELETE begun meanwhile destroyed the ids up to one past lastReplicaNo, maybe before
        // this init reached the replica (or after it timed out here): the replica it made then is
        // named by nothing, and no later add of this incarnation will provision it again. Since
        // an add refused after its provision no longer retires its replica, it is destroyed here.
        init.then(
          () => (this.lifecycle.closed(cfg.incarnation) ? this.destroyReplica(cfg, id, cfg.incarnation) : undefined),
          () => undefined,
        ).catch((err) => console.warn(`replica ${id} of ${cfg.group}, made after the group's delete, not destroyed: ${String(err)}`));
        await withTimeout(realClock, init, replicaInitTimeoutMs, `the init of replica ${id} of ${cfg.group}`);
      },
      retire: async (id) => {
        await this.destroyReplica(cfg, id, cfg.incarnation);
        links.delete(id);
        await directory.retired(cfg.incarnation, id);
      },
      leftovers: () => directory.retiring(cfg.incarnation),
      recordMemberships: async (config) => {
        if (!(await directory.update(cfg.incarnation, config))) throw new Error(`the directory of ${cfg.group} refused the membership of incarnation ${cfg.incarnation}`);
      },
      recordQuarantined: (ids, stamps) => directory.setQuarantined(cfg.incarnation, sequencerName(cfg), ids, stamps),
      event: (kind, message, fields) => void this.event(cfg, kind, message, fields),
      sleepAfterMs: sleepAfterMs(this.env),
      startAt: (atMs) => void this.ctx.storage.setAlarm(atMs).catch((err: unknown) => console.warn(`the alarm of ${cfg.group}'s sequencer at ${new Date(atMs).toISOString()}: ${String(err)}`)),
      onSleep: (sinceMs, changed) => this.noteSleep(cfg, sinceMs, changed),
      onRepaired: () => this.auditAfterRepair(),
    };
  }

  /** An audit after a repair is running; another repair meanwhile asks for one more after it (each waited for at most repairAuditTimeoutMs). */
  private repairAudit: { again: boolean } | null = null;
  /** DriverIO.onRepaired: audits again (one at a time, repairs meanwhile coalesced into one more). */
  private auditAfterRepair(): void {
    if (this.repairAudit) {
      this.repairAudit.again = true;
      return;
    }
    const run = (this.repairAudit = { again: false });
    void (async () => {
      do {
        run.again = false;
        // Bounded: a directory that never answers its report would leave this flag set for good.
        let timer: ReturnType<typeof setTimeout> | undefined;
        const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, repairAuditTimeoutMs)));
        await Promise.race([this.audit().catch((err) => console.warn(`audit after a repair: ${String(err)}`)), timeout]);
        clearTimeout(timer);
      } while (run.again && this.driver !== null);
      this.repairAudit = null;
    })();
  }

  /** What the registry is to be told of this group (asleepSinceMs null: awake), until it is; and whether a write is under way. */
  private sleepWanted: { cfg: GroupConfig; asleepSinceMs: number | null; epoch: number; notedMs: number } | null = null;
  private sleepWriting = false;
  /** Tells the registry that the group sleeps (the cron then audits it once a day) or is awake; a log line when that changed. */
  private noteSleep(cfg: GroupConfig, asleepSinceMs: number | null, changed: boolean): void {
    if (changed) {
      const message = asleepSinceMs === null ? `group ${cfg.group} woke` : `group ${cfg.group} sleeps: no client work for ${(sleepAfterMs(this.env) ?? 0) / 1000} s`;
      logEvent({ event: asleepSinceMs === null ? "wake" : "sleep", group: cfg.group, epoch: this.core?.epoch ?? 0, message }, "log");
    }
    // Stamped with its epoch and now: the registry ignores a note older than the one it holds (a
    // deposed sequencer's, a late one; a retry keeps its stamp).
    this.sleepWanted = { cfg, asleepSinceMs, epoch: this.core?.epoch ?? 0, notedMs: Date.now() };
    this.writeSleep(0);
  }

  /**
   * Writes the latest state, one write at a time (a wake's must not land before the sleep's). A
   * lost "asleep" costs audits only (the cron takes the group every lap, as before); a lost
   * "awake" would leave a busy group audited once a day, so it is written again after a pause
   * doubled per failure (a timer callback, never an awaited timer: see backOff in driver.ts).
   */
  private writeSleep(failures: number): void {
    const wanted = this.sleepWanted;
    if (this.sleepWriting || wanted === null) return;
    this.sleepWriting = true;
    const { cfg, asleepSinceMs, epoch, notedMs } = wanted;
    const written = registryStub(this.env).noteSleep(cfg.group, cfg.incarnation, asleepSinceMs, { epoch, atMs: notedMs }).then(
      () => {
        this.sleepWriting = false;
        if (this.sleepWanted === wanted) this.sleepWanted = null;
        this.writeSleep(0);
      },
      (err) => {
        this.sleepWriting = false;
        console.warn(`telling the registry that ${cfg.group} ${asleepSinceMs === null ? "is awake" : "sleeps"} (${failures + 1} tries): ${String(err)}`);
        if (this.sleepWanted !== wanted) return this.writeSleep(0);
        if (asleepSinceMs !== null) return void (this.sleepWanted = null);
        setTimeout(() => this.writeSleep(failures + 1), Math.min(sleepNoteRetryMaxMs, heartbeatMs * 2 ** failures));
      },
    );
    this.ctx.waitUntil(written);
  }

  /** Keeps an event in the group's directory (best effort: the history must never stop the group). */
  private event(cfg: GroupConfig, kind: EventKind, message: string, fields: Record<string, unknown> = {}, epoch = this.core?.epoch ?? 0, at = new Date().toISOString()): Promise<boolean> {
    const event = { at, kind, epoch, message, ...fields };
    logEvent({ event: kind, group: cfg.group, epoch: event.epoch, message, ...fields }, eventLevels[String(fields.action ?? kind)] ?? "log");
    // Bounded for a recovery that waits for it; the call goes on past the bound, and usually lands.
    const kept = withTimeout(realClock, directoryStub(this.env, cfg.group).addEvent(cfg.incarnation, event), eventKeepTimeoutMs, "the directory").then(
      (ok) => ok === true,
      (err) => (console.warn(`event of ${cfg.group} not confirmed within ${eventKeepTimeoutMs} ms: ${String(err)}`), false),
    );
    this.ctx.waitUntil(kept);
    return kept;
  }

  // ---- groups -------------------------------------------------------------------------------

  /**
   * The alarm DriverIO.startAt set for when the group's sleep is due: being started is all it is
   * for. The constructor's start runs the driver, whose heartbeats put an idle group to sleep (its
   * idleness counted from the meta's activeMs) or, after client work since, set the next alarm.
   */
  override async alarm(): Promise<void> {}

  async recover(config: GroupConfig): Promise<Recovered> {
    return this.lifecycle.recover(config);
  }

  /**
   * Asked by a successor (predecessors.ts): this sequencer of the group's life `incarnation` wipes
   * its copy of the log if the directory names another (its co-located replica stays).
   */
  async resign(group: string, incarnation: number): Promise<ResignAnswer> {
    const core = this.core;
    if (!core || core.config.group !== group || core.config.incarnation !== incarnation) return "none";
    if (await this.lifecycle.resign(core.config)) return "wiped";
    return this.core ? "kept" : "none";
  }

  /** Creates the group's sequencer and replicas; idempotent for the same config and incarnation. */
  async init(config: GroupConfig): Promise<Exclude<InitResult, { kind: "created" | "exists" }> | { kind: "created" | "exists"; status: GroupStatus | null }> {
    const r = await this.lifecycle.init(config);
    return r.kind === "conflict" || r.kind === "unavailable" ? r : { kind: r.kind, status: await this.status() };
  }

  /**
   * The status, and how long this object spent on it (waiting for its replicas and the directory):
   * a router's sequencer.answerMs leaves that out, so a replica that does not answer after a start
   * (up to statusContactWaitMs) does not read as a slow sequencer (a review).
   */
  async statusTimed(): Promise<{ status: GroupStatus | null; spentMs: number }> {
    const startMs = Date.now();
    const status = await this.status();
    return { status, spentMs: Date.now() - startMs };
  }

  /** The group's status, once every replica has answered this sequencer (within statusContactWaitMs). */
  async status(): Promise<GroupStatus | null> {
    await this.driver?.hearUnheard(statusContactWaitMs);
    const status = this.statusNow();
    if (!status || status.replicas.every((r) => r.lastContact !== null)) return status;
    return withAuditedPositions(this.env, status);
  }

  /** { noQuorumMs } while cut off (driver.cutOffMs), else nothing. */
  private noQuorum(): { noQuorumMs?: number } {
    const lostMs = this.driver?.cutOffMs() ?? null;
    return lostMs === null ? {} : { noQuorumMs: Math.round(lostMs) };
  }

  /** { asleepSince } while the group sleeps (driver.asleepSinceMs), else nothing. */
  private asleep(): { asleepSince?: string } {
    const sinceMs = this.driver?.asleepSinceMs ?? null;
    return sinceMs === null ? {} : { asleepSince: new Date(sinceMs).toISOString() };
  }

  private statusNow(): GroupStatus | null {
    const core = this.core;
    if (!core) return null;
    const cfg = core.config;
    return {
      group: cfg.group,
      machine: cfg.machine,
      epoch: core.epoch,
      commitSeq: core.commitSeq,
      lastSeq: core.lastLogSeq,
      outputs: cfg.outputs,
      checkpointEvery: cfg.checkpointEvery,
      sessionIdleSeconds: cfg.sessionIdleMs === undefined ? null : cfg.sessionIdleMs / 1000,
      incarnation: cfg.incarnation,
      storageQuotaMiB: storageQuotaMiBOf(cfg),
      // Cut off but answering, its status looked like a healthy sequencer's with its replicas down
      // (a region-outage probe): it says how long it has had no quorum.
      sequencer: { name: sequencerName(cfg), location: sequencerLocationOf(cfg), epoch: core.epoch, since: core.since, ...this.noQuorum(), ...this.asleep() },
      // Co-located: in this object. After a failover or a move the replica stays in the group's
      // first object, which no longer orders anything: a replica like the others.
      replicas: core.replicaStatuses().map((r) => this.withRebuild(withCurrentSequencer(cfg, r.id) ? { ...r, colocated: true as const } : r)),
    };
  }

  /** A replica's status with the progress of its rebuild, while one is under way. */
  private withRebuild(r: ReplicaStatus): ReplicaStatus {
    const p = this.driver?.rebuildProgress(r.id);
    return p ? { ...r, rebuild: { source: p.source, seq: p.seq, rows: p.rows, since: new Date(p.sinceMs).toISOString() } } : r;
  }

  /** The status and the commands counter, for GET /v1/metrics; null without state (as status()). */
  async metrics(): Promise<{ status: GroupStatus; commandsTotal: number; work: SequencerWork; spentMs: number } | null> {
    const { status, spentMs } = await this.statusTimed();
    const counts = this.driver?.counts;
    if (!status || !counts) return null;
    return { status, commandsTotal: this.core!.commandsTotal, work: { flushes: counts.flushes, appends: Object.fromEntries(counts.appends) }, spentMs };
  }

  /**
   * Destroys the replicas, then this sequencer's own storage (unless it belongs to a newer
   * incarnation). `colocated`: the group's co-located replica, for a caller whose sequencer lost
   * its config. The replica this object hosts goes too.
   */
  async destroy(group: string, incarnation: number, lastReplicaNo: number, colocated?: string): Promise<DestroyAnswer> {
    // A failure is answered, not thrown: thrown out of an RPC, workerd logged it as an uncaught
    // error with its stack, once per try while a replica was unreachable (a probe: 16 for one
    // DELETE), for what the router answers as an ordinary 503.
    return this.destroyNow(group, incarnation, lastReplicaNo, colocated).catch((err: unknown) => ({ failed: String(err) }));
  }

  private destroyNow(group: string, incarnation: number, lastReplicaNo: number, colocated?: string): Promise<boolean> {
    return this.lifecycle.destroy(incarnation, async (config) => {
      // One id past the last recorded: an add refused after its provision leaves that replica made
      // and named by no config (the next add provisions it again); nothing else would destroy it.
      // Adds go one at a time, so there is at most one such id. A probe found one after a DELETE.
      // lastReplicaNo < 0: an earlier sequencer of the group (groups.ts finishDelete), whose
      // replicas the one in office destroyed: only this object and the replica it hosts.
      const count = lastReplicaNo < 0 ? 0 : Math.max(lastReplicaNo, config?.lastReplicaNo ?? config?.replicas ?? 0) + 1;
      const cfg = { group, colocated: config?.colocated ?? colocated };
      await Promise.all(replicaIds(count).map((id) => this.destroyReplica(cfg, id, incarnation)));
      await this.replica.destroy(incarnation);
    });
  }

  /** A move: this sequencer stops and forgets everything; its successor recovers from the replicas. */
  async handOver(): Promise<HandOverAnswer> {
    return this.lifecycle.handOver();
  }

  // ---- reconfiguration ----------------------------------------------------------------------

  async addReplica(location: string | null): Promise<AddReplicaAnswer> {
    const driver = this.driver;
    if (!driver) return { ok: false, reason: "no such group", code: "not_found" };
    const r = await driver.addReplica(location);
    if (!r.ok) return changeRefused(r, driver);
    return { ok: true, replica: driver.core.replicaStatuses().find((x) => x.id === r.id)! };
  }

  async removeReplica(id: string): Promise<RemoveReplicaAnswer> {
    const driver = this.driver;
    if (!driver) return { ok: false, reason: "no such group", code: "not_found" };
    const before = driver.core.replicaStatuses().find((x) => x.id === id);
    if (!before) return { ok: false, reason: `no replica ${id} in this group`, code: "not_found" };
    const r = await driver.removeReplica(id);
    if (!r.ok) return changeRefused(r, driver);
    const { damaged: _damaged, ...removed } = before; // said of a member only
    return { ok: true, replica: { ...removed, status: "removed" } };
  }

  async release(id: string, rebase: boolean): Promise<ReleaseAnswer> {
    const driver = this.driver;
    if (!driver) return { ok: false, reason: "no such group", code: "not_found" };
    if (!driver.core.replicaIds().includes(id)) return { ok: false, reason: `no replica ${id} in this group`, code: "not_found" };
    const r = await driver.release(id, rebase);
    return r.ok ? r : { ok: false, reason: r.reason, code: r.unavailable ? "unavailable" : "conflict" };
  }

  /**
   * The operator's new storage quota (POST .../quota): the group's status after it. Answered in a
   * command's shapes (`kind`), so that the router's withSequencer makes a refusal after a call that
   * may have set it a 504, not a 503 (unsureAfter: a review).
   */
  async setQuota(mib: number): Promise<{ kind: "ok"; status: GroupStatus } | { kind: "not_found" } | { kind: "unavailable" | "timeout"; message: string }> {
    const driver = this.driver;
    if (!driver) return { kind: "not_found" };
    const r = await driver.setQuota(mib);
    const status = this.statusNow();
    if (!r.ok) return { kind: r.unknown ? "timeout" : "unavailable", message: r.reason };
    if (status === null) return { kind: "timeout", message: "the sequencer stopped as the quota was set; retry" };
    return { kind: "ok", status };
  }

  /** Rebuilds a replica now from the most advanced healthy one (the operator's repair). */
  async repair(id: string): Promise<{ ok: boolean; code?: "not_found" | "conflict" | "unavailable"; reason?: string }> {
    const driver = this.driver;
    if (!driver) return { ok: false, code: "not_found", reason: "no such group" };
    if (!driver.core.replicaIds().includes(id)) return { ok: false, code: "not_found", reason: `no replica ${id} in this group` };
    const busy = driver.core.repairBusy(id);
    if (busy !== null) return { ok: false, code: "unavailable", reason: busy };
    const refused = driver.repairRefusal(id);
    if (refused !== null) return { ok: false, ...refused };
    driver.wake(); // an operator's repair is client work: the send loops must run after it
    const ok = await driver.repair(id);
    if (ok) return { ok };
    // Removed meanwhile: a 404 as for a replica never there, not a 503 whose retry can only meet it
    // (a probe's removal during a repair got "installed state has digest undefined").
    // Once the removal has committed only: one still in flight may be lost in a failover.
    if (await driver.removedForGood(id)) return { ok, code: "not_found", reason: `replica ${id} was removed while it was being rebuilt` };
    if (!driver.core.replicaIds().includes(id)) return { ok, code: "unavailable", reason: `replica ${id} is being removed, and its removal is not committed yet; retry` };
    return { ok, reason: `the state transfer did not complete: ${driver.repairFailure(id) ?? "see the server's log"}` };
  }

  // ---- writes and reads ---------------------------------------------------------------------

  /**
   * `incarnation`: the life of the group the router's route names, which validated the command.
   * The group's first sequencer is named like the group in every life, so a route cached from
   * the life before reached this one, and its command ran here: validated for the old life's
   * machine, in a group created again since (a review). Such a command is refused, not run (the
   * router looks the group up again, checks the command against it and sends it once more); a
   * route of a newer life than this object's is told no state (the router looks again).
   */
  async submit(client: string, request: number, command: unknown, incarnation?: number): Promise<SubmitAnswer> {
    const other = this.otherLife(incarnation);
    if (other) return other;
    return this.driver!.submit(client, request, command);
  }

  /** A batch: every command its own entry and answer, ordered together in array order. */
  async submitBatch(client: string, items: { request: number; command: unknown }[], incarnation?: number): Promise<SubmitAnswer[]> {
    const other = this.otherLife(incarnation);
    if (other) return items.map(() => other);
    const budget = outputBudget();
    return Promise.all(this.driver!.submitBatch(client, items).map((answer) => answer.then(budget)));
  }

  /** Why a command of the route's life `incarnation` is not taken here (submit), or null. */
  private otherLife(incarnation: number | undefined): SubmitAnswer | null {
    if (!this.driver) return { kind: "not_found" };
    const mine = this.driver.core.config.incarnation;
    if (incarnation === undefined || incarnation === mine) return null;
    if (incarnation > mine) return { kind: "not_found" };
    return { kind: "stale_life" };
  }

  /**
   * A replica's call for its sequencer (groups.wakeSequencer): a PreVote reached it while the group
   * slept, or its watches wait in a silence. Starts an evicted object and ends a sleep; answers as
   * quorumLostMs.
   */
  async wake(): Promise<number | null> {
    this.driver?.wake();
    return this.quorumLostMs();
  }

  /** Since when it sleeps or falls asleep (null: awake, or not serving), asked by a replica without waking it (groups.sequencerAsleep). */
  async asleepSince(): Promise<number | null> {
    return this.driver?.sleepingSinceMs ?? null;
  }

  /** How long it has had no quorum (driver.quorumLostMs), asked again by a router that may fail it over; null: not serving. */
  async quorumLostMs(): Promise<number | null> {
    const driver = this.driver;
    return driver && !driver.isStopped && !driver.core.fenced ? driver.quorumLostMs() : null;
  }

  async readIndex(): Promise<ReadIndexAnswer> {
    if (!this.driver) return { kind: "not_found" };
    return this.driver.readIndex();
  }

  /** A page of the log, or (fromSeq compacted away) where the retained log starts. */
  async readLog(fromSeq: number | undefined, limit: number): Promise<LogPage | { compacted: true; firstSeq: number } | null> {
    const core = this.core;
    if (!core) return null;
    // After a restore (or a compaction of everything) the log may be empty past baseSeq: it
    // starts at the next entry to come.
    const first = this.store.log.first() ?? (core.baseSeq > 0 ? core.baseSeq + 1 : 0);
    if (fromSeq !== undefined && fromSeq <= core.baseSeq) return { compacted: true, firstSeq: Math.max(first, core.baseSeq + 1) };
    const from = Math.max(fromSeq ?? first, first, core.baseSeq + 1);
    const to = Math.min(core.lastLogSeq, from + limit - 1);
    const entries = to >= from ? core.readEntries(from, to, pageBytesMax) : [];
    return { firstSeq: first, lastSeq: core.lastLogSeq, commitSeq: core.commitSeq, entries };
  }

  // ---- restore ------------------------------------------------------------------------------

  /** The restore being staged (one at a time; an abandoned one is replaced after snapshotIdleMs). */
  private restoring: { id: string; atMs: number; installing?: boolean } | null = null;

  /** Starts a restore into this group: refused (conflict) once it has entries. Commands wait meanwhile. */
  async beginRestore(): Promise<RestoreAnswer> {
    const driver = this.driver;
    if (!driver) return { kind: "not_found", message: "no such group" };
    if (this.restoring && (this.restoring.installing || Date.now() - this.restoring.atMs < snapshotIdleMs)) return { kind: "unavailable", message: "another restore of this group is under way" };
    const refused = driver.core.restoreRefusal();
    // A change ordered during the upload would give the group an entry, and the restore a 409 once
    // the whole file was sent: the driver refuses changes while a restore is staged, and a restore
    // begun while a change is under way (an add provisioning its replica) waits its turn here.
    if (!refused && driver.changing) return { kind: "unavailable", message: "a membership change is under way; retry when it is done" };
    if (!refused && driver.repairsUnderway) return { kind: "unavailable", message: repairingRefusal };
    if (refused?.code === "conflict") return { kind: "conflict", message: `group ${driver.core.config.group}: ${refused.reason}; restore into a new, empty group` };
    if (refused) return { kind: "unavailable", message: refused.reason };
    this.stage.begin();
    const id = crypto.randomUUID();
    this.restoring = { id, atMs: Date.now() };
    driver.restoring = true;
    this.abandonIdle(id);
    return { kind: "ok", id };
  }

  /**
   * A restore whose uploader went away (its router died) must not hold the group's commands off
   * for ever: one that received nothing for snapshotIdleMs is dropped (a timer callback).
   */
  private abandonIdle(id: string): void {
    setTimeout(() => {
      const r = this.restoring;
      if (r?.id !== id || r.installing) return;
      if (Date.now() - r.atMs >= snapshotIdleMs) this.dropRestore(id);
      else this.abandonIdle(id);
    }, snapshotIdleMs / 2);
  }

  async restorePage(id: string, rows: [string, string][]): Promise<boolean> {
    if (!this.driver || this.restoring?.id !== id) return false;
    this.stage.add(rows);
    this.restoring.atMs = Date.now();
    return true;
  }

  /** Checks the staged rows against the file's digest and count, then installs them on every replica. */
  async endRestore(id: string, digest: string, rows: number): Promise<RestoreAnswer> {
    const driver = this.driver;
    if (!driver || this.restoring?.id !== id) return { kind: "unavailable", message: "the restore was abandoned or replaced; start again" };
    try {
      // Recomputed from the staged rows: the router's figures are not trusted.
      const staged = digestOfPages((after) => this.stage.page(after, transferPageBytes));
      if (staged.rows !== rows || staged.digest !== digest) {
        return { kind: "bad", message: `the staged rows (${staged.rows}, digest ${staged.digest}) do not match the file (${rows}, digest ${digest})` };
      }
      this.restoring.installing = true;
      const r = await driver.restore(digest, async (after) => this.stage.page(after, transferPageBytes));
      if (r.ok) return { kind: "ok", id, incarnation: driver.core.config.incarnation };
      return { kind: r.code === "unknown" ? "timeout" : (r.code ?? "unavailable"), message: r.reason };
    } finally {
      this.dropRestore(id);
    }
  }

  /**
   * The uploader's abort (the route's, after an error). Refused once the end is installing the
   * rows: an end whose answer was lost (a 504, the outcome unknown) may still be installing them,
   * and this abort dropped the staged rows under it and cleared the driver's `restoring` (repairs
   * could begin mid-install): every replica's install then failed, "no such table" (a review).
   * The end drops them itself when it is done.
   */
  abortRestore(id: string): void {
    if (this.restoring?.installing) return;
    this.dropRestore(id);
  }

  private dropRestore(id: string): void {
    if (this.restoring?.id !== id) return;
    this.restoring = null;
    this.stage.drop();
    if (this.driver) this.driver.restoring = false;
  }

  // ---- audits -------------------------------------------------------------------------------

  /** Runs one audit and keeps its report in the group's directory. */
  /**
   * The cron's audit of the group: a sequencer cut off (no quorum for sequencerTimeoutMs) says so
   * instead, with cutOffMs, which the cron's call acts on as a request's does (withSequencer: the
   * cut-off vote, then the successor's audit). An idle group's sequencer slowed past its appends'
   * timeout answered the cron's audits, slowly, and was never failed over until a client wrote (a
   * probe: 75 s and three cron runs; an unreachable one the cron failed over in about 40 s).
   */
  async auditUnlessCutOff(): Promise<AuditReport | Unavailable | null> {
    const lostMs = this.driver?.cutOffMs() ?? null;
    if (lostMs !== null) return { kind: "unavailable", message: `the sequencer has had no quorum for ${lostMs} ms`, cutOffMs: lostMs };
    return this.audit();
  }

  /** The last report kept: calls that shared an audit (SequencerDriver.audit) keep it once. */
  private lastKept: AuditReport | null = null;

  async audit(): Promise<AuditReport | null> {
    const driver = this.driver;
    if (!driver) return null;
    const report = await driver.audit();
    if (this.driver !== driver) return null;
    if (report === this.lastKept) return report;
    this.lastKept = report;
    const cfg = driver.core.config;
    const kept = await directoryStub(this.env, cfg.group)
      .addAudit(cfg.incarnation, report)
      .catch((err) => console.warn(`audit report of ${cfg.group} not kept: ${String(err)}`));
    // A group with no audit yet counts as consistent: its first audit is a change only if it is not.
    const previous = kept?.kept ? (kept.previous ?? "consistent") : null;
    if (previous !== null && previous !== report.verdict) {
      logEvent({ event: "audit-verdict", group: cfg.group, epoch: driver.core.epoch, ...(report.compared === false ? {} : { seq: report.seq }), verdict: report.verdict, previous, quarantined: report.quarantined }, report.verdict === "consistent" ? "log" : "warn");
    }
    return report;
  }
}

/**
 * A batch's answer is one RPC message (at most 32 MiB): outputs past batchOutputCharsMax are left
 * out as their answers arrive (not held until the last), each such item saying its seq instead.
 * Before, a batch of ten 4 MiB outputs was executed and then answered 504 to every retry, the
 * answer being too large to send.
 */
export function outputBudget(): (a: SubmitAnswer) => SubmitAnswer {
  let chars = 0;
  return (a) => {
    if (a.kind !== "ok") return a;
    const n = JSON.stringify(a.output ?? null).length;
    // An output that does not fit is not counted: a smaller one after it may still.
    if (chars + n <= batchOutputCharsMax) {
      chars += n;
      return a;
    }
    const message = `executed at seq ${a.seq}; its output did not fit in this batch's answer (${batchOutputCharsMax} characters of outputs at most): send it again alone with the same client and request to read it (in a group made since 2026-12-06, an output more than ${sessionOutputFreeCharsDefault} characters longer than what its command brought (its JSON, the rows it replaced) is not kept: that answers output_not_kept; read with queries)`;
    return { kind: "too_large", seq: a.seq, epoch: a.epoch, incarnation: a.incarnation, message, ...(a.replayed ? { replayed: true as const } : {}) };
  };
}
