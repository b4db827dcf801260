// A small TypeScript client for the replica set's HTTP API (API.md).
// - submit() and submitBatch() retry with the same (client, request) on 503/504/429/network
//   errors: exactly-once makes that safe, so a retry never executes a command twice; query()
//   retries 503/429/network errors (a read changes nothing);
// - each group's latest bookmark is kept and sent with its `sequential` reads: read-your-writes;
// - watch() is an async iterator of the change feed that resumes by itself after a dropped
//   connection (Last-Event-ID), so nothing is missed or repeated.
// Importable as the package `edge-smr/client` (package.json "exports"). No runtime dependencies.
import type { ErrorBody, ErrorCode, ErrorReason } from "../api/errors.js";
import type { BatchItemResult, BatchResult, CommandResult, LogPage, QueryResult, SnapshotHeader, WatchEvent } from "../api/results.js";
import { decodeBookmark, givenBy, olderForm } from "../api/bookmark.js";
import { groupNamePattern, replicaIdPattern, tokenIdPattern } from "../api/names.js";
import type { AuditReport, GroupStatus, MachineName, ReplicaStatus, OutputsMode } from "../api/types.js";
import { batchCommandsMax, bodyBytesMax, clientBookmarkGroupsMax, clientRequestTimeoutMs, clientRestoreAnswerMs, clientRefusedRetryForMs, clientRetryAfterMaxMs, clientRetryBaseMs, clientRetryForMs, clientRetryMaxMs, watchIdleMs, watchRetryMaxMs } from "../limits.js";
import type { BankCommand, BankQuery } from "../machines/bank.js";
import type { KvCommand, KvQuery, KvSubCommand } from "../machines/kv.js";
import type { AcquireOutput, Lease, LockCommand, LockQuery, ReleaseOutput, RenewOutput } from "../machines/lock.js";
import type { CommandOf, QueryOf, StateMachine } from "../machines/types.js";
import { isLocationHint, locationHints } from "../geo.js";
import { sseFrames } from "./sse.js";
import { lines, toStream } from "./streams.js";

export type { BatchItemResult, BatchResult, CommandResult, LogPage, QueryResult, SnapshotHeader, WatchEvent } from "../api/results.js";
export type { AuditReport, Entry, GroupStatus, MachineName, OutputsMode, ReplicaStatus, ReplicaStatusName } from "../api/types.js";
export type { ErrorCode } from "../api/errors.js";
export type { KvCommand, KvQuery, KvSubCommand } from "../machines/kv.js";
export type { BankCommand, BankQuery } from "../machines/bank.js";
export type { AcquireOutput, Lease, LockCommand, LockQuery, ReleaseOutput, RenewOutput } from "../machines/lock.js";
/** The machines' definitions, as types: `smr.machine<typeof lock>(group)` (nothing of them is bundled). */
export type { bank } from "../machines/bank.js";
export type { kv } from "../machines/kv.js";
export type { lock } from "../machines/lock.js";
export { lines } from "./streams.js";

export type Consistency = "linearizable" | "sequential" | "stale";

/**
 * A connection that was never made (refused, no such host): nothing was sent, so a command's
 * outcome is known (not ordered). Any other network failure may come after the request went out.
 */
function notSent(err: unknown): boolean {
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause : undefined;
  const code = (cause as { code?: unknown } | undefined)?.code;
  // "bad port": fetch refuses a port it blocks (e.g. 9) before connecting.
  return code === "ECONNREFUSED" || code === "ENOTFOUND" || code === "EAI_AGAIN" || code === "UND_ERR_CONNECT_TIMEOUT" || cause?.message === "bad port";
}

/**
 * What makes a base URL unusable, or null: not http(s), a user name or password in it (the token
 * goes in a header), or a query or fragment (the API's paths are appended: after a `?` or a `#`
 * every call went to `/`, a 404).
 */
export function urlProblem(baseUrl: string): "scheme" | "credentials" | "query" | null {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    return "scheme";
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return "scheme";
  if (url.username || url.password) return "credentials";
  if (url.search || url.hash || /[?#]/.test(baseUrl)) return "query";
  return null;
}

/**
 * Whether a token can be sent as a bearer token: visible ASCII, no space (the server reads
 * `Bearer <token>` as one word: `tok en` was answered "missing Authorization", a probe).
 */
export function sendableToken(token: string): boolean {
  return /^[\x21-\x7e]+$/.test(token);
}

export class ApiRequestError extends Error {
  /** A network failure before anything was sent (see notSent). */
  notSent = false;
  /** A failure no retry can mend: fetch refuses the URL's port (`:1`, `:9`) before connecting. */
  hopeless = false;
  /**
   * A command's (submit, submitBatch, the helpers) outcome is unknown: it may or may not take
   * effect. Sent again with the same client and request id, it runs at most once and answers its
   * outcome. Always a 504 `timeout`; the last attempt's own error is the `cause`.
   */
  outcomeUnknown = false;

  constructor(
    readonly status: number,
    /** `not_api`: the answer was not the API's (a proxy's or a login page; a wrong URL). */
    /** `output_not_kept`: a typed helper's retry answered the session's marker (typedOutput). */
    readonly code: ErrorCode | "network" | "not_api" | "output_not_kept",
    message: string,
    /** The answer's Retry-After, in seconds (429, 503). */
    readonly retryAfterSec?: number,
    /** The body's `reason` (`storage_quota`: a 503 no retry mends until space is freed). */
    readonly reason?: ErrorReason,
    /** The body's `requestId` (a 500's, to find it in the server's logs). */
    readonly requestId?: string,
  ) {
    super(`${status} ${code}: ${message}`);
  }

  override get name(): string {
    return "ApiRequestError";
  }
}

/**
 * The command as JSON has it now, for every attempt of one call: each attempt serialised the
 * caller's object again, so one changed after the call (`s.version = 2` once `put("k", s)` was
 * sent) went in the retry, whose same request id then answered a definite 409 for a write that
 * was applied, with the first value (a client probe).
 */
function frozen(command: unknown): unknown {
  return command === undefined ? undefined : JSON.parse(jsonOf(command));
}

/**
 * A request body as JSON, refusing what JSON cannot hold instead of changing it, before anything
 * is sent (a 400, as the server's own would be): NaN and the infinities became `null`, stored in
 * silence (a probe's `put("k", NaN)`), and a bigint threw JSON's own TypeError.
 */
function jsonOf(body: unknown): string {
  const refuse = (key: string, what: string) => new ApiRequestError(400, "bad_request", `${key ? `${key}: ` : ""}${what}; nothing was sent`);
  return JSON.stringify(body, (key, value: unknown) => {
    if (typeof value === "number" && !Number.isFinite(value)) throw refuse(key, `${value} has no JSON form (JSON numbers are finite)`);
    if (typeof value === "bigint") throw refuse(key, `${value}n: a bigint has no JSON form (send a string, or a number up to 2^53)`);
    return value;
  });
}

export interface ClientOptions {
  baseUrl: string;
  token: string;
  /**
   * Whether a restore's file is sent as a stream (part by part, each bounded) or as one body.
   * Default: a stream in Node, one body elsewhere (a browser sends a stream only over HTTP/2 or
   * later, if at all: every restore from a page failed over HTTP/1.1, a probe).
   */
  streamUploads?: boolean;
  /**
   * Stable id of this client for exactly-once; random by default. Used by one process at a time:
   * two processes sending under one id may send the same request id, and one's command then
   * answers the other's output without running.
   */
  clientId?: string;
  /**
   * First request id to use, counted up by one per command; it must be above every id this
   * clientId used before. Default: 1 for a random clientId; for a given one, ids taken from the
   * clock (milliseconds times 1,000), so a restarted app's are above its earlier run's.
   */
  firstRequest?: number;
  /** Attempts for a command before giving up (default: as many as retryForMs allows). */
  attemptsMax?: number;
  /** First retry pause, doubled per attempt (default 50 ms); a longer Retry-After is waited out. */
  retryBaseMs?: number;
  /**
   * How long a command (or a read) is retried, from its first attempt (default 90 s: a failover
   * takes 10 to 30 s); the last attempt may run on for up to requestTimeoutMs. attemptsMax, when given, also bounds it.
   */
  retryForMs?: number;
  /**
   * How long one JSON request may go unanswered (its whole answer read) before it counts as a
   * network failure, and is retried (default 40 s, inside retryForMs; 0: no bound). Streams
   * (snapshot, restore) and metrics have none (metrics are retried on 503 as reads are); a watch has its idleMs.
   */
  requestTimeoutMs?: number;
  /** Called before a read is sent again: its attempt, why, and the pause first. */
  onReadRetry?: (retry: CommandRetry) => void;
  /**
   * Called when the server refused a kept bookmark as not this group's life (deleted and created
   * again, restored under the name): the writes it named are gone. The read goes on linearizable;
   * without this an app could not tell its own write was destroyed from a key never written.
   */
  onBookmarkDropped?: (dropped: { group: string; bookmark: string; reason: string }) => void;
  /**
   * Where this client is, as a location hint (`weur`, `apac`, ...: API.md "Locations and nearest
   * reads"): sequential and stale reads and watches go to the replica nearest it. Default: the
   * server judges by the request (on Cloudflare, where it entered the network).
   */
  near?: string;
  fetch?: typeof fetch;
  /** Called before a command (or batch) is sent again: its attempt, why, and the pause first. */
  onCommandRetry?: (retry: CommandRetry) => void;
}

/**
 * Per call: `signal` ends the call (its attempt in flight is cancelled, no retry follows), which
 * then rejects with the signal's reason, as fetch does. A command may have been ordered by an
 * attempt sent before: to learn its outcome, give submit an id from newRequest() and send the
 * command again with it (the helpers choose their ids: read the state instead).
 */
export interface CallOptions {
  signal?: AbortSignal;
}

export interface QueryOptions extends CallOptions {
  /** Nearest-replica hint (x-smr-near) for sequential and stale reads; default ClientOptions.near. */
  near?: string;
  /**
   * A sequential read's bookmark as given (the CLI's --bookmark): sent instead of the one kept,
   * and never dropped, so one past the group's end is the server's 400 (it was dropped in silence
   * and the read went linearizable: a probe).
   */
  bookmark?: string;
}

export interface CommandRetry {
  attempt: number;
  reason: string;
  pauseMs: number;
  /** What onReadRetry is told of when it is not a read: `"delete"` (a group's DELETE), `"membership change"` (an add or a removal). */
  what?: "delete" | "membership change";
}

export interface GroupSpec {
  machine: MachineName;
  replicas?: number;
  locations?: (string | null)[];
  outputs?: OutputsMode;
  checkpointEvery?: number;
  sequencerLocations?: string[];
  /** A client with no command executed for this long is forgotten (default a day). */
  sessionIdleSeconds?: number;
  /** Host one replica in the sequencer's object (default true: a group of two or more). */
  colocate?: boolean;
  /** While any replica's storage holds this many MiB, commands that write are refused (default 4,096). */
  storageQuotaMiB?: number;
}

/** One command of a batch; `request` is assigned by the client when absent. */
export interface BatchCommand {
  command: unknown;
  request?: number;
}

/** A kv transaction (API.md "Transactions"): compares on current values (null: absent), then one branch. */
export interface KvTxn {
  compare: { key: string; value: unknown }[];
  /** Single-key commands only: a txn holds no txn (a 400). */
  success?: KvSubCommand[];
  failure?: KvSubCommand[];
}
export interface KvTxnOutput {
  succeeded: boolean;
  results: unknown[];
}

export interface WatchOptions {
  /** Events after this seq (default: from the serving replica's applied position). */
  from?: number;
  /** Only entries that change a key with this prefix (the machine's keys, as its entries' `changes` name them). */
  prefix?: string;
  /** Ends the watch: the iterator then finishes without an error. */
  signal?: AbortSignal;
  /** Nearest-replica hint sent as x-smr-near. */
  near?: string;
  /** Called before each reconnect: why (the error, or the stream's end), the pause, and the id it resumes after. */
  onRetry?: (retry: WatchRetry) => void;
  /** A stream that brings no byte, not even a keepalive, this long (or no answer to its request) is dropped and reconnected (default 45 s; 0: no bound). */
  idleMs?: number;
}

export interface WatchRetry {
  reason: string;
  pauseMs: number;
  /**
   * Whether a stream was open before this retry and brought something (an event, a keepalive):
   * not a request that failed, nor a 200 that ended or stayed silent (a proxy's page, a hung replica).
   */
  opened: boolean;
  /** The last event id seen: the reconnect asks for what follows it. */
  after?: string;
}

import type { GroupEvent } from "../api/types.js";
export type { GroupEvent };

export interface TokenInfo {
  id: string;
  scope: "read" | "write";
  name: string | null;
  created: string;
}

/** Why a command is sent again, for a person: "504 timeout: ..." or "network: ...". */
function retryReason(err: unknown): string {
  if (err instanceof ApiRequestError && err.status === 0) return err.message.replace(/^0 /, "");
  return err instanceof Error ? err.message : String(err);
}

/**
 * A DELETE's failure after which the delete may be under way: a 503 "being deleted", a 504, an
 * answer lost after sending, a proxy's 5xx or the API's 500 (retried since, a 404 after one was
 * reported as "no such group" for a delete that had gone through: a review).
 */
function deleteBegun(err: unknown): boolean {
  if (!(err instanceof ApiRequestError)) return false;
  return (err.code === "network" && !err.notSent) || err.status === 504 || deleteUnderWay(err) || serverFailed(err);
}

/** The server's word that the group's delete is under way (its record is `deleting`). */
function deleteUnderWay(err: unknown): boolean {
  return err instanceof ApiRequestError && err.status === 503 && /is being deleted/.test(err.message);
}

/**
 * A failure after which nothing was ordered, and a retry is due: the API's 503 `unavailable`, a
 * 429, a request never sent. Not another server's 503 (an edge's, or a worker stopped at a limit
 * after it called the sequencer: a review), nor `not_configured`, which no retry mends.
 */
function notOrdered(err: unknown): boolean {
  if (!(err instanceof ApiRequestError) || err.hopeless) return false;
  if (err.code === "network") return err.notSent;
  return err.status === 429 || (err.status === 503 && err.code === "unavailable");
}

/**
 * A failure that leaves the command's outcome unknown: it may have been ordered. Another server's
 * 5xx too (an edge's, a worker stopped at a limit after it called the sequencer): a later 503 of
 * the API's then no longer says "not ordered" (a review).
 */
function outcomeUnknown(err: unknown): boolean {
  if (!(err instanceof ApiRequestError)) return true;
  // A 2xx that is not the API's answer: something took the request (a rewriting proxy may have
  // passed it on), so the command may have run; not retried, as a wrong URL answers the same (a review).
  const acceptedByOther = err.code === "not_api" && err.status >= 200 && err.status < 300;
  return (err.code === "network" && !err.notSent) || err.status === 504 || serverFailed(err) || acceptedByOther;
}

/**
 * The API's own 500 (raised after the sequencer may have been called), or another server's 5xx
 * but a 503 (a proxy's 502, the platform's 524): the command may have run. Not retried before, a
 * command was reported failed, plainly, after one attempt that had run, and an app that sent it
 * again with a new id (a helper's) ran it twice (a probe of the client).
 */
function serverFailed(err: ApiRequestError): boolean {
  return (err.code === "internal" && err.reason !== "outputs_split") || (err.code === "not_api" && err.status >= 500);
}

const unknownNote = "an earlier attempt's outcome is unknown: the command may or may not take effect; retry with the same client and request";
const unknownNoteNow = "its outcome is unknown: the command may or may not take effect; retry with the same client and request";

function unknownAfterCode(message: string): { code: "timeout"; message: string } {
  return { code: "timeout", message: `${message}; ${unknownNote}` };
}

/**
 * The error to report when an attempt's outcome was unknown (this one's or an earlier one's): a
 * 504 `timeout`, API.md's "outcome unknown", whatever the last attempt met, unless that is an
 * answer about the command itself, which the earlier attempt met too (refused as invalid or too
 * large, or its id used by another command). A 503 says only that this attempt was not ordered; a
 * network failure, a revoked token's 401 or another server's page say nothing of the earlier one
 * (they were reported as they were: an app took a lost answer's `network` for a failure, a probe).
 * The last attempt's own error is the `cause`.
 */
function unknownAfter(err: unknown, earlier = true): ApiRequestError {
  if (err instanceof ApiRequestError && answersCommand(err)) return err;
  if (err instanceof ApiRequestError && err.status === 504) return ((err.outcomeUnknown = true), err);
  // The status and code of what the last attempt met stay in the text ("503 unavailable: recovering").
  const e = new ApiRequestError(504, "timeout", `${err instanceof Error ? err.message : String(err)}; ${earlier ? unknownNote : unknownNoteNow}`);
  e.cause = err;
  e.outcomeUnknown = true;
  return e;
}

/** A 400 for a body this attempt did not deliver whole (late, cut off): another attempt may deliver it. */
function notDelivered(err: ApiRequestError): boolean {
  return err.status === 400 && /^400 bad_request: body: (not received in full|the upload was cut off|nothing more received)/.test(err.message);
}

/**
 * An answer about the command, not about this attempt: the same for every attempt of it. Not a
 * 400 for a body this attempt did not deliver whole (late, cut off): that says nothing of an
 * earlier attempt (a review).
 */
function answersCommand(err: ApiRequestError): boolean {
  if (err.code === "network") return false;
  // It ran, and no output can be vouched for: every attempt answers so.
  if (err.reason === "outputs_split") return true;
  if (notDelivered(err)) return false;
  return err.status === 400 || err.status === 413 || (err.status === 409 && !expiredAfterRetry(err.message));
}

/**
 * The server's 409 for a request id below its client's session window (driver.ts expiredMessage):
 * after an attempt whose outcome was unknown, it says nothing of that attempt. Another 409 (an id
 * used for a different command) is an answer: the command did not run.
 */
function expiredAfterRetry(message: string): boolean {
  return /\bit may have run already\b/.test(message);
}

/** Errors a retry cannot fix end a watch; anything else (a dropped stream, 503, 504) is retried. */
const watchFatal = new Set([400, 401, 403, 404, 409, 410, 413]);

/** The last request id clockRequest handed out in this process. */
let lastClockRequest = 0;

/**
 * A request id for a client named without firstRequest: the clock in milliseconds times 1,000, or
 * one above the last such id if that is higher. Such a client counted from 1 again after a restart
 * (a probe: the restarted app's `incr` was answered the earlier run's recorded output, and not
 * run; its next command was a 409). The clock's ids are above an earlier run's unless that one
 * sent over 1,000 commands a millisecond, or the clock went back. Shared by the process's
 * instances, so two under one clientId never send the same id. Safe integers until the year 2255.
 */
function clockRequest(): number {
  lastClockRequest = Math.max(lastClockRequest + 1, Date.now() * 1000);
  return lastClockRequest;
}

function randomId(): string {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return "c-" + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * A group's path, its name checked first: a name (or an id below) is pasted into the URL, where
 * `..` segments are resolved, so `revokeToken("g", "../../other")` was a DELETE of the group
 * `other` (a probe; `%2e%2e` as well). API.md's names cannot hold a `/` or a `.`.
 */
function groupPath(group: string, rest = ""): string {
  if (!groupNamePattern.test(group)) throw new ApiRequestError(400, "bad_request", `group: ${quoted(group)} is not a group name (${groupNamePattern.source})`);
  return `/v1/groups/${group}${rest}`;
}

function pathId(id: string, pattern: RegExp, what: string): string {
  if (!pattern.test(id)) throw new ApiRequestError(400, "bad_request", `${what}: ${quoted(id)} is not one (${pattern.source})`);
  return id;
}

/** A refused name as the message shows it: cut to its start (a 100,000-character one was printed whole). */
function quoted(text: string): string {
  const shownMax = 80;
  return text.length > shownMax ? `${JSON.stringify(text.slice(0, shownMax))}… (${text.length} characters)` : JSON.stringify(text);
}

/**
 * Failures worth another try, of a command or a read. A read's 504 (no replica reached its
 * position within the server's wait) is one too: it was answered as it was, and an app's reads
 * threw during a failover or behind a slow replica where its commands were retried (a probe). A
 * position past the group's end, which waiting cannot reach, is a 400.
 */
function retriable(err: unknown, command = false): boolean {
  if (!(err instanceof ApiRequestError) || err.hopeless || err.reason === "storage_quota") return false;
  // A server with no tokens set stays so until its operator sets them: it was retried for the whole 90 s (a review).
  if (err.code === "not_configured") return false;
  if (err.code === "network" || err.status === 503 || err.status === 504 || err.status === 429) return true;
  // A proxy's 5xx passes; the API's own 500 is retried only for a command, whose outcome it leaves unknown (a read's is a bug to show).
  return err.code === "not_api" ? err.status >= 500 : command && (serverFailed(err) || notDelivered(err));
}


/**
 * Retries of one command or read: until retryForMs from the first attempt has passed (and at most
 * attemptsMax attempts, if given), each pause doubling up to clientRetryMaxMs and never shorter
 * than the server's Retry-After. It was 8 attempts: 5.5 s when 504s came back at once, which a
 * failover outlasts; and a 429's Retry-After of 1 s was retried after 50 ms.
 */
class Retries {
  private readonly startMs = Date.now();
  private pauseMs: number;
  /** When the errors with the short budget began (nothing listening, the API's 500), if they did. */
  private shortSinceMs: number | undefined;
  attempt = 1;

  constructor(private readonly opts: ClientOptions) {
    this.pauseMs = opts.retryBaseMs ?? clientRetryBaseMs;
  }

  /** The pause before the next attempt, or null when none is left; `askedSec`: a 200's Retry-After (a batch with items refused). */
  next(err: unknown, askedSec?: number): number | null {
    if (this.opts.attemptsMax !== undefined && this.attempt >= this.opts.attemptsMax) return null;
    const afterSec = err instanceof ApiRequestError && err.retryAfterSec !== undefined ? err.retryAfterSec : askedSec;
    const asked = afterSec !== undefined ? Math.min(afterSec * 1000, clientRetryAfterMaxMs) : 0;
    const pause = Math.max(this.pauseMs, asked);
    const budgetMs = this.opts.retryForMs ?? clientRetryForMs;
    // Nothing listening (refused, no such host) is rarely over in a moment: a short budget, so a
    // wrong URL fails in seconds, while a server restarting (a deploy) is still waited for.
    // The API's own 500 likewise: a platform blip (an object reset by a deploy) passes in seconds,
    // a bug answers every attempt so (retried for the whole 90 s; three attempts, 150 ms, ended
    // a blip as an unknown outcome: reviews).
    // Counted from the first such error: one after 10 s of 503s (a failover) stopped at once (a review).
    // And a refusal only objects that answer again can end (`unreachable`, `deleting`): retried
    // 90 s, a delete or a membership change blocked an operator who had to act (an operator probe).
    const short = err instanceof ApiRequestError && (err.notSent || err.code === "internal" || err.reason === "unreachable" || err.reason === "deleting");
    const nowMs = Date.now();
    // From the first of a run of them: a 500 early in a call, then a failover's 503s, ended the
    // call at a later `deleting` 503 at once (a review).
    if (short) this.shortSinceMs ??= nowMs;
    else this.shortSinceMs = undefined;
    if (nowMs - this.startMs + pause > budgetMs) return null;
    if (short && nowMs - this.shortSinceMs! + pause > clientRefusedRetryForMs) return null;
    this.pauseMs = Math.min(this.pauseMs * 2, clientRetryMaxMs);
    this.attempt++;
    return pause;
  }
}

/** A piece's error message with its `body.commands.N` paths counted from the whole batch. */
function renumbered(message: string, offset: number): string {
  return offset === 0 ? message : message.replace(/\bbody\.commands\.(\d+)/g, (_, n: string) => `body.commands.${Number(n) + offset}`);
}

/** A batch's items in as few requests as fit API.md's bounds (256 commands, a 256 KiB body), in order. */
function requestsOf<T>(client: string, items: T[]): T[][] {
  const overheadBytes = 64 + new TextEncoder().encode(JSON.stringify(client)).length;
  const pieces: T[][] = [];
  let piece: T[] = [];
  let bytes = overheadBytes;
  for (const item of items) {
    const size = new TextEncoder().encode(jsonOf(item)).length + 1;
    if (piece.length > 0 && (piece.length >= batchCommandsMax || bytes + size > bodyBytesMax)) {
      pieces.push(piece);
      piece = [];
      bytes = overheadBytes;
    }
    piece.push(item);
    bytes += size;
  }
  if (piece.length > 0 || pieces.length === 0) pieces.push(piece);
  return pieces;
}

/** A bound a timer can hold, or undefined for none: 0, Infinity, or past 2^31 ms (setTimeout fires at once then). */
function timerMs(ms: number): number | undefined {
  return Number.isFinite(ms) && ms > 0 && Math.ceil(ms) < 2 ** 31 ? Math.ceil(ms) : undefined;
}

/**
 * An abort once nothing has happened for timeoutMs (touch() starts the wait again, or a longer
 * one), joined with the caller's signal; reason() turns the abort's failure into a network error
 * that says what was waited for.
 */
function idleAbort(timeoutMs: number | undefined, what: string, signal?: AbortSignal) {
  signal?.throwIfAborted();
  const abort = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let waitedMs = 0;
  let ended = false;
  const cancel = () => abort.abort(signal!.reason);
  signal?.addEventListener("abort", cancel, { once: true });
  const touch = (ms = timeoutMs) => {
    clearTimeout(timer);
    // Ended: no wait is armed again. A restore's upload, still sent after an answer that came
    // early (another server's), armed its 5-minute wait for the answer: `smr restore` printed the
    // answer and then hung 5 minutes (a probe).
    if (ms === undefined || ended) return;
    waitedMs = ms;
    timer = setTimeout(() => abort.abort(new ApiRequestError(0, "network", `${what}: nothing within ${waitedMs} ms`)), ms);
  };
  touch();
  return {
    signal: abort.signal,
    touch,
    /** Stops the wait until the next touch(). */
    pause: () => clearTimeout(timer),
    end: () => {
      ended = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", cancel);
    },
    reason: (err: unknown) => (signal?.aborted ? signal.reason : abort.signal.aborted ? abort.signal.reason : err),
  };
}

/** Whether request bodies may be streams here: in Node (undici); a browser's fetch needs HTTP/2 for them, or refuses them. */
function streamsRequests(): boolean {
  return typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node === "string";
}

/** A stream's bytes, whole. */
async function bytesOf(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** A byte array as a stream of 64 KiB parts (the server's wait for each is bounded, not for the whole). */
function chunksOf(bytes: Uint8Array): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream<Uint8Array>({
    pull(c) {
      if (at >= bytes.byteLength) return c.close();
      c.enqueue(bytes.subarray(at, at + 65_536));
      at += 65_536;
    },
  });
}

/** Resolves after ms, or at once when the signal aborts. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** An error with its cause: Node's fetch says only "fetch failed" and puts ECONNREFUSED in the cause. */
function describe(err: unknown): string {
  const cause = err instanceof Error && err.cause instanceof Error ? ` (${err.cause.message})` : "";
  return `${String(err)}${cause}`;
}

async function errorOf(res: Response): Promise<ApiRequestError> {
  let text: string;
  try {
    text = await res.text();
  } catch (err) {
    return new ApiRequestError(0, "network", String(err));
  }
  let e: ErrorBody["error"] | undefined;
  try {
    e = (JSON.parse(text) as ErrorBody).error;
  } catch {
    // not our error body
  }
  // Not the API's answer: its text without markup (a proxy's HTML page was printed whole, as a
  // server bug's `internal`: a probe).
  if (typeof e?.code !== "string") return notApi(res, text);
  const requestId = typeof e.requestId === "string" ? e.requestId : undefined;
  return new ApiRequestError(res.status, e.code, String(e.message ?? ""), retryAfterSecOf(res.headers), e.reason, requestId);
}

/** A batch item's code (API.md's codes only): another server's answer is reported as `internal`, its message saying whose. */
function apiCode(code: ErrorCode | "not_api" | "output_not_kept"): ErrorCode {
  // output_not_kept is only the typed helpers' (never from a batch); "conflict" if it ever were.
  return code === "not_api" ? "internal" : code === "output_not_kept" ? "conflict" : code;
}

/** An answer some other server gave (a wrong URL, a proxy, a login page). */
function notApi(res: Response, text: string): ApiRequestError {
  const type = res.headers.get("content-type")?.split(";")[0]?.trim() || "no content type";
  return new ApiRequestError(res.status, "not_api", `not an answer of the API (${type}): ${plainText(text) || res.statusText || "empty"}`, retryAfterSecOf(res.headers));
}

/**
 * An answer without "replayed" when this call's own earlier attempt (a 504, a lost answer) may
 * have run the command: the replay is of that attempt, not of an earlier call's (a review: `smr
 * put` printed "nothing ran now" for the put its first attempt ran).
 */
function ownReplay<T extends { replayed?: true }>(r: T): T {
  if (!r.replayed) return r;
  const { replayed: _replayed, ...rest } = r;
  return rest as T;
}

/** A watch request's query and headers: where it stands, and which life of the group it followed. */
function watchRequest(opts: WatchOptions, lastId: string | undefined, reconnect: boolean, incarnation: string | null): { q: URLSearchParams; headers: Record<string, string> } {
  const q = new URLSearchParams();
  if (lastId !== undefined) q.set("from", lastId);
  if (opts.prefix !== undefined) q.set("prefix", opts.prefix);
  const headers: Record<string, string> = { accept: "text/event-stream" };
  // A reconnect says where it stands as EventSource does; the first request only asks `from`
  // (sent as both, a `from` past the end was refused naming Last-Event-ID, a probe).
  if (lastId !== undefined && reconnect) headers["last-event-id"] = lastId;
  // And which life of the group it followed: a group deleted and made again reuses its seqs,
  // and the stream went on with the new life's entries after the old life's (a probe).
  if (incarnation !== null) headers["x-smr-incarnation"] = incarnation;
  return { q, headers: { ...headers, ...nearHeader(opts.near) } };
}

/** The nearest-replica hint as its header (API.md "Locations and nearest reads"). */
function nearHeader(near: string | undefined): Record<string, string> {
  return near === undefined ? {} : { "x-smr-near": near };
}

/** A hint that is none is refused before anything is sent: a typo made every read a 400. */
/** `call`: a call's own option, refused as the API refuses an unknown hint (a 400; a TypeError, as the group's name is not: a probe); the client's, a TypeError at its construction. */
function checkNear(near: string | undefined, call = false): void {
  if (near === undefined || isLocationHint(near)) return;
  const what = `near ${JSON.stringify(near)}: one of ${locationHints.join(", ")}`;
  throw call ? new ApiRequestError(400, "bad_request", `${what}; nothing was sent`) : new TypeError(what);
}

/** What of a body comes within waitMs (bounded to 64 KiB), then the rest cancelled: an answer that never ends held the watch. */
async function startOf(res: Response, waitMs: number): Promise<string> {
  const reader = res.body?.getReader();
  if (!reader) return "";
  const decoder = new TextDecoder();
  let text = "";
  let bytes = 0;
  const deadline = Date.now() + waitMs;
  try {
    while (bytes < 64 * 1024) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const part = await Promise.race([reader.read(), new Promise<null>((r) => (timer = setTimeout(() => r(null), left)))]).finally(() => clearTimeout(timer));
      if (part === null || part.done) break;
      text += decoder.decode(part.value, { stream: true });
      bytes += part.value.length;
    }
  } catch {
    // what came is enough to say whose answer it was
  }
  reader.cancel().catch(() => undefined);
  return text;
}

/** A body's text without markup, on one line, cut to 200 characters. */
function plainText(text: string): string {
  const t = text.replace(/<(script|style)[^>]*>[\s\S]*?<\/\1>/gi, " ").replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim();
  return t.length > 200 ? `${t.slice(0, 199)}…` : t;
}

/**
 * An answer's Retry-After in seconds, or undefined: delay-seconds, or an HTTP date (a proxy's or
 * a platform's; it was ignored, and a 503 asking for 3 s was retried after 50 ms: a probe).
 */
function retryAfterSecOf(headers: Headers, nowMs = Date.now()): number | undefined {
  const text = headers.get("retry-after")?.trim();
  if (!text) return undefined;
  const after = /^\d+(\.\d+)?$/.test(text) ? Number(text) : (Date.parse(text) - nowMs) / 1000;
  return Number.isFinite(after) && after > 0 ? after : undefined;
}

/** What a request may say beyond its body: headers, who hears the status, the answer's shape. */
interface RequestMore<T> {
  headers?: Record<string, string>;
  answered?: (status: number, headers: Headers) => void;
  /** Whether a 2xx JSON answer is the one asked for (else `not_api`). */
  shape?: (answer: unknown) => answer is T;
  /** The answer is a 204 with no body (a DELETE's): any other 2xx is `not_api`. */
  empty?: true;
}

/** `text` parsed as JSON, else what `otherwise` makes (thrown). */
function parsedOr(text: string, otherwise: () => Error): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw otherwise();
  }
}

/** The shapes of the answers (API.md): a command's, a batch's of n items, a query's, a membership change's. */
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isCommandResult = (v: unknown): v is CommandResult => isObject(v) && Number.isSafeInteger(v.seq) && "output" in v && typeof v.bookmark === "string";
const isBatchOf = (n: number) => (v: unknown): v is BatchResult => isObject(v) && Array.isArray(v.results) && v.results.length === n && v.results.every(isObject);
const isQueryResult = (v: unknown): v is QueryResult => isObject(v) && "result" in v;
const isReplica = (v: unknown): v is ReplicaStatus => isObject(v) && typeof v.id === "string" && typeof v.status === "string";
const isReplicaAnswer = (v: unknown): v is { replica: ReplicaStatus } => isObject(v) && isReplica(v.replica);
/** A repair's or a release's: the replica, or null when it was removed meanwhile. */
const isReplicaOrGone = (v: unknown): v is { replica: ReplicaStatus | null } => isObject(v) && (v.replica === null || isReplica(v.replica));
const isGroupStatus = (v: unknown): v is GroupStatus => isObject(v) && typeof v.group === "string" && Number.isSafeInteger(v.epoch) && Number.isSafeInteger(v.commitSeq) && isObject(v.sequencer) && Array.isArray(v.replicas);
const isNames = (v: unknown): v is { groups: string[]; next?: string } => isObject(v) && Array.isArray(v.groups) && v.groups.every((g) => typeof g === "string");
/** `{"<key>": [object, ...], ...}`: a list answer (replicas, audits, events, tokens). */
const isListOf =
  <T>(key: string) =>
  (v: unknown): v is T =>
    isObject(v) && Array.isArray(v[key]) && (v[key] as unknown[]).every(isObject);
const isLogPage = (v: unknown): v is LogPage => isObject(v) && Array.isArray(v.entries) && Number.isSafeInteger(v.commitSeq);
const isAuditReport = (v: unknown): v is AuditReport => isObject(v) && typeof v.verdict === "string" && Array.isArray(v.replicas);
const isMoveAnswer = (v: unknown): v is { sequencer: GroupStatus["sequencer"] } => isObject(v) && isObject(v.sequencer) && typeof v.sequencer.name === "string";
const isNewToken = (v: unknown): v is TokenInfo & { token: string } => isObject(v) && typeof v.id === "string" && typeof v.token === "string";

interface SendInit {
  body?: string | Uint8Array | ReadableStream<Uint8Array>;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

export class SmrClient {
  readonly clientId: string;
  /** The next request id, or null: taken from the clock (clockRequest). */
  private nextRequest: number | null;
  /** The latest bookmark this client has seen (from a command or a read), of whichever group. */
  bookmark: string | undefined;
  /**
   * The latest bookmark of each group, which its sequential reads send: a bookmark names a
   * position in one group's log, and another group's is refused (400) or meaningless.
   */
  private readonly bookmarks = new Map<string, string>();
  private readonly doFetch: typeof fetch;

  private readonly baseUrl: string;

  constructor(private readonly opts: ClientOptions) {
    // Nothing could be sent to such a target: every call was a network failure, retried for the
    // whole budget (a command then said it "may have taken effect"), and a token's error message
    // carried the secret. Refused here, at once, without echoing the token.
    const problem = urlProblem(opts.baseUrl);
    if (problem !== null) throw new TypeError(`baseUrl ${JSON.stringify(opts.baseUrl)}: ${{ scheme: "not an http:// or https:// URL", credentials: "holds a user name or password (pass the token as token)", query: "has a query or a fragment (give the server's base URL)" }[problem]}`);
    if (!sendableToken(opts.token)) throw new TypeError("token: cannot be sent in a header (a space, a line break, a control character, or a character outside ASCII)");
    checkNear(opts.near);
    // "http://host/" made every path "//v1/..." (a 404).
    this.baseUrl = opts.baseUrl.replace(/\/+$/, "");
    this.clientId = opts.clientId ?? randomId();
    this.nextRequest = opts.firstRequest ?? (opts.clientId === undefined ? 1 : null);
    this.doFetch = opts.fetch ?? ((...a) => fetch(...a));
  }

  /** One HTTP exchange: the response when it is 2xx, else an ApiRequestError (status 0 for no answer). */
  async send(method: string, path: string, init: SendInit = {}): Promise<Response> {
    let res: Response;
    try {
      const streamed = init.body instanceof ReadableStream;
      res = await this.doFetch(this.baseUrl + path, {
        method,
        headers: { authorization: `Bearer ${this.opts.token}`, ...init.headers },
        ...(init.body === undefined ? {} : { body: init.body }),
        ...(init.signal ? { signal: init.signal } : {}),
        // Node's fetch sends a stream body only when told the request is half duplex.
        ...(streamed ? { duplex: "half" } : {}),
      } as RequestInit);
    } catch (err) {
      if (init.signal?.aborted) throw err;
      const e = new ApiRequestError(0, "network", `${method} ${this.baseUrl}${path}: ${describe(err)}`);
      e.notSent = notSent(err);
      // Retried for the whole budget before (10 s for a read, 90 for a command) to the same answer.
      e.hopeless = err instanceof Error && err.cause instanceof Error && err.cause.message === "bad port";
      throw e;
    }
    if (!res.ok) throw await errorOf(res);
    return res;
  }

  /**
   * One JSON exchange, answered within requestTimeoutMs (a network failure otherwise: for a
   * command, an unknown outcome, retried with the same request id). It had no bound: a server
   * that took the connection and never answered held a call for Node's 300 s, per attempt.
   */
  /** `more.answered`: told the answer's status (a PUT's 201 created or 200 already there) and headers (a batch's Retry-After); `more.shape`: a 2xx of another shape is `not_api`. */
  async request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal, more: RequestMore<T> = {}): Promise<T> {
    signal?.throwIfAborted();
    const wanted = this.opts.requestTimeoutMs ?? clientRequestTimeoutMs;
    // 0, Infinity or anything a timer cannot hold: no bound (AbortSignal.timeout threw on them).
    const timeoutMs = timerMs(wanted);
    const abort = new AbortController();
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => abort.abort(), timeoutMs);
    const cancel = () => abort.abort(signal!.reason);
    signal?.addEventListener("abort", cancel, { once: true });
    try {
      let res: Response;
      try {
        res = await this.send(method, path, {
          headers: { "content-type": "application/json", ...more.headers },
          ...(body === undefined ? {} : { body: jsonOf(body) }),
          signal: abort.signal,
        });
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        if (abort.signal.aborted) throw new ApiRequestError(0, "network", `${method} ${this.baseUrl}${path}: no answer within ${timeoutMs} ms`);
        throw err;
      }
      more.answered?.(res.status, res.headers);
      if (res.status === 204) return undefined as T;
      // A proxy's or another server's 200 to a DELETE was taken for the delete done (a probe: `smr
      // groups delete` said "deleted" for a server that answered everything `{}`).
      if (more.empty) throw notApi(res, await res.text().catch(() => ""));
      let text: string;
      try {
        text = await res.text();
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        // The connection died while the body was read: as much a network failure as no answer.
        throw new ApiRequestError(0, "network", abort.signal.aborted ? `${method} ${this.baseUrl}${path}: no whole answer within ${timeoutMs} ms` : String(err));
      }
      let answer: unknown;
      try {
        answer = JSON.parse(text);
      } catch {
        throw notApi(res, text);
      }
      // Another server's JSON (a proxy's, a wrong URL's) is not taken for the answer: a put
      // resolved `undefined` for a proxy's `{}` (a probe).
      if (more.shape && !more.shape(answer)) throw notApi(res, text);
      return answer as T;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", cancel);
    }
  }

  /**
   * A request that changes nothing (a GET; an audit, another of which is harmless), retried like a
   * query on 503, 429 and network failures while retryForMs lasts. Only commands and queries were:
   * `smr log` or `smr audit` during a failover ended on the first 503, which says to retry (a probe).
   */
  private read<T>(method: string, path: string, shape: (answer: unknown) => answer is T, body?: unknown, signal?: AbortSignal): Promise<T> {
    return this.retried(() => this.request<T>(method, path, body, signal, { shape }), undefined, retriable, signal);
  }

  /** One reading call (`attempt`), retried as `read` says. */
  private async retried<T>(attempt: () => Promise<T>, what?: CommandRetry["what"], may: (err: unknown) => boolean = retriable, signal?: AbortSignal): Promise<T> {
    const retries = new Retries(this.opts);
    for (;;) {
      try {
        return await attempt();
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        const attempt = retries.attempt;
        const pauseMs = may(err) ? retries.next(err) : null;
        if (pauseMs === null) throw err;
        this.opts.onReadRetry?.({ attempt, reason: retryReason(err), pauseMs, ...(what ? { what } : {}) });
        await sleep(pauseMs, signal);
        signal?.throwIfAborted();
      }
    }
  }

  // ---- groups (admin token) ------------------------------------------------------------------
  /**
   * `created`: told whether the group was made (201) or one with the same config was there (200:
   * also a retry's, after an attempt whose answer was lost had made it). Retried like a read: a PUT
   * of the same config is answered, not done again, and a 503 (the registry or a quorum of the new
   * objects not reached) leaves a creation that a retry finishes; the CLI ended on the first, and
   * the group stayed out of every list until a request named it (a probe).
   */
  async createGroup(group: string, spec: GroupSpec, created?: (made: boolean) => void): Promise<GroupStatus> {
    return this.retried(() => this.request<GroupStatus>("PUT", groupPath(group), spec, undefined, { answered: (status) => created?.(status === 201), shape: isGroupStatus }));
  }
  listGroups(page: { after?: string; limit?: number } = {}, call: CallOptions = {}): Promise<{ groups: string[]; next?: string }> {
    const q = new URLSearchParams();
    if (page.after !== undefined) q.set("after", page.after);
    if (page.limit !== undefined) q.set("limit", String(page.limit));
    return this.read("GET", `/v1/groups${q.size ? `?${q}` : ""}`, isNames, undefined, call.signal);
  }
  async group(group: string, call: CallOptions = {}): Promise<GroupStatus> {
    return this.read("GET", groupPath(group), isGroupStatus, undefined, call.signal);
  }
  /** `force`: finish though some of its objects cannot be reached (a location lost for good), leaving their storage behind. */
  /**
   * Retried like a read: a 503 says an object of the group is not reached yet and a retry finishes
   * the delete (the CLI ended on the first). Every attempt names the life of the group its status
   * showed first (`?incarnation=`): a retry after a lost answer or a 504 then never deletes a group
   * someone created again meanwhile (the server's 409). Once an attempt may have begun the delete
   * (a 503 "being deleted", a 504, an answer lost after sending), a retry's 404 is that delete
   * finished (a 404 after a 429 was taken for "deleted", for a group that never was: a review).
   * A status without the incarnation (its GET failed): a group that answers before a retry, once
   * the server said the delete is under way, was made again (a 409, not deleted).
   */
  async deleteGroup(group: string, opts: { force?: boolean; incarnation?: number } = {}): Promise<void> {
    // `incarnation` given: only that life of the group (the one the caller made).
    const incarnation =
      opts.incarnation ??
      (await this.request<GroupStatus | null>("GET", groupPath(group)).then(
        (s) => s?.incarnation,
        () => undefined, // a 404 too: a delete left halfway is finished by the DELETE
      ));
    const q = new URLSearchParams();
    if (opts.force) q.set("force", "1");
    if (incarnation !== undefined) q.set("incarnation", String(incarnation));
    const path = groupPath(group, q.size ? `?${q}` : "");
    /** An attempt may have begun the delete; `underWay`: the server said so (a 503 "being deleted"). */
    let begun = false;
    let underWay = false;
    const attempt = async (): Promise<void> => {
      if (incarnation === undefined && underWay && (await this.answers(group))) throw new ApiRequestError(409, "conflict", `group ${group} was deleted and created again while this delete was retried: the new group is left as it is`);
      try {
        await this.request<void>("DELETE", path, undefined, undefined, { empty: true });
      } catch (err) {
        begun ||= deleteBegun(err);
        underWay ||= deleteUnderWay(err);
        throw err;
      }
    };
    try {
      // The API's 500 too (for 10 s): the delete may have begun, and a retry finishes it.
      await this.retried(attempt, "delete", (e) => retriable(e, true));
    } catch (err) {
      if (begun && err instanceof ApiRequestError && err.status === 404) return;
      throw err;
    }
  }

  /** Whether the group answers its status now (a 404, a 503 or a failure: no). */
  private answers(group: string): Promise<boolean> {
    return this.request("GET", groupPath(group)).then(
      () => true,
      () => false,
    );
  }
  /** `sequencer` is there only while it cannot be reached (`reachable: false`, `problem`): the replicas are then what they say of themselves. */
  async replicas(group: string, call: CallOptions = {}): Promise<{ replicas: ReplicaStatus[]; sequencer?: GroupStatus["sequencer"] }> {
    return this.read("GET", groupPath(group, `/replicas`), isListOf<{ replicas: ReplicaStatus[]; sequencer?: GroupStatus["sequencer"] }>("replicas"), undefined, call.signal);
  }
  /**
   * A membership change is retried only while nothing was ordered: a 503 (API.md: certainly not
   * ordered; the sequencer starting, a change in flight), a 429, a request never sent. Never after
   * a 504 or an answer lost after sending: it may have taken effect, and a second add is a second
   * replica. The CLI ended on the first 503, which says to retry (a probe).
   */
  async addReplica(group: string, location?: string | null): Promise<{ replica: ReplicaStatus }> {
    return this.changeMembers("POST", groupPath(group, `/replicas`), location === undefined ? {} : { location });
  }
  /** Retried as addReplica is. */
  async removeReplica(group: string, id: string): Promise<{ replica: ReplicaStatus }> {
    return this.changeMembers("DELETE", groupPath(group, `/replicas/${pathId(id, replicaIdPattern, "replica id")}`));
  }
  /**
   * One membership change, retried while nothing was ordered. An attempt that may have taken
   * effect ends the call with `outcomeUnknown`: a 504, an answer lost after sending, a 500, and a
   * 2xx that is not the API's answer (a proxy that passed the change on: it was a plain failure,
   * and a rerun of `smr replicas add` could add a second replica, a review).
   */
  private async changeMembers(method: "POST" | "DELETE", path: string, body?: unknown): Promise<{ replica: ReplicaStatus }> {
    try {
      return await this.retried(() => this.request(method, path, body, undefined, { shape: isReplicaAnswer }), "membership change", notOrdered);
    } catch (err) {
      if (!(err instanceof ApiRequestError) || !outcomeUnknown(err)) throw err;
      if (err.status === 504) {
        err.outcomeUnknown = true;
        throw err;
      }
      const e = new ApiRequestError(504, "timeout", `${err.message}; its outcome is unknown: the membership change may or may not take effect; look at the group's replicas before trying again`);
      e.cause = err;
      e.outcomeUnknown = true;
      throw e;
    }
  }
  /** The group's storage quota from now on (docs/OPERATIONS.md, "Storage quota"): raised, a group held at its quota takes writes again. Setting the same one twice changes nothing, so it is retried like a read. */
  async setQuota(group: string, storageQuotaMiB: number): Promise<GroupStatus> {
    return this.read("POST", groupPath(group, "/quota"), isGroupStatus, { storageQuotaMiB });
  }
  /** Rebuilds the replica now from the most advanced healthy one (docs/OPERATIONS.md, "Out of a quarantine"). `replica` null: removed meanwhile. */
  async repairReplica(group: string, id: string): Promise<{ replica: ReplicaStatus | null }> {
    return this.request("POST", groupPath(group, `/replicas/${pathId(id, replicaIdPattern, "replica id")}/repair`), {}, undefined, { shape: isReplicaOrGone });
  }
  /** Lets a quarantined replica serve and vote again; a 409 while its rows do not hash to its digest, unless `rebase` (take its rows as they are). */
  async releaseReplica(group: string, id: string, opts: { rebase?: boolean } = {}): Promise<{ replica: ReplicaStatus | null }> {
    return this.request("POST", groupPath(group, `/replicas/${pathId(id, replicaIdPattern, "replica id")}/release`), opts.rebase ? { rebase: true } : {}, undefined, { shape: isReplicaOrGone });
  }
  /** `recovering`: the move is done, but the new sequencer could not recover yet (why); it takes office at the next request that finds a quorum. */
  async moveSequencer(group: string, location?: string | null): Promise<{ sequencer: GroupStatus["sequencer"] & { recovering?: string } }> {
    return this.request("POST", groupPath(group, `/sequencer`), location === undefined ? {} : { location }, undefined, { shape: isMoveAnswer });
  }
  async log(group: string, from?: number, limit?: number, call: CallOptions = {}): Promise<LogPage> {
    const q = new URLSearchParams();
    if (from !== undefined) q.set("from", String(from));
    if (limit !== undefined) q.set("limit", String(limit));
    return this.read("GET", groupPath(group, `/log?${q}`), isLogPage, undefined, call.signal);
  }
  async audit(group: string, call: CallOptions = {}): Promise<AuditReport> {
    return this.read("POST", groupPath(group, `/audit`), isAuditReport, undefined, call.signal);
  }
  async audits(group: string, limit?: number, call: CallOptions = {}): Promise<{ audits: AuditReport[] }> {
    return this.read("GET", groupPath(group, `/audits${limit ? `?limit=${limit}` : ""}`), isListOf<{ audits: AuditReport[] }>("audits"), undefined, call.signal);
  }
  async events(group: string, limit?: number, call: CallOptions = {}): Promise<{ events: GroupEvent[] }> {
    return this.read("GET", groupPath(group, `/events${limit ? `?limit=${limit}` : ""}`), isListOf<{ events: GroupEvent[] }>("events"), undefined, call.signal);
  }
  async createToken(group: string, scope: "read" | "write", name?: string): Promise<TokenInfo & { token: string }> {
    return this.request("POST", groupPath(group, `/tokens`), name === undefined ? { scope } : { scope, name }, undefined, { shape: isNewToken });
  }
  async tokens(group: string, call: CallOptions = {}): Promise<{ tokens: TokenInfo[] }> {
    return this.read("GET", groupPath(group, `/tokens`), isListOf<{ tokens: TokenInfo[] }>("tokens"), undefined, call.signal);
  }
  async revokeToken(group: string, id: string): Promise<void> {
    return this.request("DELETE", groupPath(group, `/tokens/${pathId(id, tokenIdPattern, "token id")}`), undefined, undefined, { empty: true });
  }
  /** Prometheus text (API.md "Metrics") of one group, of every group (up to 2,000), or of a page (`after`/`limit`); its last line is `# next: <name>` when more follow. */
  async metrics(group?: string, page: { after?: string; limit?: number } = {}, call: CallOptions = {}): Promise<string> {
    const q = new URLSearchParams();
    if (group !== undefined) q.set("group", group);
    if (page.after !== undefined) q.set("after", page.after);
    if (page.limit !== undefined) q.set("limit", String(page.limit));
    const path = `/v1/metrics${q.size ? `?${q}` : ""}`;
    // Retried as a read: `smr groups status` ended on a registry's first 503 (a probe). Each
    // attempt answered whole within requestTimeoutMs, as a JSON request is: unbounded, a server
    // that took the connection and never answered held it for Node's 300 s an attempt (a probe).
    return this.retried(async () => {
      const idle = idleAbort(timerMs(this.opts.requestTimeoutMs ?? clientRequestTimeoutMs), `GET ${this.baseUrl}${path}`, call.signal);
      try {
        const res = await this.send("GET", path, { signal: idle.signal }).catch((err: unknown) => Promise.reject(idle.reason(err)));
        const text = await this.text(res).catch((err: unknown) => Promise.reject(idle.reason(err)));
        // Prometheus text: a login page's HTML was read as no group at all, and `smr groups status
        // --unhealthy` passed with nothing checked (a probe).
        if (!/^text\/plain\b/i.test(res.headers.get("content-type") ?? "")) throw notApi(res, text);
        return text;
      } finally {
        idle.end();
      }
    }, undefined, retriable, call.signal);
  }

  // ---- commands and queries --------------------------------------------------------------------

  /**
   * A new request id of this client (ClientOptions.firstRequest), never handed out again: take
   * one before a submit you may abort, so that you can send the command again with it to learn
   * its outcome (submit, submitBatch and the helpers otherwise choose ids the caller never sees).
   */
  newRequest(): number {
    return this.nextRequest === null ? clockRequest() : this.nextRequest++;
  }

  /** Submits a command exactly once, retrying with the same request id while the outcome is unknown. */
  async submit(group: string, given: unknown, request = this.newRequest(), call: CallOptions = {}): Promise<CommandResult> {
    const { signal } = call;
    const command = frozen(given);
    const retries = new Retries(this.opts);
    let unsure = false; // an attempt's outcome was unknown: a later 503 no longer means "not ordered"
    for (;;) {
      try {
        const r = await this.request<CommandResult>("POST", groupPath(group, `/commands`), { client: this.clientId, request, command }, signal, { shape: isCommandResult });
        this.keepBookmark(group, r.bookmark);
        return unsure ? ownReplay(r) : r;
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        const attempt = retries.attempt;
        const pauseMs = retriable(err, true) ? retries.next(err) : null;
        const earlier = unsure;
        unsure ||= outcomeUnknown(err);
        if (pauseMs === null) throw unsure ? unknownAfter(err, earlier) : err;
        this.opts.onCommandRetry?.({ attempt, reason: retryReason(err), pauseMs });
        await sleep(pauseMs, signal);
      }
    }
  }

  /**
   * Submits commands as one batch (API.md "Batches"), each exactly once. A command whose own result
   * is a `timeout` or `unavailable` error is sent again with its request id (alone with the other
   * such ones); a failed request as a whole is sent again whole; a command executed but whose
   * output did not fit the answer (`too_large` with a seq) is sent again alone to read it (it keeps
   * its too_large result where the group kept only the output_not_kept marker).
   * Results are in the given order. Commands that do not fit one request (256 of them, a 256 KiB
   * body) go in several, one after another (a batch of 200 commands of 2 KiB was one 413): each
   * request is then checked on its own, so a refused command leaves those sent before it done.
   */
  async submitBatch(group: string, commands: BatchCommand[], call: CallOptions = {}): Promise<BatchResult> {
    const items = commands.map((c) => ({ request: c.request ?? this.newRequest(), command: frozen(c.command) }));
    const results: BatchItemResult[] = [];
    let bookmark: string | undefined;
    for (const piece of requestsOf(this.clientId, items)) {
      const offset = results.length;
      let answer: BatchResult;
      try {
        answer = await this.submitRequest(group, piece, call.signal);
      } catch (err) {
        if (offset === 0 || call.signal?.aborted) throw err;
        // Earlier requests' results stand (executed): this failure is the result of this piece,
        // its field paths counted from the whole batch.
        const known = err instanceof ApiRequestError && (err.code !== "network" || err.notSent);
        const e = known ? { code: apiCode(err.code === "network" ? "unavailable" : err.code), message: renumbered(err.message, offset) } : { code: "timeout" as const, message: String(err) };
        while (results.length < offset + piece.length) results.push({ error: e });
        break;
      }
      results.push(...answer.results);
      if (answer.bookmark) bookmark = later(group, bookmark, answer.bookmark);
      // A command of this piece that did not run, or may not have, holds the rest back: sent on,
      // they would run before it, which the server refuses within one request for this reason.
      if (answer.results.some((r) => "error" in r && (r.error.code === "unavailable" || r.error.code === "timeout"))) break;
    }
    const notSentError = { code: "unavailable" as const, message: "not sent: a command before it in the batch did not run (or its outcome is unknown); send it again after that one" };
    while (results.length < items.length) results.push({ error: notSentError });
    return { results, bookmark: bookmark ?? "" };
  }

  /** One request's worth of a batch (submitBatch), retried as it says. */
  private async submitRequest(group: string, items: { request: number; command: unknown }[], signal: AbortSignal | undefined): Promise<BatchResult> {
    const results: BatchItemResult[] = new Array(items.length);
    let pending = items.map((_, i) => i);
    let bookmark: string | undefined;
    const retries = new Retries(this.opts);
    const unsure = new Set<number>(); // items an attempt left unknown (a 504, a failed request): a later 503 is a timeout
    for (;;) {
      const attempt = retries.attempt;
      let pauseMs: number | null = null;
      let answer: BatchResult | undefined;
      let askedSec: number | undefined;
      const heard = (_status: number, headers: Headers) => void (askedSec = retryAfterSecOf(headers));
      try {
        answer = await this.request<BatchResult>("POST", groupPath(group, `/commands`), { client: this.clientId, commands: pending.map((i) => items[i]) }, signal, { answered: heard, shape: isBatchOf(pending.length) });
      } catch (err) {
        if (signal?.aborted) throw err;
        pauseMs = retriable(err, true) ? retries.next(err) : null;
        const last = pauseMs === null;
        const earlier = pending.some((i) => unsure.has(i));
        if (outcomeUnknown(err)) for (const i of pending) unsure.add(i);
        if (last && results.some((r) => r !== undefined)) {
          // Some commands have results already (executed ones among them): returned, with this
          // failure as the result of those still pending.
          for (const i of pending) {
            const e = unsure.has(i) ? unknownAfter(err, earlier) : err;
            results[i] = { error: e instanceof ApiRequestError && e.code !== "network" ? { code: apiCode(e.code), message: e.message, ...(e.reason ? { reason: e.reason } : {}) } : { code: "timeout", message: String(e) } };
          }
          break;
        }
        if (last) throw pending.some((i) => unsure.has(i)) ? unknownAfter(err, earlier) : err;
        this.opts.onCommandRetry?.({ attempt, reason: retryReason(err), pauseMs: pauseMs! });
      }
      if (answer) {
        bookmark = later(group, bookmark, answer.bookmark);
        const again: number[] = [];
        answer.results.forEach((r, j) => {
          const i = pending[j]!;
          results[i] = unsure.has(i) ? ownReplay(r) : r;
          if ("error" in r && (r.error.code === "unavailable" || (r.error.code === "conflict" && expiredAfterRetry(r.error.message))) && unsure.has(i)) results[i] = { error: unknownAfterCode(r.error.message) };
          if ("error" in r && r.error.code === "timeout") unsure.add(i);
          // Not one refused for the storage quota: no retry mends it (a probe's `smr put` retried it for 90 s).
          if ("error" in r && (r.error.code === "timeout" || (r.error.code === "unavailable" && r.error.reason !== "storage_quota"))) again.push(i);
        });
        pending = again;
        if (pending.length === 0) break;
        // Its Retry-After waited out, as a 503's is (the items were retried after 50 ms: a probe).
        pauseMs = retries.next(null, askedSec);
        if (pauseMs === null) break;
        this.opts.onCommandRetry?.({ attempt, reason: `${pending.length} of the batch's commands answered timeout or unavailable`, pauseMs });
      }
      await sleep(pauseMs!, signal);
      signal?.throwIfAborted();
    }
    bookmark = await this.readBackLeftOut(group, items, results, signal, bookmark);
    if (bookmark) this.keepBookmark(group, bookmark);
    return { results, bookmark: bookmark ?? "" };
  }

  /**
   * An output left out of a batch's answer for its size was executed: sent again alone (same
   * request id), the command answers its recorded output and runs nothing. If that fails, or finds
   * only the output_not_kept marker, the item keeps its too_large result (it ran). Answers the
   * latest bookmark.
   */
  private async readBackLeftOut(group: string, items: { request: number; command: unknown }[], results: BatchItemResult[], signal: AbortSignal | undefined, bookmark: string | undefined): Promise<string | undefined> {
    for (let i = 0; i < items.length; i++) {
      const r = results[i]!;
      if (!("error" in r) || r.error.code !== "too_large" || r.seq === undefined) continue;
      const again = await this.submit(group, items[i]!.command, items[i]!.request, signal ? { signal } : {}).catch((err: unknown) => {
        if (signal?.aborted) throw err;
        return null;
      });
      if (again === null || isNotKept(again.output)) continue;
      // Replayed as the batch's item was (or not): this read-back is a replay by definition.
      results[i] = { seq: again.seq, output: again.output, ...(r.replayed ? { replayed: true as const } : {}) };
      bookmark = later(group, bookmark, again.bookmark);
    }
    return bookmark;
  }

  /**
   * Keeps a bookmark (from a write's answer, perhaps another process's): this client's next
   * sequential reads of the group see at least its position (read-your-writes across processes).
   */
  keepBookmark(group: string, bookmark: string): void {
    this.bookmark = bookmark;
    const before = this.bookmarks.get(group);
    const kept = later(group, before, bookmark);
    // Replaced by a newer life's (a write or a read after the group was made again): the writes
    // it named are gone, as when the server refuses it; only a sequential read found that out,
    // so an app whose next call was a write was never told (a client probe).
    if (before !== undefined && kept === bookmark && earlierLife(group, before, bookmark)) {
      this.opts.onBookmarkDropped?.({ group, bookmark: before, reason: `bookmark: given by an earlier life of ${group} (deleted and created again since): the writes it names are not in this one` });
    }
    this.bookmarks.delete(group); // re-inserted last: the map drops the group used longest ago
    this.bookmarks.set(group, kept);
    if (this.bookmarks.size > clientBookmarkGroupsMax) this.bookmarks.delete(this.bookmarks.keys().next().value!);
  }

  /**
   * A read, retried like a command on 503, 429 and network failures (a read changes nothing). A
   * bookmark the server says is of an earlier life of the group, or past its log's end, is
   * dropped: the group was deleted and made again (a restore under the same name), and every
   * later sequential read failed with it until the new log outgrew the old one (a probe).
   */
  async query(group: string, query: unknown, consistency: Consistency = "linearizable", call: QueryOptions = {}): Promise<QueryResult> {
    const { signal } = call;
    checkNear(call.near, true);
    const retries = new Retries(this.opts);
    let olderForms = 0; // steps down to the form a server of an earlier version reads (olderForm)
    for (;;) {
      const body: Record<string, unknown> = { query, consistency };
      // A given one raises the kept one, never lowers it: an older one would undo read-your-writes.
      const kept = call.bookmark === undefined ? this.bookmarks.get(group) : later(group, this.bookmarks.get(group), call.bookmark);
      // Stepped down at most to the oldest form (a kept one that changed form meanwhile is not dropped: a review).
      let bookmark = kept;
      for (let i = 0; i < olderForms && bookmark; i++) bookmark = olderForm(group, bookmark) ?? bookmark;
      if (consistency === "sequential" && bookmark) body.bookmark = bookmark;
      try {
        const r = await this.request<QueryResult>("POST", groupPath(group, "/query"), body, signal, { shape: isQueryResult, headers: nearHeader(call.near ?? this.opts.near) });
        if (r.bookmark) this.keepBookmark(group, r.bookmark); // monotonic reads: the next never sees older state
        return r;
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        // A form the server does not read (an earlier version's): the same position in the form
        // before it. The bookmark kept stays: the write it names is not gone.
        const malformed = err instanceof ApiRequestError && err.status === 400 && /^(400 bad_request: )?bookmark: malformed/.test(err.message);
        if (malformed && typeof body.bookmark === "string" && olderForm(group, body.bookmark) !== null) {
          olderForms++;
          continue;
        }
        if (call.bookmark === undefined && body.bookmark !== undefined && err instanceof ApiRequestError && err.status === 400 && staleBookmark.test(err.message.replace(/^400 bad_request: /, ""))) {
          // This read goes linearizable: the stale bookmark outranked (by seq) the client's own
          // later writes to the new group, so without it a sequential read could miss them.
          // Only the one sent: a write's newer bookmark, stored meanwhile, stays.
          // The kept one, not the older form sent for it: that one is never kept (a review: the
          // kept b3 stayed, and every later read reported it dropped again).
          if (this.bookmarks.get(group) === kept) this.bookmarks.delete(group);
          if (this.bookmark === kept) this.bookmark = undefined;
          this.opts.onBookmarkDropped?.({ group, bookmark: String(kept), reason: err.message });
          consistency = "linearizable";
          continue;
        }
        const attempt = retries.attempt;
        const pauseMs = retriable(err) ? retries.next(err) : null;
        if (pauseMs === null) throw err;
        this.opts.onReadRetry?.({ attempt, reason: retryReason(err), pauseMs });
        await sleep(pauseMs, signal);
      }
    }
  }

  // ---- watch, snapshot, restore ------------------------------------------------------------------

  /**
   * The group's change feed (API.md "Watch") as an async iterator. After a dropped connection (or
   * a 503/504) it reconnects with `Last-Event-ID` set to the last event it yielded, pausing with a
   * doubling backoff; 400/401/403/404/410 end it with an ApiRequestError (410 `compacted`: read the
   * state and watch from its seq). Aborting `signal` (or leaving a for-await loop, or `return()`)
   * ends it quietly.
   */
  watch(group: string, opts: WatchOptions = {}): AsyncGenerator<WatchEvent> {
    // A generator's return() waits behind a pending next(): `it.return()` while it awaited the
    // next event held the connection and the replica's watcher place for good (a probe). It
    // aborts the stream first here, which ends the pending next(), then the generator.
    const stop = new AbortController();
    const signal = opts.signal ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal;
    checkNear(opts.near, true);
    const near = opts.near ?? this.opts.near;
    const events = this.feed(group, { ...opts, signal, ...(near === undefined ? {} : { near }) });
    const iterator: AsyncGenerator<WatchEvent> = {
      next: () => events.next(),
      return: (value) => (stop.abort(), events.return(value)),
      // Ends the watch and rejects with `err`, as a generator's throw() does when nothing catches
      // it (thrown into the feed, it was taken for a dropped connection, or swallowed: a review).
      throw: (err) => (stop.abort(), events.return(undefined).then(() => Promise.reject(err))),
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  private async *feed(group: string, opts: WatchOptions): AsyncGenerator<WatchEvent> {
    const { signal } = opts;
    let lastId: string | undefined = opts.from === undefined ? undefined : String(opts.from);
    let connects = 0;
    const baseMs = this.opts.retryBaseMs ?? clientRetryBaseMs;
    let pauseMs = baseMs;
    let serverPauseMs: number | undefined;
    let incarnation: string | null = null;
    while (!signal?.aborted) {
      const { q, headers } = watchRequest(opts, lastId, connects++ > 0, incarnation);
      let res: Response;
      const idleMs = timerMs(opts.idleMs ?? watchIdleMs);
      // The answer's head within idleMs too: a connection taken and never answered held the watch
      // for ever. The timer is cleared once it comes; the caller's signal still ends the body.
      const noAnswer = new AbortController();
      const timer = idleMs === undefined ? undefined : setTimeout(() => noAnswer.abort(new Error(`no answer within ${idleMs} ms`)), idleMs);
      try {
        res = await this.send("GET", groupPath(group, `/watch${q.size ? `?${q}` : ""}`), { headers, signal: signal ? AbortSignal.any([signal, noAnswer.signal]) : noAnswer.signal });
      } catch (err) {
        if (signal?.aborted) return;
        // Nor a server with no tokens set (503 not_configured): it stays so until its operator acts.
        if (err instanceof ApiRequestError && (watchFatal.has(err.status) || err.hopeless || err.code === "not_configured")) throw err;
        // A refusal's Retry-After is waited out (a replica full of watchers frees places in about a
        // second): its refused watchers came back after 50, 100, 200 ms..., each refused again.
        const askedMs = err instanceof ApiRequestError && err.retryAfterSec !== undefined ? Math.min(err.retryAfterSec * 1000, clientRetryAfterMaxMs) : 0;
        pauseMs = await this.pauseBeforeRetry(opts, err instanceof Error ? err.message : String(err), Math.max(serverPauseMs ?? pauseMs, askedMs), lastId, false);
        serverPauseMs = undefined;
        continue;
      } finally {
        clearTimeout(timer);
      }
      // A 200 that is not a stream (a proxy's login page, a wrong URL) ends the watch as it ends
      // any command: it reconnected to it for ever, "the stream ended" (a review).
      if (!/^text\/event-stream\b/i.test(res.headers.get("content-type") ?? "")) throw notApi(res, await startOf(res, idleMs ?? clientRequestTimeoutMs));
      incarnation ??= res.headers.get("x-smr-incarnation");
      let reason = "the stream ended";
      let frames = 0;
      try {
        for await (const frame of sseFrames(res.body!, idleMs)) {
          frames++;
          if (frame.retryMs !== undefined) serverPauseMs = frame.retryMs;
          if (frame.lastId !== undefined) lastId = frame.lastId;
          const ev = frame.event;
          if (!ev || ev.event !== "entry") continue;
          const event = JSON.parse(ev.data) as WatchEvent;
          lastId = ev.id ?? String(event.seq);
          pauseMs = baseMs;
          yield event;
        }
      } catch (err) {
        if (signal?.aborted) return;
        if (err instanceof SyntaxError) throw err; // a malformed event is a bug, not a dropped line
        reason = `the connection dropped (${describe(err)})`;
      }
      // The stream ended (the replica closed it, or the connection died): resume where it stopped.
      const next = await this.pauseBeforeRetry(opts, reason, serverPauseMs ?? pauseMs, lastId, frames > 0);
      // A server's `retry:` is for the reconnect after its stream: kept, every later reconnect
      // waited 5 to 10 s (a probe); doubled into the backoff, a quiet watch's waited 5 s (a review).
      pauseMs = serverPauseMs === undefined ? next : baseMs;
      serverPauseMs = undefined;
    }
  }

  /** Tells onRetry, waits pauseMs (or until aborted), and returns the next pause (doubled, bounded). */
  private async pauseBeforeRetry(opts: WatchOptions, reason: string, pauseMs: number, after: string | undefined, opened: boolean): Promise<number> {
    opts.onRetry?.({ reason, pauseMs, opened, ...(after !== undefined ? { after } : {}) });
    await sleep(pauseMs, opts.signal);
    return Math.min(pauseMs * 2, watchRetryMaxMs);
  }

  /**
   * The group's snapshot file (API.md "Snapshot and restore") as it arrives: NDJSON bytes, to save
   * as they are. Its answer, and then each part of it, must come within requestTimeoutMs (a
   * network error otherwise): unbounded, a server that took the connection and never answered
   * held `smr snapshot` for Node's 300 s (a probe).
   */
  async snapshot(group: string, signal?: AbortSignal): Promise<ReadableStream<Uint8Array>> {
    const path = groupPath(group, `/snapshot`);
    const idle = idleAbort(timerMs(this.opts.requestTimeoutMs ?? clientRequestTimeoutMs), `GET ${this.baseUrl}${path}`, signal);
    try {
      const res = await this.send("GET", path, { headers: { accept: "application/x-ndjson" }, signal: idle.signal });
      // Another server's page (a proxy's, a login page) was saved as the snapshot, or failed later
      // as a parse error (a probe): not_api, with its text, as for any answer that is not the API's.
      if (!/^application\/x-ndjson\b/i.test(res.headers.get("content-type") ?? "")) throw notApi(res, await this.text(res));
      // The wait is the server's only while a read waits on it: time the caller spends between
      // reads is not silence (a slow consumer failed with "nothing within" though the rows had come).
      idle.pause();
      const reader = res.body!.getReader();
      return new ReadableStream<Uint8Array>({
        start(c) {
          // Whatever the fetch does with its signal, a stalled body fails the read waiting on it.
          idle.signal.addEventListener("abort", () => (c.error(idle.reason(null)), reader.cancel().catch(() => undefined)), { once: true });
        },
        async pull(c) {
          idle.touch();
          let part: ReadableStreamReadResult<Uint8Array>;
          try {
            part = await reader.read();
          } catch (err) {
            // Cut off (the server found the replica's rows damaged, or the connection died): no
            // timer is left to hold the process.
            idle.end();
            throw idle.reason(err);
          }
          idle.pause();
          if (idle.signal.aborted) return;
          if (part.done) (idle.end(), c.close());
          else c.enqueue(part.value);
        },
        cancel: (reason) => (idle.end(), reader.cancel(reason)),
      });
    } catch (err) {
      idle.end();
      throw idle.reason(err);
    }
  }

  /** The group's snapshot parsed: its header, then its rows as they arrive. */
  async snapshotRows(group: string, signal?: AbortSignal): Promise<{ header: SnapshotHeader; rows: AsyncGenerator<[string, unknown]> }> {
    const it = lines(await this.snapshot(group, signal));
    const first = await it.next();
    if (first.done) throw new ApiRequestError(0, "network", "the snapshot ended before its header");
    const header = parsedOr(first.value, () => new ApiRequestError(200, "not_api", `not a snapshot (its first line: ${JSON.stringify(first.value.slice(0, 80))})`)) as SnapshotHeader;
    async function* rows(): AsyncGenerator<[string, unknown]> {
      for await (const line of it) if (line.length > 0) yield JSON.parse(line) as [string, unknown];
    }
    return { header, rows: rows() };
  }

  /**
   * Loads a snapshot file into a new, empty group of the same machine (API.md: 409 if it has
   * entries). The body is streamed; it is not retried (a stream cannot be sent twice). `gzip`:
   * the body is the file gzipped, sent as it is with `Content-Encoding: gzip`.
   */
  async restore(group: string, body: string | Uint8Array | ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>, opts: { gzip?: boolean } = {}): Promise<GroupStatus> {
    const path = groupPath(group, `/restore`);
    // The server must take each part of the file within requestTimeoutMs, and answer within
    // clientRestoreAnswerMs of the last (it installs the rows on the replicas first): unbounded,
    // a server that took the connection and never answered held `smr restore` for good (a probe).
    const boundMs = timerMs(this.opts.requestTimeoutMs ?? clientRequestTimeoutMs);
    const idle = idleAbort(boundMs, `POST ${this.baseUrl}${path}`);
    const source = typeof body === "string" ? new TextEncoder().encode(body) : body;
    // A browser sends a stream body only over HTTP/2 or later (Chromium; others not at all): every
    // restore from a page failed, ERR_ALPN_NEGOTIATION_FAILED over HTTP/1.1 (a probe). Outside
    // Node the file goes as one body, read whole first if it came as a stream.
    if (!(this.opts.streamUploads ?? streamsRequests())) {
      // Reading the caller's source is not the server's silence (a review: a slow one aborted the restore).
      idle.pause();
      const whole = source instanceof Uint8Array ? source : await bytesOf(source instanceof ReadableStream ? source : toStream(source)).catch((err: unknown) => (idle.end(), Promise.reject(err)));
      idle.touch(boundMs === undefined ? undefined : boundMs + clientRestoreAnswerMs);
      return this.restoreAnswer(group, path, whole, opts, idle);
    }
    const it = (source instanceof Uint8Array ? chunksOf(source) : source instanceof ReadableStream ? source : toStream(source)).getReader();
    const payload = new ReadableStream<Uint8Array>({
      async pull(c) {
        // The server asked for more: waiting on the caller's source is not the server's silence.
        idle.pause();
        const { done, value } = await it.read();
        if (done) {
          idle.touch(boundMs === undefined ? undefined : clientRestoreAnswerMs); // no bound asked: none
          c.close();
        } else {
          idle.touch();
          c.enqueue(value);
        }
      },
      cancel: (reason) => it.cancel(reason),
    });
    // Answered (or failed) before the whole file was sent: the rest of the caller's source is not read.
    return this.restoreAnswer(group, path, payload, opts, idle).finally(() => it.cancel().catch(() => undefined));
  }

  /** A restore's request and its answer (restore), within `idle`'s bounds. */
  private async restoreAnswer(group: string, path: string, body: Uint8Array | ReadableStream<Uint8Array>, opts: { gzip?: boolean }, idle: ReturnType<typeof idleAbort>): Promise<GroupStatus> {
    try {
      const headers: Record<string, string> = { "content-type": "application/x-ndjson", ...(opts.gzip ? { "content-encoding": "gzip" } : {}) };
      const res = await this.send("POST", path, { headers, body, signal: idle.signal });
      const text = await this.text(res);
      // Another server's answer (HTML, or a proxy's `{}`) is not_api, not a parse error or a status
      // taken for the restore done (a probe).
      const status = parsedOr(text, () => notApi(res, text));
      if (!isGroupStatus(status)) throw notApi(res, text);
      const bookmark = (status as { bookmark?: unknown }).bookmark;
      if (typeof bookmark === "string") this.keepBookmark(group, bookmark); // sequential reads then see the restore
      return status;
    } catch (err) {
      throw idle.reason(err);
    } finally {
      idle.end();
    }
  }

  private async text(res: Response): Promise<string> {
    try {
      return await res.text();
    } catch (err) {
      throw new ApiRequestError(0, "network", String(err));
    }
  }

  // ---- typed helpers per machine ---------------------------------------------------------------

  /** `call.signal` ends any of the helpers' calls (CallOptions). */
  kv(group: string, call: CallOptions = {}) {
    const run = async <O>(c: KvCommand | ({ op: "txn" } & Required<KvTxn>)) => typedOutput<O>(await this.submit(group, c, undefined, call));
    const read = async <O>(q: KvQuery, consistency?: Consistency) => (await this.query(group, q, consistency, call)).result as O;
    return {
      put: (key: string, value: unknown) => run<{ previous: unknown }>({ op: "put", key, value: value as never }),
      get: (key: string, consistency?: Consistency) => read<{ value: unknown }>({ op: "get", key }, consistency),
      getThroughLog: (key: string) => run<{ value: unknown }>({ op: "get", key }),
      delete: (key: string) => run<{ deleted: boolean }>({ op: "delete", key }),
      cas: (key: string, expected: unknown, value: unknown) =>
        run<{ ok: boolean; value: unknown }>({ op: "cas", key, expected: expected as never, value: value as never }),
      incr: (key: string, by: number) => run<{ value: number } | { error: string }>({ op: "incr", key, by }),
      list: (opts: { prefix?: string; after?: string; limit?: number } = {}, consistency?: Consistency) =>
        read<{ items: [string, unknown][]; next?: string }>({ op: "list", ...opts }, consistency),
      /** etcd's Txn: if every compare holds, `success` runs, else `failure`, atomically in one entry. */
      txn: (t: KvTxn) => run<KvTxnOutput>({ op: "txn", compare: t.compare, success: t.success ?? [], failure: t.failure ?? [] }),
      /** Several kv commands in one request, each its own exactly-once entry, in order. */
      batch: (commands: (KvCommand | ({ op: "txn" } & Required<KvTxn>))[]) => this.submitBatch(group, commands.map((command) => ({ command })), call),
    };
  }

  bank(group: string, call: CallOptions = {}) {
    const run = async <O>(c: BankCommand) => typedOutput<O>(await this.submit(group, c, undefined, call));
    return {
      open: (account: string, balance: number) => run<{ ok: boolean }>({ op: "open", account, balance }),
      transfer: (from: string, to: string, amount: number) =>
        run<{ ok: boolean; reason?: "insufficient" | "unknown_account"; detail?: "overflow" }>({ op: "transfer", from, to, amount }),
      balances: async (consistency?: Consistency) =>
        (await this.query(group, { op: "balances" } satisfies BankQuery, consistency, call)).result as {
          accounts: Record<string, number>;
          total: number;
          /** Every digit of the total, when it passes 2^53 - 1 (then `total` is the nearest double). */
          totalExact?: string;
        },
    };
  }

  /** The lock machine's (docs/MACHINES.md): leases with fencing tokens; time is the sequencer's. */
  lock(group: string, call: CallOptions = {}) {
    const run = async <O>(c: LockCommand) => typedOutput<O>(await this.submit(group, c, undefined, call));
    const read = async <O>(q: LockQuery, consistency?: Consistency) => (await this.query(group, q, consistency, call)).result as O;
    return {
      /** Granted (a new token) if the lock is free or lapsed; the holder asking again keeps its token. */
      acquire: (lock: string, owner: string, ttlMs: number) => run<AcquireOutput>({ op: "acquire", lock, owner, ttlMs }),
      renew: (lock: string, owner: string, token: number, ttlMs: number) => run<RenewOutput>({ op: "renew", lock, owner, token, ttlMs }),
      release: (lock: string, owner: string, token: number) => run<ReleaseOutput>({ op: "release", lock, owner, token }),
      /** The lease as stored (a lapsed one until a command replaces it: compare expiresAt), or null. */
      get: (lock: string, consistency?: Consistency) => read<Lease | null>({ op: "get", lock }, consistency),
      list: (opts: { prefix?: string; after?: string; limit?: number } = {}, consistency?: Consistency) =>
        read<{ locks: (Lease & { lock: string })[]; next?: string }>({ op: "list", ...opts }, consistency),
    };
  }

  /**
   * Commands and queries typed by any machine's schemas: `smr.machine(group, lock)` (the value only
   * names the type; nothing of it is sent) or `smr.machine<typeof lock>(group)`.
   */
  machine<M extends StateMachine<any, any>>(group: string, _machine?: M, call: CallOptions = {}) {
    return {
      submit: (command: CommandOf<M>) => this.submit(group, command, undefined, call),
      query: (query: QueryOf<M>, consistency?: Consistency) => this.query(group, query, consistency, call),
      batch: (commands: CommandOf<M>[]) => this.submitBatch(group, commands.map((command) => ({ command })), call),
    };
  }
}

/**
 * A typed helper's output, or an error where a retry answered the session's marker
 * ({"error":"output_not_kept"}: the command ran once at that seq, and a group made since
 * 2026-12-06 keeps no output much longer than what its command brought): a helper that cast it
 * answered `value: undefined`, a key read through the log as absent (a review). `submit` and
 * `submitBatch` return it as it came.
 */
function isNotKept(output: unknown): boolean {
  return output !== null && typeof output === "object" && (output as { error?: unknown }).error === "output_not_kept";
}

function typedOutput<O>(r: CommandResult): O {
  const out = r.output as { chars?: unknown };
  if (isNotKept(out)) {
    // Its flags (a txn's `succeeded`: which branch ran) are said too (a review).
    const { error: _e, chars, limit: _l, ...flags } = out as Record<string, unknown>;
    const said = Object.keys(flags).length > 0 ? ` (${JSON.stringify(flags)})` : "";
    throw new ApiRequestError(200, "output_not_kept", `executed at seq ${r.seq}${said}, but its output (${String(chars)} characters) was not kept for a retry, and the first answer was lost: read the state with a query`);
  }
  return r.output as O;
}

/**
 * The server's 400 for a kept bookmark the group did not give (see SmrClient.query): its life
 * ended, another group's was kept for it, or it is malformed even in the oldest form (a server of
 * an earlier version is sent the form it reads first: olderForm).
 */
const staleBookmark = /^bookmark: (names seq \d+, past the end|given by (an earlier|another) life|given by another group|malformed)/;

/** Whether bookmark `a` was given by an earlier life of the group than `b` (deleted and created again since). */
function earlierLife(group: string, a: string, b: string): boolean {
  const pa = decodeBookmark(a)?.life;
  const pb = decodeBookmark(b)?.life;
  return !!pa && !!pb && givenBy(pa, group) && givenBy(pb, group) && pa.incarnation < pb.incarnation;
}

/** The bookmark of the later position in the group's log (bookmarks name (epoch, seq); see shared/api/bookmark.ts). */
function later(group: string, a: string | undefined, b: string): string {
  if (!a) return b;
  const pa = decodeBookmark(a);
  const pb = decodeBookmark(b);
  if (!pa || !pb) return b;
  // The older form (b1) names no group: one the server gives now (b2, b3) replaces it whatever its
  // seq. Kept by seq, another group's b1 with a high seq stayed for good, and every sequential
  // read of this client went linearizable (the server reads b1 so: a review).
  if (!pa.life !== !pb.life) return pa.life ? a : b;
  // Of another life (the group deleted and created again) or another group: the newer life, or
  // the one given (a read with another group's is the server's 400 to give). A b2 and a b3 of this
  // group carry different tags for one life: compared by seq (taken for two lives, a stale read's
  // b3 replaced a write's later b2, and read-your-writes was lost across the upgrade: a review).
  if (pa.life && pb.life) {
    const ours = givenBy(pa.life, group) && givenBy(pb.life, group);
    if (!ours && (pa.life.tag !== pb.life.tag || pa.life.incarnation !== pb.life.incarnation)) return b;
    if (pa.life.incarnation !== pb.life.incarnation) return pa.life.incarnation > pb.life.incarnation ? a : b;
  }
  // By seq: a log position is the same whatever epoch names it (a read's bookmark carries its
  // replica's epoch, which may be newer than a write's at a higher seq).
  return pb.seq > pa.seq || (pb.seq === pa.seq && pb.epoch >= pa.epoch) ? b : a;
}
