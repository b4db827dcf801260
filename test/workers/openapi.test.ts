// The route catalog (shared/api/routes.ts), from which /openapi.json is made, cannot drift from the
// Hono app: every route the app registers is in it, and every route in it is registered.
import { describe, expect, it } from "vitest";
import { routes } from "../../shared/api/routes.js";
import { app } from "../../workers/router.js";
import { api, clientToken, command, createGroup, expectError } from "./helpers.js";

/**
 * Catalog routes whose handlers are still being written ("GET /v1/groups/{group}/x"). The test
 * fails once one of them is registered, so it leaves this set and the check covers it from then on.
 */
const notYetRegistered = new Set<string>();

/** Hono's /v1/groups/:group form as OpenAPI's /v1/groups/{group}. */
const openApiPath = (path: string) => path.replace(/:(\w+)/g, "{$1}").replace(/(.)\/$/, "$1");

function registered(): Set<string> {
  // Middleware (app.use) registers method ALL; routes have a method.
  return new Set(app.routes.filter((r) => r.method !== "ALL").map((r) => `${r.method} ${openApiPath(r.path)}`));
}

const catalog = routes.filter((r) => !r.asset).map((r) => `${r.method.toUpperCase()} ${r.path}`);

describe("the route catalog and the Hono app", () => {
  it("has every route the app registers", () => {
    expect(registered()).toContain("POST /v1/groups/{group}/commands");
    const missing = [...registered()].filter((r) => !catalog.includes(r));
    expect(missing).toEqual([]);
  });

  it("registers every catalog route, except the known few still being added", () => {
    const app = registered();
    expect(catalog.filter((r) => !app.has(r) && !notYetRegistered.has(r))).toEqual([]);
    // Once one of them is registered, it must leave notYetRegistered (and be checked above).
    expect([...notYetRegistered].filter((r) => app.has(r))).toEqual([]);
    expect([...notYetRegistered].filter((r) => !catalog.includes(r))).toEqual([]);
  });

  it("leaves the pages served as static assets to the platform, not the app", () => {
    const pages = routes.filter((r) => r.asset).map((r) => `${r.method.toUpperCase()} ${r.path}`);
    expect(pages.length).toBeGreaterThan(0);
    expect(pages.filter((r) => registered().has(r))).toEqual([]);
  });

  it("lists each method and path once", () => {
    const all = routes.map((r) => `${r.method} ${r.path}`);
    expect(new Set(all).size).toBe(all.length);
    expect(new Set(routes.map((r) => r.id)).size).toBe(routes.length);
  });
});

describe("the catalog's auth and the router's", () => {
  /** A concrete path for a catalog path: a group that does not exist, r2, a token id. */
  const concrete = (path: string) => path.replace("{group}", "no-such-group").replace("{id}", path.includes("/tokens/") ? "0123abcd" : "r2");

  it("answers 403 to a client token on every admin route, and never on a client route", async () => {
    for (const route of routes.filter((r) => r.auth !== "none" && !r.asset)) {
      const r = await api(route.method.toUpperCase(), concrete(route.path), route.method === "get" || route.method === "delete" ? undefined : {}, clientToken);
      if (route.auth === "admin") expect(`${route.id} ${r.status}`).toBe(`${route.id} 403`);
      else expect(`${route.id} ${r.status}`).not.toBe(`${route.id} 403`);
    }
  });
});

describe("GET /openapi.json", () => {
  it("answers the document without a token", async () => {
    const r = await api("GET", "/openapi.json", undefined, null);
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toMatch(/^application\/json/);
    expect(r.body.openapi).toBe("3.1.0");
    for (const route of routes) expect(r.body.paths[route.path]?.[route.method]?.operationId).toBe(route.id);
  });
});

describe("the served document against what the router answers", () => {
  const served = async () => (await api("GET", "/openapi.json", undefined, null)).body;

  it("documents the 409 a corrupt fault on a replica with no stored state rows answers (it listed none)", async () => {
    await createGroup("openapi-corrupt");
    expectError(await api("POST", "/v1/groups/openapi-corrupt/faults", { target: "r1", fault: "corrupt" }), 409, "conflict", /no stored state rows/);
    const answer = (await served()).paths["/v1/groups/{group}/faults"].post.responses["409"];
    expect(answer).toBeDefined();
    expect(answer.content["application/json"].schema.allOf[1].properties.error.properties.code.enum).toEqual(["conflict"]);
  });

  it("bounds bank's balance (>= 0) and amount (> 0) as the router does (its refinements were not in the document)", async () => {
    await createGroup("openapi-bank", { machine: "bank" });
    expectError(await command("openapi-bank", { op: "open", account: "a", balance: -1 }), 400, "bad_request", /^body\.command\.balance: must be >= 0$/);
    expectError(await command("openapi-bank", { op: "transfer", from: "a", to: "b", amount: 0 }), 400, "bad_request", /^body\.command\.amount: must be > 0$/);
    const bank = (await served()).components.schemas.MachineCommand.anyOf.find((s: any) => s.title === "bank command").oneOf;
    const field = (op: string, name: string) => bank.find((s: any) => s.properties.op.const === op).properties[name];
    expect(field("open", "balance")).toMatchObject({ type: "integer", minimum: 0 });
    expect(field("transfer", "amount")).toMatchObject({ type: "integer", exclusiveMinimum: 0 });
  });
});
