// The response shapes of API.md as zod schemas: what the OpenAPI document (shared/api/openapi.ts)
// publishes and the e2e tests validate real answers against. The TypeScript types the router and
// the client use stay in results.ts and types.ts; the checks at the end make the two agree, so a
// field added to one and not the other fails the typecheck.
import { z } from "zod";
import { type ErrorBody, type ErrorCode, errorReasons, errorStatus } from "./errors.js";
import type { BatchResult, CommandResult, LogPage, QueryResult, SnapshotHeader, WatchEvent } from "./results.js";
import { type AuditReport, type Entry, type GroupStatus, type ReplicaStatus, eventActions, eventKinds } from "./types.js";

const time = z.string().describe("ISO-8601 time");
const hex = z.string().regex(/^[0-9a-f]*$/).describe("lowercase hex");
const seq = z.number().int().min(0);
const anyJson = z.unknown().describe("any JSON value");

export const errorCodes = Object.keys(errorStatus) as ErrorCode[];

const errorReason = z
  .enum(errorReasons)
  .describe("with a 503 unavailable: storage_quota, the group is at its storage quota; certainly not ordered, but a retry does not mend it until space is freed; deleting, the group is being deleted and not every one of its objects was destroyed yet (a retry helps finish it)");

/** The body of every non-2xx answer; `codes` narrows `code` to those one status can carry. */
export function errorBodyOf(codes: readonly ErrorCode[] = errorCodes) {
  return z.object({
    error: z.object({
      code: z.enum(codes as [ErrorCode, ...ErrorCode[]]),
      message: z.string(),
      requestId: z.string().optional().describe("only on a 500: find it in the logs"),
      reason: errorReason.optional(),
    }),
  });
}
export const errorBody = errorBodyOf();

export const replicaStatus = z.object({
  id: z.string(),
  location: z.string().nullable(),
  status: z.enum(["healthy", "joining", "lagging", "suspect", "down", "quarantined", "repairing", "removed"]),
  lastSeq: seq,
  appliedSeq: seq,
  digest: hex,
  lastContact: time.nullable(),
  audited: time.optional().describe("lastContact null: the sequencer has not heard from it (after a failover or a move, or while it cannot be reached); lastSeq, appliedSeq and digest are what the group's latest audit that reached it saw, at this time"),
  colocated: z.literal(true).optional(),
  stateRows: z.number().int().nonnegative().optional().describe("from its last audit: rows of its replicated state (machine rows, client books, sessions and the idle index), as its last finished scrub counted them"),
  storageBytes: z.number().int().nonnegative().optional().describe("from its last append's answer or its last audit: bytes its Durable Object's storage takes (the co-located replica's include the sequencer's log); at the group's storageQuotaMiB, writes are refused"),
  damaged: z.literal(true).optional().describe("its rows failed their digest at its last scrub (the group's audit says so): not quarantined while the group has no healthy majority without it, it serves reads only when no other replica can; repair it (POST .../replicas/{id}/repair)"),
  rebuild: z
    .object({ source: z.string(), seq, rows: z.number().int().nonnegative(), since: time })
    .optional()
    .describe("while a state transfer rebuilds it (status repairing, or joining for a new replica brought in by one): the replica copied, the position of the state copied, the rows installed so far and when the copy began"),
});

export const sequencerStatus = z.object({
  name: z.string(),
  location: z.string().nullable(),
  epoch: seq,
  since: time.nullable(),
  reachable: z.literal(false).optional().describe("present when the sequencer could not be reached: the rest is what the replicas say of themselves"),
  problem: z.string().optional().describe("with reachable: false, why"),
  noQuorumMs: z.number().int().nonnegative().optional().describe("present when the sequencer answers but has heard no quorum of voters for this long (sequencerTimeoutMs or more: cut off, a failover may replace it); writes wait or are refused meanwhile"),
  noQuorumSide: z.enum(["sequencer", "replicas"]).optional().describe("with noQuorumMs, asked of the voters from the router: `sequencer` when a quorum of them answers there (the sequencer is the one cut off: a failover replaces it if it lasts), `replicas` when not (no failover can help until a quorum of voters answers again)"),
  silentVoters: z.array(z.string()).optional().describe("with noQuorumSide, the voters that did not answer the router either"),
  answerMs: z.number().int().nonnegative().optional().describe("how long the sequencer took to answer this status call, as the router measured it: a slow sequencer (a location answering slowly) keeps its office while it answers, and every command waits at least as long"),
  asleepSince: time.optional().describe("present while the group sleeps: no client work for SLEEP_AFTER_SECONDS, so the sequencer sends no heartbeats and the platform may evict its objects; the next command or linearizable read wakes it"),
});

export const groupStatus = z.object({
  group: z.string(),
  machine: z.string(),
  epoch: seq,
  commitSeq: seq,
  lastSeq: seq,
  outputs: z.enum(["first", "majority"]),
  checkpointEvery: z.number().int(),
  sessionIdleSeconds: z.number().int().nullable().optional().describe("a client idle this long is forgotten; null: never (a group created before sessions expired)"),
  storageQuotaMiB: z.number().int().optional().describe("while any replica's storage (its storageBytes) holds this many MiB, commands that write are refused (503); only small ones that grow no state go"),
  incarnation: z.number().int().optional().describe("which life of the group name this is (higher after a delete and a create); DELETE ?incarnation= deletes only this one"),
  sequencer: sequencerStatus.describe("the object ordering the group's commands now"),
  replicas: z.array(replicaStatus),
});

export const createdGroup = groupStatus.extend({
  warnings: z.array(z.string()).optional().describe("what in the config may cost the group its availability, e.g. a majority of its voters placed in one location: if that location stops answering, nothing commits and no failover can help"),
});

export const groupsPage = z.object({ groups: z.array(z.string()), next: z.string().optional() });

const replayed = z.literal(true).optional().describe("the answer recorded when an earlier attempt of this (client, request) ran: this one ran nothing");

export const commandResult = z.object({ seq: seq.min(1), output: anyJson, bookmark: z.string(), replayed });

export const batchResult = z.object({
  results: z.array(
    z.union([
      z.object({ seq: seq.min(1), output: anyJson, replayed }),
      z.object({
        seq: seq.min(1).optional().describe("with too_large: executed at this seq, its output left out of this answer (send it again alone to read it)"),
        error: z.object({ code: z.enum(errorCodes as [ErrorCode, ...ErrorCode[]]), message: z.string(), reason: errorReason.optional() }),
        replayed,
      }),
    ]),
  ),
  bookmark: z.string().describe("the position of the batch's highest seq"),
});

export const queryResult = z.object({
  result: anyJson,
  seq,
  replica: z.string(),
  bookmark: z.string().describe("the answering replica's position: passed with the next sequential read, it keeps reads monotonic"),
  damaged: z.literal(true).optional().describe("served by a replica whose rows failed their digest at its last scrub, as no other replica could serve: the result may hold its damage"),
});

export const entry = z.object({
  seq: seq.min(1),
  epoch: seq,
  kind: z.enum(["command", "config", "noop"]),
  client: z.string().nullable(),
  request: z.number().int().nullable(),
  command: anyJson,
  timestamp: time,
  hash: hex,
  committed: z.literal(false).optional().describe("past commitSeq: not committed yet, and a recovery may replace it with another entry"),
});

export const logPage = z.object({ firstSeq: seq, lastSeq: seq, commitSeq: seq, entries: z.array(entry), next: seq.optional().describe("the from of the next page, when this one ended before lastSeq") });

export const auditReport = z.object({
  at: time,
  group: z.string(),
  seq: seq.describe("the position compared"),
  verdict: z.enum(["consistent", "diverged", "insufficient"]),
  replicas: z.array(
    z.object({
      id: z.string(),
      appliedSeq: seq.nullable(),
      digest: hex.nullable(),
      verdict: z.enum(["agrees", "diverged", "unreachable", "behind"]),
      reason: z.string().optional(),
    }),
  ),
  quarantined: z.array(z.string()).describe("the replicas this audit quarantined"),
  alarm: z.string().optional().describe("a quorum failed the same check: a bug, not corruption"),
  unaudited: z.string().optional().describe("the cron could not audit the group at all (sequencer out of reach, no failover): why"),
  compared: z.literal(false).optional().describe("false: no position was compared (every replica failed its scrub, or none shared one); `seq` is then 0"),
});

/** A group's operational history; each kind may carry fields of its own (a failover's cause, from, to, downMs). */
export const groupEvent = z.looseObject({
  at: time,
  kind: z.enum(eventKinds),
  epoch: seq,
  message: z.string(),
  cause: z.string().optional(),
  from: z.string().optional(),
  to: z.string().optional(),
  downMs: z.number().optional(),
  action: z.enum(eventActions).optional().describe("what a quarantine or recovery event did, when the kind alone does not say"),
});

export const watchEvent = z.object({
  seq: seq.min(1),
  kind: z.enum(["command", "config", "noop"]),
  client: z.string().nullable(),
  request: z.number().int().nullable(),
  command: anyJson,
  output: anyJson,
  timestamp: time,
  changes: z.array(z.tuple([z.string(), anyJson])).describe("the keys the entry wrote and their new values (null: deleted)"),
});

const snapshotSpec = z
  .object({
    replicas: z.number().int().min(1),
    locations: z.array(z.string().nullable()).optional(),
    outputs: z.enum(["first", "majority"]),
    checkpointEvery: z.number().int().min(1),
    sessionIdleSeconds: z.number().int().min(1).optional(),
    sequencerLocations: z.array(z.string()).optional(),
    colocate: z.literal(false).optional(),
    storageQuotaMiB: z.number().int().min(1).optional(),
  })
  .describe("the PUT body of a group shaped like the source now (`smr restore --create` uses it); a restore ignores it");
export const snapshotHeader = z.object({ group: z.string(), machine: z.string(), seq, rows: z.number().int().min(0), digest: hex, spec: snapshotSpec.optional() });

export const tokenCreated = z.object({ id: z.string(), token: z.string().describe("the secret: shown only here"), scope: z.enum(["read", "write"]), name: z.string().nullable(), created: time });
export const tokenInfo = z.object({ id: z.string(), scope: z.enum(["read", "write"]), name: z.string().nullable(), created: time });

export const fault = z.object({ target: z.string(), name: z.string().optional(), fault: z.enum(["unreachable", "slow"]), ms: z.number().int() });

// ---- the schemas agree with the types (both ways) ------------------------------------------

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
function agree<_ extends true>(): void {}
agree<Same<z.infer<typeof replicaStatus>, ReplicaStatus>>();
agree<Same<z.infer<typeof groupStatus>, GroupStatus>>();
agree<Same<z.infer<typeof commandResult>, CommandResult>>();
agree<Same<z.infer<typeof queryResult>, QueryResult>>();
agree<Same<z.infer<typeof entry>, Entry>>();
agree<Same<z.infer<typeof logPage>, LogPage>>();
agree<Same<z.infer<typeof auditReport>, AuditReport>>();
agree<Same<z.infer<typeof watchEvent>, WatchEvent>>();
agree<Same<z.infer<typeof snapshotHeader>, SnapshotHeader>>();
agree<Same<z.infer<typeof batchResult>, BatchResult>>();
agree<Same<z.infer<typeof errorBody>, ErrorBody>>();
