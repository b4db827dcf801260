// Against the built worker under Miniflare (with wrangler.toml's static assets): /openapi.json and
// /docs answer without a token and load nothing from another origin, and every request of the
// README walkthrough and every answer to it validate against the served document.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Doc, OpenApi } from "../support/openapi.js";
import { root, startServer, type Server } from "../support/server.js";

const adminToken = "e2e-admin";
const clientToken = "e2e-client";
let server: Server;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "smr-openapi-"));
  server = await startServer({ adminToken, clientTokens: [clientToken], persistDir: join(dir, "persist") });
});

afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Absolute URLs: a page that has none cannot load anything from another origin. */
const absoluteUrl = /https?:\/\//i;

describe("the API's description, served", () => {
  it("answers /openapi.json without a token", async () => {
    const res = await fetch(`${server.url}/openapi.json`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    const text = await res.text();
    expect(JSON.parse(text).openapi).toBe("3.1.0");
    expect(text).not.toMatch(absoluteUrl);
  });

  it("answers /docs without a token, with assets only from this origin", async () => {
    const res = await fetch(`${server.url}/docs`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    const html = await res.text();
    expect(html).not.toMatch(absoluteUrl);
    const assets = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(assets).toEqual(expect.arrayContaining(["/docs.js", "/docs.css"]));
    for (const asset of assets) {
      const r = await fetch(new URL(asset, `${server.url}/docs`));
      expect(r.status, asset).toBe(200);
      expect(await r.text(), asset).not.toMatch(absoluteUrl);
    }
  });

  it("still answers the API and /healthz beside the static assets", async () => {
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${server.url}/v1/groups`)).status).toBe(401);
    const r = await fetch(`${server.url}/v1/groups`, { headers: { authorization: `Bearer ${adminToken}` } });
    expect(r.status).toBe(200);
  });
});

interface Call {
  method: string;
  path: string;
  /** A JSON body (-d), or a file sent as it is (--data-binary @file). */
  body: unknown;
  file: boolean;
  status: number;
  type: string;
  answer: string;
}

function walkthroughScript(): string {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const m = /<!-- walkthrough:start -->\s*```bash\n([\s\S]*?)```\s*<!-- walkthrough:end -->/.exec(readme);
  if (!m) throw new Error("README has no walkthrough block");
  return m[1]!;
}

/**
 * Runs the walkthrough with curl wrapped to record each call's arguments, status, media type and
 * answer (into the call's own -o file if it names one). The count is kept in a file: a curl in a
 * pipeline runs in a subshell.
 */
function replayWalkthrough(): Call[] {
  writeFileSync(join(dir, ".dev.vars"), `ADMIN_TOKEN=${adminToken}\nCLIENT_TOKENS=${clientToken}\n`);
  const log = join(dir, "calls");
  const wrapper = `set -euo pipefail
curl() {
  local n=$(( $(cat "${log}.count" 2>/dev/null || echo 0) + 1 )) out="" prev="" a
  echo $n > "${log}.count"
  printf '%s\\0' "$@" > "${log}.$n.args"
  for a in "$@"; do [ "$prev" = "-o" ] && out="$a"; prev="$a"; done
  if [ -z "$out" ]; then out="${log}.$n.answer"; set -- -o "$out" "$@"; fi
  printf '%s' "$out" > "${log}.$n.out"
  command curl -w '%{http_code} %{content_type}' "$@" > "${log}.$n.status"
}
`;
  execFileSync("bash", ["-c", wrapper + walkthroughScript()], { cwd: dir, env: { ...process.env, URL: server.url }, encoding: "utf8" });
  const count = Number(readFileSync(`${log}.count`, "utf8"));
  return Array.from({ length: count }, (_, i) => {
    const at = (name: string) => readFileSync(`${log}.${i + 1}.${name}`, "utf8");
    const args = at("args").split("\0").slice(0, -1);
    const after = (flag: string) => {
      const k = args.indexOf(flag);
      return k >= 0 ? args[k + 1] : undefined;
    };
    const url = new URL(args.find((a) => a.startsWith("http"))!);
    const data = after("-d");
    const binary = after("--data-binary");
    const [status, ...type] = at("status").split(" ");
    return {
      method: after("-X") ?? (data === undefined && binary === undefined ? "GET" : "POST"),
      path: url.pathname,
      body: data === undefined ? undefined : JSON.parse(data),
      file: binary !== undefined,
      status: Number(status),
      type: type.join(" "),
      answer: readFileSync(resolve(dir, at("out")), "utf8"),
    };
  });
}

describe("the README walkthrough against the served document", () => {
  it("sends only requests the document allows and gets only answers it describes", async () => {
    const spec = new OpenApi((await (await fetch(`${server.url}/openapi.json`)).json()) as Doc);
    const calls = replayWalkthrough();
    expect(calls).toHaveLength(walkthroughScript().match(/^curl /gm)!.length);
    for (const c of calls) {
      const what = `${c.method} ${c.path}`;
      expect(c.status, what).toBeGreaterThanOrEqual(200);
      expect(c.status, what).toBeLessThan(300);
      const op = spec.operation(c.method, c.path);
      expect(op, what).not.toBeNull();
      if (c.file) expect(Object.keys(op!.op.requestBody.content), `${what} takes a file`).not.toContain("application/json");
      else expect(spec.requestProblems(c.method, c.path, c.body), `${what} request`).toEqual([]);
      expect(spec.answerProblems(c.method, c.path, c.status, c.type, c.answer), `${what} answer`).toEqual([]);
    }
    // The walkthrough's streams were read and checked too.
    expect(calls.find((c) => c.type.startsWith("text/event-stream"))?.answer).toMatch(/^data: \{/m);
    expect(calls.find((c) => c.type.startsWith("application/x-ndjson"))?.answer).toMatch(/^\{"group"/);
  });

  it("would catch an answer the document does not describe", async () => {
    const spec = new OpenApi((await (await fetch(`${server.url}/openapi.json`)).json()) as Doc);
    expect(spec.responseProblems("POST", "/v1/groups/demo/commands", 200, { seq: 1, output: null })).not.toEqual([]);
    expect(spec.responseProblems("GET", "/v1/groups/demo", 200, { group: "demo" })).not.toEqual([]);
    expect(spec.requestProblems("POST", "/v1/groups/demo/query", { query: { op: "get", key: "k" }, consistency: "eventual" })).not.toEqual([]);
    expect(spec.answerProblems("GET", "/v1/groups/demo/snapshot", 200, "application/x-ndjson", '{"group":"demo"}\n')).not.toEqual([]);
    expect(spec.answerProblems("GET", "/v1/groups/demo/watch", 200, "text/event-stream", 'id: 1\nevent: entry\ndata: {"seq":1}\n\n')).not.toEqual([]);
    expect(spec.answerProblems("GET", "/v1/groups/demo", 200, "text/html", "<p>")).not.toEqual([]);
  });
});

interface Exchange {
  status: number;
  type: string;
  body: any;
}

/** Sends requests and checks each, and each answer, against the document; remembers which operations it used. */
class Tour {
  readonly problems: string[] = [];
  readonly used = new Set<string>();

  constructor(private readonly spec: OpenApi) {}

  private note(method: string, path: string) {
    const found = this.spec.operation(method, path);
    if (found) this.used.add(`${method.toLowerCase()} ${found.template}`);
  }

  /** `malformed`: a request the router refuses, which the document must refuse too. */
  async call(method: string, path: string, body?: unknown, token: string | null = adminToken, malformed = false): Promise<Exchange> {
    const bare = path.split("?")[0]!;
    this.note(method, bare);
    const refused = this.spec.requestProblems(method, bare, body);
    if (malformed && refused.length === 0) this.problems.push(`${method} ${path} request: the document allows ${JSON.stringify(body)}`);
    if (!malformed) this.problems.push(...refused.map((p) => `${method} ${path} request: ${p}`));
    const res = await fetch(server.url + path, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body === undefined ? {} : { "content-type": "application/json" }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const type = res.headers.get("content-type") ?? "";
    const text = await res.text();
    this.problems.push(...this.spec.answerProblems(method, bare, res.status, type, text).map((p) => `${method} ${path} ${res.status}: ${p}`));
    return { status: res.status, type, body: type.startsWith("application/json") ? JSON.parse(text) : text === "" ? undefined : text };
  }

  /** A stream's answer: its lines, each part checked against the document by `check`. */
  parts(method: string, path: string, status: number, part: string, value: unknown) {
    this.problems.push(...this.spec.partProblems(method, path, status, part, value).map((p) => `${method} ${path} ${part}: ${p}`));
  }
}

/** The first `entry` event's data of a watch, then the stream is dropped. */
async function firstWatchEvent(path: string): Promise<unknown> {
  const abort = new AbortController();
  const res = await fetch(server.url + path, { headers: { authorization: `Bearer ${clientToken}` }, signal: abort.signal });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`watch ended before an entry: ${text}`);
      text += value;
      const m = /event: entry\ndata: (.*)\n/.exec(text);
      if (m) return JSON.parse(m[1]!);
    }
  } finally {
    abort.abort();
  }
}

describe("every route against the served document", () => {
  it("answers each request with a status and a body the document describes", async () => {
    const spec = new OpenApi((await (await fetch(`${server.url}/openapi.json`)).json()) as Doc);
    const t = new Tour(spec);
    const g = "/v1/groups/tour";

    await t.call("GET", "/healthz", undefined, null);
    await t.call("GET", "/openapi.json", undefined, null);
    expect((await t.call("PUT", g, { machine: "kv", replicas: 3 })).status).toBe(201);
    expect((await t.call("PUT", g, { machine: "kv", replicas: 3 })).status).toBe(200);
    expect((await t.call("PUT", g, { machine: "bank", replicas: 3 })).status).toBe(409);
    expect((await t.call("GET", "/v1/groups?limit=10")).status).toBe(200);
    expect((await t.call("GET", g, undefined, clientToken)).status).toBe(200);

    // Writes: one command, a batch, a transaction; reads at each consistency.
    const put = await t.call("POST", `${g}/commands`, { client: "tour", request: 1, command: { op: "put", key: "a", value: { n: 1 } } }, clientToken);
    expect(put.status).toBe(200);
    const batch = { client: "tour", commands: [{ request: 2, command: { op: "incr", key: "n", by: 2 } }, { request: 3, command: { op: "delete", key: "gone" } }] };
    expect((await t.call("POST", `${g}/commands`, batch, clientToken)).body.results).toHaveLength(2);
    const txn = { op: "txn", compare: [{ key: "a", value: { n: 1 } }], success: [{ op: "put", key: "b", value: "yes" }], failure: [] };
    expect((await t.call("POST", `${g}/commands`, { client: "tour", request: 4, command: txn }, clientToken)).body.output).toMatchObject({ succeeded: true });
    expect((await t.call("POST", `${g}/commands`, { client: "tour", request: 4, command: { op: "get", key: "a" } }, clientToken)).status).toBe(409);
    expect((await t.call("POST", `${g}/commands`, { client: "tour", request: 5, command: { op: "fly" } }, clientToken, true)).status).toBe(400);
    for (const consistency of ["linearizable", "sequential", "stale"]) {
      expect((await t.call("POST", `${g}/query`, { query: { op: "list" }, consistency, bookmark: put.body.bookmark }, clientToken)).status).toBe(200);
    }
    expect((await t.call("GET", `${g}/log?from=1&limit=10`)).status).toBe(200);

    // The watch and the snapshot stream their parts; a snapshot restores into a new group.
    t.parts("GET", `${g}/watch`, 200, "data", await firstWatchEvent(`${g}/watch?from=0`));
    t.used.add("get /v1/groups/{group}/watch");
    const snapshot = await t.call("GET", `${g}/snapshot`);
    expect(snapshot.status).toBe(200);
    const [header, ...rows] = (snapshot.body as string).trim().split("\n").map((l) => JSON.parse(l));
    expect(rows.length).toBe(header.rows);
    expect((await t.call("PUT", "/v1/groups/tour-copy", { machine: "kv", replicas: 1 })).status).toBe(201);
    const restore = await fetch(`${server.url}/v1/groups/tour-copy/restore`, { method: "POST", headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/x-ndjson" }, body: snapshot.body });
    t.used.add("post /v1/groups/{group}/restore");
    expect(restore.status).toBe(200);
    expect(spec.responseProblems("POST", "/v1/groups/tour-copy/restore", 200, await restore.json())).toEqual([]);
    // Its history holds the restore (a `recovery` event, action `restore`), which the document describes.
    const restoredEvents = await t.call("GET", "/v1/groups/tour-copy/events?limit=5", undefined, clientToken);
    expect(restoredEvents.body.events.map((e: { kind: string; action?: string }) => `${e.kind}/${e.action}`)).toContain("recovery/restore");

    // Members, the sequencer, audits and events.
    expect((await t.call("GET", `${g}/replicas`, undefined, clientToken)).status).toBe(200);
    const added = await t.call("POST", `${g}/replicas`, {});
    expect(added.status).toBe(202);
    await t.call("POST", `${g}/replicas/r1/repair`);
    await t.call("POST", `${g}/replicas/r1/release`, {});
    expect((await t.call("DELETE", `${g}/replicas/${added.body.replica.id}`)).status).toBe(202);
    expect((await t.call("POST", `${g}/quota`, { storageQuotaMiB: 1024 })).status).toBe(200);
    expect((await t.call("POST", `${g}/sequencer`, {})).status).toBe(202);
    expect((await t.call("POST", `${g}/audit`)).status).toBe(200);
    expect((await t.call("GET", `${g}/audits?limit=5`, undefined, clientToken)).status).toBe(200);
    expect((await t.call("GET", `${g}/events?limit=5`, undefined, clientToken)).body.events.length).toBeGreaterThan(0);

    // Tokens, metrics, and the errors every route shares.
    const token = await t.call("POST", `${g}/tokens`, { scope: "read", name: "tour" });
    expect(token.status).toBe(201);
    expect((await t.call("GET", `${g}/tokens`)).status).toBe(200);
    expect((await t.call("POST", `${g}/commands`, { client: "tour", request: 9, command: { op: "get", key: "a" } }, token.body.token)).status).toBe(403);
    expect((await t.call("DELETE", `${g}/tokens/${token.body.id}`)).status).toBe(204);
    expect((await t.call("GET", `/v1/metrics?group=tour`)).status).toBe(200);
    expect((await t.call("GET", `/v1/metrics?group=tour`, undefined, clientToken)).status).toBe(403);
    expect((await t.call("GET", g, undefined, null)).status).toBe(401);
    expect((await t.call("GET", "/v1/groups/Bad_Name")).status).toBe(400);
    expect((await t.call("GET", "/v1/groups/nowhere")).status).toBe(404);
    expect((await t.call("DELETE", g)).status).toBe(204);
    expect((await t.call("DELETE", "/v1/groups/tour-copy")).status).toBe(204);

    expect(t.problems).toEqual([]);
    // Every operation was used, but the test-only faults (needs ALLOW_FAULTS) and the pages.
    const unused = Object.entries(spec.doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m} ${path}`)).filter((op) => !t.used.has(op));
    expect(unused.sort()).toEqual(["get /dashboard", "get /docs", "post /v1/groups/{group}/faults"]);
  });
});
