// Browser pages on other origins (CORS_ORIGINS, workers/cors.ts): a preflight is answered without
// a token, and every answer, an error too, says which origin may read it. Without the var nothing
// changes. (A page on another origin could not call the API at all: a probe of the client.)
import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { app } from "../../workers/router.js";
import { corsOrigins } from "../../workers/cors.js";
import { adminToken, clientToken, createGroup } from "./helpers.js";

async function call(vars: Record<string, string>, method: string, path: string, headers: Record<string, string> = {}, body?: unknown): Promise<Response> {
  const ctx = createExecutionContext();
  const init: RequestInit = { method, headers: { ...headers, ...(body === undefined ? {} : { "content-type": "application/json" }) }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) };
  const res = await app.request(`http://smr.test${path}`, init, { ...env, ...vars }, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

const preflight = (origin: string) => ({ origin, "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type" });

describe("CORS", () => {
  it("answers a preflight from an allowed origin without a token, and none from another", async () => {
    const vars = { CORS_ORIGINS: "https://app.example, http://localhost:5173" };
    const ok = await call(vars, "OPTIONS", "/v1/groups/cors-a/query", preflight("https://app.example"));
    expect(ok.status).toBe(204);
    expect(ok.headers.get("access-control-allow-origin")).toBe("https://app.example");
    expect(ok.headers.get("access-control-allow-methods")).toBe("GET,HEAD,PUT,POST,DELETE");
    // Every header the client library sends (a watch's reconnect names the group's life it followed).
    const allowed = (ok.headers.get("access-control-allow-headers") ?? "").toLowerCase().split(",");
    for (const h of ["authorization", "content-type", "content-encoding", "last-event-id", "x-smr-incarnation", "x-smr-near"]) expect(allowed, h).toContain(h);
    expect(ok.headers.get("access-control-max-age")).toBe("600");
    expect(ok.headers.get("vary")).toMatch(/Origin/);
    const other = await call(vars, "OPTIONS", "/v1/groups/cors-a/query", preflight("https://evil.example"));
    expect(other.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("marks every answer for an allowed origin, an error too, and exposes the API's own headers", async () => {
    await createGroup("cors-b");
    const vars = { CORS_ORIGINS: "https://app.example" };
    const origin = { origin: "https://app.example" };
    const read = await call(vars, "POST", "/v1/groups/cors-b/query", { ...origin, authorization: `Bearer ${clientToken}` }, { query: { op: "get", key: "k" }, consistency: "stale" });
    expect(read.status).toBe(200);
    expect(read.headers.get("access-control-allow-origin")).toBe("https://app.example");
    expect(read.headers.get("access-control-expose-headers")).toContain("Retry-After");
    // A page must be able to read why it was refused.
    const refused = await call(vars, "GET", "/v1/groups/cors-b", origin);
    expect(refused.status).toBe(401);
    expect(refused.headers.get("access-control-allow-origin")).toBe("https://app.example");
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("unauthorized");
    const missing = await call(vars, "GET", "/v1/groups/cors-none", { ...origin, authorization: `Bearer ${adminToken}` });
    expect(missing.status).toBe(404);
    expect(missing.headers.get("access-control-allow-origin")).toBe("https://app.example");
  });

  it("without CORS_ORIGINS changes nothing: a preflight is refused like any request without a token", async () => {
    const res = await call({}, "OPTIONS", "/v1/groups/cors-a/query", preflight("https://app.example"));
    expect(res.status).toBe(401);
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
    const any = await call({ CORS_ORIGINS: "*" }, "OPTIONS", "/v1/groups/cors-a/query", preflight("https://anywhere.example"));
    expect([any.status, any.headers.get("access-control-allow-origin")]).toEqual([204, "*"]);
    // A request that names no Origin is no browser's: checked as any other (an OPTIONS was a 204 before the token's check: a review).
    const bare = await call({ CORS_ORIGINS: "*" }, "OPTIONS", "/v1/groups/cors-a/query");
    expect([bare.status, bare.headers.get("access-control-allow-origin")]).toEqual([401, null]);
  });

  it("takes an origin in any form a browser's Origin matches, and leaves out an entry that is not one (a path, a query, not http)", () => {
    // Upper case, a default port, a trailing slash: as browsers send them (they were left out: a probe).
    expect(corsOrigins(" https://a.example ,https://B.example/,HTTP://c.example:80,ftp://d.example, https://e.example/app,https://f.example?x,*")).toEqual({
      any: true,
      origins: ["https://a.example", "https://b.example", "http://c.example"],
      bad: ["ftp://d.example", "https://e.example/app", "https://f.example?x"],
    });
  });
});
