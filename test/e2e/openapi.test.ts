// Against the built worker under Miniflare (with wrangler.toml's static assets): /openapi.json and
// /docs answer without a token and load nothing from another origin, and every request of the
// README walkthrough and every answer to it validate against the served document.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
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
  body: unknown;
  status: number;
  answer: unknown;
}

function walkthroughScript(): string {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const m = /<!-- walkthrough:start -->\s*```bash\n([\s\S]*?)```\s*<!-- walkthrough:end -->/.exec(readme);
  if (!m) throw new Error("README has no walkthrough block");
  return m[1]!;
}

/** Runs the walkthrough with curl wrapped to record each call's arguments, status and answer. */
function replayWalkthrough(): Call[] {
  writeFileSync(join(dir, ".dev.vars"), `ADMIN_TOKEN=${adminToken}\nCLIENT_TOKENS=${clientToken}\n`);
  const log = join(dir, "calls");
  const wrapper = `set -euo pipefail
n=0
curl() {
  n=$((n + 1))
  printf '%s\\0' "$@" > "${log}.$n.args"
  command curl -o "${log}.$n.answer" -w '%{http_code}' "$@" > "${log}.$n.status"
}
`;
  execFileSync("bash", ["-c", wrapper + walkthroughScript() + `\necho $n > "${log}.count"`], { cwd: dir, env: { ...process.env, URL: server.url }, encoding: "utf8" });
  const count = Number(readFileSync(`${log}.count`, "utf8"));
  return Array.from({ length: count }, (_, i) => {
    const args = readFileSync(`${log}.${i + 1}.args`, "utf8").split("\0").slice(0, -1);
    const after = (flag: string) => {
      const at = args.indexOf(flag);
      return at >= 0 ? args[at + 1] : undefined;
    };
    const url = new URL(args.find((a) => a.startsWith("http"))!);
    const data = after("-d");
    const answer = readFileSync(`${log}.${i + 1}.answer`, "utf8");
    return {
      method: after("-X") ?? (data === undefined ? "GET" : "POST"),
      path: url.pathname,
      body: data === undefined ? undefined : JSON.parse(data),
      status: Number(readFileSync(`${log}.${i + 1}.status`, "utf8")),
      answer: answer === "" ? undefined : JSON.parse(answer),
    };
  });
}

describe("the README walkthrough against the served document", () => {
  it("sends only requests the document allows and gets only answers it describes", async () => {
    const spec = new OpenApi((await (await fetch(`${server.url}/openapi.json`)).json()) as Doc);
    const calls = replayWalkthrough();
    expect(calls.map((c) => `${c.method} ${c.status}`)).toEqual([
      "PUT 201",
      "POST 200",
      "POST 200",
      "POST 200",
      "POST 200",
      "POST 200",
      "GET 200",
      "GET 200",
      "POST 200",
      "GET 200",
      "DELETE 204",
    ]);
    for (const c of calls) {
      const what = `${c.method} ${c.path}`;
      expect(spec.operation(c.method, c.path), what).not.toBeNull();
      expect(spec.requestProblems(c.method, c.path, c.body), `${what} request`).toEqual([]);
      expect(spec.responseProblems(c.method, c.path, c.status, c.answer), `${what} answer`).toEqual([]);
    }
  });

  it("would catch an answer the document does not describe", async () => {
    const spec = new OpenApi((await (await fetch(`${server.url}/openapi.json`)).json()) as Doc);
    expect(spec.responseProblems("POST", "/v1/groups/demo/commands", 200, { seq: 1, output: null })).not.toEqual([]);
    expect(spec.responseProblems("GET", "/v1/groups/demo", 200, { group: "demo" })).not.toEqual([]);
    expect(spec.requestProblems("POST", "/v1/groups/demo/query", { query: { op: "get", key: "k" }, consistency: "eventual" })).not.toEqual([]);
  });
});
