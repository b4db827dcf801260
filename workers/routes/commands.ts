// Commands (totally ordered writes) and queries (reads at three consistency levels).
import { Hono } from "hono";
import { z } from "zod";
import { ApiError, type ErrorCode, type ErrorReason } from "../../shared/api/errors.js";
import type { Context } from "hono";
import { validateCommand, validateQuery } from "../../shared/api/commands.js";
import type { BatchItemResult, BatchResult, CommandResult, QueryResult } from "../../shared/api/results.js";
import { batchBody, commandBody, queryBody, watchParams } from "../../shared/api/schemas.js";
import { pastEndCheckMs, readAnswerSlackMs, readWaitMs, replicaRpcTimeoutMs, routeCacheMs } from "../../shared/limits.js";
import { machineFor } from "../../shared/machines/index.js";
import { type Bookmark, decodeBookmark, encodeBookmark, givenBy } from "../../shared/api/bookmark.js";
import { bearerOf, groupScopeOf, tokensForgottenSince } from "../auth.js";
import { realClock, replicaStub, rpc } from "../env.js";
import * as groups from "../groups.js";
import { checked, clientOf, groupParam, jsonBody, parse, parseQuery, requireWrite, routeOf, groupTokenLife } from "../http.js";
import type { ReadAnswer } from "../replica.js";
import { readNearest } from "../reads.js";
import { noteAnswered, noteSlow, slowLast } from "../slow-replicas.js";
import type { SubmitAnswer } from "../sequencer.js";
import { type ReadIndexAnswer, TimeoutError, withTimeout } from "../../shared/protocol/io.js";
import { type RequestPlace, hintOf, isLocationHint, locationHints, nearestFirst } from "../../shared/geo.js";
import type { App } from "../http.js";
import type { GroupConfig } from "../../shared/protocol/types.js";
import type { GroupRecord } from "../../shared/control/directory.js";
import { logEvent } from "../../shared/log.js";

export const commandRoutes = new Hono<App>();

/** A quota refusal's Retry-After: space comes back only as deletes or an audit measure it. */
const storageRetryAfterSec = 10;

// ---- commands ------------------------------------------------------------------------------

commandRoutes.post("/:group/commands", async (c) => {
  const group = groupParam(c);
  requireWrite(c);
  const raw = await jsonBody(c);
  if (typeof raw === "object" && raw !== null && "commands" in raw) {
    const answer = await batch(c, group, raw);
    // A 200 whatever its items met: one certainly not ordered carries the 503's retry hint.
    const refused = answer.results.flatMap((r) => ("error" in r && r.error.code === "unavailable" ? [r.error] : []));
    if (refused.length > 0) c.header("Retry-After", String(refused.every((e) => e.reason === "storage_quota") ? storageRetryAfterSec : 1));
    return c.json(answer);
  }
  const body = parse(commandBody, raw, "body");
  const client = clientOf(c, body.client);
  const send = async (record: GroupRecord) => {
    const command = checked(validateCommand(machineFor(record.config.machine), body.command));
    const call = (s: SequencerStub) => rpc<SubmitAnswer>(s.submit(client, body.request, command, record.config.incarnation));
    return { record, a: await groups.withSequencer(c.env, group, call, (a) => a.kind === "not_found", "command") };
  };
  let { record, a } = await send(await routeOf(c, group));
  if (a.kind === "stale_life") ({ record, a } = await send(await freshRoute(c, group)));
  // The life that ordered it names the bookmark (an older sequencer's answer has none: the route's).
  if (a.kind === "ok") return c.json({ seq: a.seq, output: a.output, bookmark: encodeBookmark(group, a.incarnation ?? record.config.incarnation, a), ...replayedOf(a) } satisfies CommandResult);
  const e = failureOf(group, a, { recorded: client, given: body.client });
  if (a.kind === "no_majority") logEvent({ event: "outputs-split", group, requestId: c.get("requestId"), client: body.client, request: body.request, message: e.message }, "error");
  throw new ApiError(e.code, e.message, e.code !== "unavailable" ? undefined : e.reason ? storageRetryAfterSec : 1, e.reason);
});

type SequencerStub = ReturnType<typeof groups.sequencerOf>;

/** The extra field of an answer an earlier request ordered (withSequencer has dropped it where the earlier call was this request's own: unsureAfter). */
function replayedOf(a: { replayed?: true }): { replayed?: true } {
  return a.replayed ? { replayed: true } : {};
}

/**
 * The group's record looked up again after a sequencer refused a command of the route's life
 * (`stale_life`): another router deleted the group and created it again within routeCacheMs. The
 * command is checked against the group as it is now and sent once more; no attempt of it reached
 * the new life (each carried the old one), so exactly-once holds.
 */
function freshRoute(c: Context<App>, group: string): Promise<GroupRecord> {
  groups.forget(group);
  return routeOf(c, group, true);
}

/**
 * The API error of a command that did not succeed (one mapping for single commands and batches).
 * A message names the client as the caller sent it, not as a group token's command is recorded
 * (`<token id>~<client>`, clientOf): a 409 read "request 1 of client 25772d15~me".
 */
function failureOf(group: string, a: Exclude<SubmitAnswer, { kind: "ok" }>, client: { recorded: string; given: string }): { code: ErrorCode; message: string; reason?: ErrorReason } {
  switch (a.kind) {
    case "not_found":
      return { code: "unavailable", message: `group ${group} has no sequencer serving yet` };
    case "no_majority":
      return { code: "internal", message: `group ${group}: ${a.message}: the command ran, but no output can be vouched for (the group's audits say which replicas differ); a retry answers the same or, with a replica out of reach, 504`, reason: "outputs_split" };
    case "deleted":
      return { code: "not_found", message: `group ${group}: ${a.message}` };
    case "stale_life": // a second life since the first lookup of this request: rare, and a 404 says so
      return { code: "not_found", message: `group ${group} was deleted and created again twice while this command was under way; it was not run` };
    default: {
      const message = client.recorded === client.given ? a.message : a.message.split(client.recorded).join(client.given);
      return a.kind === "unavailable" && a.storage ? { code: a.kind, message, reason: "storage_quota" } : { code: a.kind, message };
    }
  }
}

/**
 * A batch: every command is validated first (any failure is a 400/413 naming it, and nothing is
 * ordered), then one sequencer call orders them together; each gets its own result.
 */
async function batch(c: Context<App>, group: string, raw: unknown): Promise<BatchResult> {
  const body = parse(batchBody, raw, "body");
  const client = clientOf(c, body.client);
  const send = async (record: GroupRecord) => {
    const machine = machineFor(record.config.machine);
    const items = body.commands.map((x, i) => ({ request: x.request, command: checked(validateCommand(machine, x.command, `body.commands.${i}.command`)) }));
    const call = (s: SequencerStub) => rpc<SubmitAnswer[]>(s.submitBatch(client, items, record.config.incarnation));
    return { record, answers: await groups.withSequencer(c.env, group, call, (a) => a.every((x) => x.kind === "not_found"), "command") };
  };
  let { record, answers } = await send(await routeOf(c, group));
  if (answers.some((a) => a.kind === "stale_life")) ({ record, answers } = await send(await freshRoute(c, group)));
  // The life that ordered the items names the bookmark (the route's, if none was ordered).
  let last = { epoch: 0, seq: 0, incarnation: record.config.incarnation };
  const results = answers.map((a): BatchItemResult => {
    if (a.kind !== "ok" && a.kind !== "too_large") return { error: failureOf(group, a, { recorded: client, given: body.client }) };
    // Executed either way (a too_large item's output only was left out): the bookmark covers it.
    if (a.seq > last.seq) last = { epoch: a.epoch, seq: a.seq, incarnation: a.incarnation ?? record.config.incarnation }; // ?? an older sequencer's answer (a deploy)
    if (a.kind === "ok") return { seq: a.seq, output: a.output, ...replayedOf(a) };
    return { seq: a.seq, error: { code: "too_large", message: a.message }, ...replayedOf(a) };
  });
  return { results, bookmark: encodeBookmark(group, last.incarnation, last) };
}

// ---- queries -------------------------------------------------------------------------------

function readResult(c: Context<App>, group: string, life: number, a: ReadAnswer) {
  switch (a.kind) {
    case "ok":
      // The answering replica's position as a bookmark: a reader passing its latest one gets
      // monotonic reads (API.md), and a read's position is one (it had only a write's, and a probe's
      // sequential reads went back from r1's seq 1008 to a slow r2's 963 with the same bookmark).
      // Said, so that a reader can tell (it was told nothing: only the audits named the replica, a probe).
      return c.json({ result: a.result, seq: a.seq, replica: a.replica, bookmark: encodeBookmark(group, life, a), ...(a.damaged ? { damaged: true as const } : {}) } satisfies QueryResult);
    case "timeout":
      throw new ApiError("timeout", `replica ${a.replica} did not reach the requested position in ${readWaitMs} ms (it is at ${a.appliedSeq}); retry`, 1);
    case "too_large":
      throw new ApiError("too_large", a.message);
    case "query_wrote":
      // A bug in the machine (docs/MACHINES.md "query"): a 500, logged as one.
      logEvent({ event: "internal-error", group, message: a.message }, "error");
      throw new ApiError("internal", `${a.message} (docs/MACHINES.md, "query")`);
    case "not_found":
    case "quarantined":
    case "damaged":
    case "busy":
      throw new ApiError("unavailable", "no replica can serve this read now", 1);
  }
}

/**
 * A watch with a group token ends once the token is revoked (or its group deleted): the token is
 * checked again as events pass, at most once per routeCacheMs (the delay a revoke may take on any
 * request), and before the next event once this router has revoked one of the group's tokens. Keepalives pass at least every 15 s, so a silent stream ends within that too. Before,
 * a revoked token's open watch went on delivering writes.
 */
function endOnRevoke(c: Context<App>, res: Response): Response {
  const scope = c.get("scope");
  const token = bearerOf(c.req.header("authorization"));
  if (scope.kind !== "group" || !res.body || token === null) return res;
  let checkedAtMs = Date.now();
  const gate = new TransformStream<Uint8Array, Uint8Array>({
    async transform(chunk, controller) {
      if (Date.now() - checkedAtMs >= routeCacheMs || tokensForgottenSince(scope.group, checkedAtMs)) {
        checkedAtMs = Date.now();
        const still = await groupScopeOf(c.env, token).catch(() => scope);
        if (still === null) return controller.terminate();
      }
      controller.enqueue(chunk);
    },
  });
  return new Response(res.body.pipeThrough(gate), res);
}

/**
 * The group's record, for a read with this bookmark. One another group gave, or another life of
 * this one (deleted and created again), is a 400 at once (shared/api/bookmark.ts): the writes it
 * names are not in this log, whose seqs the new life reuses. A life newer than the route's is
 * looked up again first: another router may have created it meanwhile.
 */
async function lifeOf(c: Context<App>, group: string, bookmark: Bookmark | null): Promise<GroupRecord> {
  let record = await routeOf(c, group);
  const life = bookmark?.life;
  if (!life) return record;
  if (!givenBy(life, group)) throw new ApiError("bad_request", `bookmark: given by another group than ${group}`);
  if (life.incarnation > record.config.incarnation) record = await routeOf(c, group, true);
  const mine = record.config.incarnation;
  if (life.incarnation !== mine) throw new ApiError("bad_request", `bookmark: given by ${life.incarnation < mine ? "an earlier" : "another"} life of ${group} (deleted and created again since): the writes it names are not in this one`);
  return record;
}

/**
 * A position past the end of the group's log (a bookmark, a watch's `from` or Last-Event-ID) was
 * not issued by this group: another group's, or an earlier incarnation's (a watch reconnecting
 * after its group was deleted and made again skipped the new group's first entries). Waiting
 * cannot help, so it is a 400. The log's end, not the commit point: a sequencer just recovered may
 * not know yet that its last entries committed, but its log holds every committed entry, and a
 * bookmark or an event id is given out only for a committed one. If the sequencer cannot answer,
 * nothing is refused.
 */
async function refusePastEnd(c: Context<App>, group: string, seq: number, field: string): Promise<void> {
  const status = groups.withSequencer(c.env, group, (x) => x.status(), (x) => x === null);
  const s = await withTimeout(realClock, status, pastEndCheckMs, "the log's end").catch(() => null);
  if (s && seq > s.lastSeq) {
    throw new ApiError("bad_request", `${field}: names seq ${seq}, past the end of ${group}'s log (seq ${s.lastSeq}); it is another group's or an earlier incarnation's`);
  }
}

/**
 * A watch's answer says which life of the group it follows, and a reconnect that says the same
 * (the client does) is refused once the group was deleted and made again: its Last-Event-ID is a
 * seq of the old life's log, which the new one reuses, and the stream went on with the new life's
 * entries after it, the two spliced as one (a probe: old 1-3, then new 4-5). A seq alone cannot
 * tell (a reconnect without the header is taken as before; a seq past the new log's end is a 400).
 */
const incarnationHeader = "x-smr-incarnation";

/** The incarnation a reconnecting watch says it followed (null: none said). */
function incarnationOf(c: Context<App>): number | null {
  const given = c.req.header(incarnationHeader);
  if (given === undefined) return null;
  if (!/^[0-9]{1,15}$/.test(given.trim())) throw new ApiError("bad_request", `${incarnationHeader}: an integer (the one a watch's answer gave)`);
  return Number(given.trim());
}

function refuseOtherIncarnation(group: string, followed: number | null, incarnation: number): void {
  // One above the group's own was never given (a fresh lookup found none newer): not a deleted
  // group's. Nor was 0: incarnations start at 1 (it was a 404 "was deleted", a probe).
  if (followed !== null && (followed > incarnation || followed === 0)) {
    throw new ApiError("bad_request", `${incarnationHeader}: ${followed} is not an incarnation of group ${group} (it is at ${incarnation}); send the one a watch's answer gave, or none`);
  }
  if (followed !== null && followed !== incarnation) {
    throw new ApiError("not_found", `group ${group} was deleted since this watch began (the watch followed its incarnation ${followed}, the group now is incarnation ${incarnation}): watch the new one from its start`);
  }
}

/** Where the reader is: the x-smr-near header, else Cloudflare's idea of the request's origin (null locally). */
function nearOf(c: Context<App>): string | null {
  const header = c.req.header("x-smr-near");
  if (header !== undefined) {
    if (!isLocationHint(header)) throw new ApiError("bad_request", `x-smr-near: one of ${locationHints.join(", ")}`);
    return header;
  }
  return hintOf((c.req.raw as { cf?: RequestPlace }).cf);
}

commandRoutes.post("/:group/query", async (c) => {
  const group = groupParam(c);
  const body = parse(queryBody, await jsonBody(c), "body");
  const given = body.bookmark === undefined ? null : decodeBookmark(body.bookmark);
  if (body.bookmark !== undefined && given === null) throw new ApiError("bad_request", "bookmark: malformed");
  // The older form (b1, given before 2026-12-05) names no group: another group's was taken for a
  // position of this log, and a read with it served without the write it named (a probe). Then a
  // 400, which broke every client upgraded past with one kept (an upgrade probe): the read is
  // linearizable instead, which covers every position this group gave, and names none itself.
  const older = given !== null && !given.life;
  const bookmark = older ? null : given;
  const consistency = older && body.consistency === "sequential" ? "linearizable" : body.consistency;
  // A stale read waits for no position, but a bookmark it is given is checked as any read's: one of
  // another group or life was ignored, where the README walkthrough promises a 400 (a probe).
  const record = await lifeOf(c, group, bookmark);
  const query = checked(validateQuery(machineFor(record.config.machine), body.query));
  const near = nearOf(c);
  let minSeq = consistency === "sequential" ? (bookmark?.seq ?? 0) : 0;
  if (consistency === "linearizable") {
    // A read index from the sequencer (one small call), then the read at the nearest replica
    // that has applied it: the sequencer's thread never runs the query.
    const idx = await groups.withSequencer(c.env, group, (s) => rpc<ReadIndexAnswer>(s.readIndex()), (a) => a.kind === "not_found");
    if (idx.kind !== "ok") throw new ApiError("unavailable", idx.kind === "unavailable" ? idx.message : `group ${group} has no sequencer serving yet`, 1);
    // The read index covers every committed entry, so every bookmark this group gave: one past it
    // is another group's or an earlier incarnation's, a 400 as for a sequential read (it was taken
    // and ignored: a probe).
    if (bookmark !== null && bookmark.seq > idx.seq) throw new ApiError("bad_request", `bookmark: names seq ${bookmark.seq}, past ${group}'s commit point (seq ${idx.seq}); it is another group's or an earlier incarnation's`);
    minSeq = Math.max(minSeq, idx.seq);
  }
  const order = slowLast(record.config, nearestFirst(groups.replicasOf(record), near), Date.now());
  const a = await readNearest(c.env, record.config, order, {
    query,
    minSeq,
    // Nothing to wait for (stale, or sequential without a bookmark: any position serves): a slow
    // replica is overtaken readAnswerSlackMs after it was asked, not readWaitMs later as well
    // (3 s, an operator's probe).
    waitMs: minSeq === 0 ? 0 : readWaitMs,
    onFirstTimeout: consistency === "sequential" && bookmark !== null ? () => refusePastEnd(c, group, bookmark.seq, "bookmark") : undefined,
  });
  // Every replica refused: maybe the route is stale (a membership change); the next read looks again.
  if (a.kind !== "ok" && a.kind !== "timeout") {
    groups.forget(group);
    await groupTokenLife(c, group);
  }
  return readResult(c, group, record.config.incarnation, a);
});

// ---- watch ---------------------------------------------------------------------------------

/**
 * A change feed from the nearest replica that can serve it (API.md "Watch"): the replica's own
 * text/event-stream, passed through. `Last-Event-ID` (a reconnect) takes precedence over `from`.
 * Replicas in contact with a serving sequencer come first: one that has heard nothing for
 * watchSilenceMs (cut off from it) answers 503 and is asked again only if no other can serve.
 */
commandRoutes.get("/:group/watch", async (c) => {
  const group = groupParam(c);
  const q = parseQuery(c, watchParams);
  const lastId = c.req.header("last-event-id");
  if (lastId !== undefined && !(/^(0|[1-9][0-9]{0,15})$/.test(lastId.trim()) && Number.isSafeInteger(Number(lastId.trim())))) {
    throw new ApiError("bad_request", "Last-Event-ID: a seq (an integer from 0 to 2^53-1)");
  }
  const from = lastId !== undefined ? Number(lastId.trim()) : q.from;
  const followed = incarnationOf(c);
  let record = await routeOf(c, group);
  // A newer incarnation than this router's cached one: the cache is stale, not the watch (a review).
  if (followed !== null && followed > record.config.incarnation) record = await routeOf(c, group, true);
  refuseOtherIncarnation(group, followed, record.config.incarnation);
  if (from !== undefined && from > 0) await refusePastEnd(c, group, from, lastId !== undefined ? "Last-Event-ID" : "query.from");
  const params = new URLSearchParams({ incarnation: String(record.config.incarnation) });
  if (from !== undefined) params.set("from", String(from));
  // `prefix=` (empty) is every key's changes, not no filter: it sent reads and failed compares too
  // (an etcd probe). parseQuery takes an empty value for none, as for every other parameter.
  const prefix = q.prefix ?? (new URL(c.req.url).searchParams.has("prefix") ? "" : undefined);
  if (prefix !== undefined) params.set("prefix", prefix);
  let compacted: Response | null = null;
  /** Why each replica that answered could not serve (a 503's message): the 503 below says so. */
  const refusals: string[] = [];
  const silent: ReturnType<typeof groups.replicasOf> = [];
  for (const [pass, replicas] of [["fresh", slowLast(record.config, nearestFirst(groups.replicasOf(record), nearOf(c)), Date.now())], ["any", silent]] as const) {
    const served = await openFirst(c, record.config, replicas, `${params}${pass === "fresh" ? "&fresh=1" : ""}`, async (r, res) => {
      if (res?.status === 410) compacted = res;
      else if (res && pass === "fresh" && res.headers.has("x-smr-silent-ms")) {
        silent.push(r);
        await res.body?.cancel();
      } else if (res) refusals.push(await refusalOf(res));
    });
    if (served) {
      const res = endOnRevoke(c, served);
      const headers = new Headers(res.headers); // a replica's answer's own are immutable
      headers.set(incarnationHeader, String(record.config.incarnation));
      return new Response(res.body, { status: res.status, headers });
    }
  }
  if (compacted) return compacted;
  groups.forget(group);
  await groupTokenLife(c, group);
  // The replicas' own reasons (e.g. each serves as many watches as it may): the bare "no replica
  // can serve" used to replace them, and a client could not tell a full replica from a down one.
  const why = refusals.length > 0 ? `: ${[...new Set(refusals)].join("; ")}` : "";
  throw new ApiError("unavailable", `no replica can serve this watch now${why}`, 1);
});

/** A replica's refusal of a watch, in its own words (its API error's message), body consumed. */
async function refusalOf(res: Response): Promise<string> {
  const text = await res.text().catch(() => "");
  try {
    return String((JSON.parse(text) as { error?: { message?: unknown } }).error?.message ?? `status ${res.status}`);
  } catch {
    return `status ${res.status}`;
  }
}

type Replica = { id: string; location: string | null };
type Opened = { r: Replica; res: Response | null };

/**
 * The first of `replicas` to open the watch (a 200), asked as reads ask them (reads.ts): the next
 * is asked too once the last asked has not answered for readAnswerSlackMs, and at once after a
 * refusal; a slow call goes on, and its late 200 still serves. Every other answer goes to
 * `refused`, and a stream opened after the winner is cancelled, so its replica drops that watcher.
 * A watch used to wait out each replica in turn, up to a call's 3 s, where reads move on after 1 s;
 * a version that left a replica for good after 1 s answered 503 when the replicas after it refused
 * at once and it would have served in 1.5 s (a review).
 */
async function openFirst(c: Context<App>, config: GroupConfig, replicas: Replica[], params: string, refused: (r: Replica, res: Response | null) => Promise<void>): Promise<Response | null> {
  const running = new Map<string, Promise<Opened>>();
  const left = [...replicas];
  let nextAtMs = 0;
  let served: Response | null = null;
  while (served === null && (left.length > 0 || running.size > 0)) {
    if (left.length > 0 && Date.now() >= nextAtMs) {
      const r = left.shift()!;
      running.set(r.id, openWatch(c, config, r, params).then((res) => ({ r, res })));
      nextAtMs = Date.now() + readAnswerSlackMs;
    }
    // Every call is bounded by openWatch's timeout, so with none left to ask this wait ends too.
    const got = await firstOf([...running.values()], left.length > 0 ? Math.max(0, nextAtMs - Date.now()) : null);
    if (got === null) continue;
    running.delete(got.r.id);
    if (got.res?.status === 200) served = got.res;
    else {
      nextAtMs = 0;
      await refused(got.r, got.res);
    }
  }
  for (const [id, call] of running) {
    noteSlow(config, id, Date.now()); // overtaken
    void call.then(({ res }) => res?.body?.cancel());
  }
  return served;
}

/** The first of `calls` to settle, or null once `ms` have passed (null: no bound). */
function firstOf<T>(calls: Promise<T>[], ms: number | null): Promise<T | null> {
  return new Promise((resolve) => {
    const cancel = ms === null ? () => undefined : realClock.setTimer(ms, () => resolve(null));
    for (const call of calls) {
      void call.then((v) => {
        cancel();
        resolve(v);
      });
    }
  });
}

/**
 * One replica's answer to a watch, or null if it does not answer within replicaRpcTimeoutMs (a
 * replica that hung used to hold the watch request without end). A late answer's stream is
 * cancelled, so the replica drops that watcher. One that answers after readAnswerSlackMs is
 * marked slow (it was, or would have been, overtaken), as reads mark it.
 */
async function openWatch(c: Context<App>, config: GroupConfig, r: Replica, params: string): Promise<Response | null> {
  const startedMs = Date.now();
  const pending = replicaStub(c.env, config, r.id, r.location).fetch(`https://replica/watch?${params}`);
  return withTimeout(realClock, pending, replicaRpcTimeoutMs, `replica ${r.id}'s watch`).then(
    (res) => {
      if (Date.now() - startedMs > readAnswerSlackMs) noteSlow(config, r.id, Date.now());
      else noteAnswered(config, r.id);
      return res;
    },
    (err) => {
      if (err instanceof TimeoutError) pending.then((late) => late.body?.cancel(), () => undefined);
      noteSlow(config, r.id, Date.now());
      return null;
    },
  );
}
