// The control plane: finding a group, creating, deleting, recovering and moving its sequencer.
// The router does HTTP only and calls these; nothing here knows about requests or responses
// beyond the ApiError it throws.
//
// A group's record lives in its own directory object (workers/directory.ts); routers cache it for
// routeCacheMs per isolate. The global registry only lists names (GET /v1/groups, the cron), so it
// is on no group's data path. Creation and deletion are recorded in the directory first, then
// carried out, so one that dies midway (kill -9 in a PUT or a DELETE) is finished by the next
// lookup instead of leaving the group half made forever.
import { ApiError } from "../shared/api/errors.js";
import { bounded } from "../shared/bounded.js";
import { type CreateResult, type GroupRecord, type SequencerChange, changeEvent } from "../shared/control/directory.js";
import { replicaRpcTimeoutMs, cutOffAskAgainMs, cutOffConfirmMs, deleteWaitMs, eventKeepTimeoutMs, failoverRoundMaxMs, handOverTimeoutMs, replicaDestroyTimeoutMs, routeCacheGroupsMax, routeCacheMs, sequencerCallTimeoutMs, unreachableMemoryMs, unreachableNamesMax } from "../shared/limits.js";
import type { GroupConfig } from "../shared/protocol/types.js";
import type { GroupStatus } from "../shared/api/types.js";
import { creationConfig, membersOf, replicaIds, earlierSequencerNames, sequencerLocationOf, sequencerName } from "../shared/protocol/types.js";
import { type FailoverIO, preVote } from "../shared/protocol/failover.js";
import type { Recovered } from "../shared/protocol/lifecycle.js";
import { TimeoutError, type VoteReply, cutOffOf, unsureAfter, withTimeout } from "../shared/protocol/io.js";
import { logEvent } from "../shared/log.js";
import { forgetTokens } from "./auth.js";
import { clearFaults } from "./faults.js";
import type { DestroyAnswer, HandOverAnswer, SequencerObject } from "./sequencer.js";
import { positionsOf, votersAnswering } from "./replica-view.js";
import { type Env, directoryStub, realClock, registryStub, replicaStub, rpc, sequencerStub } from "./env.js";

/** group -> its record and when it was read; at most routeCacheGroupsMax (a router sees every group in time). */
const cache = new Map<string, { record: GroupRecord; atMs: number }>();

export function forget(group: string): void {
  cache.delete(group);
}

/** The stub of the sequencer a config names (the group's name, or a later one after a move). */
export function sequencerOf(env: Env, config: GroupConfig) {
  return sequencerStub(env, sequencerName(config), sequencerLocationOf(config));
}

/**
 * One call to the sequencer the group's directory names, for a replica of `incarnation`;
 * undefined when the group is gone or of another incarnation. Bounded by sequencerCallTimeoutMs.
 */
async function callNamedSequencer<T>(env: Env, group: string, incarnation: number, call: (s: ReturnType<typeof sequencerOf>) => Promise<T>): Promise<T | undefined> {
  const record = (await directoryStub(env, group).get()) as GroupRecord | null;
  if (!record || record.state !== "ready" || record.config.incarnation !== incarnation) return undefined;
  return withTimeout(realClock, call(sequencerOf(env, record.config)), sequencerCallTimeoutMs, `the sequencer of ${group}`);
}

/**
 * Calls the sequencer the directory names for a replica: a PreVote reached it while the group
 * slept, or its watches wait in a silence (an object evicted while nothing called it has no
 * heartbeats either: any call starts it again, and `wake` ends a sleep). A probe: every watch on
 * a group idle for a minute or more ended after 10 s, with no keepalive, as if its replica were
 * cut off.
 */
export async function wakeSequencer(env: Env, group: string, incarnation: number): Promise<void> {
  await callNamedSequencer(env, group, incarnation, (s) => rpc<number | null>(s.wake()));
}

/**
 * Whether the sequencer the directory names still sleeps, asked without waking it, for a replica
 * that takes its silence for the group's sleep (ReplicaDriver.probeSleep). False when the group
 * is gone or of another incarnation (no sleep to keep up); a failure rejects.
 */
export async function sequencerAsleep(env: Env, group: string, incarnation: number): Promise<boolean> {
  const since = await callNamedSequencer(env, group, incarnation, (s) => rpc<number | null>(s.asleepSince()));
  return since !== undefined && since !== null;
}

function notFound(group: string): ApiError {
  return new ApiError("not_found", `group ${group} does not exist`);
}

/** The group's ready record (cached), finishing a creation or a deletion that died midway. */
export async function lookup(env: Env, group: string, fresh = false): Promise<GroupRecord> {
  const cached = cache.get(group);
  if (!fresh && cached && Date.now() - cached.atMs < routeCacheMs) return cached.record;
  let record = (await directoryStub(env, group).get()) as GroupRecord | null;
  if (record?.state === "deleting") {
    await finishDeleteWithin(env, record);
    record = null;
  }
  if (!record) {
    cache.delete(group);
    throw notFound(group);
  }
  if (record.state === "creating") record = (await finishCreate(env, record)).record;
  // Another router deleted and re-created the group: the tokens cached here were the old one's.
  if (cached && cached.record.config.incarnation !== record.config.incarnation) forgetTokens(group);
  cache.delete(group);
  bounded(cache, routeCacheGroupsMax).set(group, { record, atMs: Date.now() });
  return record;
}

/** The group's record in whatever state it is (creating, ready, deleting), finishing nothing: 404 if none. */
export async function recordOf(env: Env, group: string): Promise<GroupRecord> {
  const record = (await directoryStub(env, group).get()) as GroupRecord | null;
  if (!record) throw notFound(group);
  return record;
}

/** Initializes the sequencer and replicas of a record in state "creating", then marks it ready. */
async function finishCreate(env: Env, record: GroupRecord): Promise<{ record: GroupRecord; status: GroupStatus | null }> {
  const cfg = record.config;
  // Listed before anything is made, so that the cron finishes a creation that stops midway (a PUT
  // killed, a sequencer or a replica quorum unreachable) when no request names the group: listed
  // after the init, such a group worked but neither GET /v1/groups nor the cron saw it (a probe).
  await registryStub(env).add(cfg.group, cfg.incarnation).catch((err) => {
    throw new ApiError("unavailable", `the registry cannot list group ${cfg.group} yet (${String(err)}); the group is created once a retry or the next request finishes it`, 1);
  });
  const r = await withTimeout(realClock, rpc<Awaited<ReturnType<SequencerObject["init"]>>>(sequencerOf(env, cfg).init(cfg)), sequencerCallTimeoutMs, `the sequencer of ${cfg.group}`).catch((err) => {
    if (thrownByObjectCode(err)) throw err;
    throw new ApiError("unavailable", `group ${cfg.group} is not created yet: ${String(err)}; a retry or the next request finishes it`, 1);
  });
  if (r.kind === "unavailable") throw new ApiError("unavailable", `group ${cfg.group} is not created yet: ${r.reason}; a retry, the next request or the cron finishes it`, 1);
  // The sequencer refuses an incarnation it has closed (a DELETE destroyed it meanwhile) or one
  // older than its own: this creation is over, whatever the config (the directory judges those).
  // It answered 409 "exists with another config" to a PUT that a DELETE had overtaken.
  if (r.kind === "conflict") throw await deletedMeanwhile(env, cfg);
  // A DELETE began meanwhile (or finished): the record is not this creation's to make ready.
  if (!(await directoryStub(env, cfg.group).setState(cfg.incarnation, "ready"))) throw await deletedMeanwhile(env, cfg);
  return { record: { ...record, state: "ready" }, status: r.status as GroupStatus | null };
}

/**
 * The answer to a creation that a DELETE overtook. Its registry call may have landed after the
 * DELETE's unlisting, which left the name listed with no group behind it (a probe: a PUT with a
 * slow registry and a DELETE meanwhile) until a PUT of the name. A delete still under way unlists
 * after this listing, so it is helped; one that finished is not coming back, so this creation's
 * listing (only that incarnation or older) is taken out here.
 */
async function deletedMeanwhile(env: Env, cfg: GroupConfig): Promise<ApiError> {
  cache.delete(cfg.group);
  const now = (await directoryStub(env, cfg.group).get()) as GroupRecord | null;
  if (now === null || now.config.incarnation > cfg.incarnation) await unlist(env, cfg.group, cfg.incarnation);
  else if (now.state === "deleting") await finishDeleteWithin(env, now);
  return new ApiError("unavailable", `group ${cfg.group} was deleted while it was being created; a retry or the next request finishes the delete`, 1);
}

async function finishDelete(env: Env, record: GroupRecord, force = false): Promise<void> {
  const cfg = record.config;
  const left = await destroyObjects(env, cfg, force);
  if (left.length > 0 && !force) {
    // An object that cannot be reached keeps the group's state: the record stays "deleting" (the
    // group serves nothing, and its name cannot be re-created) until a retry can destroy it.
    throw new ApiError("unavailable", `group ${cfg.group} is being deleted, but not every one of its objects can be reached yet (${left[0]}); a retry, the next request or the cron finishes the delete once they answer (DELETE with ?force=1 finishes it now, leaving the storage of those it cannot reach behind)`, 1, "deleting");
  }
  if (left.length > 0) logEvent({ event: "delete-forced", group: cfg.group, message: `deleted with ${left.length} of its objects not reached; their storage is left behind, fenced by the incarnation: ${left.join("; ")}` }, "warn");
  // Unlisted before the record goes: if the registry cannot be reached, the record stays
  // "deleting" and the next request finishes the delete. (The other order answered 500 and left
  // the name listed for ever, with no record left to finish.)
  // Its 503 says the delete is under way: a client retrying it takes a retry's 404 for the delete
  // finished only when told so (the registry's own words read as nothing begun: a review).
  await unlist(env, cfg.group, cfg.incarnation).catch((err: unknown) => {
    throw err instanceof ApiError ? new ApiError("unavailable", `group ${cfg.group} is being deleted: ${err.message}`, 1, "deleting") : err;
  });
  await directoryStub(env, cfg.group).setState(cfg.incarnation, "deleted");
  clearFaults(cfg.group);
}

/**
 * Destroys the group's objects: its sequencer (which destroys the replicas), then every earlier
 * sequencer (the group's name and each `~sN` before the one in office). A deposed one wipes itself
 * once it hears of its successor, but one cut off and then evicted never hears: no call reached it
 * again, and a probe found a deleted group's log there after the DELETE's 204. Answers what could
 * not be destroyed. `force`: with the sequencer out of reach, each replica is destroyed directly.
 */
async function destroyObjects(env: Env, cfg: GroupConfig, force: boolean): Promise<string[]> {
  const left: string[] = [];
  const attempt = async (what: string, call: () => Promise<DestroyAnswer | void>) => {
    const answer = await call().catch((err: unknown) => ({ failed: String(err) }));
    if (typeof answer === "object" && answer !== null) left.push(`${what}: ${answer.failed}`);
  };
  // Each call bounded: a place that hangs rather than fails kept a forced DELETE waiting (a review).
  const timed = (p: Promise<DestroyAnswer>, what: string) => withTimeout(realClock, p, sequencerCallTimeoutMs, what);
  // Its failure may be a replica's: "the sequencer" alone read as if the sequencer were out of reach (a probe).
  await attempt(`the sequencer ${sequencerName(cfg)} or a replica it destroys`, () => timed(rpc<DestroyAnswer>(sequencerOf(env, cfg).destroy(cfg.group, cfg.incarnation, cfg.lastReplicaNo ?? cfg.replicas, cfg.colocated)), "its destroy"));
  if (left.length > 0 && !force) return left;
  if (left.length > 0) {
    // Forced: the sequencer stops before its own wipe when a replica fails it, so each replica
    // is destroyed from here, then the sequencer alone (-1: no replicas), whatever did not answer.
    left.length = 0;
    const ids = replicaIds((cfg.lastReplicaNo ?? cfg.replicas) + 1);
    await Promise.all(ids.map((id) => attempt(`replica ${id}`, () => withTimeout(realClock, rpc<void>(replicaStub(env, cfg, id).replicaDestroy(cfg.incarnation)), replicaDestroyTimeoutMs, `the destroy of replica ${id}`))));
    await attempt(`the sequencer ${sequencerName(cfg)}`, () => timed(rpc<DestroyAnswer>(sequencerOf(env, cfg).destroy(cfg.group, cfg.incarnation, -1, cfg.colocated)), "its destroy"));
  }
  for (const names of chunks(earlierSequencerNames(cfg), destroyCallsAtOnce)) {
    await Promise.all(names.map((name) => attempt(`the earlier sequencer ${name}`, () => timed(rpc<DestroyAnswer>(sequencerStub(env, name).destroy(cfg.group, cfg.incarnation, -1, cfg.colocated)), "its destroy"))));
  }
  return left;
}

/** Destroys of earlier sequencers sent together (a group failed over or moved many times has as many). */
export const destroyCallsAtOnce = 32;

export function chunks<T>(items: T[], size: number): T[][] {
  return Array.from({ length: Math.ceil(items.length / size) }, (_, i) => items.slice(i * size, (i + 1) * size));
}

/**
 * A request that found the group being deleted helps finish the delete, for at most deleteWaitMs:
 * then a 503, and the destroy goes on (the next request joins it). The DELETE itself waits for it.
 */
async function finishDeleteWithin(env: Env, record: GroupRecord): Promise<void> {
  const run = finishDelete(env, record);
  run.catch(() => undefined); // answered below, or, past the wait, by the next request's own try
  await withTimeout(realClock, run, deleteWaitMs, `the delete of ${record.config.group}`).catch((err: unknown) => {
    if (!(err instanceof TimeoutError)) throw err;
    throw new ApiError("unavailable", `group ${record.config.group} is being deleted, and not every one of its objects has answered within ${deleteWaitMs} ms yet; a retry or the next request finishes the delete`, 1, "deleting");
  });
}

/**
 * A listed name with no record behind it is unlisted (the cron, for a name whose group it found
 * gone): a creation overtaken by a DELETE unlists its own listing, but not if it was killed
 * first. Only the incarnation listed or an older one: a PUT of the name meanwhile lists its newer one.
 */
export async function unlistGone(env: Env, group: string): Promise<void> {
  const listed = await registryStub(env).incarnationOf(group);
  if (listed === null || (await directoryStub(env, group).get()) !== null) return;
  await unlist(env, group, listed);
}

/** `incarnation`: only that one or an older one is unlisted (undefined: whatever is listed). */
async function unlist(env: Env, group: string, incarnation?: number): Promise<void> {
  await registryStub(env)
    .remove(group, incarnation)
    .catch((err) => {
      throw new ApiError("unavailable", `the registry cannot unlist group ${group} yet (${String(err)}); a retry or the next request finishes the delete`, 1);
    });
}

/**
 * What a PUT asked that the group was not created with, field by field. A script that declared a
 * group's size after a replica was added got a bare 409 (a probe): a PUT compares the settings it
 * was created with, and membership changes since do not count.
 */
function configDifference(existing: GroupConfig, asked: GroupConfig): string {
  const a = creationConfig(existing) as Record<string, unknown>;
  const b = creationConfig(asked) as Record<string, unknown>;
  // A config keeps `colocate` only when false: its absence is the default, true ("created with
  // colocate none (asked false)" read as if the group had no such setting: a docs probe).
  const show = (k: string, v: unknown) => (v === undefined ? (k === "colocate" ? "true" : "none") : JSON.stringify(v));
  const fields = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
  const diff = fields.map((k) => `${k} ${show(k, a[k])} (asked ${show(k, b[k])})`).join(", ");
  return `created with ${diff || "other settings"}; a PUT compares the settings a group was created with (replicas added or removed since do not count)`;
}

/**
 * The directory's answer to a creation, its conflict judged again by this router's creationConfig:
 * a directory object on an older build compares fields added since (storageQuotaMiB,
 * sessionOutputFreeChars), so a PUT of the same group across a deploy or a rollback was a 409
 * "created with other settings" (a rolling-deploy review).
 */
function judged(r: CreateResult, config: GroupConfig): CreateResult {
  if (r.kind !== "conflict") return r;
  const record = r.record as GroupRecord;
  if (JSON.stringify(creationConfig(record.config)) !== JSON.stringify(creationConfig(config))) return r;
  return { kind: record.state === "ready" ? "exists" : "resume", record };
}

/** PUT: creates the group (201), or finds it with the same config (200), or 409. */
export async function create(env: Env, config: GroupConfig, retried = false): Promise<{ created: boolean; status: GroupStatus; config: GroupConfig }> {
  const group = config.group;
  const r = judged(await directoryStub(env, group).create(config, new Date().toISOString()), config);
  cache.delete(group);
  forgetTokens(group);
  if (r.kind === "conflict") throw new ApiError("conflict", `group ${group} exists with another config: ${configDifference((r.record as GroupRecord).config, config)}`);
  if (r.kind === "deleting") {
    await finishDeleteWithin(env, r.record as GroupRecord);
    return create(env, config);
  }
  if (r.kind === "exists") {
    // Deleted between the directory's answer and this status (a DELETE under way): create it
    // anew, as a PUT after that DELETE would (it answered 404 "does not exist").
    try {
      const status = await withSequencer(env, group, (s) => s.status(), (s) => s === null);
      // The group's membership now (replicas added or removed since its creation), not the body's.
      return { created: false, status: status as GroupStatus, config: (r.record as GroupRecord).config };
    } catch (err) {
      if (err instanceof ApiError && err.code === "not_found" && !retried) return create(env, config, true);
      throw err;
    }
  }
  const done = await finishCreate(env, r.record as GroupRecord);
  if (!done.status) throw new ApiError("unavailable", `group ${group} could not be initialized yet`, 1);
  // A creation this request finished (begun by an earlier PUT that answered 503) is a 201 too: the
  // group was not there before. A 200 made the client's retry of its own PUT say "exists with
  // this config: nothing changed" for the group it had just made (a review).
  return { created: r.kind === "created" || r.kind === "resume", status: done.status, config: (r.record as GroupRecord).config };
}

/**
 * DELETE: every object of the group is destroyed; false if there was no such group. `incarnation`:
 * only that life of it (a retry whose first answer was lost must not delete a group created again
 * meanwhile: a review): another is a 409.
 */
export async function remove(env: Env, group: string, force = false, incarnation?: number): Promise<boolean> {
  const directory = directoryStub(env, group);
  const record = (await directory.get()) as GroupRecord | null;
  if (record && incarnation !== undefined && record.config.incarnation !== incarnation) {
    // One above the group's was never a life of it (it said "deleted and created again": a probe).
    const why = incarnation > record.config.incarnation ? `is at incarnation ${record.config.incarnation}; incarnation ${incarnation} never existed` : `was deleted and created again (incarnation ${record.config.incarnation}; asked to delete incarnation ${incarnation})`;
    throw new ApiError("conflict", `group ${group} ${why}: the group is left as it is`);
  }
  cache.delete(group);
  forgetTokens(group);
  if (!record) {
    // A name an earlier version left listed without a record (see finishDelete) is unlisted now:
    // only such a listing (incarnation 0), not one a concurrent PUT has just made.
    await unlist(env, group, 0);
    return false;
  }
  if (record.state !== "deleting") await directory.setState(record.config.incarnation, "deleting");
  await dueForCron(env, group);
  await finishDelete(env, { ...record, state: "deleting" }, force);
  return true;
}

/**
 * The cron takes the group at its next lap even if it sleeps, so that it finishes a delete that
 * fails here (RegistryObject.unclaim). An asleep group's row said "audited lately", and its
 * failed DELETE waited up to asleepAuditEveryMs for the cron when no request came (a probe).
 */
async function dueForCron(env: Env, group: string): Promise<void> {
  await registryStub(env)
    .unclaim(group)
    .catch((err: unknown) => logEvent({ event: "delete-unclaim-failed", group, message: `the cron may not finish this delete before its daily audit if it fails: ${String(err)}` }, "warn"));
}

/**
 * Calls the group's sequencer. If it answers that it has no state (`missing`), the route may be
 * stale (a move): look again; if it is still missing, the sequencer lost its storage: have it
 * recover (new epoch, log from a replica majority), then call once more.
 */
export async function withSequencer<T>(
  env: Env,
  group: string,
  sent: (seq: ReturnType<typeof sequencerOf>, record: GroupRecord) => Promise<T>,
  missing: (t: T) => boolean,
  kind: CallKind = "read",
): Promise<T> {
  const command = kind === "command" || kind === "setting";
  const { call, unanswered } = tracked(sent);
  // Once a call's outcome is unknown (it failed, or answered 504), what a later call answers can
  // no longer say "not ordered": its refusals are 504s (unsureAfter), and so is any failure.
  let unsure: { earlier: unknown } | null = null;
  const settle = (answer: T): T => (command && unsure ? unsureAfter(answer, unsure.earlier, unknownAdvice(kind)) : answer);
  try {
    let record = await lookup(env, group);
    let answer: T;
    const calledMs = Date.now();
    try {
      // A sequencer that does not answer in time is as good as unreachable (a location that stopped answering).
      answer = await withTimeout(realClock, call(sequencerOf(env, record.config), record), sequencerCallTimeoutMs, `the sequencer of ${group}`);
      unreachableSince.delete(sequencerKey(record.config));
    } catch (err) {
      if (thrownByObjectCode(err)) throw sequencerFailed(group, err, kind);
      noteUnreachable(sequencerKey(record.config), calledMs);
      unsure = { earlier: null };
      // The sequencer cannot be reached: fail over if a quorum of voters has lost it too. A change
      // is not asked again: it may have been ordered, and nothing tells a second add from the first
      // (one refused unsent, the platform's `overloaded`, may be).
      if (kind === "change" && !refusedUnsent(err)) {
        await failover(env, group, record.config, String(err)).catch(() => undefined);
        throw changeUnknown(group, err);
      }
      record = await failover(env, group, record.config, String(err));
      answer = await withTimeout(realClock, call(sequencerOf(env, record.config), record), sequencerCallTimeoutMs, `the sequencer of ${group}`);
    }
    const lostMs = cutOffOf(answer);
    if (lostMs !== null) {
      unsure = { earlier: unsure ? null : answer };
      const past = await pastCutOff(env, group, record, lostMs, kind, call);
      ({ answer, record } = past);
      if (past.unsure) unsure = { earlier: null };
    }
    if (!missing(answer)) return settle(answer);
    // No sequencer state (lost, or a successor not recovered yet): a predecessor may have ordered
    // an earlier attempt of this command, so a refusal from here on cannot say "not ordered".
    unsure ??= { earlier: null };
    return settle(await recoveredCall(env, group, call, missing));
  } catch (err) {
    // A change's later call (after a "no state" answer) that failed may have been ordered too; a
    // lookup or a recovery that failed before it was sent, not (a review: those were 504s too).
    if (kind === "change" && unanswered() && (err instanceof TimeoutError || (!(err instanceof ApiError) && !thrownByObjectCode(err)))) throw changeUnknown(group, err);
    if (!command && err instanceof TimeoutError) throw new ApiError("unavailable", `the new sequencer of ${group} did not answer yet (${err.message})`, 1);
    // The platform's failure of a later call (the sequencer failed over to, or recovered): a 503 to retry, not a 500.
    if (!command && !(err instanceof ApiError) && !thrownByObjectCode(err)) throw new ApiError("unavailable", `the sequencer of ${group} cannot be reached yet (${String(err)})`, 1);
    if (!command || !unsure || (err instanceof ApiError && err.code !== "unavailable")) throw err;
    const why = err instanceof Error ? err.message : String(err);
    throw new ApiError("timeout", `${why}; an earlier call for this request (the router's own first try, to the sequencer) may have reached it: ${unknownAdvice(kind)}`);
  }
}

/**
 * The answer after the sequencer said it has heard no quorum for `lostMs`: fail it over if that
 * lasts (failover.ts, cutOffVote) and ask the successor; if not, its own 503 or 504 stands.
 * Meanwhile it is asked again (answeredMeanwhile; not a change, which is never sent twice), and its
 * first answer that is no cut-off is taken. Not failed over, it is asked once more after the vote:
 * the vote waited up to cutOffConfirmMs, and it may have heard a quorum again meanwhile (the vote
 * refused for that very reason), so its first refusal is stale (a probe's writes got it after 6 s,
 * and a retry then succeeded in 31 ms). One that is still cut off answers at once.
 */
async function pastCutOff<T>(env: Env, group: string, record: GroupRecord, lostMs: number, kind: CallKind, call: (seq: ReturnType<typeof sequencerOf>, record: GroupRecord) => Promise<T>): Promise<{ answer: T; record: GroupRecord; unsure: boolean }> {
  let abandon = () => {};
  const voting = failover(env, group, record.config, `the sequencer has had no quorum for ${lostMs} ms`, lostMs, (a) => (abandon = a)).catch(() => null);
  const meanwhile = kind === "change" ? null : await answeredMeanwhile(voting, () => call(sequencerOf(env, record.config), record));
  // Answered before the vote ended: the round this request runs may be cut off with it, and
  // later requests joined a dead round for up to failoverRoundMaxMs (a review); they begin their own.
  if (meanwhile !== null && meanwhile.answer !== null) {
    abandon();
    return { answer: meanwhile.answer, record, unsure: meanwhile.unsure };
  }
  const next = (await voting) ?? record;
  const which = next === record ? "sequencer" : "new sequencer";
  const answer = await withTimeout(realClock, call(sequencerOf(env, next.config), next), sequencerCallTimeoutMs, `the ${which} of ${group}`).catch((err) => {
    if (thrownByObjectCode(err)) throw sequencerFailed(group, err, kind);
    if (kind !== "command" && kind !== "setting") throw new ApiError("unavailable", `the ${which} of ${group} did not answer yet (${String(err)})`, 1);
    throw new ApiError("timeout", `the ${which} of ${group} did not answer (${String(err)}); ${unknownAdvice(kind)}`);
  });
  return { answer, record: next, unsure: meanwhile?.unsure ?? false };
}

/**
 * The sequencer's first answer, asked again every cutOffAskAgainMs while the cut-off vote runs (up
 * to 2 x cutOffConfirmMs), that is no cut-off (`answer`; null: none came). `unsure`: an ask may
 * have been ordered without this request hearing how (it failed, was left when the vote ended, or
 * answered another cut-off), so a later "replayed" may be its own (a review). A call under way when
 * the vote ends is left: the caller asks once more, and a pair is ordered once whatever arrives.
 */
async function answeredMeanwhile<T>(voting: Promise<unknown>, ask: () => Promise<T>): Promise<{ answer: T | null; unsure: boolean }> {
  let voted = false;
  let unsure = false;
  const ended = voting.then(() => {
    voted = true;
    return null;
  });
  const endMs = Date.now() + 2 * cutOffConfirmMs;
  while (!voted && Date.now() < endMs) {
    await Promise.race([ended, new Promise((r) => realClock.setTimer(cutOffAskAgainMs, () => r(null)))]);
    if (voted) break;
    const asked = withTimeout(realClock, ask(), sequencerCallTimeoutMs, "the sequencer").catch(() => null);
    const answer = await Promise.race([asked, ended]);
    if (answer !== null && cutOffOf(answer) === null) return { answer, unsure };
    unsure = true;
  }
  return { answer: null, unsure };
}

/**
 * What a call to a group's sequencer may do, for what its failures answer: a read is a 503 (retry);
 * a command may have been ordered, a 504 (the same pair again is safe: the sequencer deduplicates
 * it), and it is asked again after a failover; a membership change too may have been ordered, a
 * 504, but it is never asked again (two adds are two replicas). A change whose call failed was a
 * 503, "certainly not ordered", and the add then took effect (a retry made a second replica).
 */
/** `setting`: as a command (asked again after a failover, a 504 once unsure), but idempotent, with no (client, request) pair. */
export type CallKind = "read" | "command" | "setting" | "change";

function changeUnknown(group: string, err: unknown): ApiError {
  const why = err instanceof Error ? err.message : String(err);
  return new ApiError("timeout", `the sequencer of ${group} did not answer (${why}); the change may or may not take effect: see the group's replicas (GET /v1/groups/${group}/replicas) before trying it again`);
}

/** The call, and whether its last sending has had no answer (it failed or hangs: it may have been served). */
function tracked<A extends unknown[], T>(call: (...args: A) => Promise<T>): { call: (...args: A) => Promise<T>; unanswered: () => boolean } {
  let waiting = false;
  return {
    call: (...args) => {
      waiting = true;
      return call(...args).then(
        (answer) => ((waiting = false), answer),
        (err: unknown) => {
          // Refused unsent: not served, so not unknown (a review: a failover's failure after it made the change a 504).
          if (refusedUnsent(err)) waiting = false;
          throw err;
        },
      );
    },
    unanswered: () => waiting,
  };
}

/** The platform refused the call before sending it on (an overloaded object): it was not served. */
function refusedUnsent(err: unknown): boolean {
  const e = err as { overloaded?: unknown } | null;
  return e !== null && typeof e === "object" && e.overloaded === true;
}

/**
 * The call again after a "no state" answer: with a fresh record (the route may be stale: a move),
 * then after the named sequencer's recovery. Each call bounded like the first (a sequencer just
 * moved, or one that lost its storage, may hang: without a bound a request waited as long as it
 * did, a review).
 */
async function recoveredCall<T>(env: Env, group: string, call: (seq: ReturnType<typeof sequencerOf>, record: GroupRecord) => Promise<T>, missing: (t: T) => boolean): Promise<T> {
  const bounded = <R>(p: Promise<R>, what: string) => withTimeout(realClock, p, sequencerCallTimeoutMs, `${what} of ${group}`);
  const record = await lookup(env, group, true);
  let answer = await bounded(call(sequencerOf(env, record.config), record), "the sequencer");
  if (!missing(answer)) return answer;
  const r = await bounded(rpc<Recovered>(sequencerOf(env, record.config).recover(record.config)), "the recovery of the sequencer");
  if (!r.ok) throw new ApiError("unavailable", `group ${group} is recovering its sequencer: ${r.reason}`, 1);
  answer = await bounded(call(sequencerOf(env, record.config), record), "the recovered sequencer");
  // Still no state: a move handed it over again between the recovery and this call (moves in a
  // row). The group exists (looked up above): a 503, not the missing answer itself, which the
  // routes passed on as a 200 with the body null (status, audit, log), a 500 (replicas) or a
  // 404 "no such group" (adding or removing a replica), a probe found under sequencer moves.
  if (missing(answer)) throw new ApiError("unavailable", `the sequencer of ${group} is not serving yet (a move or a recovery is under way); retry`, 1);
  return answer;
}

/**
 * An exception the called object's own code threw (workerd marks it `.remote`), not one of the
 * platform's (unreachable, overloaded, reset). The object answered: no reason to fail it over.
 */
export function thrownByObjectCode(err: unknown): boolean {
  const e = err as { remote?: unknown; retryable?: unknown; overloaded?: unknown } | null;
  return e !== null && typeof e === "object" && e.remote === true && e.retryable !== true && e.overloaded !== true;
}

/**
 * The sequencer answered with an exception of its code (a bug): a 500, not a failover round and a
 * 503 that called it unreachable. For a command the outcome is unknown (it may have been ordered
 * before the throw): a 504, so the client retries with the same pair.
 */
function sequencerFailed(group: string, err: unknown, kind: CallKind): Error {
  if (kind !== "command" && kind !== "setting") return err instanceof Error ? err : new Error(String(err));
  logEvent({ event: "internal-error", group, message: `the sequencer failed: ${String(err)}`, stack: (err as Error)?.stack }, "error");
  return new ApiError("timeout", `the sequencer of ${group} failed with an internal error; ${unknownAdvice(kind)}`);
}

/**
 * What a 504 tells the caller to do. A setting (the storage quota) has no client and request to
 * repeat it with: its 504 during a move said "retry with the same client and request" (a probe).
 */
function unknownAdvice(kind: CallKind): string {
  return kind === "setting"
    ? "the setting may or may not have taken effect: send it again (setting it twice changes nothing; the group's status shows the sequencer's, which a successor may not have)"
    : "the command may or may not take effect: retry with the same client and request";
}

/**
 * When this router's calls to a sequencer (by name) began to fail: the start of the first call
 * that failed since the last that succeeded. A failover's downMs is the longer of this and the
 * voters' silence: a voter that restarted meanwhile (an evicted object) has heard nothing only
 * since its start, and alone made a 28 s outage a 5 s event in a probe.
 */
const unreachableSince = new Map<string, number>();

/** Names repeat across incarnations (a deleted group's `g~s1` and the re-created one's). */
const sequencerKey = (config: GroupConfig) => `${config.incarnation}/${sequencerName(config)}`;

function noteUnreachable(key: string, sinceMs: number): void {
  const known = unreachableSince.get(key);
  // A failure long ago that nothing followed up (a call that timed out, no more traffic here)
  // does not start an outage seen now.
  if (known !== undefined && sinceMs - known < unreachableMemoryMs) return;
  unreachableSince.delete(key);
  bounded(unreachableSince, unreachableNamesMax).set(key, sinceMs);
}

/**
 * The sequencer `failed` cannot be reached. If the directory names another already, that one;
 * else, when a quorum of voters has lost it too (the PreVote), a new sequencer at the next name
 * recovers at a higher epoch, and the directory names it (compare-and-set: one successor). Throws
 * 503 when the voters still hear it (this router alone is cut off) or it took office too recently.
 */
export async function failover(env: Env, group: string, config: GroupConfig, cause: string, cutOffMs?: number, began?: (abandon: () => void) => void): Promise<GroupRecord> {
  // One round per sequencer in this isolate: the requests that found it gone wait for the same
  // one's outcome (Round), each for at most failoverRoundMaxMs. The round runs in the request that
  // began it; if the platform cancels that request it may never end, and a round waited on
  // without a bound would hold every later request of the isolate for ever: past it, it is replaced.
  // Keyed by incarnation too: a re-created group's `g` is not the deleted one's (a probe).
  // And by kind: a request that could not reach the sequencer runs the PreVote on silence, not a
  // cut-off round (which needs the sequencer to answer) begun by one that found it cut off. Joined
  // to one, requests of a sequencer that stopped answering waited out its 6 s confirmation, then
  // its refusal ("did not answer again"): writes resumed after 11.7 s instead of 5.2 (a probe,
  // commands queued at the cut answered 504 with cutOffMs at its next heartbeat).
  const key = `${group}/${sequencerKey(config)}/${cutOffMs === undefined ? "silence" : "cut-off"}`;
  const running = failingOver.get(key);
  const nowMs = Date.now();
  if (running && !running.done && nowMs - running.startedMs < failoverRoundMaxMs) return joined(running, group, cause);
  const round: Round = { startedMs: nowMs };
  failingOver.set(key, round);
  // `began`: told how to forget this round, for a request that returns before it ends.
  began?.(() => failingOver.get(key) === round && failingOver.delete(key));
  if (failingOver.size > unreachableNamesMax) failingOver.delete(failingOver.keys().next().value!);
  try {
    const record = await failoverOnce(env, group, sequencerKey(config), cause, cutOffMs);
    round.done = { record };
    return record;
  } catch (err) {
    round.done = { error: err };
    throw err;
  } finally {
    if (failingOver.get(key) === round) failingOver.delete(key);
  }
}

/**
 * A failover round of this isolate: its outcome once it ends. Requests that join one wait for
 * that outcome on their own timers (joined), never on the round's promise: a promise belongs to
 * the request that made it, and awaited from another, its continuation ran in the first one's
 * context, where the joined request's next I/O failed outside every handler: a plain-text 500
 * "Cannot perform I/O on behalf of a different request" (a chaos probe, 16 writers while the
 * sequencer flapped).
 */
type Round = { startedMs: number; done?: { record: GroupRecord } | { error: unknown } };
const failingOver = new Map<string, Round>();

/** How often a request that joined a failover round looks for its outcome. */
const roundPollMs = 20;

async function joined(round: Round, group: string, cause: string): Promise<GroupRecord> {
  const endMs = round.startedMs + failoverRoundMaxMs;
  while (!round.done) {
    if (Date.now() >= endMs) throw new ApiError("unavailable", `the sequencer of ${group} cannot be reached (${cause}); a failover round did not finish within ${failoverRoundMaxMs} ms`, 1);
    await new Promise((resolve) => setTimeout(resolve, roundPollMs));
  }
  if ("record" in round.done) return round.done.record;
  const err = round.done.error;
  throw err instanceof ApiError ? err : new ApiError("unavailable", `the sequencer of ${group} cannot be reached (${cause}); a failover round did not finish: ${String(err)}`, 1);
}

/** `failed`: the unreachable sequencer's sequencerKey (its incarnation and name). */
async function failoverOnce(env: Env, group: string, failed: string, cause: string, cutOffMs?: number): Promise<GroupRecord> {
  const record = await lookup(env, group, true);
  const config = record.config;
  if (sequencerKey(config) !== failed) return record;
  const io: FailoverIO = { ...realClock, vote: (id) => rpc<VoteReply | null>(replicaStub(env, config, id).call(config.incarnation, "vote", [])) };
  const started = Date.now();
  const ask = () => withTimeout(realClock, rpc<number | null>(sequencerOf(env, config).quorumLostMs()), sequencerCallTimeoutMs, "the sequencer");
  const decision = await preVote(io, config, cutOffMs === undefined ? undefined : { lostMs: cutOffMs, ask });
  if (!decision.go) {
    // Another round may have named a successor meanwhile (this isolate's silence round beside a
    // cut-off one, another isolate's): its waiters go to that one, not the old one with a refusal
    // (a review: 6 s and more, then a 504, while the successor served from 5 s).
    const now = await lookup(env, group, true);
    if (sequencerKey(now.config) !== failed) return now;
    throw new ApiError("unavailable", `the sequencer of ${group} cannot be reached (${cause}); no failover: ${decision.reason}`, 1);
  }
  const directory = directoryStub(env, group);
  const nowMs = Date.now();
  const seenMs = nowMs - (unreachableSince.get(sequencerKey(config)) ?? nowMs);
  const downMs = Math.max(decision.downMs + (nowMs - started), seenMs < unreachableMemoryMs ? seenMs : 0);
  // Its event is kept with the new sequencer's recovery event, which knows the epoch (SequencerChange).
  const change: SequencerChange = { kind: "failover", from: sequencerName(config), to: decision.next.name, cause, downMs, atMs: nowMs };
  // The record as stored: its membership may be newer than the one read before the PreVote.
  const moved = await directory.replaceSequencer(config.incarnation, config.sequencer?.no ?? 0, { ...config, sequencer: decision.next }, change);
  if (!moved) return lookup(env, group, true);
  cache.delete(group);
  unreachableSince.delete(sequencerKey(config));
  const r = await sequencerOf(env, moved).recover(moved);
  if (!r.ok) throw new ApiError("unavailable", `the new sequencer ${decision.next.name} of ${group} could not recover yet: ${r.reason}`, 1);
  // At the kept event's time, if the recovery kept it: the log line then says its down time.
  const event = changeEvent(change, r.epoch, r.eventAt ?? new Date().toISOString());
  if (!r.eventKept) await settle(env, group, config.incarnation, change.to, r.epoch, event.at);
  logEvent({ event: "failover", group, epoch: r.epoch, message: event.message, from: change.from, to: change.to, downMs: event.downMs, cause }, "warn");
  return { ...record, config: moved };
}

/**
 * Moves the sequencer: the current one hands over (stops, forgets everything), the directory
 * names a new Durable Object (placed by the location hint), which recovers at a new epoch.
 */
/**
 * A move into a location where the group has replicas and not one of them answers is refused: the
 * place may be down, and the new sequencer would be out of reach there until a failover took it
 * elsewhere (a location probe: accepted, where a failover avoids such places). Where the group has
 * no replica, nothing is known against the place.
 */
async function refuseSilentLocation(env: Env, group: string, config: GroupConfig, location: string | null): Promise<void> {
  const there = location === null ? [] : membersOf(config).filter((m) => m.location === location);
  if (there.length === 0) return;
  const positions = await positionsOf(env, config, there);
  if (positions.some((p) => p !== null)) return;
  throw new ApiError("unavailable", `cannot move the sequencer of ${group} to ${location}: its ${there.length === 1 ? "replica" : "replicas"} there (${there.map((m) => m.id).join(", ")}) did not answer (unreachable, or silent for ${replicaRpcTimeoutMs} ms), so the place may be down; nothing was changed (move it elsewhere, or retry once they answer)`, 1);
}

export async function move(env: Env, group: string, location: string | null) {
  const record = await lookup(env, group, true);
  const config = record.config;
  const no = (config.sequencer?.no ?? 0) + 1;
  const moved: GroupConfig = { ...config, sequencer: { name: `${group}~s${no}`, location, no, movedAt: new Date().toISOString() } };
  // The successor recovers by fencing a quorum of voters: without one answering, the move would
  // leave the group with no sequencer in office until they came back. Asked from here, not by
  // the old sequencer, which may be the one cut off from them (a move is then the way out).
  const reach = await votersAnswering(env, config);
  if (!reach.ok) {
    throw new ApiError("unavailable", `cannot move the sequencer of ${group}: only ${reach.count} voting ${reach.count === 1 ? "replica answers" : "replicas answer"}, ${reach.need} needed for the new one to recover; nothing was changed`, 1);
  }
  await refuseSilentLocation(env, group, config, location);
  const oldEpoch = await handOver(env, config);
  const from = sequencerName(config);
  const to = moved.sequencer!.name;
  // Its event is kept with the new sequencer's recovery event, which knows the epoch (SequencerChange).
  const change: SequencerChange = { kind: "move", from, to, location, atMs: Date.now() };
  const stored = await directoryStub(env, group).replaceSequencer(config.incarnation, config.sequencer?.no ?? 0, moved, change);
  if (!stored) {
    // Deleted meanwhile is a 404 (lookup throws it; a DELETE under way is finished), as the same
    // request a moment later: it answered 409 "changed meanwhile" to a move racing the DELETE.
    await lookup(env, group, true);
    throw new ApiError("conflict", `the sequencer of ${group} changed meanwhile (a failover or another move); look again`);
  }
  cache.delete(group);
  // The move has taken effect (the directory names the new object): a recovery that fails now
  // (replicas lost between the hand-over's check and here) is retried by the next request, so
  // the answer is still the 202 of a move done, not a 503 that a client would retry as another.
  const r = await sequencerOf(env, stored)
    .recover(stored)
    .catch((err: unknown) => ({ ok: false as const, reason: String(err) }));
  // A DELETE meanwhile stops the recovery ("superseded"): the group gone (or made again) is a 404,
  // its DELETE still under way a 503, as a move a moment later would answer, not the 202 of a move
  // done (a probe). A directory that fails to answer leaves the 202 (the move took effect).
  if (!r.ok) {
    const now = await lookup(env, group, true).catch((err: unknown) => {
      if (err instanceof ApiError) throw err;
      return null;
    });
    if (now && now.config.incarnation !== config.incarnation) throw new ApiError("not_found", `group ${group} was deleted while its sequencer moved (it exists again, as a new group)`);
  }
  const epoch = r.ok ? r.epoch : oldEpoch;
  const at = new Date().toISOString();
  if (r.ok && !r.eventKept) await settle(env, group, config.incarnation, to, r.epoch, at);
  const message = r.ok ? changeEvent(change, r.epoch, at).message : `sequencer ${from} moved to ${to}; it takes office once it recovers (${r.reason})`;
  logEvent({ event: "move", group, epoch, message, from, to }, r.ok ? "log" : "warn");
  return { name: to, location, epoch, ...(r.ok ? {} : { recovering: r.reason }) };
}

/**
 * Has the directory keep a change's event now, if the new sequencer's own recovery event did not
 * (its write is bounded and best effort): the answer to a move or a failover then finds its event.
 */
async function settle(env: Env, group: string, incarnation: number, to: string, epoch: number, at: string): Promise<void> {
  await withTimeout(realClock, directoryStub(env, group).settleChange(incarnation, to, epoch, at), eventKeepTimeoutMs, "the directory").catch(() => undefined);
}

/**
 * Asks the current sequencer to stop and forget, within handOverTimeoutMs. One that cannot answer
 * is a 503: a move without its hand-over would skip the PreVote, and the old sequencer could still
 * serve reads within its lease while the new one commits (failover replaces an unreachable one).
 */
async function handOver(env: Env, config: GroupConfig): Promise<number> {
  const name = sequencerName(config);
  let r: HandOverAnswer;
  try {
    r = await withTimeout(realClock, rpc<HandOverAnswer>(sequencerOf(env, config).handOver()), handOverTimeoutMs, `the sequencer ${name}`);
  } catch (err) {
    const why = err instanceof TimeoutError ? `did not answer within ${handOverTimeoutMs} ms` : `is unreachable (${String(err)})`;
    throw new ApiError("unavailable", `cannot hand over: the sequencer ${name} ${why}; if a quorum of voters has lost it too, the next request fails it over`, 1);
  }
  return r?.epoch ?? 0;
}

/** The replicas a router may read from (the record's membership). */
export function replicasOf(record: GroupRecord) {
  return membersOf(record.config).map((m) => ({ id: m.id, location: m.location }));
}
