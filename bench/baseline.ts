import { DurableObject } from "cloudflare:workers";
import type { Hono } from "hono";
import { validateCommand } from "../shared/api/commands.js";
import { ApiError } from "../shared/api/errors.js";
import { commandBody } from "../shared/api/schemas.js";
import type { KvCommand } from "../shared/machines/kv.js";
import { machineFor } from "../shared/machines/index.js";
import type { Env } from "../workers/env.js";
import { type App, checked, groupParam, jsonBody, parse } from "../workers/http.js";

/**
 * The benchmark's baseline: one unreplicated Durable Object doing the same kv put into its own
 * SQLite. It measures the platform's ceiling for one object. Only in the bench's own worker
 * (bench/worker.ts), never in the production one.
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

type BenchEnv = Env & { BASELINE: DurableObjectNamespace<BaselineObject> };

/** The same router path (auth, validation) as a command, then one put into the baseline object. */
export function addBaselineRoute(app: Hono<App>): void {
  app.post("/v1/bench/baseline/:group/commands", async (c) => {
    const group = groupParam(c);
    const body = parse(commandBody, await jsonBody(c), "body");
    const command = checked(validateCommand(machineFor("kv"), body.command)) as KvCommand;
    if (command.op !== "put") throw new ApiError("bad_request", "command.op: the baseline only does put");
    const env = c.env as BenchEnv;
    const output = await env.BASELINE.get(env.BASELINE.idFromName(group)).put(command.key, command.value);
    return c.json({ seq: 0, output, bookmark: "" });
  });
}
