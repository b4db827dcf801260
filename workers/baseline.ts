import { DurableObject } from "cloudflare:workers";
import type { Env } from "./env.js";

/**
 * The benchmark's baseline: one unreplicated Durable Object doing the same kv put into its own
 * SQLite. It measures the platform's ceiling for one object; enabled only with BENCH_BASELINE=1.
 */
export class BaselineObject extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID");
  }

  async put(key: string, value: unknown): Promise<{ previous: unknown }> {
    const sql = this.ctx.storage.sql;
    const old = sql.exec<{ v: string }>("SELECT v FROM kv WHERE k = ?", key).toArray()[0];
    sql.exec("INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v", key, JSON.stringify(value));
    return { previous: old ? JSON.parse(old.v) : null };
  }
}
