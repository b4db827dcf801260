import { DurableObject } from "cloudflare:workers";
import { creationConfig, type GroupConfig } from "../shared/protocol/types.js";
import type { Env } from "./env.js";

/** The directory of groups (one instance): names and configs, for listing and for the cron. */
export class RegistryObject extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec(
      "CREATE TABLE IF NOT EXISTS groups (name TEXT PRIMARY KEY, config TEXT NOT NULL, created TEXT NOT NULL) WITHOUT ROWID",
    );
  }

  async create(config: GroupConfig): Promise<"created" | "exists" | "conflict"> {
    const existing = await this.get(config.group);
    if (existing) return JSON.stringify(creationConfig(existing)) === JSON.stringify(creationConfig(config)) ? "exists" : "conflict";
    this.ctx.storage.sql.exec(
      "INSERT INTO groups (name, config, created) VALUES (?, ?, ?)",
      config.group,
      JSON.stringify(config),
      new Date().toISOString(),
    );
    return "created";
  }

  /** The membership changed: keep the config a recovering sequencer starts from current. */
  async update(config: GroupConfig): Promise<void> {
    this.ctx.storage.sql.exec("UPDATE groups SET config = ? WHERE name = ?", JSON.stringify(config), config.group);
  }

  async get(name: string): Promise<GroupConfig | null> {
    const row = this.ctx.storage.sql.exec<{ config: string }>("SELECT config FROM groups WHERE name = ?", name).toArray()[0];
    return row ? (JSON.parse(row.config) as GroupConfig) : null;
  }

  async list(): Promise<string[]> {
    return this.ctx.storage.sql
      .exec<{ name: string }>("SELECT name FROM groups ORDER BY name")
      .toArray()
      .map((r) => r.name);
  }

  async remove(name: string): Promise<boolean> {
    return this.ctx.storage.sql.exec("DELETE FROM groups WHERE name = ?", name).rowsWritten > 0;
  }
}
