// Groups: create, list, status, delete.
import { Hono } from "hono";
import { ApiError } from "../../shared/api/errors.js";
import type { App } from "../http.js";
import { createGroupBody, deleteGroupParams, groupConfigFrom, groupsParams } from "../../shared/api/schemas.js";
import { groupsPageDefault } from "../../shared/limits.js";
import { registryStub } from "../env.js";
import * as groups from "../groups.js";
import { groupParam, jsonBody, parse, parseQuery, requireAdmin, status, statusForReaders } from "../http.js";

export const groupRoutes = new Hono<App>();

// ---- groups --------------------------------------------------------------------------------

groupRoutes.put("/:group", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const body = parse(createGroupBody, await jsonBody(c), "body");
  const config = groupConfigFrom(group, body);
  const r = await groups.create(c.env, config);
  // A quota asked for is compared (a probe: another one answered 200 and changed nothing); one not
  // asked for is not (the default is stored at creation), so a PUT without one still finds the group.
  const asked = body.storageQuotaMiB;
  if (!r.created && asked !== undefined && r.status.storageQuotaMiB !== undefined && r.status.storageQuotaMiB !== asked) {
    throw new ApiError("conflict", `group ${group} exists with another config: storageQuotaMiB ${r.status.storageQuotaMiB}, not ${asked} (a group's quota is set when it is created)`);
  }
  return c.json(r.status, r.created ? 201 : 200);
});

groupRoutes.get("/", async (c) => {
  requireAdmin(c);
  const q = parseQuery(c, groupsParams);
  const page = await registryStub(c.env)
    .list(q.after ?? null, q.limit ?? groupsPageDefault)
    .catch((err) => {
      throw new ApiError("unavailable", `the registry cannot be reached: ${String(err)}`, 1);
    });
  return c.json(page);
});


groupRoutes.get("/:group", async (c) => c.json(await statusForReaders(c.env, groupParam(c), (p) => c.executionCtx.waitUntil(p))));

groupRoutes.delete("/:group", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const q = parseQuery(c, deleteGroupParams);
  if (!(await groups.remove(c.env, group, q.force !== undefined, q.incarnation))) throw new ApiError("not_found", `group ${group} does not exist`);
  return c.body(null, 204);
});

