// GET /v1/metrics (API.md, "Metrics"): Prometheus text for one group (?group=) or one page of the
// registry's groups (?after=&limit=; a "# next: <name>" comment when more follow).
import { Hono } from "hono";
import { ApiError } from "../../shared/api/errors.js";
import { exposition, groupFamilies, metricsContentType } from "../../shared/api/metrics.js";
import { metricsParams } from "../../shared/api/schemas.js";
import { metricsPageDefault } from "../../shared/limits.js";
import { registryStub } from "../env.js";
import type { App } from "../http.js";
import { parse, requireAdmin } from "../http.js";
import { gather, groupFigures } from "../metrics.js";

export const metricsRoutes = new Hono<App>();

metricsRoutes.get("/", async (c) => {
  requireAdmin(c);
  const q = parse(metricsParams, c.req.query(), "query");
  if (q.group !== undefined) {
    const figures = await groupFigures(c.env, q.group);
    if (!figures) throw new ApiError("not_found", `group ${q.group} does not exist`);
    return c.body(exposition(groupFamilies([figures])), 200, { "content-type": metricsContentType });
  }
  const page = await registryStub(c.env)
    .list(q.after ?? null, q.limit ?? metricsPageDefault)
    .catch((err) => {
      throw new ApiError("unavailable", `the registry cannot be reached: ${String(err)}`, 1);
    });
  const text = exposition(groupFamilies(await gather(c.env, page.groups)), page.next ? [`next: ${page.next}`] : []);
  return c.body(text, 200, { "content-type": metricsContentType });
});
