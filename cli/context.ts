// What every command's action needs: a client for the target, and whether to print JSON.
import type { Command } from "commander";
import { ApiRequestError, type CommandRetry, SmrClient } from "../shared/client/index.js";
import { UsageError } from "./args.js";
import { checkTarget, resolveTarget, type Target } from "./config.js";


export interface Run {
  client: SmrClient;
  json: boolean;
  target: Target;
}

interface GlobalFlags {
  url?: string;
  token?: string;
  json?: boolean;
  retryFor?: number;
  timeout?: number;
  near?: string;
}

export function targetOf(cmd: Command): Target {
  const flags = cmd.optsWithGlobals<GlobalFlags>();
  return resolveTarget({ ...(flags.url ? { url: flags.url } : {}), ...(flags.token ? { token: flags.token } : {}) }, process.env, process.cwd());
}

export function jsonWanted(cmd: Command): boolean {
  return cmd.optsWithGlobals<GlobalFlags>().json === true;
}

/**
 * The exit codes: 1 an error that settled the outcome (nothing of it took effect, or it was a
 * read), 3 a command or a restore whose outcome is unknown (retry it with the pair `retryOf`
 * says): a script told both apart only by the text (a review).
 */
export const exitCodes = { ok: 0, failed: 1, usage: 2, unknown: 3 } as const;

/** What a script repeats to retry an unknown outcome exactly once (`--client`, `--request`...), by error; null: nothing to repeat (a restore). */
const unknownOutcomes = new WeakMap<object, Record<string, unknown> | null>();

/** Marks `err` as an outcome unknown, `retry` what repeats it exactly once (JSON under --json). */
export function markUnknown(err: unknown, retry: Record<string, unknown> | null): void {
  if (typeof err === "object" && err !== null) unknownOutcomes.set(err, retry);
}

/** Whether `err` left an outcome unknown, and what repeats it (markUnknown). */
export function unknownOutcomeOf(err: unknown): { retry: Record<string, unknown> | null } | null {
  if (typeof err !== "object" || err === null || !unknownOutcomes.has(err)) return null;
  return { retry: unknownOutcomes.get(err)! };
}

/** The target of this invocation's client (runOf), for the hints of its error line. */
let usedTarget: Target | null = null;

/**
 * An error after which a request's outcome is unknown, so that a command or a restore may have
 * taken: no answer once sent, a 504, a 500 (raised after the sequencer was called) or another
 * server's 5xx. A 503 of the API's is "certainly not"; a connection never made sent nothing.
 */
export function unanswered(err: unknown): boolean {
  if (!(err instanceof ApiRequestError)) return false;
  // A 500 `outputs_split` is known: the command ran, and no output can be vouched for.
  return (err.code === "network" && !err.notSent) || err.code === "timeout" || (err.code === "internal" && err.reason !== "outputs_split") || (err.code === "not_api" && err.status >= 500);
}

/**
 * What the error line adds about where the URL or the token came from: "ECONNREFUSED" and "unknown
 * token" said nothing of the `--url`/`SMR_URL` to pass, or of the stale .dev.vars a token was read
 * from (a probe). Empty when there is nothing to add.
 */
export function targetHint(err: unknown, target: Target | null = usedTarget): string {
  if (!target || !(err instanceof ApiRequestError)) return "";
  // A command's unknown outcome carries what its last attempt met (a 2xx page of another server).
  if (err.outcomeUnknown && err.cause instanceof ApiRequestError && err.cause.code === "not_api") return targetHint(err.cause, target);
  if (err.code === "network" && /ECONNREFUSED|ENOTFOUND|EAI_AGAIN/.test(err.message)) {
    return `nothing answers at ${target.url} (${target.urlFrom === "default" ? "the default URL" : `from ${target.urlFrom}`}): is the server running? Pass --url or set SMR_URL (smr config shows what is used)`;
  }
  if (err.status === 401) return `the token came from ${target.tokenFrom} (smr config shows what is used)`;
  if (err.code === "not_api") {
    const where = `is ${target.url} (${target.urlFrom === "default" ? "the default URL" : `from ${target.urlFrom}`}) the API's address?`;
    // A 5xx page may be the server's own failure (wrangler dev's, the platform's 1101), not another server (a review).
    return err.status >= 500 ? `${where} If it is, the server failed: see its log` : where;
  }
  return "";
}

let lastReason: string | null = null;

/**
 * A retry's reason in full the first time, then "the same" while it repeats: a failover's 400
 * characters came six times over, and a server down nine times in 10 s (a probe). A call's first
 * retry (attempt 1) always says it: a later round of retries (a long `smr watch`, another piece
 * of a batch) is not "the same" as one that ended (a review).
 */
export function reasonOnce(reason: string, attempt: number): string {
  if (reason === lastReason && attempt > 1) return "the same";
  lastReason = reason;
  return reason;
}

/** The client for this invocation; `clientId` and `firstRequest` let a script retry a command exactly once. */
export function runOf(cmd: Command, session: { clientId?: string; firstRequest?: number } = {}): Run {
  const target = targetOf(cmd);
  // The URL first: "localhost:9103" (no scheme) was not taken for this machine, so no .dev.vars
  // token was read, and the error blamed the token (a probe).
  checkTarget(target);
  if (!target.token) {
    throw new UsageError("no token: pass --token, set SMR_TOKEN, or run inside the project (its .dev.vars, written by npm start, for a server on this machine)");
  }
  usedTarget = target;
  // A command's retries go on for up to 90 s (the client's retryForMs): say so as they happen.
  const onCommandRetry = (r: CommandRetry) => process.stderr.write(`retrying (attempt ${r.attempt + 1}) in ${r.pauseMs} ms: ${reasonOnce(r.reason, r.attempt)}\n`);
  // Reads are retried too (a read against a server that is down went on for a minute in silence).
  const onReadRetry = (r: CommandRetry) => process.stderr.write(`retrying the ${r.what ?? "read"} (attempt ${r.attempt + 1}) in ${r.pauseMs} ms: ${reasonOnce(r.reason, r.attempt)}\n`);
  const { retryFor, timeout, near } = cmd.optsWithGlobals<GlobalFlags>();
  const client = new SmrClient({
    baseUrl: target.url,
    token: target.token,
    onCommandRetry,
    onReadRetry,
    ...(retryFor !== undefined ? { retryForMs: retryFor * 1000 } : {}),
    // Bounds each attempt: --retry-for 5 against a server that never answered took 41 s (a probe).
    ...(timeout !== undefined ? { requestTimeoutMs: timeout * 1000 } : {}),
    ...(near !== undefined ? { near } : {}),
    ...session,
  });
  return { client, json: jsonWanted(cmd), target };
}
