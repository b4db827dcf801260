// Replicas (add, remove, repair, release), the sequencer (move), the log, audits and events.
import { Hono } from "hono";
import { ApiError } from "../../shared/api/errors.js";
import type { App } from "../http.js";
import type { Context } from "hono";
import { addReplicaBody, auditsParams, eventsParams, logParams, moveSequencerBody, releaseBody, replicaIdPattern } from "../../shared/api/schemas.js";
import { auditsPageDefault, eventsPageDefault, logPageDefault } from "../../shared/limits.js";
import { directoryStub, rpc } from "../env.js";
import * as groups from "../groups.js";
import { groupParam, groupTokenLife, jsonBody, parse, parseQuery, requireAdmin, routeOf, status, statusForReaders } from "../http.js";
import type { LogPage } from "../../shared/api/results.js";
import type { GroupStatus, ReplicaStatus } from "../../shared/api/types.js";
import type { Env } from "../env.js";
import { noQuorumSide } from "../replica-view.js";
import type { AddReplicaAnswer, ChangeRefused, ReleaseAnswer, RemoveReplicaAnswer } from "../sequencer.js";

export const memberRoutes = new Hono<App>();

// ---- log, replicas, audits, events ---------------------------------------------------------

memberRoutes.get("/:group/log", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const q = parseQuery(c, logParams);
  // 0 is seq 1, as a watch's from=0 is: once compacted, a 410 (no from: the oldest retained).
  const from = q.from === undefined ? undefined : Math.max(q.from, 1);
  const page = await groups.withSequencer(c.env, group, (s) => s.readLog(from, q.limit ?? logPageDefault), (p) => p === null);
  if (page && "compacted" in page) {
    throw new ApiError("compacted", `log entries before ${page.firstSeq} were compacted (seq ${from} among them); read the state, or the log without a from or from its firstSeq (${page.firstSeq})`);
  }
  // The sequencer's tail past commitSeq is shown (a write stuck on its quorum is seen there) and
  // marked: a recovery may replace such an entry (a probe read one at seq 4 that became a no-op).
  const shown = page as LogPage | null;
  if (shown) shown.entries = shown.entries.map((e) => (e.seq > shown.commitSeq ? { ...e, committed: false as const } : e));
  // Where the next page starts, as a list page says `next`: a page cut short by its 4 MiB bound was
  // taken for the end by a client paging by `next` (a docs probe).
  const last = shown?.entries.at(-1);
  if (shown && last && last.seq < shown.lastSeq) shown.next = last.seq + 1;
  return c.json(shown);
});

memberRoutes.get("/:group/replicas", async (c) => {
  const group = groupParam(c);
  await groupTokenLife(c, group);
  // No noQuorumSide: this answer shows no sequencer that answered (a round of the voters for nothing).
  const s = await statusForReaders(c.env, group, (p) => c.executionCtx.waitUntil(p), "503", false);
  // While the sequencer cannot be reached these are what the replicas say of themselves: the
  // answer says so, as the group's status does (docs/OPERATIONS.md, "Status"); it looked like a healthy list.
  return c.json({ replicas: s.replicas, ...(s.sequencer.reachable === false ? { sequencer: s.sequencer } : {}) });
});

memberRoutes.post("/:group/replicas", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const body = parse(addReplicaBody, await jsonBody(c, true), "body");
  const r = await groups.withSequencer(c.env, group, (s) => rpc<AddReplicaAnswer>(s.addReplica(body.location ?? null)), (r) => !r.ok && r.code === "not_found", "change");
  if (!r.ok) throw await changeError(c.env, group, r);
  groups.forget(group);
  return c.json({ replica: r.replica }, 202);
});

/**
 * The error of a refused membership change. One refused for a quorum its sequencer does not reach
 * either is asked of the voters from here, as the status's noQuorumSide is: when they do not
 * answer here either, no failover can mend it, and the answer says so with `unreachable` (retried
 * for seconds, not 90 s). A `replicas add` with two of three voters down was retried 90 s, its
 * message saying only that the sequencer "may be the one cut off" (a probe).
 */
async function changeError(env: Env, group: string, r: ChangeRefused): Promise<ApiError> {
  if (r.noQuorum) {
    const side = await groups
      .lookup(env, group)
      .then((record) => noQuorumSide(env, record.config))
      .catch(() => null);
    // Voters that answer but are quarantined count for no quorum either, and are not silent: a
    // repair or a release mends them, not bringing them back (an empty list read "The voters  do").
    if (side?.noQuorumSide === "replicas" && side.silentVoters.length > 0) {
      const silent = side.silentVoters.join(", ");
      const message = `${r.reason}. The voters ${silent} do not answer this router either: no failover can mend this; bring them back, or restore a snapshot of a replica that answers into a new group (docs/OPERATIONS.md, "A majority of replicas lost")`;
      return new ApiError("unavailable", message, 1, "unreachable");
    }
    // A quorum answers here: the sequencer is the one cut off, and its "bring the unreachable
    // replicas back" does not apply; a failover replaces it if it lasts (retried as any 503).
    if (side?.noQuorumSide === "sequencer") {
      return new ApiError("unavailable", `the change could not commit: its sequencer reaches no quorum of the voters, but the voters answer this router: the sequencer is the one cut off from them, and a failover replaces it if that lasts (the group's status shows noQuorumSide "sequencer"); retry`, 1);
    }
  }
  return new ApiError(r.code, r.reason, r.code === "unavailable" ? 1 : undefined, r.why);
}

function replicaParam(c: Context<App>): string {
  const id = c.req.param("id") ?? "";
  if (!replicaIdPattern.test(id)) throw new ApiError("bad_request", "id: a replica id such as r2");
  return id;
}

memberRoutes.delete("/:group/replicas/:id", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const id = replicaParam(c);
  await status(c.env, group); // 404 for no such group, and a recovered sequencer
  const r = await groups.withSequencer(c.env, group, (s) => rpc<RemoveReplicaAnswer>(s.removeReplica(id)), (r) => !r.ok && r.code === "not_found" && r.reason === "no such group", "change");
  if (!r.ok) throw await changeError(c.env, group, r);
  groups.forget(group);
  return c.json({ replica: r.replica }, 202);
});

/**
 * The replica as the status shows it now; null when it was removed meanwhile (said, not left out:
 * an answer without it could not be told from another server's `{}`, a probe).
 */
function replicaNow(s: GroupStatus, id: string): ReplicaStatus | null {
  return s.replicas.find((x) => x.id === id) ?? null;
}

/** The operator's ways out of a quarantine (docs/OPERATIONS.md): rebuild from a healthy replica, or release. */
memberRoutes.post("/:group/replicas/:id/repair", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const id = replicaParam(c);
  const r = await groups.withSequencer(c.env, group, (s) => s.repair(id), (r) => r.code === "not_found" && r.reason === "no such group");
  if (r.code === "not_found" || r.code === "conflict") throw new ApiError(r.code, r.reason!);
  if (!r.ok) throw new ApiError("unavailable", r.reason!, 5);
  return c.json({ replica: replicaNow(await status(c.env, group), id) });
});

memberRoutes.post("/:group/replicas/:id/release", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const id = replicaParam(c);
  const body = parse(releaseBody, await jsonBody(c, true), "body");
  const r = await groups.withSequencer(
    c.env,
    group,
    (s) => rpc<ReleaseAnswer>(s.release(id, body.rebase ?? false)),
    (r) => !r.ok && r.code === "not_found" && r.reason === "no such group",
  );
  if (!r.ok) throw new ApiError(r.code, r.reason, r.code === "unavailable" ? 1 : undefined);
  return c.json({ replica: replicaNow(await status(c.env, group), id) });
});

/** Moves the group's sequencer (see groups.move). Commands in flight may answer 503/504 meanwhile; retries are safe. */
memberRoutes.post("/:group/sequencer", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const body = parse(moveSequencerBody, await jsonBody(c, true), "body");
  return c.json({ sequencer: await groups.move(c.env, group, body.location ?? null) }, 202);
});

memberRoutes.post("/:group/audit", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  return c.json(await groups.withSequencer(c.env, group, (s) => s.audit(), (r) => r === null));
});

memberRoutes.get("/:group/audits", async (c) => {
  const group = groupParam(c);
  const q = parseQuery(c, auditsParams);
  await routeOf(c, group);
  await groupTokenLife(c, group);
  return c.json({ audits: await directoryStub(c.env, group).audits(q.limit ?? auditsPageDefault) });
});

memberRoutes.get("/:group/events", async (c) => {
  const group = groupParam(c);
  const q = parseQuery(c, eventsParams);
  await routeOf(c, group);
  await groupTokenLife(c, group);
  return c.json({ events: await directoryStub(c.env, group).events(q.limit ?? eventsPageDefault) });
});

