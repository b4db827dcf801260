import { DurableObject } from "cloudflare:workers";
import { readWaitersMax } from "../shared/limits.js";
import { ReplicaCore, newReplicaMeta, type ReplicaMeta } from "../shared/protocol/replica.js";
import type { AppendRequest, AppendResponse, AuditInfo, MachineName, ReplicaPosition } from "../shared/protocol/types.js";
import type { Env } from "./env.js";
import { SqlReplicaStorage, readMeta } from "./sqlite.js";

export interface ReplicaInit {
  group: string;
  id: string;
  machine: MachineName;
  checkpointEvery: number;
}

export type ReadAnswer =
  | { kind: "ok"; result: unknown; seq: number; replica: string }
  | { kind: "not_found" }
  | { kind: "quarantined"; replica: string }
  | { kind: "busy"; replica: string }
  | { kind: "timeout"; replica: string; appliedSeq: number };

export type SessionAnswer =
  | { kind: "found"; seq: number; commandHash: string; output: unknown }
  | { kind: "missing" }
  | { kind: "timeout" };

interface Waiter {
  minSeq: number;
  wake: () => void;
}

/** A replica: a thin adapter that persists and applies through ReplicaCore. */
export class ReplicaObject extends DurableObject<Env> {
  private core: ReplicaCore | null = null;
  private readonly store: SqlReplicaStorage;
  private waiters: Waiter[] = [];

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.store = new SqlReplicaStorage(ctx.storage);
    ctx.blockConcurrencyWhile(async () => {
      const meta = readMeta<ReplicaMeta>(ctx.storage.sql, "replica");
      if (meta) this.core = new ReplicaCore(this.store, meta);
    });
  }

  /** Idempotent: creates the tables the first time; later calls check the identity matches. */
  async init(cfg: ReplicaInit): Promise<ReplicaPosition> {
    if (!this.core) {
      const meta = newReplicaMeta(cfg.group, cfg.id, cfg.machine, cfg.checkpointEvery);
      this.ctx.storage.transactionSync(() => {
        SqlReplicaStorage.create(this.ctx.storage.sql);
        this.store.saveMeta(meta);
      });
      this.core = new ReplicaCore(this.store, meta);
    }
    const c = this.core.config;
    if (c.group !== cfg.group || c.id !== cfg.id || c.machine !== cfg.machine) {
      throw new Error(`replica ${c.group}/${c.id} (${c.machine}) asked to be ${cfg.group}/${cfg.id} (${cfg.machine})`);
    }
    return this.core.position();
  }

  async append(req: AppendRequest): Promise<AppendResponse> {
    if (!this.core) return { ok: false, reason: "not_initialized" };
    const resp = this.core.append(req);
    if (resp.ok && resp.outputs.length > 0) this.wakeWaiters();
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
          clearTimeout(timer);
          resolve(this.core !== null && this.core.appliedSeq >= minSeq);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        resolve(false);
      }, waitMs);
      this.waiters.push(w);
    });
  }

  async query(q: unknown, minSeq: number, waitMs: number): Promise<ReadAnswer> {
    if (!this.core) return { kind: "not_found" };
    const replica = this.core.id;
    if (this.core.quarantined) return { kind: "quarantined", replica };
    if (this.core.appliedSeq < minSeq && this.waiters.length >= readWaitersMax) return { kind: "busy", replica };
    if (!(await this.waitApplied(minSeq, waitMs))) {
      return { kind: "timeout", replica, appliedSeq: this.core?.appliedSeq ?? 0 };
    }
    if (this.core.quarantined) return { kind: "quarantined", replica };
    return { kind: "ok", result: this.core.query(q), seq: this.core.appliedSeq, replica };
  }

  /** The recorded outcome of (client, request), once this replica has applied minSeq. */
  async session(client: string, request: number, minSeq: number, waitMs: number): Promise<SessionAnswer> {
    if (!this.core || this.core.quarantined) return { kind: "missing" };
    if (!(await this.waitApplied(minSeq, waitMs))) return { kind: "timeout" };
    const s = this.core?.session(client, request);
    return s ? { kind: "found", ...s } : { kind: "missing" };
  }

  async position(): Promise<ReplicaPosition | null> {
    return this.core?.position() ?? null;
  }

  async auditInfo(): Promise<AuditInfo | null> {
    return this.core?.auditInfo() ?? null;
  }

  async setQuarantined(quarantined: boolean): Promise<void> {
    this.core?.setQuarantined(quarantined);
  }

  async destroy(): Promise<void> {
    this.core = null;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.wake();
    await this.ctx.storage.deleteAll();
  }
}
