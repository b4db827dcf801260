// Every route of the HTTP API (API.md "Routes"), as data: method, path, who may call it, and the
// very zod schemas the router validates its input with (shared/api/schemas.ts), with the shapes
// it answers (shared/api/responses.ts). The OpenAPI document (openapi.ts) is made from this list,
// and test/workers/openapi.test.ts checks it against the routes the Hono app registers, so the
// two cannot drift apart.
import { z } from "zod";
import type { ErrorCode } from "./errors.js";
import * as answers from "./responses.js";
import {
  addReplicaBody,
  auditsParams,
  eventsParams,
  batchBody,
  commandBody,
  createGroupBody,
  deleteGroupParams,
  faultBody,
  groupNamePattern,
  groupsParams,
  logParams,
  metricsParams,
  moveSequencerBody,
  queryBody,
  quotaBody,
  releaseBody,
  replicaIdPattern,
  tokenBody,
  tokenIdPattern,
  watchParams,
} from "./schemas.js";
import { locationHints } from "../geo.js";
import { restoreBytesMax } from "../limits.js";

/** none: no token; client: any token (a group token on its own group); admin: ADMIN_TOKEN only. */
export type Auth = "none" | "client" | "admin";
export type Method = "get" | "put" | "post" | "delete";

/** A body or an answer that is not JSON: its media type and what it holds. */
export interface Stream {
  type: string;
  description: string;
  /** JSON schemas of the stream's parts (an event's data, a file's lines), for the reader. */
  parts?: Record<string, z.ZodType>;
}

export interface Answer {
  status: number;
  description: string;
  /** An application/json body; neither schema nor stream: no body. */
  schema?: z.ZodType;
  stream?: Stream;
}

export interface Route {
  /** The OpenAPI operationId. */
  id: string;
  method: Method;
  /** OpenAPI's form: /v1/groups/{group}; Hono's :group is the same parameter. */
  path: string;
  auth: Auth;
  /** The resource it belongs to: the reference page groups routes by it. */
  tag: string;
  summary: string;
  description?: string;
  /** Path parameters other than {group}, which is always a group name. */
  params?: Record<string, z.ZodType>;
  query?: z.ZodObject;
  headers?: Record<string, z.ZodType>;
  /** A JSON body (optional: an empty body is `{}`), or a stream. */
  body?: { schema: z.ZodType; optional?: boolean } | { stream: Stream; bytesMax: number };
  answers: Answer[];
  /** Error codes this route answers beyond those every route of its kind may (see errorsOf). */
  errors?: ErrorCode[];
  /** What its 504 `timeout` means, where not a command's (a read has no client and request to retry with: a probe). */
  timeoutMeans?: string;
  /** Served as a Workers static asset from public/ (wrangler.toml [assets]), not by the Hono app. */
  asset?: string;
  /** Exists only with the var ALLOW_FAULTS=1 (else a 404). */
  testOnly?: boolean;
}

const nearHeader = z.enum(locationHints).describe("serve from the replica nearest this location hint (else the request's origin)");

/** What a machine command or query is: stands for the body's `command` and `query` in the document. */
export const machineFields = {
  command: commandBody.shape.command,
  batchCommand: batchBody.shape.commands.element.shape.command,
  query: queryBody.shape.query,
};

const html = (what: string): Answer => ({ status: 200, description: what, stream: { type: "text/html", description: what } });

export const routes: Route[] = [
  // ---- service ---------------------------------------------------------------------------------
  {
    id: "health",
    method: "get",
    path: "/healthz",
    auth: "none",
    tag: "service",
    summary: "Liveness: the worker answers",
    answers: [{ status: 200, description: "alive", schema: z.object({ ok: z.literal(true) }) }],
  },
  {
    id: "openapi",
    method: "get",
    path: "/openapi.json",
    auth: "none",
    tag: "service",
    summary: "This document: OpenAPI 3.1 of every route",
    answers: [{ status: 200, description: "the OpenAPI document", schema: z.looseObject({ openapi: z.string(), paths: z.record(z.string(), z.unknown()) }) }],
  },
  {
    id: "docs",
    method: "get",
    path: "/docs",
    auth: "none",
    tag: "service",
    summary: "The API reference page (renders /openapi.json)",
    answers: [html("the reference page")],
    asset: "docs.html",
  },
  {
    id: "dashboard",
    method: "get",
    path: "/dashboard",
    auth: "none",
    tag: "service",
    summary: "The operator's page: groups, sequencers, replicas, audits (asks for a token)",
    answers: [html("the dashboard")],
    asset: "dashboard.html",
  },
  {
    id: "metrics",
    method: "get",
    path: "/v1/metrics",
    auth: "admin",
    tag: "service",
    summary: "Prometheus metrics of one group (?group=) or a page of groups",
    query: metricsParams,
    answers: [{ status: 200, description: "Prometheus text exposition 0.0.4", stream: { type: "text/plain; version=0.0.4", description: "smr_group_commit_seq{group}, smr_replica_applied_seq{group,replica}, ... (API.md, Metrics)" } }],
    errors: ["bad_request", "not_found", "unavailable"],
  },

  // ---- groups ----------------------------------------------------------------------------------
  {
    id: "createGroup",
    method: "put",
    path: "/v1/groups/{group}",
    auth: "admin",
    tag: "groups",
    summary: "Create a group: a sequencer and its replicas running one machine",
    description: "A 503 (the registry, or a quorum of the new objects, not reached) may leave the creation begun: a retry of the same PUT, or the next request that names the group, finishes it (the client retries it).",
    body: { schema: createGroupBody },
    answers: [
      { status: 201, description: "created", schema: answers.createdGroup },
      { status: 200, description: "a group with the same config exists", schema: answers.createdGroup },
    ],
    errors: ["conflict", "unavailable"],
  },
  {
    id: "listGroups",
    method: "get",
    path: "/v1/groups",
    auth: "admin",
    tag: "groups",
    summary: "A page of group names in name order",
    query: groupsParams,
    answers: [{ status: 200, description: "a page; `next` when more follow", schema: answers.groupsPage }],
    errors: ["bad_request", "unavailable"],
  },
  {
    id: "getGroup",
    method: "get",
    path: "/v1/groups/{group}",
    auth: "client",
    tag: "groups",
    summary: "A group's status: epoch, positions, sequencer and replicas",
    answers: [{ status: 200, description: "the status", schema: answers.groupStatus }],
    errors: ["unavailable"],
  },
  {
    id: "setQuota",
    method: "post",
    path: "/v1/groups/{group}/quota",
    auth: "admin",
    tag: "groups",
    summary: "Set a group's storage quota from now on",
    description: "Raised, a group held at its quota takes writes again (a bank group has no command that frees space, and a state over 64 MiB cannot be restored into a new group). In force at once and kept across failovers and moves.",
    body: { schema: quotaBody },
    answers: [{ status: 200, description: "the group's status, with its new storageQuotaMiB", schema: answers.groupStatus }],
    errors: ["bad_request", "unavailable", "timeout"],
    timeoutMeans: "the quota may or may not be kept: in force at the sequencer, but not known to be recorded for a successor; retry (setting it again changes nothing)",
  },
  {
    id: "deleteGroup",
    method: "delete",
    path: "/v1/groups/{group}",
    auth: "admin",
    tag: "groups",
    summary: "Delete a group: all its state is destroyed",
    description: "A 503 while one of its objects cannot be reached (retry); with `force=1`, a 204 whatever can be reached, the storage of those that cannot left behind (a location lost for good).",
    query: deleteGroupParams,
    answers: [{ status: 204, description: "deleted" }],
    // 409: `incarnation` names another life of the group (it was left out here: a probe).
    errors: ["bad_request", "conflict", "unavailable"],
  },

  // ---- commands and queries --------------------------------------------------------------------
  {
    id: "submit",
    method: "post",
    path: "/v1/groups/{group}/commands",
    auth: "client",
    tag: "commands",
    summary: "Order, replicate and execute a command (or a batch), exactly once per (client, request)",
    description:
      "Answers once the command is durable on a majority and executed. A retry with the same (client, request) returns the first answer (its seq, and its output as the session kept it: in a group made since 2026-12-06, an output more than 1 KiB longer than what its command brought, the command's JSON and the values of the rows it replaced, is kept as {\"error\": \"output_not_kept\", \"chars\", \"limit\"} and its top-level flags); the same pair with another command is a 409. A batch (`commands`) is one entry per command, in order; if any fails validation nothing is ordered.",
    body: { schema: z.union([commandBody, batchBody]) },
    answers: [{ status: 200, description: "the command's (or each batched command's) seq and output", schema: z.union([answers.commandResult, answers.batchResult]) }],
    errors: ["conflict", "unavailable", "timeout"],
  },
  {
    id: "query",
    method: "post",
    path: "/v1/groups/{group}/query",
    auth: "client",
    tag: "commands",
    summary: "Read: linearizable (default), sequential (after a bookmark) or stale",
    description:
      "An answer that cannot be paged and would be over 16 MiB (bank's `balances` of very many accounts) is a 413 `too_large` whose message says so: the snapshot lists every row.",
    headers: { "x-smr-near": nearHeader },
    body: { schema: queryBody },
    answers: [{ status: 200, description: "the result and the answering replica's applied seq", schema: answers.queryResult }],
    errors: ["unavailable", "timeout"],
    timeoutMeans: "no answer in time (a replica reaching the read's position, or the sequencer's read index); a read changes nothing: retry it",
  },
  {
    id: "watch",
    method: "get",
    path: "/v1/groups/{group}/watch",
    auth: "client",
    tag: "commands",
    summary: "Stream applied, committed entries after `from` (Server-Sent Events)",
    description: "Each entry is an `entry` event whose data is a WatchEvent; `Last-Event-ID` resumes after that seq with no gap and no repeat; `: keepalive` comments come at least every 15 s.",
    query: watchParams,
    headers: {
      "x-smr-near": nearHeader,
      "last-event-id": z.string().regex(/^(0|[1-9][0-9]{0,15})$/).describe("resume after this seq: an integer from 0 to 2^53-1 (9007199254740991), as the router checks it"),
      "x-smr-incarnation": z.string().regex(/^[0-9]{1,15}$/).describe("the x-smr-incarnation of this watch's first answer: a 404 once the group was deleted and made again (a bare seq cannot tell its lives apart)"),
    },
    answers: [{ status: 200, description: "an event stream", stream: { type: "text/event-stream", description: "id: <seq>, event: entry, data: a WatchEvent", parts: { data: answers.watchEvent } } }],
    errors: ["compacted", "unavailable"],
  },

  // ---- the log, audits and events ---------------------------------------------------------------
  {
    id: "readLog",
    method: "get",
    path: "/v1/groups/{group}/log",
    auth: "admin",
    tag: "log and audits",
    summary: "A page of the group's log entries from `from`",
    query: logParams,
    answers: [{ status: 200, description: "the entries and the log's positions", schema: answers.logPage }],
    errors: ["compacted", "unavailable"],
  },
  {
    id: "audit",
    method: "post",
    path: "/v1/groups/{group}/audit",
    auth: "admin",
    tag: "log and audits",
    summary: "Run one audit of the replicas' digests now",
    answers: [{ status: 200, description: "the audit's report", schema: answers.auditReport }],
    errors: ["unavailable"],
  },
  {
    id: "listAudits",
    method: "get",
    path: "/v1/groups/{group}/audits",
    auth: "client",
    tag: "log and audits",
    summary: "The latest audits, newest first",
    query: auditsParams,
    answers: [{ status: 200, description: "audit reports", schema: z.object({ audits: z.array(answers.auditReport) }) }],
    errors: ["unavailable"],
  },
  {
    id: "listEvents",
    method: "get",
    path: "/v1/groups/{group}/events",
    auth: "client",
    tag: "log and audits",
    summary: "The group's operational history (failovers, moves, quarantines, repairs), newest first",
    query: eventsParams,
    answers: [{ status: 200, description: "events", schema: z.object({ events: z.array(answers.groupEvent) }) }],
    errors: ["unavailable"],
  },

  // ---- replicas and the sequencer ---------------------------------------------------------------
  {
    id: "listReplicas",
    method: "get",
    path: "/v1/groups/{group}/replicas",
    auth: "client",
    tag: "replicas",
    summary: "The group's replicas and their status",
    answers: [
      {
        status: 200,
        description: "the replicas",
        schema: z.object({
          replicas: z.array(answers.replicaStatus),
          sequencer: answers.sequencerStatus.optional().describe("present only while the sequencer cannot be reached (reachable: false, problem): the replicas are then what they say of themselves"),
        }),
      },
    ],
    errors: ["unavailable"],
  },
  {
    id: "addReplica",
    method: "post",
    path: "/v1/groups/{group}/replicas",
    auth: "admin",
    tag: "replicas",
    summary: "Add a replica (it joins, catches up, then votes)",
    body: { schema: addReplicaBody, optional: true },
    answers: [{ status: 202, description: "the new replica", schema: z.object({ replica: answers.replicaStatus }) }],
    errors: ["conflict", "unavailable", "timeout"],
    timeoutMeans: "outcome unknown: the change may or may not take effect; look at the group's replicas before trying it again (two adds are two replicas)",
  },
  {
    id: "removeReplica",
    method: "delete",
    path: "/v1/groups/{group}/replicas/{id}",
    auth: "admin",
    tag: "replicas",
    summary: "Remove a replica",
    params: { id: z.string().regex(replicaIdPattern).describe("a replica id such as r2") },
    answers: [{ status: 202, description: "the removed replica", schema: z.object({ replica: answers.replicaStatus }) }],
    errors: ["conflict", "unavailable", "timeout"],
    timeoutMeans: "outcome unknown: the removal may or may not take effect; look at the group's replicas before trying it again",
  },
  {
    id: "repairReplica",
    method: "post",
    path: "/v1/groups/{group}/replicas/{id}/repair",
    auth: "admin",
    tag: "replicas",
    summary: "Rebuild a quarantined replica from a healthy one",
    params: { id: z.string().regex(replicaIdPattern).describe("a replica id such as r2") },
    answers: [{ status: 200, description: "the replica after the repair (null: removed meanwhile)", schema: z.object({ replica: answers.replicaStatus.nullable() }) }],
    errors: ["conflict", "unavailable"],
  },
  {
    id: "releaseReplica",
    method: "post",
    path: "/v1/groups/{group}/replicas/{id}/release",
    auth: "admin",
    tag: "replicas",
    summary: "Release a quarantined replica as it is (optionally rebased on its own rows)",
    params: { id: z.string().regex(replicaIdPattern).describe("a replica id such as r2") },
    body: { schema: releaseBody, optional: true },
    answers: [{ status: 200, description: "the replica after the release (null: removed meanwhile)", schema: z.object({ replica: answers.replicaStatus.nullable() }) }],
    errors: ["conflict", "unavailable"],
  },
  {
    id: "moveSequencer",
    method: "post",
    path: "/v1/groups/{group}/sequencer",
    auth: "admin",
    tag: "replicas",
    summary: "Move the group's sequencer (to a location hint)",
    body: { schema: moveSequencerBody, optional: true },
    answers: [
      {
        status: 202,
        description: "the new sequencer",
        schema: z.object({
          sequencer: answers.sequencerStatus
            .omit({ since: true })
            .extend({ recovering: z.string().optional().describe("present when the new sequencer could not recover yet (the move is done; it takes office at the next request that finds a quorum): why. epoch is then the old one") }),
        }),
      },
    ],
    errors: ["conflict", "unavailable"],
  },

  // ---- snapshots -----------------------------------------------------------------------------
  {
    id: "snapshot",
    method: "get",
    path: "/v1/groups/{group}/snapshot",
    auth: "admin",
    tag: "snapshots",
    summary: "Download the machine's state at one seq, consistent, while writes continue",
    answers: [
      {
        status: 200,
        description: "a snapshot file",
        stream: { type: "application/x-ndjson", description: "a SnapshotHeader line, then `rows` lines of [key, value]", parts: { header: answers.snapshotHeader, row: z.tuple([z.string(), z.unknown()]) } },
      },
    ],
    errors: ["unavailable"],
  },
  {
    id: "restore",
    method: "post",
    path: "/v1/groups/{group}/restore",
    auth: "admin",
    tag: "snapshots",
    summary: "Load a snapshot file into a group that has no entries yet",
    headers: { "content-encoding": z.enum(["gzip", "identity"]).describe("gzip: the file compressed (its unpacked bytes count toward the limit); any other encoding is a 400") },
    body: {
      stream: { type: "application/x-ndjson", description: "a snapshot file as GET .../snapshot makes it", parts: { header: answers.snapshotHeader, row: z.tuple([z.string(), z.unknown()]) } },
      bytesMax: restoreBytesMax,
    },
    answers: [
      {
        status: 200,
        description: "the group, with every replica's state equal to the file's rows",
        schema: answers.groupStatus.extend({ bookmark: z.string().describe("the restored position: a sequential read with it is served by a replica holding the restore") }),
      },
    ],
    errors: ["conflict", "unavailable", "timeout"],
    timeoutMeans: "outcome unknown: the restore may or may not take effect; the group's status (its commitSeq, its digest) shows whether it did",
  },

  // ---- group tokens -----------------------------------------------------------------------------
  {
    id: "createToken",
    method: "post",
    path: "/v1/groups/{group}/tokens",
    auth: "admin",
    tag: "tokens",
    summary: "Create a token for this group only, with scope read or write",
    body: { schema: tokenBody },
    answers: [{ status: 201, description: "the token; its secret is shown only here", schema: answers.tokenCreated }],
    errors: ["conflict", "unavailable"],
  },
  {
    id: "listTokens",
    method: "get",
    path: "/v1/groups/{group}/tokens",
    auth: "admin",
    tag: "tokens",
    summary: "The group's tokens (no secrets)",
    answers: [{ status: 200, description: "the tokens", schema: z.object({ tokens: z.array(answers.tokenInfo) }) }],
    errors: ["unavailable"],
  },
  {
    id: "revokeToken",
    method: "delete",
    path: "/v1/groups/{group}/tokens/{id}",
    auth: "admin",
    tag: "tokens",
    summary: "Revoke a group token",
    params: { id: z.string().regex(tokenIdPattern).describe("a token id (8 hex digits)") },
    answers: [{ status: 204, description: "revoked" }],
    errors: ["unavailable"],
  },

  // ---- fault injection --------------------------------------------------------------------------
  {
    id: "setFault",
    method: "post",
    path: "/v1/groups/{group}/faults",
    auth: "admin",
    tag: "faults",
    summary: "Tests only (ALLOW_FAULTS=1, else 404): cut off or slow down an object",
    description: "A `corrupt` fault on a replica that has no stored state rows to corrupt is a 409 `conflict`.",
    body: { schema: faultBody },
    answers: [
      {
        status: 200,
        description: "the faults in force; after a corrupt, also the replica and the state row whose stored value was damaged",
        schema: z.object({ faults: z.array(answers.fault), corrupted: z.object({ replica: z.string(), key: z.string() }).optional() }),
      },
    ],
    errors: ["conflict"],
    testOnly: true,
  },
];

/** Every error code a route may answer: those of every route of its kind, and its own. */
export function errorsOf(route: Route): ErrorCode[] {
  const codes = new Set<ErrorCode>(["internal"]);
  if (route.auth !== "none") for (const c of ["unauthorized", "forbidden", "rate_limited", "not_configured"] as const) codes.add(c);
  if (route.path.includes("{group}")) for (const c of ["bad_request", "not_found"] as const) codes.add(c);
  if (route.body) for (const c of ["bad_request", "too_large"] as const) codes.add(c);
  for (const c of route.errors ?? []) codes.add(c);
  return [...codes];
}
