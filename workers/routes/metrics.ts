// GET /v1/metrics (API.md, "Metrics"): Prometheus text for one group (?group=), every group (up to
// metricsScrapeGroupsMax), or one page of the registry's groups (?after=&limit=; a "# next: <name>"
// comment when more follow).
import { Hono } from "hono";
import { ApiError } from "../../shared/api/errors.js";
import { type CronFigures, cronFamilies, exposition, groupFamilies, metricsContentType } from "../../shared/api/metrics.js";
import { metricsParams } from "../../shared/api/schemas.js";
import { asleepContactStaleMs, metricsPageDefault, metricsPageMax, metricsScrapeGroupsMax, metricsScrapeMs } from "../../shared/limits.js";
import { type Env, registryStub } from "../env.js";
import type { App } from "../http.js";
import { parseQuery, requireAdmin } from "../http.js";
import { gather, groupFigures, keepAsleep, keptFigures } from "../metrics.js";

/** A page of the registry's names, with the figures kept of asleep ones (RegistryObject.listForScrape). */
type Page = { groups: string[]; next?: string; kept: Record<string, string> };

export const metricsRoutes = new Hono<App>();

metricsRoutes.get("/", async (c) => {
  requireAdmin(c);
  const q = parseQuery(c, metricsParams);
  if (q.group !== undefined) {
    const figures = await groupFigures(c.env, q.group);
    if (!figures) throw new ApiError("not_found", `group ${q.group} does not exist`);
    return c.body(exposition(groupFamilies([figures])), 200, { "content-type": metricsContentType });
  }
  const startMs = Date.now();
  // The cron's series once per scrape: with the first page (a scrape of later pages would repeat
  // them). Asked alongside the listing and the gather, not after: its own bound (3 s) came on top
  // of theirs, and a scrape with a slow registry took 9.5 s (a probe), near Prometheus's 10 s.
  const cronCall = q.after === undefined ? cronOf(c.env) : null;
  const page = q.after === undefined && q.limit === undefined ? await everyGroup(c.env) : await listed(c.env, q.after ?? null, q.limit ?? metricsPageDefault);
  // The scrape's time includes the listing's (each page within registryCallTimeoutMs).
  const kept = keptFigures(page.kept);
  const { figures, unasked, asleep } = await gather(c.env, page.groups, Math.max(0, metricsScrapeMs - (Date.now() - startMs)), kept);
  if (asleep.length > 0) c.executionCtx.waitUntil(keepAsleep(c.env, asleep));
  const comments = unasked.length > 0 ? [`unasked: ${unasked.length} groups not asked in time to answer within ${metricsScrapeMs} ms, the first ${unasked[0]}`] : [];
  if (kept.size > 0) comments.push(`kept: ${kept.size} asleep groups as a scrape within ${asleepContactStaleMs / 1000} s saw them (their objects not started)`);
  const cron = cronCall ? cronFamilies(await cronCall) : [];
  const text = exposition([...groupFamilies(figures), ...cron], [...comments, ...(page.next ? [`next: ${page.next}`] : [])]);
  return c.body(text, 200, { "content-type": metricsContentType });
});

/** The cron's progress; null (smr_cron_known 0) if the registry does not answer: the groups' series matter more. */
function cronOf(env: Env): Promise<CronFigures | null> {
  return registryStub(env)
    .cron()
    .catch(() => null);
}

function listed(env: Env, after: string | null, limit: number): Promise<Page> {
  return registryStub(env)
    .listForScrape(after, limit)
    .catch((err) => {
      throw new ApiError("unavailable", `the registry cannot be reached: ${String(err)}`, 1);
    });
}

/**
 * A plain scrape (no ?after=, no ?limit=) covers every group, up to metricsScrapeGroupsMax (a
 * request's subrequests are bounded: each group costs up to three), with "# next:" past that.
 * It covered one page of 100: Prometheus follows no "# next:", and the groups after the first
 * hundred were never scraped.
 */
async function everyGroup(env: Env): Promise<Page> {
  const groups: string[] = [];
  const kept: Record<string, string> = {};
  let after: string | null = null;
  for (;;) {
    const page = await listed(env, after, Math.min(metricsPageMax, metricsScrapeGroupsMax - groups.length));
    groups.push(...page.groups);
    Object.assign(kept, page.kept);
    if (!page.next) return { groups, kept };
    if (groups.length >= metricsScrapeGroupsMax) return { groups, next: page.next, kept };
    after = page.next;
  }
}

