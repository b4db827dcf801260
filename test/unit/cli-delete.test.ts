// `smr groups delete`: the server's 503 while an object cannot be reached advises "DELETE with
// ?force=1", HTTP a CLI user does not type (a probe); the CLI names its own flag.
import { describe, expect, it } from "vitest";
import { ApiRequestError } from "edge-smr/client";
import { withCliAdvice } from "../../cli/groups.js";

describe("smr groups delete's advice", () => {
  it("names --force where the server names ?force=1, keeping the status, code and Retry-After", () => {
    const server = new ApiRequestError(503, "unavailable", "group g is being deleted, but not every one of its objects can be reached yet (replica r2: x); a retry or the next request finishes the delete (DELETE with ?force=1 finishes it now, leaving the storage of those it cannot reach behind)", 1);
    const told = withCliAdvice(server, "g") as ApiRequestError;
    expect(told.message).toBe("503 unavailable: group g is being deleted, but not every one of its objects can be reached yet (replica r2: x); a retry or the next request finishes the delete (smr groups delete g --force finishes it now, leaving the storage of those it cannot reach behind)");
    expect([told.status, told.code, told.retryAfterSec]).toEqual([503, "unavailable", 1]);
  });
  it("names `smr replicas g` where a membership change's unknown outcome names GET /v1/groups/g/replicas, keeping the error itself (its unknown outcome)", () => {
    const unknown = new ApiRequestError(504, "timeout", "the sequencer of ee did not answer (x); the change may or may not take effect: see the group's replicas (GET /v1/groups/ee/replicas) before trying it again");
    unknown.outcomeUnknown = true;
    const told = withCliAdvice(unknown, "ee") as ApiRequestError;
    expect(told).toBe(unknown);
    expect(told.message).toBe("504 timeout: the sequencer of ee did not answer (x); the change may or may not take effect: see the group's replicas (smr replicas ee) before trying it again");
    expect(told.outcomeUnknown).toBe(true);
  });
  it("leaves any other error as it is", () => {
    const other = new ApiRequestError(404, "not_found", "group g does not exist");
    expect(withCliAdvice(other, "g")).toBe(other);
    const plain = new Error("x");
    expect(withCliAdvice(plain, "g")).toBe(plain);
  });
});
