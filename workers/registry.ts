import { DurableObject } from "cloudflare:workers";
import type { Env } from "./env.js";

/**
 * The list of group names (one instance), for GET /v1/groups and the cron, paged. Nothing on a
 * group's data path reads it: a group's record is its own directory object's.
 */
export class RegistryObject extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const sql = ctx.storage.sql;
    sql.exec("CREATE TABLE IF NOT EXISTS names (name TEXT PRIMARY KEY, created TEXT NOT NULL) WITHOUT ROWID");
    // Which incarnation of the group is listed (0: one listed before this column existed).
    const columns = sql.exec<{ name: string }>("PRAGMA table_info(names)").toArray().map((c) => c.name);
    if (!columns.includes("incarnation")) sql.exec("ALTER TABLE names ADD COLUMN incarnation INTEGER NOT NULL DEFAULT 0");
  }

  async add(name: string, incarnation = 0): Promise<void> {
    this.ctx.storage.sql.exec(
      "INSERT INTO names (name, created, incarnation) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET incarnation = max(incarnation, excluded.incarnation)",
      name,
      new Date().toISOString(),
      incarnation,
    );
  }

  /**
   * Unlists the name if the listed incarnation is not newer than `incarnation` (undefined: any).
   * A delete that finished late used to unlist the group re-created under its name meanwhile (a
   * PUT during the DELETE finishes the delete and creates the next incarnation): it existed, but
   * neither GET /v1/groups nor the cron's audits saw it.
   */
  async remove(name: string, incarnation?: number): Promise<boolean> {
    const sql = this.ctx.storage.sql;
    if (incarnation === undefined) return sql.exec("DELETE FROM names WHERE name = ?", name).rowsWritten > 0;
    return sql.exec("DELETE FROM names WHERE name = ? AND incarnation <= ?", name, incarnation).rowsWritten > 0;
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
