// Groups: create, list, status, delete, and the storage quota.
import { Hono } from "hono";
import { ApiError } from "../../shared/api/errors.js";
import type { App } from "../http.js";
import type { GroupStatus } from "../../shared/api/types.js";
import { createGroupBody, deleteGroupParams, groupConfigFrom, groupsParams, quotaBody } from "../../shared/api/schemas.js";
import { groupsPageDefault } from "../../shared/limits.js";
import { placementWarnings } from "../../shared/protocol/types.js";
import { registryStub, rpc } from "../env.js";
import type { SequencerObject } from "../sequencer.js";
import * as groups from "../groups.js";
import { groupParam, groupTokenLife, jsonBody, parse, parseQuery, requireAdmin, status, statusForReaders } from "../http.js";

export const groupRoutes = new Hono<App>();

// ---- groups --------------------------------------------------------------------------------

groupRoutes.put("/:group", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const body = parse(createGroupBody, await jsonBody(c), "body");
  const config = groupConfigFrom(group, body);
  const r = await groups.create(c.env, config);
  if (!r.created) refuseOtherSettings(group, body, r.status);
  const warnings = placementWarnings(r.config);
  return c.json({ ...r.status, ...(warnings.length > 0 ? { warnings } : {}) }, r.created ? 201 : 200);
});

/**
 * The settings stored at creation that a PUT compares only when it names them (the default is
 * stored, so a PUT without one still finds the group, made before the field or not): another
 * quota answered 200 and changed nothing (a probe), and so did another session window (an
 * upgrade probe: an older group's `null`, never forgetting, stayed whatever a PUT asked).
 */
function refuseOtherSettings(group: string, body: { storageQuotaMiB?: number; sessionIdleSeconds?: number }, status: GroupStatus): void {
  const quota = body.storageQuotaMiB;
  if (quota !== undefined && status.storageQuotaMiB !== undefined && status.storageQuotaMiB !== quota) {
    throw new ApiError("conflict", `group ${group} exists with another config: storageQuotaMiB ${status.storageQuotaMiB}, not ${quota} (a group's quota is set when it is created, and changed by POST /v1/groups/${group}/quota)`);
  }
  const idle = body.sessionIdleSeconds;
  if (idle !== undefined && status.sessionIdleSeconds !== undefined && status.sessionIdleSeconds !== idle) {
    const has = status.sessionIdleSeconds === null ? "none (it forgets no client: made before sessions expired)" : String(status.sessionIdleSeconds);
    throw new ApiError("conflict", `group ${group} exists with another config: sessionIdleSeconds ${has}, not ${idle} (a group's session window is set when it is created)`);
  }
}

/**
 * A group's storage quota from now on (docs/OPERATIONS.md, "Storage quota"): a group at its quota whose
 * machine has no command that frees space (bank), and whose state is over what a restore takes,
 * had no way out (a probe: "snapshot it and restore it into a new group" was refused at 64 MiB).
 * Setting the same quota twice changes nothing, so the client retries it whatever it met.
 */
groupRoutes.post("/:group/quota", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const body = parse(quotaBody, await jsonBody(c), "body");
  type Answer = Awaited<ReturnType<SequencerObject["setQuota"]>>;
  // Called as a command is: a call that failed may have set it (a 504, asked again after a failover: setting it twice changes nothing).
  const r = await groups.withSequencer(c.env, group, (s) => rpc<Answer>(s.setQuota(body.storageQuotaMiB)), (r) => r.kind === "not_found", "setting");
  if (r.kind === "not_found") throw new ApiError("not_found", `group ${group} does not exist`);
  if (r.kind !== "ok") throw new ApiError(r.kind, r.message, r.kind === "unavailable" ? 1 : undefined);
  // (A 504 timeout: in force at the sequencer, the directory's record unknown; the client retries it.)
  groups.forget(group);
  return c.json(r.status);
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


groupRoutes.get("/:group", async (c) => {
  const group = groupParam(c);
  await groupTokenLife(c, group);
  return c.json(await statusForReaders(c.env, group, (p) => c.executionCtx.waitUntil(p)));
});

groupRoutes.delete("/:group", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const q = parseQuery(c, deleteGroupParams);
  if (!(await groups.remove(c.env, group, q.force !== undefined, q.incarnation))) throw new ApiError("not_found", `group ${group} does not exist`);
  return c.body(null, 204);
});

