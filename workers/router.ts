import { Hono, type Context } from "hono";
import { z } from "zod";
import { ApiError } from "../shared/api/errors.js";
import type { CommandResult, QueryResult } from "../shared/api/results.js";
import {
  auditsParams,
  commandBody,
  createGroupBody,
  describeZodError,
  groupConfigFrom,
  groupNamePattern,
  logParams,
  queryBody,
} from "../shared/api/schemas.js";
import { type Checked, validateCommand, validateQuery } from "../shared/api/commands.js";
import { checkJson } from "../shared/api/input.js";
import { auditsPageDefault, bodyBytesMax, bodyReadTimeoutMs, eventsPageDefault, groupTokensMax, groupsPageDefault, groupsPageMax, logPageDefault, readWaitMs } from "../shared/limits.js";
import type { KvCommand } from "../shared/machines/kv.js";
import { machineFor } from "../shared/machines/index.js";
import { decodeBookmark, encodeBookmark } from "../shared/protocol/bookmark.js";
import { RateLimiter, groupScopeOf, newGroupToken, scopeOf, secretHash, tokensFrom, type Scope } from "./auth.js";
import { type Env, directoryStub, registryStub, replicaStub, rpc } from "./env.js";
import * as groups from "./groups.js";
import type { GroupStatus } from "../shared/protocol/types.js";
import type { ReadAnswer } from "./replica.js";
import type { AddReplicaAnswer, RemoveReplicaAnswer, SubmitAnswer } from "./sequencer.js";

type App = { Bindings: Env; Variables: { scope: Scope; requestId: string } };

export const app = new Hono<App>();

// One limiter per configuration, so a changed var (or a test's env) takes effect at once.
const limiters = new Map<string, RateLimiter>();
function rateLimiter(env: Env): RateLimiter {
  const perSec = Number(env.RATE_LIMIT_PER_SEC ?? 1000);
  const burst = Number(env.RATE_LIMIT_BURST ?? 2000);
  const key = `${perSec}/${burst}`;
  let limiter = limiters.get(key);
  if (!limiter) {
    limiter = new RateLimiter(perSec, burst);
    limiters.set(key, limiter);
  }
  return limiter;
}

// ---- errors: one handler maps every failure to the API.md shape ---------------------------

function errorResponse(c: Context<App>, err: ApiError) {
  if (err.retryAfterSec !== undefined) c.header("Retry-After", String(err.retryAfterSec));
  return c.json({ error: { code: err.code, message: err.message } }, err.status as 400);
}

app.onError((err, c) => {
  if (err instanceof ApiError) return errorResponse(c, err);
  const requestId = c.get("requestId") ?? crypto.randomUUID();
  console.error(`internal error ${requestId}:`, err);
  return c.json({ error: { code: "internal", message: `internal error; request id ${requestId}`, requestId } }, 500);
});

app.notFound((c) => errorResponse(c, new ApiError("not_found", `no route ${c.req.method} ${new URL(c.req.url).pathname}`)));

app.use("*", async (c, next) => {
  c.set("requestId", crypto.randomUUID());
  await next();
});

// ---- auth ----------------------------------------------------------------------------------

app.get("/healthz", (c) => c.json({ ok: true }));

app.use("/v1/*", async (c, next) => {
  const tokens = tokensFrom(c.env);
  if (tokens.admin === null && tokens.clients.length === 0) {
    throw new ApiError("not_configured", "no ADMIN_TOKEN or CLIENT_TOKENS configured; the API is closed", 60);
  }
  const header = c.req.header("authorization") ?? "";
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) throw new ApiError("unauthorized", "missing Authorization: Bearer <token>");
  const scope = scopeOf(tokens, m[1]!) ?? (await groupScopeOf(c.env, m[1]!));
  if (!scope) throw new ApiError("unauthorized", "unknown token");
  const wait = rateLimiter(c.env).take(m[1]!, Date.now());
  if (wait > 0) throw new ApiError("rate_limited", "request rate limit for this token exceeded", wait);
  c.set("scope", scope);
  await next();
});

function requireAdmin(c: Context<App>): void {
  if (c.get("scope").kind !== "admin") throw new ApiError("forbidden", "this route needs the admin token");
}

/** A group token may write only with scope "write" (its own group is checked by groupParam). */
function requireWrite(c: Context<App>): void {
  const scope = c.get("scope");
  if (scope.kind === "group" && scope.access !== "write") throw new ApiError("forbidden", "this token may only read");
}

/**
 * The client id a command is recorded under: a group token's commands are namespaced by the
 * token, so another token sending the same (client, request) is a different command.
 */
function clientOf(c: Context<App>, client: string): string {
  const scope = c.get("scope");
  return scope.kind === "group" ? `${scope.tokenId}~${client}` : client;
}

// ---- input ---------------------------------------------------------------------------------

function groupParam(c: Context<App>): string {
  const group = c.req.param("group") ?? "";
  if (!groupNamePattern.test(group)) throw new ApiError("bad_request", "group: must match ^[a-z0-9][a-z0-9-]{0,62}$");
  const scope = c.get("scope");
  if (scope?.kind === "group" && scope.group !== group) throw new ApiError("forbidden", `this token is for group ${scope.group} only`);
  return group;
}

/** The body, read within bodyReadTimeoutMs: a declared length whose bytes never come is a 400, not a hang. */
async function readBody(c: Context<App>): Promise<ArrayBuffer> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ApiError("bad_request", `body: not received in full within ${bodyReadTimeoutMs} ms`)), bodyReadTimeoutMs);
  });
  try {
    return await Promise.race([c.req.arrayBuffer(), late]);
  } finally {
    clearTimeout(timer);
  }
}

async function jsonBody(c: Context<App>, optional = false): Promise<unknown> {
  const declared = Number(c.req.header("content-length") ?? "0");
  if (declared > bodyBytesMax) throw new ApiError("too_large", `body: larger than ${bodyBytesMax} bytes`);
  const buf = await readBody(c);
  if (buf.byteLength > bodyBytesMax) throw new ApiError("too_large", `body: larger than ${bodyBytesMax} bytes`);
  if (buf.byteLength === 0) {
    if (optional) return {};
    throw new ApiError("bad_request", "body: a JSON body is required");
  }
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(buf));
  } catch {
    throw new ApiError("bad_request", "body: malformed JSON");
  }
  const problem = checkJson(value, "body");
  if (problem !== null) throw new ApiError("bad_request", problem);
  return value;
}

function checked<T>(r: Checked<T>): T {
  if (!r.ok) throw new ApiError(r.code, r.message);
  return r.value;
}

function parse<S extends z.ZodType>(schema: S, value: unknown, field: string): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new ApiError("bad_request", describeZodError(r.error, field));
  return r.data;
}

// ---- groups --------------------------------------------------------------------------------

app.put("/v1/groups/:group", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const config = groupConfigFrom(group, parse(createGroupBody, await jsonBody(c), "body"));
  const r = await groups.create(c.env, config);
  return c.json(r.status, r.created ? 201 : 200);
});

const listParams = z.object({
  after: z.string().max(64).optional(),
  limit: z.coerce.number().int().min(1).max(groupsPageMax).optional(),
});

app.get("/v1/groups", async (c) => {
  requireAdmin(c);
  const q = parse(listParams, c.req.query(), "query");
  return c.json(await registryStub(c.env).list(q.after ?? null, q.limit ?? groupsPageDefault));
});

function status(env: Env, group: string): Promise<GroupStatus> {
  return groups.withSequencer(env, group, (s) => s.status(), (s) => s === null) as Promise<GroupStatus>;
}

app.get("/v1/groups/:group", async (c) => c.json(await status(c.env, groupParam(c))));

app.delete("/v1/groups/:group", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  if (!(await groups.remove(c.env, group))) throw new ApiError("not_found", `group ${group} does not exist`);
  return c.body(null, 204);
});

// ---- commands ------------------------------------------------------------------------------

app.post("/v1/groups/:group/commands", async (c) => {
  const group = groupParam(c);
  requireWrite(c);
  const body = parse(commandBody, await jsonBody(c), "body");
  const client = clientOf(c, body.client);
  const record = await groups.lookup(c.env, group);
  const command = checked(validateCommand(machineFor(record.config.machine), body.command));
  const a = await groups.withSequencer(
    c.env,
    group,
    (s) => rpc<SubmitAnswer>(s.submit(client, body.request, command)),
    (a) => a.kind === "not_found",
  );
  switch (a.kind) {
    case "ok":
      return c.json({ seq: a.seq, output: a.output, bookmark: encodeBookmark({ epoch: a.epoch, seq: a.seq }) } satisfies CommandResult);
    case "not_found":
      throw new ApiError("unavailable", `group ${group} has no sequencer serving yet`, 1);
    case "conflict":
      throw new ApiError("conflict", a.message);
    case "unavailable":
      throw new ApiError("unavailable", a.message, 1);
    case "timeout":
      throw new ApiError("timeout", a.message);
    case "no_majority":
      throw new Error(`group ${group}: ${a.message}`);
  }
});

// ---- queries -------------------------------------------------------------------------------

function readResult(c: Context<App>, a: ReadAnswer) {
  switch (a.kind) {
    case "ok":
      return c.json({ result: a.result, seq: a.seq, replica: a.replica } satisfies QueryResult);
    case "timeout":
      throw new ApiError("timeout", `replica ${a.replica} did not reach the requested position in ${readWaitMs} ms (it is at ${a.appliedSeq})`);
    case "not_found":
    case "quarantined":
    case "busy":
      throw new ApiError("unavailable", "no replica can serve this read now", 1);
  }
}

/** Replicas in the order to try them: a random start spreads reads over the group. */
function readOrder<T>(replicas: T[]): T[] {
  const start = Math.floor(Math.random() * replicas.length);
  return [...replicas.slice(start), ...replicas.slice(0, start)];
}

app.post("/v1/groups/:group/query", async (c) => {
  const group = groupParam(c);
  const body = parse(queryBody, await jsonBody(c), "body");
  const bookmark = body.bookmark === undefined ? null : decodeBookmark(body.bookmark);
  if (body.bookmark !== undefined && bookmark === null) throw new ApiError("bad_request", "bookmark: malformed");
  const record = await groups.lookup(c.env, group);
  const query = checked(validateQuery(machineFor(record.config.machine), body.query));
  if (body.consistency === "linearizable") {
    const a = await groups.withSequencer(c.env, group, (s) => rpc<ReadAnswer>(s.query(query)), (a) => a.kind === "not_found");
    return readResult(c, a);
  }
  const minSeq = body.consistency === "sequential" ? (bookmark?.seq ?? 0) : 0;
  const waitMs = body.consistency === "sequential" ? readWaitMs : 0;
  let last: ReadAnswer = { kind: "busy", replica: "" };
  for (const r of readOrder(groups.replicasOf(record))) {
    const stub = replicaStub(c.env, group, r.id, r.location);
    const a = await rpc<ReadAnswer>(stub.call(record.config.incarnation, "query", [query, minSeq, waitMs])).catch((): ReadAnswer => ({ kind: "busy", replica: r.id }));
    if (a.kind === "ok" || a.kind === "timeout") return readResult(c, a);
    last = a;
  }
  // Every replica refused: maybe the route is stale (a membership change); the next read looks again.
  groups.forget(group);
  return readResult(c, last);
});

// ---- benchmark baseline (off unless BENCH_BASELINE=1) ---------------------------------------

app.post("/v1/bench/baseline/:group/commands", async (c) => {
  if (c.env.BENCH_BASELINE !== "1") throw new ApiError("not_found", "the benchmark baseline is not enabled");
  const group = groupParam(c);
  const body = parse(commandBody, await jsonBody(c), "body");
  const command = checked(validateCommand(machineFor("kv"), body.command)) as KvCommand;
  if (command.op !== "put") throw new ApiError("bad_request", "command.op: the baseline only does put");
  const stub = c.env.BASELINE.get(c.env.BASELINE.idFromName(group));
  const output = await stub.put(command.key, command.value);
  return c.json({ seq: 0, output, bookmark: "" });
});

// ---- log, replicas, audits, events ---------------------------------------------------------

app.get("/v1/groups/:group/log", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const q = parse(logParams, c.req.query(), "query");
  const page = await groups.withSequencer(c.env, group, (s) => s.readLog(q.from, q.limit ?? logPageDefault), (p) => p === null);
  if (page === "compacted") throw new ApiError("compacted", `log entries at ${q.from} and before were compacted; read the state, or the log from its firstSeq`);
  return c.json(page);
});

app.get("/v1/groups/:group/replicas", async (c) => c.json({ replicas: (await status(c.env, groupParam(c))).replicas }));

const addReplicaBody = z.object({ location: z.string().min(1).max(64).nullable().optional() }).strict();

app.post("/v1/groups/:group/replicas", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const body = parse(addReplicaBody, await jsonBody(c, true), "body");
  const r = await groups.withSequencer(c.env, group, (s) => rpc<AddReplicaAnswer>(s.addReplica(body.location ?? null)), (r) => !r.ok && r.code === "not_found");
  if (!r.ok) throw new ApiError(r.code, r.reason, r.code === "unavailable" ? 1 : undefined);
  groups.forget(group);
  return c.json({ replica: r.replica }, 202);
});

function replicaParam(c: Context<App>): string {
  const id = c.req.param("id") ?? "";
  if (!/^r[1-9][0-9]{0,5}$/.test(id)) throw new ApiError("bad_request", "id: a replica id such as r2");
  return id;
}

app.delete("/v1/groups/:group/replicas/:id", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const id = replicaParam(c);
  await status(c.env, group); // 404 for no such group, and a recovered sequencer
  const r = await groups.withSequencer(c.env, group, (s) => rpc<RemoveReplicaAnswer>(s.removeReplica(id)), () => false);
  if (!r.ok) throw new ApiError(r.code, r.reason, r.code === "unavailable" ? 1 : undefined);
  groups.forget(group);
  return c.json({ replica: r.replica }, 202);
});

const releaseBody = z.object({ rebase: z.boolean().optional() }).strict();

/** The operator's ways out of a quarantine (README, Operations): rebuild from a healthy replica, or release. */
app.post("/v1/groups/:group/replicas/:id/repair", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const id = replicaParam(c);
  const r = await groups.withSequencer(c.env, group, (s) => s.repair(id), (r) => r.code === "not_found" && r.reason === "no such group");
  if (r.code === "not_found") throw new ApiError("not_found", r.reason!);
  if (!r.ok) throw new ApiError("unavailable", r.reason!, 5);
  return c.json({ replica: (await status(c.env, group)).replicas.find((x) => x.id === id) });
});

app.post("/v1/groups/:group/replicas/:id/release", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const id = replicaParam(c);
  const body = parse(releaseBody, await jsonBody(c, true), "body");
  const r = await groups.withSequencer(
    c.env,
    group,
    (s) => rpc<{ ok: true } | { ok: false; reason: string; code: "not_found" | "conflict" }>(s.release(id, body.rebase ?? false)),
    (r) => !r.ok && r.code === "not_found" && r.reason === "no such group",
  );
  if (!r.ok) throw new ApiError(r.code, r.reason);
  return c.json({ replica: (await status(c.env, group)).replicas.find((x) => x.id === id) });
});

const moveSequencerBody = z.object({ location: z.string().min(1).max(64).nullable().optional() }).strict();

/** Moves the group's sequencer (see groups.move). Commands in flight may answer 503/504 meanwhile; retries are safe. */
app.post("/v1/groups/:group/sequencer", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const body = parse(moveSequencerBody, await jsonBody(c, true), "body");
  return c.json({ sequencer: await groups.move(c.env, group, body.location ?? null) }, 202);
});

app.post("/v1/groups/:group/audit", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  return c.json(await groups.withSequencer(c.env, group, (s) => s.audit(), (r) => r === null));
});

app.get("/v1/groups/:group/audits", async (c) => {
  const group = groupParam(c);
  const q = parse(auditsParams, c.req.query(), "query");
  await groups.lookup(c.env, group);
  return c.json({ audits: await directoryStub(c.env, group).audits(q.limit ?? auditsPageDefault) });
});

app.get("/v1/groups/:group/events", async (c) => {
  const group = groupParam(c);
  const q = parse(auditsParams, c.req.query(), "query");
  await groups.lookup(c.env, group);
  return c.json({ events: await directoryStub(c.env, group).events(q.limit ?? eventsPageDefault) });
});

// ---- group tokens --------------------------------------------------------------------------

const tokenBody = z.object({ scope: z.enum(["read", "write"]), name: z.string().min(1).max(128).optional() }).strict();

app.post("/v1/groups/:group/tokens", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const body = parse(tokenBody, await jsonBody(c), "body");
  const record = await groups.lookup(c.env, group, true);
  const t = newGroupToken(group);
  const created = new Date().toISOString();
  const ok = await directoryStub(c.env, group).addToken(record.config.incarnation, { id: t.id, scope: body.scope, name: body.name ?? null, created, hash: secretHash(t.secret) });
  if (!ok) throw new ApiError("conflict", `group ${group} cannot take another token (at most ${groupTokensMax})`);
  return c.json({ id: t.id, token: t.token, scope: body.scope, name: body.name ?? null, created }, 201);
});

app.get("/v1/groups/:group/tokens", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  await groups.lookup(c.env, group);
  return c.json({ tokens: await directoryStub(c.env, group).tokens() });
});

app.delete("/v1/groups/:group/tokens/:id", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const id = c.req.param("id");
  if (!/^[0-9a-f]{8}$/.test(id)) throw new ApiError("bad_request", "id: a token id (8 hex digits)");
  await groups.lookup(c.env, group);
  if (!(await directoryStub(c.env, group).revokeToken(id))) throw new ApiError("not_found", `group ${group} has no token ${id}`);
  return c.body(null, 204);
});
