import { DurableObject } from "cloudflare:workers";
import { auditHistoryMax, pageBytesMax } from "../shared/limits.js";
import type { LogPage } from "../shared/api/results.js";
import { SequencerDriver } from "../shared/protocol/driver.js";
import type { DriverIO, ReadAnswer, ReplicaLink, SessionAnswer, SubmitAnswer } from "../shared/protocol/io.js";
import { SequencerCore, type SequencerMeta } from "../shared/protocol/sequencer.js";
import type { AppendResponse, AuditInfo, AuditReport, Entry, FenceReply, GroupConfig, GroupStatus, MachineName, ReplicaStatus } from "../shared/protocol/types.js";
import { creationConfig, membersOf } from "../shared/protocol/types.js";
import { recoverSequencer } from "../shared/protocol/recovery.js";
import type { SnapshotInfo } from "../shared/protocol/replica.js";
import { replicaIds } from "../shared/protocol/types.js";
import { type Env, realClock, registryStub, replicaStub, rpc } from "./env.js";
import { SqlSequencerStorage, readMeta, tableExists } from "./sqlite.js";
import { encodeAppend } from "./wire.js";

export type { SubmitAnswer };

export interface RouteInfo {
  machine: MachineName;
  replicas: { id: string; location: string | null }[];
  epoch: number;
}

/**
 * The sequencer of one group: a thin shell. Ordering, commit and voting are SequencerCore's; the
 * send loops and waiting clients are SequencerDriver's; this class loads and persists state,
 * turns replica calls into RPCs, and keeps the audit history.
 */
export class SequencerObject extends DurableObject<Env> {
  private driver: SequencerDriver | null = null;
  private recovering: Promise<{ ok: boolean; reason?: string; epoch?: number }> | null = null;
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
    return {
      init: () => stub.init({ group: cfg.group, id, machine: cfg.machine, checkpointEvery: cfg.checkpointEvery }),
      append: (msg) => rpc<AppendResponse>(stub.appendText(encodeAppend(msg))),
      query: (q, minSeq, waitMs) => rpc<ReadAnswer>(stub.query(q, minSeq, waitMs)),
      session: (client, request, minSeq, waitMs) => rpc<SessionAnswer>(stub.session(client, request, minSeq, waitMs)),
      auditInfo: () => rpc<AuditInfo | null>(stub.auditInfo()),
      setQuarantined: (q) => stub.setQuarantined(q),
      fence: (epoch) => rpc<FenceReply | null>(stub.fence(epoch)),
      readLog: (from, to) => rpc<Entry[]>(stub.readLog(from, to)),
      beginSnapshot: () => rpc<SnapshotInfo | null>(stub.beginSnapshot()),
      snapshotPage: (seq, after, maxBytes) => rpc<[string, string][] | null>(stub.snapshotPage(seq, after, maxBytes)),
      endSnapshot: () => stub.endSnapshot(),
      beginInstall: (info, transferId) => stub.beginInstall(info, transferId),
      installPage: (transferId, rows) => stub.installPage(transferId, rows),
      endInstall: (transferId) => rpc<{ ok: boolean; digest: string } | null>(stub.endInstall(transferId)),
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
    return {
      ...realClock,
      link,
      log: (level, message) => console[level](message),
      provision: async (id, location) => {
        // Start from nothing: an id can come round again if an add was lost with this sequencer's storage.
        await replicaStub(this.env, cfg.group, id).destroy();
        const l = this.linkTo(cfg, id, location);
        links.set(id, l);
        await l.init();
      },
      retire: async (id) => {
        await replicaStub(this.env, cfg.group, id).destroy();
        links.delete(id);
      },
      recordMemberships: (config) => registryStub(this.env).update(config),
      // Fenced out by a newer epoch (an interrupted recovery, a message from a dead incarnation):
      // this log may hold entries no majority has; discard it and recover from the replicas.
      onFenced: () => {
        this.driver = null;
        this.ctx.waitUntil(
          this.ctx.storage
            .deleteAll()
            .then(() => this.recover(cfg))
            .then((r) => r.ok || console.error(`sequencer ${cfg.group} could not recover: ${r.reason}`)),
        );
      },
    };
  }

  private start(core: SequencerCore): void {
    this.driver = new SequencerDriver(core, this.io(core.config));
    // Entries ordered before a restart but not yet known committed: finish replicating them.
    this.driver.kickAll();
  }

  private async replicasHoldState(config: GroupConfig): Promise<boolean> {
    const io = this.io(config);
    const replies = await Promise.all(membersOf(config).map((m) => io.link(m.id).fence(0).catch(() => null)));
    return replies.some((r) => r !== null);
  }

  /**
   * The group exists (the registry says so) but this sequencer has no state: its storage was
   * lost. Rebuild the log from a majority of replicas at a new epoch, then serve again.
   */
  async recover(config: GroupConfig): Promise<{ ok: boolean; reason?: string; epoch?: number }> {
    if (this.core) return { ok: true, epoch: this.core.epoch };
    this.recovering ??= (async () => {
      SqlSequencerStorage.create(this.ctx.storage.sql);
      const r = await recoverSequencer(config, this.store, this.io(config));
      if (!r.ok) {
        await this.ctx.storage.deleteAll();
        return { ok: false, reason: r.reason };
      }
      this.start(new SequencerCore(this.store, r.meta));
      this.driver!.recordMembershipAt(r.recoveredSeq + 1);
      return { ok: true, epoch: r.meta.epoch };
    })().finally(() => {
      this.recovering = null;
    });
    return this.recovering;
  }

  // ---- groups -------------------------------------------------------------------------------

  /** Creates the group's sequencer and replicas; idempotent for the same config. */
  async init(config: GroupConfig): Promise<{ kind: "created" | "exists" | "conflict"; status: GroupStatus | null }> {
    let kind: "created" | "exists" = "exists";
    if (!this.core && (await this.replicasHoldState(config))) {
      // The group was created before and this sequencer lost its storage: recover, never restart at seq 1.
      const r = await this.recover(config);
      if (!r.ok) throw new Error(`group ${config.group} exists but its sequencer cannot recover: ${r.reason}`);
    }
    if (!this.core) {
      const meta: SequencerMeta = { config, epoch: 1, commitSeq: 0, quarantined: [] };
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
    await Promise.all(membersOf(cfg).map((m) => this.linkTo(cfg, m.id, m.location).init()));
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
      replicas: core.replicaStatuses(),
    };
  }

  routeInfo(): RouteInfo | null {
    const core = this.core;
    if (!core) return null;
    const cfg = core.config;
    return {
      machine: cfg.machine,
      epoch: core.epoch,
      replicas: membersOf(cfg).map((m) => ({ id: m.id, location: m.location })),
    };
  }

  /** Destroys the replicas, then this sequencer's own storage. */
  async destroy(): Promise<boolean> {
    const core = this.core;
    this.driver?.stop();
    this.driver = null;
    if (core) await this.destroyReplicas(core.config.group, core.config.lastReplicaNo ?? core.config.replicas);
    await this.ctx.storage.deleteAll();
    return core !== null;
  }

  // ---- reconfiguration ----------------------------------------------------------------------

  async addReplica(location: string | null): Promise<{ ok: true; replica: ReplicaStatus } | { ok: false; reason: string; code: "not_found" | "unavailable" }> {
    const driver = this.driver;
    if (!driver) return { ok: false, reason: "no such group", code: "not_found" };
    const r = await driver.addReplica(location);
    if (!r.ok) return { ok: false, reason: r.reason, code: "unavailable" };
    return { ok: true, replica: driver.core.replicaStatuses().find((x) => x.id === r.id)! };
  }

  async removeReplica(id: string): Promise<{ ok: true; replica: ReplicaStatus } | { ok: false; reason: string; code: "not_found" | "unavailable" | "conflict" }> {
    const driver = this.driver;
    if (!driver) return { ok: false, reason: "no such group", code: "not_found" };
    const before = driver.core.replicaStatuses().find((x) => x.id === id);
    if (!before) return { ok: false, reason: `no replica ${id} in this group`, code: "not_found" };
    const r = await driver.removeReplica(id);
    if (!r.ok) return { ok: false, reason: r.reason, code: /last voting/.test(r.reason) ? "conflict" : "unavailable" };
    return { ok: true, replica: { ...before, status: "removed" } };
  }

  /** A move: this sequencer stops and forgets everything; its successor recovers from the replicas. */
  async handOver(): Promise<void> {
    this.driver?.stop();
    this.driver = null;
    await this.ctx.storage.deleteAll();
  }

  /** Used by DELETE when this sequencer's storage is already gone but replicas may remain. */
  async destroyReplicas(group: string, count: number): Promise<void> {
    await Promise.all(replicaIds(count).map((id) => replicaStub(this.env, group, id).destroy()));
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

  async audit(): Promise<AuditReport | null> {
    const driver = this.driver;
    if (!driver) return null;
    const report = await driver.audit();
    if (this.driver !== driver) return null;
    const sql = this.ctx.storage.sql;
    sql.exec("INSERT INTO audits (report) VALUES (?)", JSON.stringify(report));
    sql.exec("DELETE FROM audits WHERE id NOT IN (SELECT id FROM audits ORDER BY id DESC LIMIT ?)", auditHistoryMax);
    return report;
  }

  async audits(limit: number): Promise<AuditReport[] | null> {
    if (!this.core || !tableExists(this.ctx.storage.sql, "audits")) return null;
    return this.ctx.storage.sql
      .exec<{ report: string }>("SELECT report FROM audits ORDER BY id DESC LIMIT ?", limit)
      .toArray()
      .map((r) => JSON.parse(r.report) as AuditReport);
  }
}
