import { DurableObject } from "cloudflare:workers";
import type { ReadAnswer, SessionAnswer } from "../shared/protocol/io.js";
import { ReplicaCore, newReplicaMeta, type ReplicaMeta, type SnapshotInfo } from "../shared/protocol/replica.js";
import { ReplicaDriver } from "../shared/protocol/replica-driver.js";
import type { AppendResponse, AuditInfo, Entry, FenceReply, MachineName, ReplicaPosition } from "../shared/protocol/types.js";
import { type Env, realClock } from "./env.js";
import { SqlReplicaStorage, readMeta } from "./sqlite.js";
import { decodeAppend } from "./wire.js";

export type { ReadAnswer, SessionAnswer };

export interface ReplicaInit {
  group: string;
  id: string;
  machine: MachineName;
  checkpointEvery: number;
}

/** A replica: a thin shell around ReplicaDriver/ReplicaCore over SQLite. */
export class ReplicaObject extends DurableObject<Env> {
  private readonly store: SqlReplicaStorage;
  private readonly driver = new ReplicaDriver(null, realClock);

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.store = new SqlReplicaStorage(ctx.storage);
    ctx.blockConcurrencyWhile(async () => {
      const meta = readMeta<ReplicaMeta>(ctx.storage.sql, "replica");
      if (meta) this.driver.core = new ReplicaCore(this.store, meta);
    });
  }

  private get core(): ReplicaCore | null {
    return this.driver.core;
  }

  /** Idempotent: creates the tables the first time; later calls check the identity matches. */
  async init(cfg: ReplicaInit): Promise<ReplicaPosition> {
    if (!this.core) {
      const meta = newReplicaMeta(cfg.group, cfg.id, cfg.machine, cfg.checkpointEvery);
      this.ctx.storage.transactionSync(() => {
        SqlReplicaStorage.create(this.ctx.storage.sql);
        this.store.saveMeta(meta);
      });
      this.driver.core = new ReplicaCore(this.store, meta);
    }
    const c = this.core!.config;
    if (c.group !== cfg.group || c.id !== cfg.id || c.machine !== cfg.machine) {
      throw new Error(`replica ${c.group}/${c.id} (${c.machine}) asked to be ${cfg.group}/${cfg.id} (${cfg.machine})`);
    }
    return this.core!.position();
  }

  /** An append message, as JSON (see wire.ts). */
  async appendText(text: string): Promise<AppendResponse> {
    return this.driver.append(decodeAppend(text));
  }

  async query(q: unknown, minSeq: number, waitMs: number): Promise<ReadAnswer> {
    return this.driver.query(q, minSeq, waitMs);
  }

  async session(client: string, request: number, minSeq: number, waitMs: number): Promise<SessionAnswer> {
    return this.driver.session(client, request, minSeq, waitMs);
  }

  async fence(epoch: number): Promise<FenceReply | null> {
    return this.driver.fence(epoch);
  }

  async readLog(fromSeq: number, toSeq: number): Promise<Entry[]> {
    return this.driver.readLog(fromSeq, toSeq);
  }

  async beginSnapshot(): Promise<SnapshotInfo | null> {
    return this.driver.beginSnapshot();
  }
  async snapshotPage(seq: number, after: string | null, maxBytes: number): Promise<[string, string][] | null> {
    return this.driver.snapshotPage(seq, after, maxBytes);
  }
  async endSnapshot(): Promise<void> {
    this.driver.endSnapshot();
  }
  async beginInstall(info: SnapshotInfo, transferId: string): Promise<boolean> {
    return this.driver.beginInstall(info, transferId);
  }
  async installPage(transferId: string, rows: [string, string][]): Promise<boolean> {
    return this.driver.installPage(transferId, rows);
  }
  async endInstall(transferId: string): Promise<{ ok: boolean; digest: string } | null> {
    return this.driver.endInstall(transferId);
  }

  async auditInfo(): Promise<AuditInfo | null> {
    return this.driver.auditInfo();
  }

  async setQuarantined(quarantined: boolean): Promise<void> {
    this.driver.setQuarantined(quarantined);
  }

  async destroy(): Promise<void> {
    this.driver.detach();
    await this.ctx.storage.deleteAll();
  }
}
