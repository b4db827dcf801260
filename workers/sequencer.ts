import { DurableObject } from "cloudflare:workers";
import {
  auditHistoryMax,
  auditRpcTimeoutMs,
  commandTimeoutMs,
  readWaitMs,
  replicaRetryBaseMs,
  replicaRetryMaxMs,
  replicaRpcTimeoutMs,
} from "../shared/limits.js";
import { decideAudit } from "../shared/protocol/audit.js";
import { SequencerCore, pendingKey, type SequencerMeta, type StepResult } from "../shared/protocol/sequencer.js";
import type { AppendResponse, AppliedOutput, AuditInfo, AuditReport, Entry, GroupConfig, GroupStatus, MachineName } from "../shared/protocol/types.js";
import { replicaIds } from "../shared/protocol/types.js";
import type { LogPage } from "../shared/api/results.js";
import { type Env, replicaStub, rpc, sleep, withTimeout } from "./env.js";
import type { ReadAnswer, SessionAnswer } from "./replica.js";
import { SqlSequencerStorage, readMeta, tableExists } from "./sqlite.js";

export type SubmitAnswer =
  | { kind: "ok"; seq: number; output: unknown; epoch: number }
  | { kind: "not_found" }
  | { kind: "conflict"; message: string }
  | { kind: "unavailable"; message: string }
  | { kind: "timeout"; message: string }
  | { kind: "no_majority"; message: string };

export interface RouteInfo {
  machine: MachineName;
  replicas: { id: string; location: string | null }[];
  epoch: number;
}

type Outcome = AppliedOutput | null;
type Resolver = (outcome: Outcome) => void;

/**
 * The sequencer of one group: orders submits, replicates to the replicas, answers clients.
 * A thin adapter: ordering, commit and voting decisions are SequencerCore's; this class persists
 * (through the core's storage), sends RPCs, keeps the waiting clients, and reads the clock.
 */
export class SequencerObject extends DurableObject<Env> {
  private core: SequencerCore | null = null;
  private readonly store: SqlSequencerStorage;
  /** Clients waiting for a (client, request) still queued, and for an ordered seq. */
  private readonly waitingPending = new Map<string, Resolver[]>();
  private readonly waitingSeq = new Map<number, Resolver[]>();
  private commitWatchers: { seq: number; wake: () => void }[] = [];
  private readonly sending = new Set<string>();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.store = new SqlSequencerStorage(ctx.storage);
    ctx.blockConcurrencyWhile(async () => {
      const meta = readMeta<SequencerMeta>(ctx.storage.sql, "sequencer");
      if (meta) {
        this.core = new SequencerCore(this.store, meta);
        // Entries ordered before a restart but not yet known committed: finish replicating them.
        this.kickAll();
      }
    });
  }

  private replica(id: string) {
    const cfg = this.core!.config;
    return replicaStub(this.env, cfg.group, id, cfg.locations[replicaIds(cfg.replicas).indexOf(id)] ?? null);
  }

  // ---- groups -------------------------------------------------------------------------------

  /** Creates the group's sequencer and replicas; idempotent for the same config. */
  async init(config: GroupConfig): Promise<{ kind: "created" | "exists" | "conflict"; status: GroupStatus | null }> {
    let kind: "created" | "exists" = "exists";
    if (!this.core) {
      const meta: SequencerMeta = { config, epoch: 1, commitSeq: 0, quarantined: [] };
      this.ctx.storage.transactionSync(() => {
        SqlSequencerStorage.create(this.ctx.storage.sql);
        this.store.saveMeta(meta);
      });
      this.core = new SequencerCore(this.store, meta);
      kind = "created";
    } else if (JSON.stringify(this.core.config) !== JSON.stringify(config)) {
      return { kind: "conflict", status: this.status() };
    }
    await Promise.all(this.core.replicaIds().map((id) => this.initReplica(id)));
    this.kickAll();
    return { kind, status: this.status() };
  }

  private async initReplica(id: string): Promise<void> {
    const cfg = this.core!.config;
    await this.replica(id).init({ group: cfg.group, id, machine: cfg.machine, checkpointEvery: cfg.checkpointEvery });
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
      replicas: core.replicaIds().map((id, i) => ({ id, location: cfg.locations[i] ?? null })),
    };
  }

  /** Destroys the replicas, then this sequencer's own storage. */
  async destroy(replicaCountHint = 0): Promise<boolean> {
    const existed = this.core !== null;
    const cfg = this.core?.config;
    const ids = cfg ? replicaIds(cfg.replicas) : replicaIds(replicaCountHint);
    const group = cfg?.group;
    this.core = null;
    this.failAllWaiters();
    if (group) await Promise.all(ids.map((id) => replicaStub(this.env, group, id).destroy()));
    await this.ctx.storage.deleteAll();
    return existed;
  }

  /** Used by DELETE when this sequencer's storage is already gone but replicas may remain. */
  async destroyReplicas(group: string, count: number): Promise<void> {
    await Promise.all(replicaIds(count).map((id) => replicaStub(this.env, group, id).destroy()));
  }

  private failAllWaiters(): void {
    for (const list of [...this.waitingPending.values(), ...this.waitingSeq.values()]) for (const r of list) r(null);
    this.waitingPending.clear();
    this.waitingSeq.clear();
    for (const w of this.commitWatchers) w.wake();
    this.commitWatchers = [];
  }

  // ---- writes -------------------------------------------------------------------------------

  async submit(client: string, request: number, command: unknown): Promise<SubmitAnswer> {
    const core = this.core;
    if (!core) return { kind: "not_found" };
    const d = core.submit({ client, request, command });
    switch (d.kind) {
      case "unavailable":
        return { kind: "unavailable", message: d.reason };
      case "conflict":
        return { kind: "conflict", message: `request ${request} of client ${client} was already used for a different command` };
      case "queued": {
        const answer = this.wait(this.waitingPending, pendingKey(client, request));
        this.kickAll();
        return this.answer(await answer);
      }
      case "existing": {
        if (d.seq === null) return this.answer(await this.wait(this.waitingPending, pendingKey(client, request)));
        if (this.waitingSeq.has(d.seq)) return this.answer(await this.wait(this.waitingSeq, d.seq));
        return this.answerFromSession(client, request, d.seq);
      }
    }
  }

  private wait<K>(map: Map<K, Resolver[]>, key: K): Promise<Outcome | "timeout"> {
    return new Promise((resolve) => {
      const list = map.get(key) ?? [];
      const r: Resolver = (o) => {
        clearTimeout(timer);
        resolve(o);
      };
      const timer = setTimeout(() => {
        const now = map.get(key);
        if (now) {
          const rest = now.filter((x) => x !== r);
          if (rest.length > 0) map.set(key, rest);
          else map.delete(key);
        }
        resolve("timeout");
      }, commandTimeoutMs);
      list.push(r);
      map.set(key, list);
    });
  }

  private answer(outcome: Outcome | "timeout"): SubmitAnswer {
    if (outcome === "timeout") {
      return { kind: "timeout", message: "the command was not confirmed in time; it may or may not take effect: retry with the same client and request" };
    }
    if (outcome === null) {
      if (!this.core) return { kind: "not_found" };
      return { kind: "no_majority", message: "replicas produced different outputs and no majority agreed" };
    }
    const epoch = this.core?.epoch ?? 0;
    switch (outcome.status) {
      case "ok":
        return { kind: "ok", seq: outcome.seq, output: outcome.output, epoch };
      case "duplicate":
        return { kind: "ok", seq: outcome.originalSeq, output: outcome.output, epoch };
      case "conflict":
        return { kind: "conflict", message: "request id was already used for a different command" };
      case "expired":
        return { kind: "conflict", message: "request id is older than the client's session window; use a new request id" };
    }
  }

  /** A retry of a command ordered earlier (maybe before a restart): its outcome is in the replicas' session table. */
  private async answerFromSession(client: string, request: number, seq: number): Promise<SubmitAnswer> {
    const deadline = Date.now() + commandTimeoutMs;
    if (!(await this.waitCommitted(seq, commandTimeoutMs))) return this.answer("timeout");
    const core = this.core;
    if (!core) return { kind: "not_found" };
    for (const id of core.readCandidates()) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      try {
        const s = await withTimeout(rpc<SessionAnswer>(this.replica(id).session(client, request, seq, Math.min(left, readWaitMs))), left + 100, "session");
        if (s.kind === "found") return { kind: "ok", seq: s.seq, output: s.output, epoch: core.epoch };
        if (s.kind === "missing") {
          return { kind: "conflict", message: "request id is older than the client's session window; use a new request id" };
        }
      } catch {
        // try the next replica
      }
    }
    return this.answer("timeout");
  }

  private waitCommitted(seq: number, waitMs: number): Promise<boolean> {
    if (!this.core) return Promise.resolve(false);
    if (this.core.commitSeq >= seq) return Promise.resolve(true);
    this.kickAll();
    return new Promise((resolve) => {
      const w = {
        seq,
        wake: () => {
          clearTimeout(timer);
          resolve((this.core?.commitSeq ?? 0) >= seq);
        },
      };
      const timer = setTimeout(() => {
        this.commitWatchers = this.commitWatchers.filter((x) => x !== w);
        resolve(false);
      }, waitMs);
      this.commitWatchers.push(w);
    });
  }

  // ---- replication --------------------------------------------------------------------------

  private kickAll(): void {
    if (!this.core) return;
    for (const id of this.core.replicaIds()) void this.sendLoop(id);
  }

  /** Orders what queued and registers its waiters under the assigned seqs. */
  private flush(): void {
    const entries: Entry[] = this.core!.flush(new Date().toISOString());
    for (const e of entries) {
      const key = pendingKey(e.client!, e.request!);
      const list = this.waitingPending.get(key);
      if (!list) continue;
      this.waitingPending.delete(key);
      this.waitingSeq.set(e.seq, list);
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
      for (;;) {
        const core = this.core;
        if (!core) return;
        this.flush();
        const msg = core.nextAppend(id);
        if (!msg) return;
        let resp;
        try {
          resp = await withTimeout(rpc<AppendResponse>(this.replica(id).append(msg)), replicaRpcTimeoutMs, `append to ${id}`);
        } catch (err) {
          if (this.core !== core) return;
          core.onAppendFailure(id);
          const misses = core.backoffMisses(id);
          console.warn(`append to ${core.config.group}/${id} failed (${misses} misses): ${String(err)}`);
          await sleep(Math.min(replicaRetryMaxMs, replicaRetryBaseMs * 2 ** (misses - 1)));
          continue;
        }
        if (this.core !== core) return;
        const step = core.onAppendResponse(id, resp, Date.now());
        if (step.needsInit) await this.initReplica(id).catch((err) => console.warn(`init ${id}: ${String(err)}`));
        this.applyStep(step);
      }
    } finally {
      this.sending.delete(id);
    }
  }

  private applyStep(step: StepResult): void {
    for (const d of step.decided) {
      const list = this.waitingSeq.get(d.seq);
      this.waitingSeq.delete(d.seq);
      for (const r of list ?? []) r(d.outcome);
    }
    for (const id of step.diverged) this.quarantine(id);
    if (step.fenced) console.error(`sequencer ${this.core?.config.group} fenced by a newer epoch`);
    if (step.commitAdvanced) {
      const commit = this.core?.commitSeq ?? 0;
      const ready = this.commitWatchers.filter((w) => w.seq <= commit);
      this.commitWatchers = this.commitWatchers.filter((w) => w.seq > commit);
      for (const w of ready) w.wake();
      this.kickAll();
    }
  }

  private quarantine(id: string): void {
    if (!this.core?.setQuarantined(id, true)) return;
    console.warn(`replica ${this.core.config.group}/${id} quarantined`);
    this.replica(id)
      .setQuarantined(true)
      .catch((err) => console.warn(`telling ${id} it is quarantined: ${String(err)}`));
  }

  // ---- reads --------------------------------------------------------------------------------

  /** A linearizable read: the commitSeq now is the read index; a voting replica answers once it applied it. */
  async query(q: unknown): Promise<ReadAnswer> {
    const core = this.core;
    if (!core) return { kind: "not_found" };
    const readIndex = core.commitSeq;
    this.kickAll();
    let last: ReadAnswer = { kind: "not_found" };
    for (const id of core.readCandidates()) {
      try {
        const a = await withTimeout(rpc<ReadAnswer>(this.replica(id).query(q, readIndex, readWaitMs)), readWaitMs + replicaRpcTimeoutMs, "query");
        core.noteContact(id, true, Date.now());
        if (a.kind === "ok" || a.kind === "timeout") return a;
        last = a;
      } catch {
        core.noteContact(id, false, Date.now());
      }
    }
    return last.kind === "not_found" ? { kind: "busy", replica: "" } : last;
  }

  async readLog(fromSeq: number | undefined, limit: number): Promise<LogPage | null> {
    const core = this.core;
    if (!core) return null;
    const first = this.store.log.first() ?? 0;
    const from = Math.max(fromSeq ?? first, first, 1);
    const to = Math.min(core.lastLogSeq, from + limit - 1);
    const entries = to >= from ? core.readEntries(from, to) : [];
    return { firstSeq: first, lastSeq: core.lastLogSeq, commitSeq: core.commitSeq, entries };
  }

  // ---- audits -------------------------------------------------------------------------------

  async audit(): Promise<AuditReport | null> {
    const core = this.core;
    if (!core) return null;
    const ids = core.replicaIds();
    const answers = await Promise.all(
      ids.map((id) =>
        withTimeout(rpc<AuditInfo | null>(this.replica(id).auditInfo()), auditRpcTimeoutMs, `audit of ${id}`).catch((err) => {
          console.warn(`audit of ${core.config.group}/${id}: ${String(err)}`);
          return null;
        }),
      ),
    );
    if (this.core !== core) return null;
    const infos = new Map<string, AuditInfo | null>();
    const now = Date.now();
    ids.forEach((id, i) => {
      const info = answers[i] ?? null;
      infos.set(id, info);
      core.noteContact(id, info !== null, now, info ?? undefined);
    });
    const { report, diverged } = decideAudit(core.config.group, new Date(now).toISOString(), ids.length, infos);
    for (const id of diverged) this.quarantine(id);
    const sql = this.ctx.storage.sql;
    sql.exec("INSERT INTO audits (report) VALUES (?)", JSON.stringify(report));
    sql.exec("DELETE FROM audits WHERE id NOT IN (SELECT id FROM audits ORDER BY id DESC LIMIT ?)", auditHistoryMax);
    // Unreachable or lagging replicas: their send loops retry and catch them up from the log.
    this.kickAll();
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
