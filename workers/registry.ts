import { DurableObject } from "cloudflare:workers";
import type { Env } from "./env.js";

/**
 * The list of group names (one instance), for GET /v1/groups and the cron, paged. Nothing on a
 * group's data path reads it: a group's record is its own directory object's.
 */
export class RegistryObject extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS names (name TEXT PRIMARY KEY, created TEXT NOT NULL) WITHOUT ROWID");
  }

  async add(name: string): Promise<void> {
    this.ctx.storage.sql.exec("INSERT INTO names (name, created) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", name, new Date().toISOString());
  }

  async remove(name: string): Promise<boolean> {
    return this.ctx.storage.sql.exec("DELETE FROM names WHERE name = ?", name).rowsWritten > 0;
  }

  /** Names after `after`, in order, at most limit; `next` when more follow. */
  async list(after: string | null, limit: number): Promise<{ groups: string[]; next?: string }> {
    const rows = this.ctx.storage.sql
      .exec<{ name: string }>("SELECT name FROM names WHERE name > ? ORDER BY name LIMIT ?", after ?? "", limit + 1)
      .toArray()
      .map((r) => r.name);
    const groups = rows.slice(0, limit);
    return rows.length > limit ? { groups, next: groups[groups.length - 1]! } : { groups };
  }
}
