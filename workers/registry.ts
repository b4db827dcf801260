import { DurableObject } from "cloudflare:workers";
import type { Env } from "./env.js";
import type { CronFigures } from "../shared/api/metrics.js";
import { asleepAuditEveryMs, metricsScrapeGroupsMax } from "../shared/limits.js";

/** Figures kept per call of keepFigures: one scrape's groups at most. */
const keptFiguresMax = metricsScrapeGroupsMax;

/** The lap figures of CronFigures, which claim() keeps. */
type Lap = Pick<CronFigures, "lapStartedMs" | "lapGroups" | "lastLapMs" | "lastLapGroups" | "laps">;

/** Who noted a group's sleep and when (RegistryObject.noteSleep): the sequencer's epoch, then its clock. */
export interface SleepNoted {
  epoch: number;
  atMs: number;
}

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
    // Since when the group's sequencer has been asleep (NULL: awake), and when the cron last took
    // it (NULL: never): the cron skips an asleep group taken within asleepAuditEveryMs.
    if (!columns.includes("asleep_since_ms")) sql.exec("ALTER TABLE names ADD COLUMN asleep_since_ms INTEGER");
    if (!columns.includes("claimed_ms")) sql.exec("ALTER TABLE names ADD COLUMN claimed_ms INTEGER");
    if (!columns.includes("sleep_noted_ms")) sql.exec("ALTER TABLE names ADD COLUMN sleep_noted_ms INTEGER");
    if (!columns.includes("sleep_noted_epoch")) sql.exec("ALTER TABLE names ADD COLUMN sleep_noted_epoch INTEGER");
    // An asleep group's metrics figures as a scrape asked them, and when (keepFigures).
    if (!columns.includes("kept_figures")) sql.exec("ALTER TABLE names ADD COLUMN kept_figures TEXT");
    if (!columns.includes("kept_ms")) sql.exec("ALTER TABLE names ADD COLUMN kept_ms INTEGER");
    if (!columns.includes("kept_until_ms")) sql.exec("ALTER TABLE names ADD COLUMN kept_until_ms INTEGER");
    sql.exec("CREATE TABLE IF NOT EXISTS cron (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID");
  }

  /**
   * Lists the name. A (re-)created group starts awake and not yet audited by the cron: a deleted
   * incarnation's sleep would otherwise keep the new one from its audits for up to a day. (An
   * older incarnation's late add changes neither; the SET's right sides read the row as it was.)
   */
  async add(name: string, incarnation = 0): Promise<void> {
    this.ctx.storage.sql.exec(
      `INSERT INTO names (name, created, incarnation) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET
         asleep_since_ms = CASE WHEN excluded.incarnation >= incarnation THEN NULL ELSE asleep_since_ms END,
         claimed_ms = CASE WHEN excluded.incarnation >= incarnation THEN NULL ELSE claimed_ms END,
         sleep_noted_ms = CASE WHEN excluded.incarnation >= incarnation THEN NULL ELSE sleep_noted_ms END,
         sleep_noted_epoch = CASE WHEN excluded.incarnation >= incarnation THEN NULL ELSE sleep_noted_epoch END,
         kept_figures = CASE WHEN excluded.incarnation >= incarnation THEN NULL ELSE kept_figures END,
         kept_ms = CASE WHEN excluded.incarnation >= incarnation THEN NULL ELSE kept_ms END,
         kept_until_ms = CASE WHEN excluded.incarnation >= incarnation THEN NULL ELSE kept_until_ms END,
         incarnation = max(incarnation, excluded.incarnation)`,
      name,
      new Date().toISOString(),
      incarnation,
    );
  }

  /**
   * The group's sequencer says it has stopped its heartbeats for lack of client activity (since
   * `asleepSinceMs`), or started them again (null): the cron then audits it once every
   * asleepAuditEveryMs instead of each lap, so that its objects can be evicted. Only for the
   * incarnation listed (or a name listed before incarnations were, as 0): a deleted incarnation's
   * late note must not put the group re-created under its name to sleep. `noted`: the epoch of
   * the sequencer that made the note and when; one older than the row's (a lower epoch, or the
   * same and earlier) is ignored, and at the same epoch and millisecond "awake" wins. Sent one
   * at a time, notes still overtook each other: an "asleep" whose call timed out at the sender
   * landed after the "awake" sent next, and a deposed sequencer started by its successor's call
   * to its co-located replica said "asleep" after the successor's "awake" (reviews); the busy
   * group was then audited once a day. Any figures kept of the group (keepFigures) are dropped:
   * they were of another sleep, or of none now.
   */
  async noteSleep(name: string, incarnation: number, asleepSinceMs: number | null, noted: SleepNoted = { epoch: 0, atMs: Date.now() }): Promise<void> {
    this.ctx.storage.sql.exec(
      `UPDATE names SET asleep_since_ms = ?1, sleep_noted_epoch = ?2, sleep_noted_ms = ?3, kept_figures = NULL, kept_ms = NULL, kept_until_ms = NULL
       WHERE name = ?4 AND incarnation IN (?5, 0) AND (sleep_noted_ms IS NULL OR ?2 > coalesce(sleep_noted_epoch, -1)
         OR (?2 = coalesce(sleep_noted_epoch, -1) AND (?3 > sleep_noted_ms OR (?3 = sleep_noted_ms AND ?1 IS NULL))))`,
      asleepSinceMs,
      noted.epoch,
      noted.atMs,
      name,
      incarnation,
    );
  }

  /**
   * The cron's audit of the name failed: it is taken again at the next lap even if asleep (its
   * claim is forgotten). Otherwise an asleep group's failed audit waited a day, and with it the
   * failover of its dead sequencer that the audit's call starts (a review).
   */
  async unclaim(name: string): Promise<void> {
    this.ctx.storage.sql.exec("UPDATE names SET claimed_ms = NULL WHERE name = ?", name);
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

  /** The incarnation the name is listed with, or null when it is not listed. */
  async incarnationOf(name: string): Promise<number | null> {
    return this.ctx.storage.sql.exec<{ incarnation: number }>("SELECT incarnation FROM names WHERE name = ?", name).toArray()[0]?.incarnation ?? null;
  }

  /** Names after `after`, in order, at most limit; `next` when more follow. */
  async list(after: string | null, limit: number): Promise<{ groups: string[]; next?: string }> {
    return this.page(after, limit);
  }

  /**
   * Like list(), with the figures kept (keepFigures) of the asleep groups among them, as JSON by
   * name, those still fresh only: a scrape takes them instead of starting the group's directory
   * and sequencer objects (docs/OPERATIONS.md, "What an idle group costs").
   */
  async listForScrape(after: string | null, limit: number): Promise<{ groups: string[]; next?: string; kept: Record<string, string> }> {
    const page = this.page(after, limit);
    const kept: Record<string, string> = {};
    if (page.groups.length === 0) return { ...page, kept };
    const last = page.groups[page.groups.length - 1]!;
    const rows = this.ctx.storage.sql
      .exec<{ name: string; kept_figures: string }>(
        "SELECT name, kept_figures FROM names WHERE name > ? AND name <= ? AND asleep_since_ms IS NOT NULL AND kept_figures IS NOT NULL AND kept_until_ms >= ?",
        after ?? "",
        last,
        Date.now(),
      )
      .toArray();
    for (const r of rows) kept[r.name] = r.kept_figures;
    return { ...page, kept };
  }

  /**
   * Asleep groups' figures as a scrape asked them (`askedMs`: when it asked), kept for the next
   * scrapes (listForScrape): a scrape every minute started every asleep group's directory and
   * sequencer objects, so they never left memory (a probe). Kept only while the registry holds the
   * group asleep in that incarnation (its wake or its next sleep drops them: noteSleep), and only
   * over figures asked earlier (two scrapes at once: a counter never goes back). Each stays fresh
   * for half of `freshMs` to all of it, at random: kept all alike, the groups one scrape asked
   * came due together, and every freshMs one scrape asked all of them again (300 asleep groups:
   * 7.4 s and 29 left unasked, the scrapes between 32 to 70 ms); spread, each scrape asks a few.
   */
  async keepFigures(items: { name: string; incarnation: number; askedMs: number; figures: string }[], freshMs: number): Promise<void> {
    const sql = this.ctx.storage.sql;
    this.ctx.storage.transactionSync(() => {
      for (const i of items.slice(0, keptFiguresMax)) {
        sql.exec(
          `UPDATE names SET kept_figures = ?1, kept_ms = ?2, kept_until_ms = ?5
           WHERE name = ?3 AND incarnation IN (?4, 0) AND asleep_since_ms IS NOT NULL AND (kept_ms IS NULL OR kept_ms < ?2)`,
          i.figures,
          i.askedMs,
          i.name,
          i.incarnation,
          Math.round(i.askedMs + freshMs * (0.5 + Math.random() / 2)),
        );
      }
    });
  }

  /**
   * The cron's next names: up to `limit` after where the last claim stopped, which is kept here so
   * that the runs go round every group (a run audits only as many as its subrequests allow) and
   * two runs at once take different ones. An asleep group is skipped unless the cron took it
   * asleepAuditEveryMs ago or more (dueNames). `lapEnd`: these reach the last name due, and the
   * next claim starts again from the first. Each name returned is stamped as taken now.
   * `withinLap`: names of that lap only (`lap`, the number of laps ended before it): a run stops
   * at the end of the lap it began in, where a lap another run at once ended made it go round
   * again (three runs at once took 300 audits of 100 groups: a probe). Out of it, nothing is taken.
   * `claimedBeforeMs`: a run that ended a lap and goes on into the next takes only names claimed
   * before it began (none it or a run at once took), and ends no lap: at the last name it stops,
   * and the next run goes on from there. A run that stopped at a lap's end left the next to take
   * the few names past it: runs of 382 and 9 groups alternated, each group audited every other run
   * while the last lap's time said every run (a probe: 124 s between audits, 62 s shown).
   */
  async claim(limit: number, withinLap?: number, claimedBeforeMs?: number): Promise<{ groups: string[]; lapEnd: boolean; lap: number }> {
    const nowMs = Date.now();
    const at = this.cronValue("cursor") ?? "";
    if (claimedBeforeMs !== undefined) return this.claimOn(at, limit, withinLap, claimedBeforeMs, nowMs);
    let lap: Lap = this.cronStatus();
    let page = this.dueNames(at, limit, nowMs);
    let fromFirst = at === "";
    // Nothing due after the cursor (the names there were deleted, or are asleep and audited
    // lately): the lap under way is whole, and the next starts now, not in a run's time.
    if (page.groups.length === 0 && !fromFirst) {
      lap = lapAfter(lap, false, 0, true, nowMs);
      page = this.dueNames("", limit, nowMs);
      fromFirst = true;
    }
    const pageLap = lap.laps ?? 0;
    if (withinLap !== undefined && withinLap !== pageLap) return { groups: [], lapEnd: false, lap: pageLap };
    // A claim from the first name that takes nothing (every group asleep and audited lately) is
    // no lap: the last whole lap's figures stay those of one that took groups. Begun there (no lap
    // under way), it ends none either: it said it did, and each such run timed the last lap again
    // from that lap's start, 0.76 s growing to 166 s by 15 s a run (a probe). The run stops (no groups).
    const lapEnd = page.next === undefined && !(at === "" && page.groups.length === 0);
    if (!(fromFirst && page.groups.length === 0)) lap = lapAfter(lap, fromFirst, page.groups.length, lapEnd, nowMs);
    this.take(page.groups, page.next ?? "", lap, nowMs);
    return { groups: page.groups, lapEnd, lap: pageLap };
  }

  /** Stamps the names as taken now, and keeps where the next claim starts and the lap's figures. */
  private take(names: string[], cursor: string, lap: Lap, nowMs: number): void {
    const sql = this.ctx.storage.sql;
    this.ctx.storage.transactionSync(() => {
      for (const name of names) sql.exec("UPDATE names SET claimed_ms = ? WHERE name = ?", nowMs, name);
      this.setCron("cursor", cursor);
      this.setCron("status", JSON.stringify({ ...this.cronStatus(), ...lap }));
    });
  }

  /** claim()'s names for a run going on past the end of its lap (`claimedBeforeMs`): it ends no lap. */
  private claimOn(at: string, limit: number, withinLap: number | undefined, claimedBeforeMs: number, nowMs: number): { groups: string[]; lapEnd: false; lap: number } {
    const lap: Lap = this.cronStatus();
    const pageLap = lap.laps ?? 0;
    if (withinLap !== undefined && withinLap !== pageLap) return { groups: [], lapEnd: false, lap: pageLap };
    // Up to the first name due that this run may not take (one taken since it began, or never
    // taken: a new group, or one whose audit failed and was unclaimed, which this run may have
    // just audited): the cursor stops there, so the next run takes it in this lap (a review: the
    // cursor jumped over it, and that lap left it out; an unclaimed one was audited twice in a run).
    const blocker = this.ctx.storage.sql
      .exec<{ name: string | null }>(
        "SELECT min(name) AS name FROM names WHERE name > ? AND (asleep_since_ms IS NULL OR claimed_ms IS NULL OR claimed_ms <= ?) AND (claimed_ms IS NULL OR claimed_ms >= ?)",
        at,
        nowMs - asleepAuditEveryMs,
        claimedBeforeMs,
      )
      .one().name;
    const page = this.dueNames(at, limit, nowMs, claimedBeforeMs, blocker ?? undefined);
    if (page.groups.length === 0) return { groups: [], lapEnd: false, lap: pageLap };
    this.take(page.groups, page.groups.at(-1)!, lapAfter(lap, at === "", page.groups.length, false, nowMs), nowMs);
    return { groups: page.groups, lapEnd: false, lap: pageLap };
  }

  /**
   * What a cron run did, kept for the metrics (CronFigures): the run's counts and its time. A run
   * whose claim ended a lap ends it (`lapEnded`): the lap lasts until that run's audits are done,
   * not just its last claim. A lap one run took whole was 0 s after a run of 1.2 s (a probe).
   * A run that went on into the next lap (claimOn) began one since: the ended lap keeps the time
   * its last claim measured (this run's audits after it were of the next lap's groups too).
   */
  async finishRun(run: { audited: number; failed: number; startedMs: number; endedMs: number }, lapEnded = false): Promise<void> {
    const status = this.cronStatus();
    // No lap begun since (that would have moved lapStartedMs and counted groups again).
    const lapMs = lapEnded && status.lapStartedMs !== undefined && (status.lapGroups ?? 0) === 0 ? run.endedMs - status.lapStartedMs : undefined;
    const lastLapMs = lapMs !== undefined && lapMs > (status.lastLapMs ?? 0) ? { lastLapMs: lapMs } : {};
    this.setCron("status", JSON.stringify({ ...status, lastRun: run, ...lastLapMs }));
  }

  /**
   * Where the cron stands: its last run (audited, failed, when), and its laps over every group
   * (the last whole lap's time and groups, the lap under way's start and groups so far). A run
   * audits as many groups as its subrequests allow: at 400 groups runs of 342 and 58 alternated,
   * and only a log line told whether every group was covered (a probe).
   */
  async cron(): Promise<CronFigures> {
    const asleep = this.ctx.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM names WHERE asleep_since_ms IS NOT NULL").one().n;
    return { ...this.cronStatus(), asleep };
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
    const rows = this.ctx.storage.sql.exec<{ name: string }>("SELECT name FROM names WHERE name > ? ORDER BY name LIMIT ?", after ?? "", limit + 1).toArray();
    return paged(rows, limit);
  }

  /**
   * Like page(), the names the cron may take now: awake ones, and asleep ones it has not taken
   * for asleepAuditEveryMs (or ever). Filtered in the WHERE, before the LIMIT: a page past a
   * thousand asleep names still finds the due ones after them, and `next` says whether one follows.
   */
  private dueNames(after: string, limit: number, nowMs: number, claimedBeforeMs?: number, before?: string): { groups: string[]; next?: string } {
    // `claimedBeforeMs`, `before`: a run going on past its lap's end (claimOn) takes names claimed
    // before it began, below the first it may not take.
    const rows = this.ctx.storage.sql
      .exec<{ name: string }>(
        `SELECT name FROM names WHERE name > ? AND (asleep_since_ms IS NULL OR claimed_ms IS NULL OR claimed_ms <= ?)${claimedBeforeMs === undefined ? "" : " AND claimed_ms < ?"}${before === undefined ? "" : " AND name < ?"} ORDER BY name LIMIT ?`,
        ...[after, nowMs - asleepAuditEveryMs, ...(claimedBeforeMs === undefined ? [] : [claimedBeforeMs]), ...(before === undefined ? [] : [before]), limit + 1],
      )
      .toArray();
    return paged(rows, limit);
  }
}

/** The first `limit` of up to limit + 1 rows; `next` (the last name given) when more follow. */
function paged(rows: { name: string }[], limit: number): { groups: string[]; next?: string } {
  const groups = rows.slice(0, limit).map((r) => r.name);
  return rows.length > limit ? { groups, next: groups[groups.length - 1]! } : { groups };
}

/**
 * The lap figures after a claim of `claimed` groups: a lap begins with a claim from the first
 * name, and ends with the claim that reaches the last name due (it leaves none under way; the
 * next claim starts one). Laps count the groups taken, so asleep groups skipped are not in them.
 */
function lapAfter(lap: Lap, fromFirst: boolean, claimed: number, lapEnd: boolean, nowMs: number): Lap {
  const lapStartedMs = fromFirst ? nowMs : (lap.lapStartedMs ?? nowMs);
  const lapGroups = (fromFirst ? 0 : (lap.lapGroups ?? 0)) + claimed;
  if (!lapEnd) return { ...lap, lapStartedMs, lapGroups };
  return { lapStartedMs, lapGroups: 0, lastLapMs: nowMs - lapStartedMs, lastLapGroups: lapGroups, laps: (lap.laps ?? 0) + 1 };
}
