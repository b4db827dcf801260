import { DurableObject } from "cloudflare:workers";
import { pageBytesMax, snapshotIdleMs, transferPageBytes } from "../shared/limits.js";
import type { LogPage } from "../shared/api/results.js";
import type { SequencerDriver } from "../shared/protocol/driver.js";
import { SequencerLifecycle, type Recovered } from "../shared/protocol/lifecycle.js";
import { type DriverIO, type ReadIndexAnswer, type ReplicaLink, type ReplicaTransport, type SubmitAnswer, linkOver } from "../shared/protocol/io.js";
import type { SequencerCore, SequencerMeta } from "../shared/protocol/sequencer.js";
import type { AppendRequest, GroupConfig } from "../shared/protocol/types.js";
import type { AuditReport, GroupStatus, ReplicaStatus } from "../shared/api/types.js";
import { membersOf, sequencerName } from "../shared/protocol/types.js";
import { replicaIds } from "../shared/protocol/types.js";
import { type Env, directoryStub, realClock, replicaStub, rpc } from "./env.js";
import { RestoreStage, SqlSequencerStorage, readMeta } from "./sqlite.js";
import { digestOfPages } from "../shared/protocol/state.js";
import { encodeAppend } from "./wire.js";
import { type LogLevel, logEvent } from "../shared/log.js";

/** Events an operator should see without searching: a quarantine, an audit alarm. */
const eventLevels: Record<string, LogLevel> = { quarantine: "warn", alarm: "error" };

export type { SubmitAnswer };

export type RestoreAnswer = { kind: "ok"; id: string } | { kind: "not_found" | "conflict" | "unavailable" | "bad"; message: string };

export type AddReplicaAnswer = { ok: true; replica: ReplicaStatus } | { ok: false; reason: string; code: "not_found" | "unavailable" };
export type RemoveReplicaAnswer = { ok: true; replica: ReplicaStatus } | { ok: false; reason: string; code: "not_found" | "unavailable" | "conflict" };

/**
 * The sequencer of one group: a thin shell. Ordering, commit and voting are SequencerCore's; the
 * send loops and waiting clients are SequencerDriver's; start, creation, recovery, fencing,
 * hand-over and destroy are SequencerLifecycle's (shared with the simulator). This class gives
 * them SQLite, RPC stubs and the group's directory.
 */
export class SequencerObject extends DurableObject<Env> {
  private readonly store: SqlSequencerStorage;
  private readonly stage: RestoreStage;
  private readonly lifecycle: SequencerLifecycle;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.store = new SqlSequencerStorage(ctx.storage);
    this.stage = new RestoreStage(ctx.storage.sql);
    this.lifecycle = new SequencerLifecycle({
      storage: () => this.store,
      prepare: () => SqlSequencerStorage.create(ctx.storage.sql),
      wipe: () => ctx.storage.deleteAll(),
      io: (cfg) => this.io(cfg),
      recoveryFailed: (cfg, reason) => console.error(`sequencer ${cfg.group} could not recover: ${reason}`),
      inOffice: async (cfg) => {
        const record = (await directoryStub(env, cfg.group).get()) as { config: GroupConfig } | null;
        return record !== null && sequencerName(record.config) === sequencerName(cfg);
      },
    });
    ctx.blockConcurrencyWhile(async () => this.lifecycle.start(readMeta<SequencerMeta>(ctx.storage.sql, "sequencer")));
  }

  private get driver(): SequencerDriver | null {
    return this.lifecycle.driver;
  }

  private get core(): SequencerCore | null {
    return this.lifecycle.core;
  }

  private linkTo(cfg: GroupConfig, id: string, location: string | null): ReplicaLink {
    const stub = replicaStub(this.env, cfg.group, id, location, sequencerName(cfg));
    const inc = cfg.incarnation;
    const transport: ReplicaTransport = (method, args) =>
      method === "append"
        ? rpc(stub.appendText(inc, encodeAppend(args[0] as AppendRequest)))
        : rpc(stub.call(inc, method, args as never));
    return linkOver(transport, () => stub.init({ group: cfg.group, incarnation: inc, id, machine: cfg.machine, checkpointEvery: cfg.checkpointEvery }));
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
    };
  }

  /** Keeps an event in the group's directory (best effort: the history must never stop the group). */
  private event(cfg: GroupConfig, kind: string, message: string, fields: Record<string, unknown> = {}): void {
    const event = { at: new Date().toISOString(), kind, epoch: this.core?.epoch ?? 0, message, ...fields };
    logEvent({ event: kind, group: cfg.group, epoch: event.epoch, message, ...fields }, eventLevels[kind] ?? "log");
    this.ctx.waitUntil(
      directoryStub(this.env, cfg.group)
        .addEvent(cfg.incarnation, event)
        .then(
          () => undefined,
          (err) => console.warn(`event of ${cfg.group} not kept: ${String(err)}`),
        ),
    );
  }

  // ---- groups -------------------------------------------------------------------------------

  async recover(config: GroupConfig): Promise<Recovered> {
    return this.lifecycle.recover(config);
  }

  /** Creates the group's sequencer and replicas; idempotent for the same config and incarnation. */
  async init(config: GroupConfig): Promise<{ kind: "created" | "exists" | "conflict"; status: GroupStatus | null }> {
    const r = await this.lifecycle.init(config);
    return { kind: r.kind, status: r.kind === "conflict" ? null : this.status() };
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

  /** The status and the commands counter, for GET /v1/metrics; null without state (as status()). */
  metrics(): { status: GroupStatus; commandsTotal: number } | null {
    const status = this.status();
    return status && { status, commandsTotal: this.core!.commandsTotal };
  }

  /** Destroys the replicas, then this sequencer's own storage (unless it belongs to a newer incarnation). */
  async destroy(group: string, incarnation: number, lastReplicaNo: number): Promise<boolean> {
    return this.lifecycle.destroy(incarnation, async (config) => {
      const count = Math.max(lastReplicaNo, config?.lastReplicaNo ?? config?.replicas ?? 0);
      await Promise.all(replicaIds(count).map((id) => replicaStub(this.env, group, id).destroy(incarnation)));
    });
  }

  /** A move: this sequencer stops and forgets everything; its successor recovers from the replicas. */
  async handOver(): Promise<void> {
    await this.lifecycle.handOver();
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
    if (!r.ok) return { ok: false, reason: r.reason, code: r.refused === "last_voter" ? "conflict" : r.refused === "not_member" ? "not_found" : "unavailable" };
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

  // ---- writes and reads ---------------------------------------------------------------------

  async submit(client: string, request: number, command: unknown): Promise<SubmitAnswer> {
    if (!this.driver) return { kind: "not_found" };
    return this.driver.submit(client, request, command);
  }

  /** A batch: every command its own entry and answer, ordered together in array order. */
  async submitBatch(client: string, items: { request: number; command: unknown }[]): Promise<SubmitAnswer[]> {
    if (!this.driver) return items.map(() => ({ kind: "not_found" }));
    return Promise.all(this.driver.submitBatch(client, items));
  }

  async readIndex(): Promise<ReadIndexAnswer> {
    if (!this.driver) return { kind: "not_found" };
    return this.driver.readIndex();
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

  // ---- restore ------------------------------------------------------------------------------

  /** The restore being staged (one at a time; an abandoned one is replaced after snapshotIdleMs). */
  private restoring: { id: string; atMs: number; installing?: boolean } | null = null;

  /** Starts a restore into this group: refused (conflict) once it has entries. Commands wait meanwhile. */
  async beginRestore(): Promise<RestoreAnswer> {
    const driver = this.driver;
    if (!driver) return { kind: "not_found", message: "no such group" };
    if (driver.core.lastLogSeq !== 0) return { kind: "conflict", message: `group ${driver.core.config.group} has entries (last seq ${driver.core.lastLogSeq}): restore into a new, empty group` };
    if (this.restoring && Date.now() - this.restoring.atMs < snapshotIdleMs) return { kind: "unavailable", message: "another restore of this group is under way" };
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
      if (Date.now() - r.atMs >= snapshotIdleMs) this.abortRestore(id);
      else this.abandonIdle(id);
    }, snapshotIdleMs / 2);
  }

  async restorePage(id: string, rows: [string, string][]): Promise<boolean> {
    if (this.restoring?.id !== id) return false;
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
      return r.ok ? { kind: "ok", id } : { kind: "unavailable", message: r.reason };
    } finally {
      this.abortRestore(id);
    }
  }

  abortRestore(id: string): void {
    if (this.restoring?.id !== id) return;
    this.restoring = null;
    this.stage.drop();
    if (this.driver) this.driver.restoring = false;
  }

  // ---- audits -------------------------------------------------------------------------------

  /** Runs one audit and keeps its report in the group's directory. */
  async audit(): Promise<AuditReport | null> {
    const driver = this.driver;
    if (!driver) return null;
    const report = await driver.audit();
    if (this.driver !== driver) return null;
    const cfg = driver.core.config;
    const kept = await directoryStub(this.env, cfg.group)
      .addAudit(cfg.incarnation, report)
      .catch((err) => console.warn(`audit report of ${cfg.group} not kept: ${String(err)}`));
    // A group with no audit yet counts as consistent: its first audit is a change only if it is not.
    const previous = kept?.kept ? (kept.previous ?? "consistent") : null;
    if (previous !== null && previous !== report.verdict) {
      logEvent({ event: "audit-verdict", group: cfg.group, epoch: driver.core.epoch, seq: report.seq, verdict: report.verdict, previous, quarantined: report.quarantined }, report.verdict === "consistent" ? "log" : "warn");
    }
    return report;
  }
}
