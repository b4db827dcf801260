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
import { auditsPageDefault, bodyBytesMax, bodyReadTimeoutMs, logPageDefault, readWaitMs, routeCacheMs } from "../shared/limits.js";
import type { KvCommand } from "../shared/machines/kv.js";
import { machineFor } from "../shared/machines/index.js";
import { decodeBookmark, encodeBookmark } from "../shared/protocol/bookmark.js";
import { RateLimiter, scopeOf, tokensFrom, type Scope } from "./auth.js";
import { type Env, registryStub, replicaStub, rpc, sequencerStub } from "./env.js";
import { sequencerName, type GroupConfig } from "../shared/protocol/types.js";
import type { ReadAnswer } from "./replica.js";
import type { RouteInfo, SubmitAnswer } from "./sequencer.js";

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
  const scope = scopeOf(tokens, m[1]!);
  if (!scope) throw new ApiError("unauthorized", "unknown token");
  const wait = rateLimiter(c.env).take(m[1]!, Date.now());
  if (wait > 0) throw new ApiError("rate_limited", "request rate limit for this token exceeded", wait);
  c.set("scope", scope);
  await next();
});

function requireAdmin(c: Context<App>): void {
  if (c.get("scope") !== "admin") throw new ApiError("forbidden", "this route needs the admin token");
}

// ---- input ---------------------------------------------------------------------------------

function groupParam(c: Context<App>): string {
  const group = c.req.param("group") ?? "";
  if (!groupNamePattern.test(group)) throw new ApiError("bad_request", "group: must match ^[a-z0-9][a-z0-9-]{0,62}$");
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

// ---- routing info (per-isolate cache: replica ids and machine change only with the group) --

const routeCache = new Map<string, { info: RouteInfo; atMs: number }>();

// ---- which Durable Object is a group's sequencer (it changes when the sequencer is moved) ----

const sequencerNames = new Map<string, { name: string; atMs: number }>();

/** The group's sequencer stub; the name comes from the registry, cached per isolate for a moment. */
async function seqOf(env: Env, group: string) {
  const cached = sequencerNames.get(group);
  if (cached && Date.now() - cached.atMs < routeCacheMs) return sequencerStub(env, cached.name);
  return seqFrom(env, group, await registryStub(env).get(group));
}

/** The stub named by a config just read from the registry (and the cache refreshed with it). */
function seqFrom(env: Env, group: string, config: GroupConfig | null) {
  const name = config ? sequencerName(config) : group;
  sequencerNames.set(group, { name, atMs: Date.now() });
  return sequencerStub(env, name, config?.sequencer?.location ?? null);
}

/**
 * The registry knows the group but its sequencer has no state: the sequencer lost its storage.
 * Have it recover (new epoch, log from a replica majority) before serving. Returns false if the
 * group does not exist.
 */
async function ensureSequencer(env: Env, group: string): Promise<boolean> {
  const config = await registryStub(env).get(group);
  if (!config) return false;
  // Maybe it only moved: a stale name in this isolate's cache. Otherwise recover it.
  const r = await seqFrom(env, group, config).recover(config);
  if (!r.ok) throw new ApiError("unavailable", `group ${group} is recovering its sequencer: ${r.reason}`, 1);
  return true;
}

async function routeInfo(env: Env, group: string, fresh = false): Promise<RouteInfo> {
  const cached = routeCache.get(group);
  if (!fresh && cached && Date.now() - cached.atMs < routeCacheMs) return cached.info;
  let info = await (await seqOf(env, group)).routeInfo();
  if (!info && (await ensureSequencer(env, group))) info = await (await seqOf(env, group)).routeInfo();
  if (!info) {
    routeCache.delete(group);
    throw new ApiError("not_found", `group ${group} does not exist`);
  }
  routeCache.set(group, { info, atMs: Date.now() });
  return info;
}

// ---- groups --------------------------------------------------------------------------------

app.put("/v1/groups/:group", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const config = groupConfigFrom(group, parse(createGroupBody, await jsonBody(c), "body"));
  const registered = await registryStub(c.env).create(config);
  if (registered === "conflict") throw new ApiError("conflict", `group ${group} exists with another config`);
  const r = await (await seqOf(c.env, group)).init(config);
  if (r.kind === "conflict") throw new ApiError("conflict", `group ${group} exists with another config`);
  routeCache.delete(group);
  sequencerNames.delete(group);
  return c.json(r.status, registered === "created" ? 201 : 200);
});

app.get("/v1/groups", async (c) => {
  requireAdmin(c);
  return c.json({ groups: await registryStub(c.env).list() });
});

async function groupStatus(env: Env, group: string) {
  let status = await (await seqOf(env, group)).status();
  if (!status && (await ensureSequencer(env, group))) status = await (await seqOf(env, group)).status();
  return status;
}

app.get("/v1/groups/:group", async (c) => {
  const group = groupParam(c);
  const status = await groupStatus(c.env, group);
  if (!status) throw new ApiError("not_found", `group ${group} does not exist`);
  return c.json(status);
});

app.delete("/v1/groups/:group", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const registry = registryStub(c.env);
  const config = await registry.get(group);
  const seq = (await seqOf(c.env, group));
  const existed = await seq.destroy();
  // The sequencer may have lost its config in an earlier, interrupted delete: use the registry's.
  if (!existed && config) await seq.destroyReplicas(group, config.lastReplicaNo ?? config.replicas);
  const registered = await registry.remove(group);
  routeCache.delete(group);
  sequencerNames.delete(group);
  if (!existed && !registered) throw new ApiError("not_found", `group ${group} does not exist`);
  return c.body(null, 204);
});

// ---- commands ------------------------------------------------------------------------------

app.post("/v1/groups/:group/commands", async (c) => {
  const group = groupParam(c);
  const body = parse(commandBody, await jsonBody(c), "body");
  const info = await routeInfo(c.env, group);
  const command = checked(validateCommand(machineFor(info.machine), body.command));
  let a: SubmitAnswer = await rpc<SubmitAnswer>((await seqOf(c.env, group)).submit(body.client, body.request, command));
  if (a.kind === "not_found" && (await ensureSequencer(c.env, group))) {
    a = await rpc<SubmitAnswer>((await seqOf(c.env, group)).submit(body.client, body.request, command));
  }
  switch (a.kind) {
    case "ok":
      return c.json({ seq: a.seq, output: a.output, bookmark: encodeBookmark({ epoch: a.epoch, seq: a.seq }) } satisfies CommandResult);
    case "not_found":
      routeCache.delete(group);
      throw new ApiError("not_found", `group ${group} does not exist`);
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

function readResult(c: Context<App>, group: string, a: ReadAnswer) {
  switch (a.kind) {
    case "ok":
      return c.json({ result: a.result, seq: a.seq, replica: a.replica } satisfies QueryResult);
    case "timeout":
      throw new ApiError("timeout", `replica ${a.replica} did not reach the requested position in ${readWaitMs} ms (it is at ${a.appliedSeq})`);
    case "not_found":
      routeCache.delete(group);
      throw new ApiError("not_found", `group ${group} does not exist`);
    case "quarantined":
    case "busy":
      throw new ApiError("unavailable", "no replica can serve this read now", 1);
  }
}

/** Replicas in the order to try them: a random start spreads reads over the group. */
function readOrder(info: RouteInfo): RouteInfo["replicas"] {
  const start = Math.floor(Math.random() * info.replicas.length);
  return [...info.replicas.slice(start), ...info.replicas.slice(0, start)];
}

app.post("/v1/groups/:group/query", async (c) => {
  const group = groupParam(c);
  const body = parse(queryBody, await jsonBody(c), "body");
  const bookmark = body.bookmark === undefined ? null : decodeBookmark(body.bookmark);
  if (body.bookmark !== undefined && bookmark === null) throw new ApiError("bad_request", "bookmark: malformed");
  const info = await routeInfo(c.env, group);
  const query = checked(validateQuery(machineFor(info.machine), body.query));
  if (body.consistency === "linearizable") {
    let a = await rpc<ReadAnswer>((await seqOf(c.env, group)).query(query));
    if (a.kind === "not_found" && (await ensureSequencer(c.env, group))) a = await rpc<ReadAnswer>((await seqOf(c.env, group)).query(query));
    return readResult(c, group, a);
  }
  const minSeq = body.consistency === "sequential" ? (bookmark?.seq ?? 0) : 0;
  const waitMs = body.consistency === "sequential" ? readWaitMs : 0;
  let last: ReadAnswer = { kind: "busy", replica: "" };
  for (const r of readOrder(info)) {
    const a = await rpc<ReadAnswer>(replicaStub(c.env, group, r.id, r.location).query(query, minSeq, waitMs));
    if (a.kind === "ok" || a.kind === "timeout" || a.kind === "not_found") return readResult(c, group, a);
    last = a;
  }
  return readResult(c, group, last);
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

// ---- log, replicas, audits -----------------------------------------------------------------

app.get("/v1/groups/:group/log", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const q = parse(logParams, c.req.query(), "query");
  const page = await (await seqOf(c.env, group)).readLog(q.from, q.limit ?? logPageDefault);
  if (!page) throw new ApiError("not_found", `group ${group} does not exist`);
  if (page === "compacted") throw new ApiError("compacted", `log entries at ${q.from} and before were compacted; read the state, or the log from its firstSeq`);
  return c.json(page);
});

app.get("/v1/groups/:group/replicas", async (c) => {
  const group = groupParam(c);
  const status = await groupStatus(c.env, group);
  if (!status) throw new ApiError("not_found", `group ${group} does not exist`);
  return c.json({ replicas: status.replicas });
});

const addReplicaBody = z.object({ location: z.string().min(1).max(64).nullable().optional() }).strict();

app.post("/v1/groups/:group/replicas", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const body = parse(addReplicaBody, await jsonBody(c, true), "body");
  if (!(await groupStatus(c.env, group))) throw new ApiError("not_found", `group ${group} does not exist`);
  const r = await (await seqOf(c.env, group)).addReplica(body.location ?? null);
  if (!r.ok) throw new ApiError(r.code, r.reason, r.code === "unavailable" ? 1 : undefined);
  routeCache.delete(group);
  return c.json({ replica: r.replica }, 202);
});

app.delete("/v1/groups/:group/replicas/:id", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const id = c.req.param("id");
  if (!/^r[1-9][0-9]{0,5}$/.test(id)) throw new ApiError("bad_request", "id: a replica id such as r2");
  if (!(await groupStatus(c.env, group))) throw new ApiError("not_found", `group ${group} does not exist`);
  const r = await (await seqOf(c.env, group)).removeReplica(id);
  if (!r.ok) throw new ApiError(r.code, r.reason, r.code === "unavailable" ? 1 : undefined);
  routeCache.delete(group);
  return c.json({ replica: r.replica }, 202);
});

const moveSequencerBody = z.object({ location: z.string().min(1).max(64).nullable().optional() }).strict();

/**
 * Moves the group's sequencer: the current one hands over (stops, forgets everything), a new
 * Durable Object (placed by the location hint) takes over at a new epoch, rebuilding the log from
 * the replicas. Commands in flight may answer 503/504 meanwhile; retries are safe.
 */
app.post("/v1/groups/:group/sequencer", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const body = parse(moveSequencerBody, await jsonBody(c, true), "body");
  const registry = registryStub(c.env);
  const config = await registry.get(group);
  if (!config) throw new ApiError("not_found", `group ${group} does not exist`);
  const location = body.location ?? null;
  const no = (config.sequencer?.no ?? 0) + 1;
  const moved = { ...config, sequencer: { name: `${group}~s${no}`, location, no } };
  await sequencerStub(c.env, sequencerName(config)).handOver();
  await registry.update(moved);
  sequencerNames.delete(group);
  routeCache.delete(group);
  const r = await sequencerStub(c.env, moved.sequencer.name, location).recover(moved);
  if (!r.ok) throw new ApiError("unavailable", `the new sequencer could not recover yet: ${r.reason}`, 1);
  return c.json({ sequencer: { name: moved.sequencer.name, location, epoch: r.epoch } }, 202);
});

app.post("/v1/groups/:group/audit", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const report = await (await seqOf(c.env, group)).audit();
  if (!report) throw new ApiError("not_found", `group ${group} does not exist`);
  return c.json(report);
});

app.get("/v1/groups/:group/audits", async (c) => {
  const group = groupParam(c);
  const q = parse(auditsParams, c.req.query(), "query");
  const audits = await (await seqOf(c.env, group)).audits(q.limit ?? auditsPageDefault);
  if (!audits) throw new ApiError("not_found", `group ${group} does not exist`);
  return c.json({ audits });
});
