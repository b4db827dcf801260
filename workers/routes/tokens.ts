// Group tokens (API.md, "Group tokens"), created, listed and revoked by the admin.
import { Hono } from "hono";
import { ApiError } from "../../shared/api/errors.js";
import type { App } from "../http.js";
import { tokenBody, tokenIdPattern } from "../../shared/api/schemas.js";
import { groupTokensMax } from "../../shared/limits.js";
import { forgetTokens, newGroupToken, secretHash } from "../auth.js";
import { directoryStub } from "../env.js";
import * as groups from "../groups.js";
import { groupParam, jsonBody, parse, requireAdmin } from "../http.js";

export const tokenRoutes = new Hono<App>();

// ---- group tokens --------------------------------------------------------------------------

tokenRoutes.post("/:group/tokens", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const body = parse(tokenBody, await jsonBody(c), "body");
  const record = await groups.lookup(c.env, group, true);
  const t = newGroupToken(group);
  const created = new Date().toISOString();
  const ok = await directoryStub(c.env, group).addToken(record.config.incarnation, { id: t.id, scope: body.scope, name: body.name ?? null, created, hash: secretHash(t.secret) });
  if (!ok) {
    // Refused for the incarnation looked up: deleted (or re-created) meanwhile is a 404, as the
    // same request a moment later; only a group that still stands is full (it answered 409 "at
    // most 100 tokens" to a POST racing the group's DELETE).
    const now = await groups.lookup(c.env, group, true); // 404 if gone (a DELETE under way is finished)
    if (now.config.incarnation !== record.config.incarnation) throw new ApiError("not_found", `group ${group} was deleted meanwhile`);
    throw new ApiError("conflict", `group ${group} cannot take another token (at most ${groupTokensMax})`);
  }
  return c.json({ id: t.id, token: t.token, scope: body.scope, name: body.name ?? null, created }, 201);
});

tokenRoutes.get("/:group/tokens", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  await groups.lookup(c.env, group);
  return c.json({ tokens: await directoryStub(c.env, group).tokens() });
});

tokenRoutes.delete("/:group/tokens/:id", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const id = c.req.param("id");
  if (!tokenIdPattern.test(id)) throw new ApiError("bad_request", "id: a token id (8 hex digits)");
  await groups.lookup(c.env, group);
  if (!(await directoryStub(c.env, group).revokeToken(id))) throw new ApiError("not_found", `group ${group} has no token ${id}`);
  forgetTokens(group, id);
  return c.body(null, 204);
});
