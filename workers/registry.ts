import { DurableObject } from "cloudflare:workers";
import type { Env } from "./env.js";
import type { CronFigures } from "../shared/api/metrics.js";

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
    sql.exec("CREATE TABLE IF NOT EXISTS cron (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID");
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
    return this.page(after, limit);
  }

  /**
   * The cron's next names: up to `limit` after where the last claim stopped, which is kept here so
   * that the runs go round every group (a run audits only as many as its subrequests allow) and
   * two runs at once take different ones. `lapEnd`: these reach the last name, and the next claim
   * starts again from the first.
   */
  async claim(limit: number): Promise<{ groups: string[]; lapEnd: boolean }> {
    const at = this.cronValue("cursor") ?? "";
    let page = this.page(at, limit);
    // Nothing after the cursor (the names there were deleted): the lap starts again now, not in a run's time.
    if (page.groups.length === 0 && at !== "") page = this.page("", limit);
    const cron = this.cronStatus();
    // A lap begins with a claim from the first name, and ends with the claim that reaches the last.
    const lap = at === "" || (page.groups.length > 0 && page.groups[0]! <= at) ? { lapStartedMs: Date.now(), lapGroups: 0 } : {};
    const lapGroups = (lap.lapGroups ?? cron.lapGroups ?? 0) + page.groups.length;
    const lapStartedMs = lap.lapStartedMs ?? cron.lapStartedMs ?? Date.now();
    // A lap that ends here leaves none under way (the next claim starts one from the first name).
    const now = page.next === undefined ? { lapStartedMs, lapGroups: 0, lastLapMs: Date.now() - lapStartedMs, lastLapGroups: lapGroups } : { lapStartedMs, lapGroups };
    this.ctx.storage.transactionSync(() => {
      this.setCron("cursor", page.next ?? "");
      this.setCron("status", JSON.stringify({ ...cron, ...now }));
    });
    return { groups: page.groups, lapEnd: page.next === undefined };
  }

  /** What a cron run did, kept for the metrics (CronFigures): the run's counts and its time. */
  async finishRun(run: { audited: number; failed: number; startedMs: number; endedMs: number }): Promise<void> {
    this.setCron("status", JSON.stringify({ ...this.cronStatus(), lastRun: run }));
  }

  /**
   * Where the cron stands: its last run (audited, failed, when), and its laps over every group
   * (the last whole lap's time and groups, the lap under way's start and groups so far). A run
   * audits as many groups as its subrequests allow: at 400 groups runs of 342 and 58 alternated,
   * and only a log line told whether every group was covered (a probe).
   */
  async cron(): Promise<CronFigures> {
    return this.cronStatus();
  }

  private cronStatus(): CronFigures {
    const raw = this.cronValue("status");
    return raw === null ? {} : (JSON.parse(raw) as CronFigures);
  }

  private cronValue(k: string): string | null {
    return this.ctx.storage.sql.exec<{ v: string }>("SELECT v FROM cron WHERE k = ?", k).toArray()[0]?.v ?? null;
  }

  private setCron(k: string, v: string): void {
    this.ctx.storage.sql.exec("INSERT INTO cron (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v", k, v);
  }

  private page(after: string | null, limit: number): { groups: string[]; next?: string } {
    const rows = this.ctx.storage.sql
      .exec<{ name: string }>("SELECT name FROM names WHERE name > ? ORDER BY name LIMIT ?", after ?? "", limit + 1)
      .toArray()
      .map((r) => r.name);
    const groups = rows.slice(0, limit);
    return rows.length > limit ? { groups, next: groups[groups.length - 1]! } : { groups };
  }
}
