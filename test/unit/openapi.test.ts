// The OpenAPI document against the contract: every route of API.md's route list is in it, with the
// contract's auth, status and query parameters; its schemas are valid JSON Schema 2020-12 and say
// what the router accepts; the pages it lists as static assets exist in public/.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import { describe, expect, it } from "vitest";
import { buildDocument } from "../../shared/api/openapi.js";
import { routes } from "../../shared/api/routes.js";
import { machineNames } from "../../shared/machines/index.js";
import { type Doc, OpenApi, contractRoutes } from "../support/openapi.js";
import { root } from "../support/server.js";

const doc = buildDocument() as Doc;
const spec = new OpenApi(doc);

/** Pages catalogued before their files exist ("GET /x"): the test fails once the file exists, so it leaves this set. */
const assetsNotYetAdded = new Set<string>();

describe("the OpenAPI document and API.md", () => {
  const contract = contractRoutes();

  it("reads API.md's route list", () => {
    expect(contract.length).toBeGreaterThanOrEqual(25);
    expect(contract).toContainEqual({ method: "get", path: "/v1/groups", query: ["after", "limit"], auth: "admin", status: 200 });
  });

  it("has every route of API.md, with its auth, status and query parameters", () => {
    for (const r of contract) {
      const op = doc.paths[r.path]?.[r.method];
      expect(op, `${r.method} ${r.path}`).toBeDefined();
      expect(op["x-auth"], `${r.method} ${r.path} auth`).toBe(r.auth);
      expect(op.security.length === 0, `${r.method} ${r.path} security`).toBe(r.auth === "none");
      expect(Object.keys(op.responses), `${r.method} ${r.path} answers`).toContain(String(r.status));
      const query = op.parameters.filter((p: any) => p.in === "query").map((p: any) => p.name);
      for (const q of r.query) expect(query, `${r.method} ${r.path} ?${q}`).toContain(q);
    }
  });

  it("says a query's 413 may be its answer's size, not the body's (bank balances past 16 MiB, e665736)", () => {
    const op = doc.paths["/v1/groups/{group}/query"]!.post;
    expect(Object.keys(op.responses)).toContain("413");
    expect(op.description).toMatch(/answer .*413 `too_large`/);
  });

  it("documents each route's errors with the codes of errors.ts for its status", () => {
    const answers = doc.paths["/v1/groups/{group}/commands"]!.post.responses;
    expect(answers["503"].description).toMatch(/unavailable/);
    expect(answers["503"].description).toMatch(/not_configured/);
    expect(answers["504"].description).toMatch(/^timeout/);
    expect(answers["503"].headers["Retry-After"]).toBeDefined();
    expect(doc.paths["/healthz"]!.get.responses["401"]).toBeUndefined();
  });
});

describe("the document's schemas", () => {
  it("are valid JSON Schema 2020-12", () => {
    const ajv = new Ajv2020({ strict: true });
    for (const [name, schema] of Object.entries(doc.components.schemas)) {
      expect(() => ajv.validateSchema(schema as object, true), name).not.toThrow();
    }
  });

  it("document a command as the union of every machine's commands", () => {
    const titles = (doc.components.schemas.MachineCommand as { anyOf: { title: string }[] }).anyOf.map((s) => s.title);
    expect(titles).toEqual(machineNames.map((m) => `${m} command`));
    const path = "/v1/groups/demo/commands";
    expect(spec.requestProblems("POST", path, { client: "c", request: 1, command: { op: "put", key: "k", value: { any: ["json"] } } })).toEqual([]);
    expect(spec.requestProblems("POST", path, { client: "c", request: 1, command: { op: "transfer", from: "a", to: "b", amount: 5 } })).toEqual([]);
    expect(spec.requestProblems("POST", path, { client: "c", commands: [{ request: 1, command: { op: "incr", key: "n", by: 1 } }] })).toEqual([]);
    expect(spec.requestProblems("POST", path, { client: "c", request: 1, command: { op: "fly" } })).not.toEqual([]);
    expect(spec.requestProblems("POST", path, { client: "c", request: 0, command: { op: "get", key: "k" } })).not.toEqual([]);
    expect(spec.requestProblems("POST", path, { client: "c", request: 1, command: { op: "get", key: "k" }, extra: 1 })).not.toEqual([]);
  });

  it("take a field with a default as optional in a request", () => {
    expect(spec.requestProblems("PUT", "/v1/groups/demo", { machine: "kv" })).toEqual([]);
    expect(spec.requestProblems("PUT", "/v1/groups/demo", { machine: "kv", replicas: 9 })).not.toEqual([]);
    expect(spec.requestProblems("PUT", "/v1/groups/demo", { replicas: 3 })).not.toEqual([]);
  });

  it("check an error body's code against its status", () => {
    const path = "/v1/groups/demo/query";
    expect(spec.responseProblems("POST", path, 503, { error: { code: "unavailable", message: "m" } })).toEqual([]);
    expect(spec.responseProblems("POST", path, 503, { error: { code: "timeout", message: "m" } })).not.toEqual([]);
    expect(spec.responseProblems("POST", path, 504, { error: { code: "timeout", message: "m" } })).toEqual([]);
  });
});

describe("the reference page's renderer (public/docs.js)", () => {
  // A path computed at run time: the page's plain-JS module, not part of the typed build.
  const load = async (): Promise<{ render(doc: unknown): { toc: string; main: string } }> => import(join(root, "public", "docs.js"));

  it("shows every route and every named schema, each link to a schema landing on it", async () => {
    const { toc, main } = (await load()).render(doc);
    for (const route of routes) {
      expect(main, route.id).toContain(`id="op-${route.id}"`);
      expect(toc, route.id).toContain(`href="#op-${route.id}"`);
      expect(main, route.id).toContain(route.path.replace(/&/g, "&amp;"));
    }
    for (const name of Object.keys(doc.components.schemas)) expect(main, name).toContain(`id="schema-${name}"`);
    const targets = new Set([...main.matchAll(/ id="([^"]+)"/g)].map((m) => m[1]));
    const links = [...`${toc}${main}`.matchAll(/href="#([^"]+)"/g)].map((m) => m[1]);
    expect(links.filter((l) => !targets.has(l))).toEqual([]);
    expect(main).not.toMatch(/undefined|\[object Object\]/);
  });

  it("escapes the document's text", async () => {
    const hostile = { openapi: "3.1.0", info: { title: "<b>x</b>", version: "1" }, paths: { "/a": { get: { operationId: "a", summary: "<img src=x onerror=alert(1)>", responses: {} } } } };
    const { main } = (await load()).render(hostile);
    expect(main).not.toContain("<img");
    expect(main).not.toContain("<b>x");
    expect(main).toContain("&lt;img src=x onerror=alert(1)&gt;");
  });
});

describe("the pages served as static assets", () => {
  it("exist in public/, except the known few still being added", () => {
    const pages = routes.filter((r) => r.asset);
    const missing = pages.filter((r) => !existsSync(join(root, "public", r.asset!))).map((r) => `${r.method.toUpperCase()} ${r.path}`);
    expect(missing.filter((r) => !assetsNotYetAdded.has(r))).toEqual([]);
    // Once a page is added, it must leave assetsNotYetAdded (and be checked above).
    expect([...assetsNotYetAdded].filter((r) => !missing.includes(r))).toEqual([]);
  });
});
