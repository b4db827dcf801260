// What every route shares: the app's types, authorization checks, and input parsing (one
// validation path: the body's JSON checks, then the schemas, each 400 naming its field).
import type { Context } from "hono";
import type { z } from "zod";
import { type Checked } from "../shared/api/commands.js";
import { ApiError } from "../shared/api/errors.js";
import { checkJson, parseJson, repeatedKey } from "../shared/api/input.js";
import { describeZodError, groupNamePattern } from "../shared/api/schemas.js";
import { logEvent } from "../shared/log.js";
import { bodyBytesMax, bodyDrainBytesMax, bodyReadTimeoutMs, replicaRpcTimeoutMs, slowReplicasMax, statusReadMs } from "../shared/limits.js";
import { bounded } from "../shared/bounded.js";
import { TimeoutError, withTimeout } from "../shared/protocol/io.js";
import type { GroupStatus } from "../shared/api/types.js";
import { type Scope, forgetTokens } from "./auth.js";
import type { GroupRecord } from "../shared/control/directory.js";
import { type Env, realClock, rpc } from "./env.js";
import * as groups from "./groups.js";
import { noQuorumSide, statusFromReplicas } from "./replica-view.js";

export type App = { Bindings: Env; Variables: { scope: Scope; requestId: string } };

export function requireAdmin(c: Context<App>): void {
  if (c.get("scope").kind !== "admin") throw new ApiError("forbidden", "this route needs the admin token");
}

/** A group token may write only with scope "write" (its own group is checked by groupParam). */
export function requireWrite(c: Context<App>): void {
  const scope = c.get("scope");
  if (scope.kind === "group" && scope.access !== "write") throw new ApiError("forbidden", "this token may only read");
}

/**
 * The client id a command is recorded under: a group token's commands are namespaced by the
 * token, so another token sending the same (client, request) is a different command.
 */
export function clientOf(c: Context<App>, client: string): string {
  const scope = c.get("scope");
  if (scope.kind === "group") return `${scope.tokenId}~${client}`;
  // The names a group token's commands are recorded under are reserved: a client token sending
  // "<id>~c" would otherwise share that token's pairs (and receive its recorded outputs).
  if (groupClientPattern.test(client)) throw new ApiError("bad_request", `body.client: "<8 hex digits>~..." is reserved for group tokens' commands`);
  return client;
}

const groupClientPattern = /^[0-9a-f]{8}~/;

// ---- input ---------------------------------------------------------------------------------

export function groupParam(c: Context<App>): string {
  const group = c.req.param("group") ?? "";
  if (!groupNamePattern.test(group)) throw new ApiError("bad_request", "group: must match ^[a-z0-9][a-z0-9-]{0,62}$");
  const scope = c.get("scope");
  if (scope?.kind === "group" && scope.group !== group) throw new ApiError("forbidden", `this token is for group ${scope.group} only`);
  return group;
}

/**
 * The group's route (groups.lookup) for this request. A group token found in another life of the
 * group than the route's is refused: a router keeps a token it looked up for routeCacheMs, and a
 * token of a group deleted and created again through another router still passed here within that
 * time, and acted on the new group (an isolation probe). A token newer than the route looks the
 * route up again (the route was the stale one).
 */
export async function routeOf(c: Context<App>, group: string, fresh = false): Promise<GroupRecord> {
  let record = await groups.lookup(c.env, group, fresh);
  const scope = c.get("scope");
  if (scope?.kind !== "group" || scope.incarnation === undefined) return record;
  if (record.config.incarnation < scope.incarnation) record = await groups.lookup(c.env, group, true);
  if (record.config.incarnation !== scope.incarnation) {
    forgetTokens(group, scope.tokenId);
    throw new ApiError("unauthorized", "unknown token (its group was deleted and created again)");
  }
  return record;
}

/**
 * For a group token: the group's route looked up afresh, the token refused if of another life.
 * Where the objects a route asks do not check the life (the sequencer's status, the directory's
 * audits and events), and after objects refused the route's life (a read, a watch): a router
 * whose token and route were both cached from a life that ended answered the new life's status
 * to the old token, and a 503 to its reads (a review).
 */
export async function groupTokenLife(c: Context<App>, group: string): Promise<void> {
  if (c.get("scope")?.kind === "group") await routeOf(c, group, true);
}

/**
 * The body, read within bodyReadTimeoutMs, at most bodyBytesMax bytes of it kept: late, a 400, or
 * a 413 if it is past the bound by its bytes or its declared length (a slow 5 MB upload was told
 * "not received in full" and might send it again: a review); past the bound, read on to its end or
 * bodyDrainBytesMax (then cancelled) and a 413; cut off by the client, a 400. Read whole first
 * (c.req.arrayBuffer), a chunked body was held in memory to its end: 600 MB took the process from
 * 0.8 to 1.95 GB before its 413 (a probe), where an isolate on the platform has 128 MB.
 */
async function readBody(c: Context<App>, declaredBytes: number): Promise<Uint8Array> {
  const body = c.req.raw.body;
  if (body === null) return new Uint8Array(0);
  const reader = body.getReader();
  // One timer cancels the read (which then ends): a race against a timeout promise at every read
  // kept a reaction per read, and a body of 1-byte chunks took workerd from 144 to 377 MB (a review).
  let late = false;
  const timer = setTimeout(() => {
    late = true;
    reader.cancel().catch(() => undefined);
  }, bodyReadTimeoutMs);
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  const tooLarge = () => new ApiError("too_large", `body: larger than ${bodyBytesMax} bytes`);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes += value.byteLength;
      // Past the bound, read on to the end, keeping nothing, within bodyDrainBytesMax (and the
      // time bound): a chunked body's sender got EPIPE when it was cancelled at once (a review).
      if (bytes <= bodyBytesMax) chunks.push(value);
      else if (chunks.length > 0) chunks.length = 0;
      if (bytes > bodyDrainBytesMax) break;
    }
  } catch (err) {
    // The client went away: a 400, not a 500 with an internal-error line (a review).
    if (!late && bytes <= bodyBytesMax) throw new ApiError("bad_request", `body: the upload was cut off (${err instanceof Error ? err.message : String(err)})`);
  } finally {
    clearTimeout(timer);
  }
  if (bytes > bodyDrainBytesMax) reader.cancel().catch(() => undefined);
  if (bytes > bodyBytesMax || (late && declaredBytes > bodyBytesMax)) throw tooLarge();
  if (late) throw new ApiError("bad_request", `body: not received in full within ${bodyReadTimeoutMs} ms`);
  const all = new Uint8Array(bytes);
  let at = 0;
  for (const chunk of chunks) (all.set(chunk, at), (at += chunk.byteLength));
  return all;
}

export async function jsonBody(c: Context<App>, optional = false): Promise<unknown> {
  const declared = Number(c.req.header("content-length") ?? "0");
  // Up to bodyDrainBytesMax a declared body is read as a chunked one (a 413 past 256 KiB, within
  // 10 s: a declared 300 KB never sent got no answer, a review). Past it, refused unread: the
  // runtime drains an untouched body, then answers (cancelled, a sender got a reset; drained here,
  // a 100 MB one was reset past the drain's bound and a trickle held the answer for hours: reviews).
  // Such a length never sent gets no answer under wrangler dev: the runtime waits for it.
  if (declared > bodyDrainBytesMax) throw new ApiError("too_large", `body: larger than ${bodyBytesMax} bytes`);
  // A compressed body read as JSON was "malformed JSON" (a probe): say why instead.
  const encoding = (c.req.header("content-encoding") ?? "identity").trim().toLowerCase();
  if (encoding !== "identity" && encoding !== "") throw new ApiError("bad_request", `body: Content-Encoding ${encoding} is not taken here; send the JSON as it is`);
  const buf = await readBody(c, declared);
  if (buf.byteLength === 0) {
    if (optional) return {};
    throw new ApiError("bad_request", "body: a JSON body is required");
  }
  let value: unknown;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(buf);
    value = parseJson(text);
  } catch {
    throw new ApiError("bad_request", "body: malformed JSON");
  }
  const problem = checkJson(value, "body") ?? repeatedKey(text, value, "body");
  if (problem !== null) throw new ApiError("bad_request", problem);
  return value;
}

export function checked<T>(r: Checked<T>): T {
  if (!r.ok) throw new ApiError(r.code, r.message);
  return r.value;
}

/**
 * The route's query parameters (`schema`'s fields), parsed from the raw URL: each given at most
 * once and percent-encoded as UTF-8, else a 400 naming it. `c.req.query()` kept the first of
 * `?from=1&from=2` and silently dropped the second, and decoded `%ff` (not UTF-8) to U+FFFD, a
 * character a key may hold: a watch on `prefix=%ff` followed keys starting with it. Parameters
 * the route does not take are ignored, as before (a repeated cache-buster is no error). An empty
 * value is a parameter not given (API.md writes its routes `?from=&limit=`): `?from=` was a 400
 * while `?after=` was taken, and a client filling a URL template with nothing met both.
 */
export function parseQuery<S extends z.ZodObject>(c: Context<App>, schema: S): z.output<S> {
  const names = new Set(Object.keys(schema.shape));
  const raw = new URL(c.req.url).search.slice(1);
  const given = new Map<string, string>();
  const seen = new Set<string>();
  for (const part of raw === "" ? [] : raw.split("&")) {
    const at = part.indexOf("=");
    const name = decodedParam(at < 0 ? part : part.slice(0, at));
    if (name === null || !names.has(name)) continue;
    const value = decodedParam(at < 0 ? "" : part.slice(at + 1));
    if (value === null) throw new ApiError("bad_request", `query.${name}: not percent-encoded UTF-8`);
    if (seen.has(name)) throw new ApiError("bad_request", `query.${name}: given more than once`);
    seen.add(name);
    if (value !== "") given.set(name, value);
  }
  return parse(schema, Object.fromEntries(given), "query");
}

/** A query string's component decoded (`+` is a space), or null if it is not UTF-8 percent-encoded. */
function decodedParam(text: string): string | null {
  try {
    return decodeURIComponent(text.replaceAll("+", " "));
  } catch {
    return null;
  }
}

export function parse<S extends z.ZodType>(schema: S, value: unknown, field: string): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new ApiError("bad_request", describeZodError(r.error, field, value));
  return r.data;
}


/** The group's status from its sequencer (recovering it first if it lost its storage). */
export function status(env: Env, group: string): Promise<GroupStatus> {
  return groups.withSequencer(env, group, (s) => s.status(), (s) => s === null) as Promise<GroupStatus>;
}

/**
 * Groups whose sequencer's status call went on past statusReadMs and has not ended (group -> when
 * it was asked; each call its own entry, so an older call's end does not clear a newer's).
 */
const slowStatusCalls = new Map<string, { askedMs: number }>();
/**
 * A pending call is trusted this long at most: past it a read asks the sequencer again. About the
 * time the platform lets `waitUntil` work go on after a response; a call cut off there never says
 * it ended, and its group read as unreachable for 80 s (a review).
 */
const slowStatusTrustMs = 30_000;

/**
 * The side of each group's no quorum as last asked of its voters from this router (noQuorumSide),
 * trusted this long: asked at every status, a dashboard polling every 2 s sent a round to every
 * voter each time, and each read waited for the silent ones' timeout (3 s, a review).
 */
const noQuorumSideTrustMs = 10_000;
const noQuorumSides = new Map<string, { askedMs: number; side: Promise<Awaited<ReturnType<typeof noQuorumSide>> | Record<string, never>> }>();

function noQuorumSideOf(env: Env, group: string, keep: (p: Promise<unknown>) => void) {
  const known = noQuorumSides.get(group);
  if (known !== undefined && Date.now() - known.askedMs < noQuorumSideTrustMs) return known.side;
  const side = groups.lookup(env, group).then((r) => noQuorumSide(env, r.config)).catch(() => ({}) as Record<string, never>);
  noQuorumSides.delete(group);
  bounded(noQuorumSides, slowReplicasMax).set(group, { askedMs: Date.now(), side });
  keep(side);
  return side;
}

/**
 * GET /v1/groups/{g} and /replicas: the status, or, while the sequencer cannot be reached (before
 * a failover, or through its hold-down), what the replicas say of themselves with the sequencer
 * marked `reachable: false`. Those answered 503 for 5 to 30 s, just when an operator looks. A
 * sequencer that answers slowly is not waited for past statusReadMs (a command's bound, 15 s, held
 * the status 16 to 19 s with a slow sequencer: the dashboard gave up at 20 s and kept showing the
 * group healthy, a probe); its call goes on (`keep`: past the answer), and may fail it over. `withSide` false: no
 * noQuorumSide (`/replicas`, which shows none of it).
 */
export async function statusForReaders(env: Env, group: string, keep: (p: Promise<unknown>) => void = () => undefined, nothingAnswering: "503" | "view" = "503", withSide = true): Promise<GroupStatus> {
  const startedMs = Date.now();
  const fromReplicas = (env: Env, group: string, problem: string) => replicasView(env, group, problem, nothingAnswering);
  // A call still going on past its bound: the next read does not add one more (a dashboard polling
  // every 2 s left a 15 s call each time, a review), and answers from the replicas at once.
  const pending = slowStatusCalls.get(group);
  if (pending !== undefined && Date.now() - pending.askedMs < slowStatusTrustMs) {
    return fromReplicas(env, group, `the sequencer has not answered a status call for ${Date.now() - pending.askedMs} ms`);
  }
  // How long the sequencer took to answer, less its own waits on its replicas (statusTimed): a slow
  // sequencer showed reachable and every replica healthy while its commits fell from 25 to 0.4 a
  // second (a probe). Only the call that answered: not a lookup, a failover or a recovery before it.
  let answerMs = 0;
  const timed = async (s: ReturnType<typeof groups.sequencerOf>) => {
    const askedMs = Date.now();
    const r = await rpc<{ status: GroupStatus | null; spentMs: number }>(s.statusTimed());
    answerMs = Math.max(0, Date.now() - askedMs - r.spentMs);
    return r.status;
  };
  const asked = groups.withSequencer(env, group, timed, (s) => s === null) as Promise<GroupStatus>;
  try {
    const answer = await withTimeout(realClock, asked, statusReadMs, `the sequencer of ${group}`);
    // No quorum: which side it is on, asked of the voters from here (noQuorumSide).
    // Within what is left of statusReadMs (the sequencer's answer took its part): past it the
    // status goes without one, and the round, kept on, serves the next reads.
    const leftMs = statusReadMs - (Date.now() - startedMs);
    const side = answer.sequencer.noQuorumMs === undefined || !withSide ? {} : await withTimeout(realClock, noQuorumSideOf(env, group, keep), Math.max(0, leftMs), "the voters").catch(() => ({}));
    return { ...answer, sequencer: { ...answer.sequencer, answerMs, ...side } };
  } catch (err) {
    if (err instanceof TimeoutError) {
      const mine = { askedMs: Date.now() - statusReadMs };
      slowStatusCalls.delete(group);
      bounded(slowStatusCalls, slowReplicasMax).set(group, mine);
      keep(asked.catch(() => undefined).finally(() => slowStatusCalls.get(group) === mine && slowStatusCalls.delete(group)));
      return fromReplicas(env, group, `the sequencer did not answer within ${statusReadMs} ms`);
    }
    if (groups.thrownByObjectCode(err)) {
      // A bug in the sequencer's status: logged as one, and the replicas still tell what they can.
      logEvent({ event: "internal-error", group, message: `the sequencer's status failed: ${String(err)}`, stack: (err as Error)?.stack }, "error");
      return fromReplicas(env, group, `the sequencer failed with an internal error (${String(err)})`);
    }
    if (!(err instanceof ApiError) || (err.code !== "unavailable" && err.code !== "timeout")) throw err;
    return fromReplicas(env, group, err.message);
  }
}

/**
 * The replicas' view (statusFromReplicas) while the sequencer cannot answer; a 503 when not one
 * replica answers either: that view had epoch 0, commitSeq 0 and lastSeq 0 at the top, invented,
 * and `smr groups status` printed them, exit 0 (a probe). `view`: the view all the same, for an
 * answer that must be a 200 whatever the status meets (a restore that was adopted).
 */
async function replicasView(env: Env, group: string, problem: string, nothingAnswering: "503" | "view"): Promise<GroupStatus> {
  const status = await statusFromReplicas(env, await groups.lookup(env, group), problem);
  if (nothingAnswering === "view" || status.replicas.some((r) => r.lastContact !== null)) return status;
  // `unreachable`: clients retry it for seconds, not the minute and a half of a failover (a
  // status in an outage said so at once before: a review).
  throw new ApiError("unavailable", `nothing of group ${group} answers: ${problem}, and none of its replicas (${status.replicas.map((r) => r.id).join(", ")}) within ${replicaRpcTimeoutMs} ms`, 1, "unreachable");
}
