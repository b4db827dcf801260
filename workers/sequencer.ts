import { DurableObject } from "cloudflare:workers";
import { pageBytesMax } from "../shared/limits.js";
import type { LogPage } from "../shared/api/results.js";
import { SequencerDriver } from "../shared/protocol/driver.js";
import type { DriverIO, ReadAnswer, ReplicaLink, SessionAnswer, SubmitAnswer } from "../shared/protocol/io.js";
import { SequencerCore, type SequencerMeta } from "../shared/protocol/sequencer.js";
import type { AppendResponse, AuditInfo, AuditReport, Entry, FenceReply, GroupConfig, GroupStatus, ReplicaPosition, ReplicaStatus } from "../shared/protocol/types.js";
import { creationConfig, membersOf, sequencerName } from "../shared/protocol/types.js";
import { recoverSequencer } from "../shared/protocol/recovery.js";
import type { SnapshotInfo } from "../shared/protocol/replica.js";
import { replicaIds } from "../shared/protocol/types.js";
import { type Env, directoryStub, realClock, replicaStub, rpc } from "./env.js";
import { SqlSequencerStorage, readMeta } from "./sqlite.js";
import { encodeAppend } from "./wire.js";

export type { SubmitAnswer };

type Recovered = { ok: boolean; reason?: string; epoch?: number };
export type AddReplicaAnswer = { ok: true; replica: ReplicaStatus } | { ok: false; reason: string; code: "not_found" | "unavailable" };
export type RemoveReplicaAnswer = { ok: true; replica: ReplicaStatus } | { ok: false; reason: string; code: "not_found" | "unavailable" | "conflict" };

/**
 * The sequencer of one group: a thin shell. Ordering, commit and voting are SequencerCore's; the
 * send loops and waiting clients are SequencerDriver's; this class loads and persists state,
 * turns replica calls into RPCs, and writes the group's history to its directory.
 *
 * Incarnations: the state here belongs to one incarnation of the group. A call for an older one
 * is refused (a deleted group's late RPC); one for a newer one finds this state a leftover and
 * replaces it. `closedThrough` remembers, in memory, the incarnations destroyed while this object
 * lives, so a recovery that was under way when its group was deleted never starts serving.
 */
export class SequencerObject extends DurableObject<Env> {
  private driver: SequencerDriver | null = null;
  private closedThrough = 0;
  /**
   * Lifecycle operations (init, recover, destroy, hand-over) run one at a time: a recovery that
   * failed used to wipe the storage a concurrent creation had just made (a late writer's recovery
   * racing the PUT that recreated its group), leaving a live core over missing tables.
   */
  private lifecycle: Promise<unknown> = Promise.resolve();

  private serially<T>(op: () => Promise<T>): Promise<T> {
    const run = this.lifecycle.then(op, op);
    this.lifecycle = run.catch(() => undefined);
    return run;
  }
  private readonly store: SqlSequencerStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.store = new SqlSequencerStorage(ctx.storage);
    ctx.blockConcurrencyWhile(async () => {
      const meta = readMeta<SequencerMeta>(ctx.storage.sql, "sequencer");
      if (meta) this.start(new SequencerCore(this.store, meta));
    });
  }

  private get core(): SequencerCore | null {
    return this.driver?.core ?? null;
  }

  private linkTo(cfg: GroupConfig, id: string, location: string | null): ReplicaLink {
    const stub = replicaStub(this.env, cfg.group, id, location);
    const inc = cfg.incarnation;
    return {
      init: () => stub.init({ group: cfg.group, incarnation: inc, id, machine: cfg.machine, checkpointEvery: cfg.checkpointEvery }),
      append: (msg) => rpc<AppendResponse>(stub.appendText(inc, encodeAppend(msg))),
      query: (q, minSeq, waitMs) => rpc<ReadAnswer>(stub.query(inc, q, minSeq, waitMs)),
      session: (client, request, minSeq, waitMs) => rpc<SessionAnswer>(stub.session(inc, client, request, minSeq, waitMs)),
      auditInfo: () => rpc<AuditInfo | null>(stub.auditInfo(inc)),
      setQuarantined: (q) => stub.setQuarantined(inc, q),
      release: (rebase) => stub.release(inc, rebase),
      fence: (epoch) => rpc<FenceReply | null>(stub.fence(inc, epoch)),
      readLog: (from, to) => rpc<Entry[]>(stub.readLog(inc, from, to)),
      beginSnapshot: () => rpc<SnapshotInfo | null>(stub.beginSnapshot(inc)),
      snapshotPage: (seq, after, maxBytes) => rpc<[string, string][] | null>(stub.snapshotPage(inc, seq, after, maxBytes)),
      endSnapshot: () => stub.endSnapshot(inc),
      beginInstall: (info, transferId) => stub.beginInstall(inc, info, transferId),
      installPage: (transferId, rows) => stub.installPage(inc, transferId, rows),
      endInstall: (transferId) => rpc<{ ok: boolean; digest: string } | null>(stub.endInstall(inc, transferId)),
    };
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
      log: (level, message) => console[level](message),
      provision: async (id, location) => {
        // Start from nothing: an id can come round again if an add was lost with this sequencer's storage.
        await replicaStub(this.env, cfg.group, id).destroy(cfg.incarnation);
        const l = this.linkTo(cfg, id, location);
        links.set(id, l);
        await l.init();
      },
      retire: async (id) => {
        await replicaStub(this.env, cfg.group, id).destroy(cfg.incarnation);
        links.delete(id);
      },
      recordMemberships: async (config) => {
        if (!(await directory.update(cfg.incarnation, config))) throw new Error(`the directory of ${cfg.group} refused the membership of incarnation ${cfg.incarnation}`);
      },
      event: (kind, message, fields) => this.event(cfg, kind, message, fields),
      // Fenced out by a newer epoch (an interrupted recovery, a message from a dead incarnation):
      // this log may hold entries no majority has; discard it and recover from the replicas.
      onFenced: () => {
        this.driver = null;
        this.ctx.waitUntil(
          this.serially(() => this.ctx.storage.deleteAll())
            .then(() => this.recover(cfg))
            .then((r) => r.ok || console.error(`sequencer ${cfg.group} could not recover: ${r.reason}`)),
        );
      },
    };
  }

  /** Keeps an event in the group's directory (best effort: the history must never stop the group). */
  private event(cfg: GroupConfig, kind: string, message: string, fields: Record<string, unknown> = {}): void {
    const event = { at: new Date().toISOString(), kind, epoch: this.core?.epoch ?? 0, message, ...fields };
    console.log(JSON.stringify({ event: kind, group: cfg.group, epoch: event.epoch, message, ...fields }));
    this.ctx.waitUntil(
      directoryStub(this.env, cfg.group)
        .addEvent(cfg.incarnation, event)
        .then(
          () => undefined,
          (err) => console.warn(`event of ${cfg.group} not kept: ${String(err)}`),
        ),
    );
  }

  private start(core: SequencerCore): void {
    this.driver = new SequencerDriver(core, this.io(core.config));
    // Entries ordered before a restart but not yet known committed: finish replicating them.
    this.driver.kickAll();
  }

  /** Drops this object's state (a leftover of an older incarnation, or a handed-over or deleted group). */
  private async wipe(): Promise<void> {
    this.driver?.stop();
    this.driver = null;
    await this.ctx.storage.deleteAll();
  }

  /** Whether a call for this incarnation may act here; a newer one first wipes a leftover. */
  private async admit(incarnation: number): Promise<boolean> {
    if (incarnation <= this.closedThrough) return false;
    const mine = this.core?.config.incarnation;
    if (mine !== undefined && mine > incarnation) return false;
    if (mine !== undefined && mine < incarnation) await this.wipe();
    return true;
  }

  private async replicasHoldState(config: GroupConfig): Promise<boolean> {
    const io = this.io(config);
    const replies = await Promise.all(membersOf(config).map((m) => io.link(m.id).fence(0).catch(() => null)));
    return replies.some((r) => r !== null);
  }

  /**
   * The group exists (its directory says so) but this sequencer has no state: its storage was
   * lost, or it is the new object of a move. Rebuild the log from a majority of replicas at a new
   * epoch, then serve again.
   */
  recover(config: GroupConfig): Promise<Recovered> {
    return this.serially(() => this.recoverNow(config));
  }

  private async recoverNow(config: GroupConfig): Promise<Recovered> {
    if (!(await this.admit(config.incarnation))) return { ok: false, reason: `incarnation ${config.incarnation} of ${config.group} is over` };
    if (this.core) return { ok: true, epoch: this.core.epoch };
    SqlSequencerStorage.create(this.ctx.storage.sql);
    const owner = () => config.incarnation > this.closedThrough;
    const r = await recoverSequencer(config, this.store, this.io(config), owner);
    if (!r.ok || !owner()) {
      await this.ctx.storage.deleteAll();
      return { ok: false, reason: r.ok ? "the group was deleted meanwhile" : r.reason };
    }
    r.meta.since = new Date().toISOString();
    this.store.saveMeta(r.meta);
    this.start(new SequencerCore(this.store, r.meta));
    this.driver!.recordMembershipAt(r.recoveredSeq + 1);
    this.event(config, "recovery", `sequencer ${sequencerName(config)} recovered ${r.recoveredSeq} entries at epoch ${r.meta.epoch}`);
    return { ok: true, epoch: r.meta.epoch };
  }

  // ---- groups -------------------------------------------------------------------------------

  /** Creates the group's sequencer and replicas; idempotent for the same config and incarnation. */
  init(config: GroupConfig): Promise<{ kind: "created" | "exists" | "conflict"; status: GroupStatus | null }> {
    return this.serially(() => this.initNow(config));
  }

  private async initNow(config: GroupConfig): Promise<{ kind: "created" | "exists" | "conflict"; status: GroupStatus | null }> {
    if (!(await this.admit(config.incarnation))) return { kind: "conflict", status: null };
    let kind: "created" | "exists" = "exists";
    if (!this.core && (await this.replicasHoldState(config))) {
      // The group was created before and this sequencer lost its storage: recover, never restart at seq 1.
      const r = await this.recoverNow(config);
      if (!r.ok) throw new Error(`group ${config.group} exists but its sequencer cannot recover: ${r.reason}`);
    }
    if (!this.core) {
      const meta: SequencerMeta = { config, epoch: 1, commitSeq: 0, quarantined: [], since: new Date().toISOString() };
      this.ctx.storage.transactionSync(() => {
        SqlSequencerStorage.create(this.ctx.storage.sql);
        this.store.saveMeta(meta);
      });
      this.start(new SequencerCore(this.store, meta));
      kind = "created";
    } else if (JSON.stringify(creationConfig(this.core.config)) !== JSON.stringify(creationConfig(config))) {
      return { kind: "conflict", status: this.status() };
    }
    const cfg = this.core!.config;
    const positions = await Promise.all(membersOf(cfg).map((m) => this.linkTo(cfg, m.id, m.location).init()));
    const now = Date.now();
    membersOf(cfg).forEach((m, i) => this.core?.noteContact(m.id, true, now, positions[i] as ReplicaPosition | undefined));
    this.driver!.kickAll();
    return { kind, status: this.status() };
  }

  status(): GroupStatus | null {
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
      sequencer: { name: sequencerName(cfg), location: cfg.sequencer?.location ?? null, epoch: core.epoch, since: core.since },
      replicas: core.replicaStatuses(),
    };
  }

  /** Destroys the replicas, then this sequencer's own storage (unless it belongs to a newer incarnation). */
  destroy(group: string, incarnation: number, lastReplicaNo: number): Promise<boolean> {
    // Closed at once, so a queued recovery of this incarnation gives up when its turn comes.
    this.closedThrough = Math.max(this.closedThrough, incarnation);
    return this.serially(() => this.destroyNow(group, incarnation, lastReplicaNo));
  }

  private async destroyNow(group: string, incarnation: number, lastReplicaNo: number): Promise<boolean> {
    const mine = this.core?.config.incarnation;
    if (mine !== undefined && mine > incarnation) return false;
    const core = this.core;
    this.driver?.stop();
    this.driver = null;
    const count = Math.max(lastReplicaNo, core?.config.lastReplicaNo ?? core?.config.replicas ?? 0);
    await this.destroyReplicas(group, incarnation, count);
    await this.ctx.storage.deleteAll();
    return core !== null;
  }

  /** Also for a DELETE that finds this sequencer empty (its storage lost) while replicas may remain. */
  async destroyReplicas(group: string | null, incarnation: number, count: number): Promise<void> {
    if (group === null) return;
    await Promise.all(replicaIds(count).map((id) => replicaStub(this.env, group, id).destroy(incarnation)));
  }

  // ---- reconfiguration ----------------------------------------------------------------------

  async addReplica(location: string | null): Promise<AddReplicaAnswer> {
    const driver = this.driver;
    if (!driver) return { ok: false, reason: "no such group", code: "not_found" };
    const r = await driver.addReplica(location);
    if (!r.ok) return { ok: false, reason: r.reason, code: "unavailable" };
    return { ok: true, replica: driver.core.replicaStatuses().find((x) => x.id === r.id)! };
  }

  async removeReplica(id: string): Promise<RemoveReplicaAnswer> {
    const driver = this.driver;
    if (!driver) return { ok: false, reason: "no such group", code: "not_found" };
    const before = driver.core.replicaStatuses().find((x) => x.id === id);
    if (!before) return { ok: false, reason: `no replica ${id} in this group`, code: "not_found" };
    const r = await driver.removeReplica(id);
    if (!r.ok) return { ok: false, reason: r.reason, code: /last voting/.test(r.reason) ? "conflict" : "unavailable" };
    return { ok: true, replica: { ...before, status: "removed" } };
  }

  async release(id: string, rebase: boolean): Promise<{ ok: true } | { ok: false; reason: string; code: "not_found" | "conflict" }> {
    const driver = this.driver;
    if (!driver) return { ok: false, reason: "no such group", code: "not_found" };
    if (!driver.core.replicaIds().includes(id)) return { ok: false, reason: `no replica ${id} in this group`, code: "not_found" };
    const r = await driver.release(id, rebase);
    return r.ok ? r : { ...r, code: "conflict" };
  }

  /** Rebuilds a replica now from the most advanced healthy one (the operator's repair). */
  async repair(id: string): Promise<{ ok: boolean; code?: "not_found"; reason?: string }> {
    const driver = this.driver;
    if (!driver) return { ok: false, code: "not_found", reason: "no such group" };
    if (!driver.core.replicaIds().includes(id)) return { ok: false, code: "not_found", reason: `no replica ${id} in this group` };
    const ok = await driver.repair(id);
    return ok ? { ok } : { ok, reason: "the state transfer did not complete (see the group's events and logs); the audit retries it" };
  }

  /** A move: this sequencer stops and forgets everything; its successor recovers from the replicas. */
  handOver(): Promise<void> {
    return this.serially(() => this.wipe());
  }

  // ---- writes and reads ---------------------------------------------------------------------

  async submit(client: string, request: number, command: unknown): Promise<SubmitAnswer> {
    if (!this.driver) return { kind: "not_found" };
    return this.driver.submit(client, request, command);
  }

  async query(q: unknown): Promise<ReadAnswer> {
    if (!this.driver) return { kind: "not_found" };
    return this.driver.query(q);
  }

  async readLog(fromSeq: number | undefined, limit: number): Promise<LogPage | "compacted" | null> {
    const core = this.core;
    if (!core) return null;
    if (fromSeq !== undefined && fromSeq <= core.baseSeq) return "compacted";
    const first = this.store.log.first() ?? 0;
    const from = Math.max(fromSeq ?? first, first, 1);
    const to = Math.min(core.lastLogSeq, from + limit - 1);
    const entries = to >= from ? core.readEntries(from, to, pageBytesMax) : [];
    return { firstSeq: first, lastSeq: core.lastLogSeq, commitSeq: core.commitSeq, entries };
  }

  // ---- audits -------------------------------------------------------------------------------

  /** Runs one audit and keeps its report in the group's directory. */
  async audit(): Promise<AuditReport | null> {
    const driver = this.driver;
    if (!driver) return null;
    const report = await driver.audit();
    if (this.driver !== driver) return null;
    const cfg = driver.core.config;
    await directoryStub(this.env, cfg.group)
      .addAudit(cfg.incarnation, report)
      .catch((err) => console.warn(`audit report of ${cfg.group} not kept: ${String(err)}`));
    return report;
  }
}
