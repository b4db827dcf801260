import { DurableObject } from "cloudflare:workers";
import { machineFor } from "../shared/machines/index.js";
import { type ReadAnswer, type ReplicaArgs, type ReplicaMethod, type ReplicaResult, type SessionAnswer, serve } from "../shared/protocol/io.js";
import { ReplicaCore, newReplicaMeta, type ReplicaMeta } from "../shared/protocol/replica.js";
import { ReplicaDriver } from "../shared/protocol/replica-driver.js";
import type { AppendResponse, ReplicaPosition } from "../shared/protocol/types.js";
import type { MachineName } from "../shared/api/types.js";
import { type Env, realClock } from "./env.js";
import { SqlReplicaStorage, readMeta } from "./sqlite.js";
import { decodeAppend } from "./wire.js";

export type { ReadAnswer, SessionAnswer };

export interface ReplicaInit {
  group: string;
  incarnation: number;
  id: string;
  machine: MachineName;
  checkpointEvery: number;
}

/** Answers for a caller of another incarnation: as if this replica did not exist. */
const empty = new ReplicaDriver(null, realClock);

/**
 * A replica: a thin shell around ReplicaDriver/ReplicaCore over SQLite. Every call names the
 * group's incarnation, and a call of another one is answered as if this replica did not exist: to
 * an older caller (a deleted group's late RPC) its group is gone; to a newer one this replica's
 * state is a deleted group's leftover, until an init of that incarnation replaces it. (Answers,
 * not exceptions: a late message is an expected condition.)
 */
export class ReplicaObject extends DurableObject<Env> {
  private readonly store: SqlReplicaStorage;
  private readonly driver = new ReplicaDriver(null, realClock);

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.store = new SqlReplicaStorage(ctx.storage);
    ctx.blockConcurrencyWhile(async () => {
      const meta = readMeta<ReplicaMeta>(ctx.storage.sql, "replica");
      if (meta) this.driver.core = new ReplicaCore(this.store, meta, machineFor(meta.machine));
    });
  }

  private get core(): ReplicaCore | null {
    return this.driver.core;
  }

  private get incarnation(): number | null {
    return this.core ? (this.core.config.incarnation ?? 0) : null;
  }

  /** The driver that serves a call of that incarnation. */
  private of(incarnation: number): ReplicaDriver {
    const mine = this.incarnation;
    return mine === null || mine === incarnation ? this.driver : empty;
  }

  /** Idempotent: creates the tables the first time; later calls check the identity matches. Null for an older incarnation's init. */
  async init(cfg: ReplicaInit): Promise<ReplicaPosition | null> {
    const mine = this.incarnation;
    if (mine !== null && mine > cfg.incarnation) return null;
    if (mine !== null && mine < cfg.incarnation) {
      // A deleted group's leftover (its destroy was lost): start from nothing.
      this.driver.detach();
      await this.ctx.storage.deleteAll();
    }
    if (!this.core) {
      const meta = newReplicaMeta(cfg.group, cfg.id, cfg.machine, cfg.checkpointEvery, cfg.incarnation);
      this.ctx.storage.transactionSync(() => {
        SqlReplicaStorage.create(this.ctx.storage.sql);
        this.store.saveMeta(meta);
      });
      this.driver.core = new ReplicaCore(this.store, meta, machineFor(meta.machine));
    }
    const c = this.core!.config;
    if (c.group !== cfg.group || c.id !== cfg.id || c.machine !== cfg.machine) {
      throw new Error(`replica ${c.group}/${c.id} (${c.machine}) asked to be ${cfg.group}/${cfg.id} (${cfg.machine})`);
    }
    return this.core!.position();
  }

  /** An append message, as JSON (see wire.ts): each entry serialized once for every replica. */
  async appendText(incarnation: number, text: string): Promise<AppendResponse> {
    return this.of(incarnation).append(decodeAppend(text));
  }

  /** Every other call of the replica's API (ReplicaApi, declared once in shared/protocol/io.ts). */
  async call<K extends ReplicaMethod>(incarnation: number, method: K, args: ReplicaArgs<K>): Promise<ReplicaResult<K>> {
    if (method === "append") throw new Error("append goes through appendText");
    return serve(this.of(incarnation), method, args) as ReplicaResult<K>;
  }

  /** Destroys this replica's storage, unless it already belongs to a newer incarnation. */
  async destroy(incarnation: number): Promise<void> {
    const mine = this.incarnation;
    if (mine !== null && mine > incarnation) return;
    this.driver.detach();
    await this.ctx.storage.deleteAll();
  }
}
