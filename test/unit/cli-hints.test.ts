// The CLI's error line for a server that is not there, a token it does not know, or an answer
// that is not the API's: it said "ECONNREFUSED" or "unknown token" and nothing of the --url,
// SMR_URL or stale .dev.vars behind it (a probe).
import { describe, expect, it } from "vitest";
import { ApiRequestError } from "edge-smr/client";
import { targetHint } from "../../cli/context.js";

const target = { url: "http://localhost:8787", urlFrom: "default", token: "t", tokenFrom: "/p/.dev.vars (ADMIN_TOKEN)" };

describe("smr's hints after an error", () => {
  it("names the URL and where it came from when nothing answers there, and where the token came from on a 401", () => {
    const refused = new ApiRequestError(0, "network", "GET http://localhost:8787/v1/groups: TypeError: fetch failed (connect ECONNREFUSED 127.0.0.1:8787)");
    expect(targetHint(refused, target)).toBe("nothing answers at http://localhost:8787 (the default URL): is the server running? Pass --url or set SMR_URL (smr config shows what is used)");
    expect(targetHint(refused, { ...target, urlFrom: "SMR_URL" })).toMatch(/\(from SMR_URL\)/);
    expect(targetHint(new ApiRequestError(401, "unauthorized", "unknown token"), target)).toBe("the token came from /p/.dev.vars (ADMIN_TOKEN) (smr config shows what is used)");
    expect(targetHint(new ApiRequestError(200, "not_api", "not an answer of the API (text/html): login"), target)).toMatch(/^is http:\/\/localhost:8787 \(the default URL\) the API's address\?$/);
    // A command's unknown outcome after such a page still asks (it printed only the retry hint: a review).
    const unknown = Object.assign(new ApiRequestError(504, "timeout", "its outcome is unknown"), { outcomeUnknown: true, cause: new ApiRequestError(200, "not_api", "login") });
    expect(targetHint(unknown, target)).toMatch(/the API's address\?$/);
  });
  it("adds nothing to other errors", () => {
    expect(targetHint(new ApiRequestError(404, "not_found", "group g does not exist"), target)).toBe("");
    expect(targetHint(new ApiRequestError(0, "network", "GET x: no answer within 30000 ms"), target)).toBe("");
    expect(targetHint(new Error("x"), target)).toBe("");
  });
});

describe("smr's hint after another server's 5xx page", () => {
  it("says it may be the server's own failure", () => {
    const t = { url: "http://localhost:8787", urlFrom: "default", token: "t", tokenFrom: "x" };
    expect(targetHint(new ApiRequestError(500, "not_api", "not an answer of the API (text/html): Error 1101"), t)).toBe("is http://localhost:8787 (the default URL) the API's address? If it is, the server failed: see its log");
  });
});
