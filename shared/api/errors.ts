// The one table from error codes to HTTP statuses (API.md "Errors").
export const errorStatus = {
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  compacted: 410,
  too_large: 413,
  rate_limited: 429,
  unavailable: 503,
  not_configured: 503,
  timeout: 504,
  internal: 500,
} as const;

export type ErrorCode = keyof typeof errorStatus;

/**
 * Why, beyond the code, for a client to act on (an extra field: API.md's codes stay as they are).
 * `storage_quota`: a 503 `unavailable` of a group at its storage quota: certainly not ordered, but
 * no retry mends it until space is freed (docs/OPERATIONS.md, "Storage quota"); clients do not retry it.
 * `deleting`: a 503 of a group being deleted whose objects have not all been destroyed yet; a
 * retry helps finish the delete (then the group is gone: 404).
 * `outputs_split`: a 500 `internal` for a command that ran, whose replicas' outputs split with no
 * majority (docs/PROTOCOL.md): no output can be vouched for, and every retry answers the same, so
 * clients report it as run, not as an outcome unknown (the client retried it, then called it
 * unknown, and the CLI's exit 3 asked for a retry that could only answer it again: a review).
 * `unreachable`: a 503 for a change that needs objects that do not answer (a membership change
 * whose members after it could not commit: replicas down): certainly not done, and a retry helps
 * only once they answer. Clients retry it (and `deleting`) for seconds, not the minute and a half
 * of a failover: the CLI blocked an operator 90 s on each such refusal (an operator probe).
 */
export const errorReasons = ["storage_quota", "deleting", "outputs_split", "unreachable"] as const;
export type ErrorReason = (typeof errorReasons)[number];

export interface ErrorBody {
  error: { code: ErrorCode; message: string; requestId?: string; reason?: ErrorReason };
}

/** An expected failure that maps to an HTTP answer; thrown by routes, caught by the one handler. */
export class ApiError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly retryAfterSec?: number,
    readonly reason?: ErrorReason,
  ) {
    // An error passed on across an RPC keeps its "Error: " and gains another each time it is
    // quoted: "(Error: Error: injected fault: ...)" (a probe). One is enough.
    super(message.replace(/\b(Error: )(?:Error: )+/g, "$1"));
  }
  get status(): number {
    return errorStatus[this.code];
  }
}
