// The OpenAPI document against the contract: every route of API.md's route list is in it, with the
// contract's auth, status and query parameters; its schemas are valid JSON Schema 2020-12 and say
// what the router accepts; the pages it lists as static assets exist in public/.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import { describe, expect, it } from "vitest";
import { validateCommand, validateQuery } from "../../shared/api/commands.js";
import { buildDocument } from "../../shared/api/openapi.js";
import { routes } from "../../shared/api/routes.js";
import { createGroupBody } from "../../shared/api/schemas.js";
import { keyBytesMax } from "../../shared/limits.js";
import { machineNames, machines } from "../../shared/machines/index.js";
import { utf8Length } from "../../shared/text.js";
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
    // A membership change ordered but not committed in time is a 504 (workers/sequencer.ts changeRefused): a probe found it missing.
    expect(doc.paths["/v1/groups/{group}/replicas"]!.post.responses["504"].description).toMatch(/^timeout/);
    expect(doc.paths["/v1/groups/{group}/replicas/{id}"]!.delete.responses["504"].description).toMatch(/^timeout/);
    // Each 504 says what it means there: a command's is retried with its client and request, which
    // a read and a membership change have not (the query's said so: a probe).
    expect(answers["504"].description).toMatch(/same client and request/);
    expect(doc.paths["/v1/groups/{group}/query"]!.post.responses["504"].description).toMatch(/^timeout: no answer in time .*a read changes nothing: retry it$/);
    expect(doc.paths["/v1/groups/{group}/replicas"]!.post.responses["504"].description).toMatch(/look at the group's replicas before trying it again/);
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

/**
 * The document's request schemas against the router's own checks, on the same inputs: what one
 * accepts the other must. Refinements (zod's .refine) do not reach the JSON Schema, and the
 * document accepted a bank balance of -1, a transfer of 0 and a kv key of 600 characters, each a
 * 400 (a QA probe). The one gap JSON Schema leaves: a length in UTF-8 bytes (kv keys), where the
 * document gives a sound bound in characters and says the rest in words.
 */
describe("the document's request schemas refuse what the router refuses", () => {
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  ajv.addSchema(doc, "doc");
  const accepts = (pointer: string) => {
    const validate = ajv.compile({ $ref: `doc#${pointer}` });
    return (value: unknown) => validate(value) as boolean;
  };
  const machineSchema = (kind: "MachineCommand" | "MachineQuery", name: string) => accepts(`/components/schemas/${kind}/anyOf/${machineNames.indexOf(name as never)}`);

  const numbers = [-(2 ** 53), -(2 ** 53 - 1), -5, -1, -0.5, 0, 0.5, 1, 2, 300, 3_600_000, 3_600_001, 2 ** 53 - 1, 2 ** 53, 1e300, "1", null];
  const strings = ["", "a", "x".repeat(128), "x".repeat(129), "x".repeat(256), "x".repeat(257), "x".repeat(512), "x".repeat(513), "é".repeat(256), "é".repeat(257), "é".repeat(400), "😀".repeat(128), "😀".repeat(129), 7, null];
  const commands: Record<string, unknown[]> = { kv: [], bank: [], lock: [] };
  const queries: Record<string, unknown[]> = { kv: [], bank: [{ op: "balances" }, { op: "balances", x: 1 }], lock: [] };
  for (const n of numbers) {
    commands.bank!.push({ op: "open", account: "a", balance: n }, { op: "transfer", from: "a", to: "b", amount: n });
    commands.kv!.push({ op: "incr", key: "k", by: n }, { op: "txn", success: [{ op: "incr", key: "k", by: n }] });
    commands.lock!.push({ op: "acquire", lock: "l", owner: "o", ttlMs: n }, { op: "renew", lock: "l", owner: "o", token: n, ttlMs: 5 }, { op: "release", lock: "l", owner: "o", token: n });
    queries.kv!.push({ op: "list", limit: n });
  }
  for (const s of strings) {
    commands.bank!.push({ op: "open", account: s, balance: 1 }, { op: "transfer", from: "a", to: s, amount: 1 });
    commands.kv!.push({ op: "put", key: s, value: 1 }, { op: "get", key: s }, { op: "delete", key: s }, { op: "cas", key: s, expected: null, value: 1 }, { op: "incr", key: s, by: 1 });
    commands.kv!.push({ op: "txn", compare: [{ key: s, value: null }] }, { op: "txn", failure: [{ op: "put", key: s, value: [1] }] });
    commands.lock!.push({ op: "acquire", lock: s, owner: "o", ttlMs: 5 }, { op: "release", lock: "l", owner: s, token: 1 });
    queries.kv!.push({ op: "get", key: s }, { op: "list", prefix: s }, { op: "list", after: s });
    queries.lock!.push({ op: "get", lock: s }, { op: "list", prefix: s }, { op: "list", after: s });
  }
  /** Whether a value holds a string over keyBytesMax in UTF-8 bytes but not in characters. */
  const bytesOnly = (v: unknown): boolean =>
    typeof v === "string" ? [...v].length <= keyBytesMax && utf8Length(v) > keyBytesMax : typeof v === "object" && v !== null && Object.values(v).some(bytesOnly);

  it("kv, bank and lock commands and queries: the document accepts exactly what validation does", () => {
    for (const name of machineNames) {
      const command = machineSchema("MachineCommand", name);
      for (const c of commands[name] ?? []) {
        const router = validateCommand(machines[name]!, c);
        // A key over 512 bytes in fewer characters: the one refusal the document can only describe.
        const expected = router.ok || (name === "kv" && bytesOnly(c));
        expect(command(c), `${name} ${JSON.stringify(c).slice(0, 100)}: ${router.ok ? "accepted" : router.message}`).toBe(expected);
      }
      const query = machineSchema("MachineQuery", name);
      for (const q of queries[name] ?? []) {
        const router = validateQuery(machines[name]!, q);
        const expected = router.ok || (name === "kv" && bytesOnly(q));
        expect(query(q), `${name} query ${JSON.stringify(q).slice(0, 100)}: ${router.ok ? "accepted" : router.message}`).toBe(expected);
      }
    }
  });

  it("bank: a balance >= 0 and an amount > 0, as API.md writes them (int>=0, int>0)", () => {
    const path = "/v1/groups/demo/commands";
    const problems = (command: unknown) => spec.requestProblems("POST", path, { client: "c", request: 1, command });
    expect(problems({ op: "open", account: "a", balance: 0 })).toEqual([]);
    expect(problems({ op: "open", account: "a", balance: -1 })).not.toEqual([]);
    expect(problems({ op: "transfer", from: "a", to: "b", amount: 1 })).toEqual([]);
    expect(problems({ op: "transfer", from: "a", to: "b", amount: 0 })).not.toEqual([]);
    expect(problems({ op: "transfer", from: "a", to: "b", amount: -7 })).not.toEqual([]);
  });

  it("kv: a key has maxLength 512 and says its limit in bytes; a value says its 64 KiB limit (a 413)", () => {
    const put = (doc.components.schemas.MachineCommand as any).anyOf[machineNames.indexOf("kv")].oneOf.find((s: any) => s.properties.op.const === "put");
    expect(put.properties.key).toMatchObject({ type: "string", minLength: 1, maxLength: 512 });
    expect(put.properties.key.description).toMatch(/512 bytes/);
    expect(put.properties.value.description).toMatch(/65536 bytes .*413/);
  });

  it("a group's locations: one per replica (replicas given, or 3 by default)", () => {
    const body = accepts("/components/schemas/CreateGroupBody");
    const specs: unknown[] = [];
    for (const replicas of [undefined, 1, 2, 3, 5, 7, 8]) {
      for (const locations of [undefined, [], ["weur"], ["weur", null], [null, null, null], ["weur", "enam", "apac", "oc", "afr"], Array(7).fill(null), Array(8).fill(null)]) {
        specs.push({ machine: "kv", ...(replicas === undefined ? {} : { replicas }), ...(locations === undefined ? {} : { locations }) });
      }
    }
    for (const b of specs) expect(body(b), JSON.stringify(b)).toBe(createGroupBody.safeParse(b).success);
  });

  it("a corrupt fault targets a replica; the route's 409 (a replica with no stored state rows) is documented", () => {
    const path = "/v1/groups/demo/faults";
    expect(spec.requestProblems("POST", path, { target: "r1", fault: "corrupt" })).toEqual([]);
    expect(spec.requestProblems("POST", path, { target: "sequencer", fault: "corrupt" })).not.toEqual([]);
    expect(spec.requestProblems("POST", path, { target: "sequencer", fault: "slow", ms: 5 })).toEqual([]);
    expect(spec.responseProblems("POST", path, 409, { error: { code: "conflict", message: "replica r1 has no stored state rows to corrupt" } })).toEqual([]);
  });

  it("documents the statuses routes answer beyond their kind's: 503 unavailable where a group's lookup can finish a delete, 504 from a restore", () => {
    const unavailable = { error: { code: "unavailable", message: "group g is being deleted" } };
    for (const [method, path] of [["GET", "/v1/groups/demo/audits"], ["GET", "/v1/groups/demo/events"], ["POST", "/v1/groups/demo/tokens"], ["GET", "/v1/groups/demo/tokens"], ["DELETE", "/v1/groups/demo/tokens/0123abcd"]] as const) {
      expect(spec.responseProblems(method, path, 503, unavailable), `${method} ${path}`).toEqual([]);
    }
    expect(spec.responseProblems("POST", "/v1/groups/demo/restore", 504, { error: { code: "timeout", message: "m" } })).toEqual([]);
    // A delete naming another life of the group (`incarnation`): left out before (a probe).
    expect(spec.responseProblems("DELETE", "/v1/groups/demo", 409, { error: { code: "conflict", message: "m" } })).toEqual([]);
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

// A machine listed in shared/machines/index.ts is all docs/MACHINES.md asks of its author: what
// the API says of machines follows from the list too.
describe("what the OpenAPI document says of the listed machines", () => {
  it("storageQuotaMiB names, for each listed machine, the commands that still go at the quota (goesAtQuota), not a list written by hand", () => {
    const doc = buildDocument() as { components: { schemas: Record<string, { properties: Record<string, { description?: string }> }> } };
    const said = doc.components.schemas.CreateGroupBody!.properties.storageQuotaMiB!.description!;
    for (const [name, m] of Object.entries(machines)) {
      // A machine without goesAtQuota has no command that goes (bank): said so, not left out.
      expect(said, name).toContain(m.goesAtQuota ? `${name}: ${m.goesAtQuota.commands}` : `${name}: none`);
    }
  });
});
