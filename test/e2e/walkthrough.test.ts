// The README's curl walkthrough, run for real against the built worker under Miniflare.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SmrClient } from "../../shared/client/index.js";
import { root, startServer, type Server } from "../support/server.js";

const adminToken = "e2e-admin";
const clientToken = "e2e-client";
let server: Server;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "smr-e2e-"));
  server = await startServer({ adminToken, clientTokens: [clientToken, "e2e-other"], persistDir: join(dir, "persist") });
});

afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

function walkthroughScript(): string {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const m = /<!-- walkthrough:start -->\s*```bash\n([\s\S]*?)```\s*<!-- walkthrough:end -->/.exec(readme);
  if (!m) throw new Error("README has no walkthrough block");
  return m[1]!;
}

describe("README walkthrough over HTTP", () => {
  it("runs every curl step of the README successfully with the documented answers", () => {
    writeFileSync(join(dir, ".dev.vars"), `ADMIN_TOKEN=${adminToken}\nCLIENT_TOKENS=${clientToken},e2e-other\n`);
    // One JSON answer per line: a newline after every curl's body.
    const script = "set -euo pipefail\ncurl() { command curl -w '\\n' \"$@\"; }\n" + walkthroughScript();
    const out = execFileSync("bash", ["-c", script], { cwd: dir, env: { ...process.env, URL: server.url }, encoding: "utf8" });
    // One JSON answer per line; a watch event's line is "data: <json>".
    const lines = out.split("\n").filter((l) => l.trim().length > 0).map((l) => JSON.parse(l.replace(/^data: /, "")));
    const [created, put, incr, retry, get, stale, status, log, audit, audits] = lines;
    expect(created).toMatchObject({ group: "demo", machine: "kv", replicas: [{ id: "r1" }, { id: "r2" }, { id: "r3" }] });
    expect(put).toMatchObject({ seq: 1, output: { previous: null } });
    expect(incr).toMatchObject({ seq: 2, output: { value: 1 } });
    expect(retry).toEqual({ ...incr, replayed: true }); // an extra field: the first answer's, nothing ran
    expect(get).toMatchObject({ result: { value: "hello" } });
    expect(get.seq).toBeGreaterThanOrEqual(2);
    // Whatever the answering replica had applied: the state after its seq exactly.
    expect(stale.result.items).toEqual([["greeting", "hello"], ["visits", 1]].slice(0, stale.seq));
    expect(status).toMatchObject({ group: "demo", commitSeq: 2, epoch: 1 });
    expect(log.entries.map((e: any) => e.seq)).toEqual([1, 2]);
    expect(audit).toMatchObject({ group: "demo", verdict: "consistent" });
    expect(audits.audits[0]).toEqual(audit);
    const [batch, txn, ev3, ev4, ev5, copy, restored, list] = lines.slice(10);
    expect(batch.results.map((r: any) => r.seq)).toEqual([3, 4]);
    expect(txn).toMatchObject({ seq: 5, output: { succeeded: true, results: [{ previous: "hello" }, { deleted: true }] } });
    expect([ev3, ev4, ev5].map((e) => [e.seq, e.changes])).toEqual([
      [3, [["user/ada", 1815]]],
      [4, [["user/alan", 1912]]],
      [5, [["greeting", "hi"], ["user/alan", null]]],
    ]);
    expect(copy).toMatchObject({ group: "demo-copy" });
    expect(restored).toMatchObject({ group: "demo-copy", machine: "kv" });
    expect(list.result.items).toEqual([["greeting", "hi"], ["user/ada", 1815], ["visits", 1]]);
    expect(lines).toHaveLength(18);
  });
});

describe("the TypeScript client over HTTP", () => {
  it("writes, reads its writes, and handles bank transfers", async () => {
    const admin = new SmrClient({ baseUrl: server.url, token: adminToken });
    await admin.createGroup("e2e-kv", { machine: "kv", replicas: 3 });
    await admin.createGroup("e2e-bank", { machine: "bank", replicas: 5, outputs: "majority" });
    const c = new SmrClient({ baseUrl: server.url, token: clientToken });
    const kv = c.kv("e2e-kv");
    expect(await kv.put("a", { n: 1 })).toEqual({ previous: null });
    expect(await kv.get("a", "sequential")).toEqual({ value: { n: 1 } });
    expect(await kv.cas("a", { n: 1 }, { n: 2 })).toEqual({ ok: true, value: { n: 2 } });
    expect(await kv.incr("counter", 5)).toEqual({ value: 5 });
    expect((await kv.list({ limit: 10 })).items.map(([k]) => k)).toEqual(["a", "counter"]);

    const bank = c.bank("e2e-bank");
    await bank.open("x", 100);
    await bank.open("y", 0);
    const transfers = await Promise.all(Array.from({ length: 20 }, () => bank.transfer("x", "y", 7)));
    expect(transfers.filter((t) => t.ok)).toHaveLength(14);
    expect(transfers.filter((t) => !t.ok).every((t) => t.reason === "insufficient")).toBe(true);
    expect(await bank.balances("sequential")).toEqual({ accounts: { x: 2, y: 98 }, total: 100 });

    const audit = await admin.audit("e2e-bank");
    expect(audit.verdict).toBe("consistent");
    expect(audit.replicas).toHaveLength(5);
  });

  it("retries with the same request id are answered from the session, not executed again", async () => {
    const admin = new SmrClient({ baseUrl: server.url, token: adminToken });
    await admin.createGroup("e2e-retry", { machine: "kv" });
    const c = new SmrClient({ baseUrl: server.url, token: clientToken, clientId: "fixed" });
    const first = await c.submit("e2e-retry", { op: "incr", key: "n", by: 1 }, 5);
    const again = await c.submit("e2e-retry", { op: "incr", key: "n", by: 1 }, 5);
    expect(again).toEqual({ ...first, replayed: true });
    expect((await c.kv("e2e-retry").get("n")).value).toBe(1);
  });
});

describe("reconfiguration against the real server", () => {
  it("adds, replaces and removes replicas under a concurrent write load; the group stays available and consistent", async () => {
    const admin = new SmrClient({ baseUrl: server.url, token: adminToken });
    await admin.createGroup("e2e-members", { machine: "kv", replicas: 3 });
    let stop = false;
    const acked: number[] = [];
    const writers = Array.from({ length: 4 }, async (_, w) => {
      const c = new SmrClient({ baseUrl: server.url, token: clientToken, clientId: `writer-${w}` });
      while (!stop) acked.push((await c.submit("e2e-members", { op: "incr", key: "n", by: 1 })).seq);
    });
    const waitHealthy = async (id: string) => {
      for (let i = 0; i < 200; i++) {
        const r = (await admin.replicas("e2e-members")).replicas.find((x) => x.id === id);
        if (r?.status === "healthy") return;
        await new Promise((res) => setTimeout(res, 25));
      }
      throw new Error(`${id} never became healthy`);
    };
    const add = async () => (await admin.request<{ replica: { id: string } }>("POST", "/v1/groups/e2e-members/replicas", {})).replica.id;
    const remove = (id: string) => admin.request("DELETE", `/v1/groups/e2e-members/replicas/${id}`);

    const r4 = await add(); // grow to 4
    await waitHealthy(r4);
    const r5 = await add(); // replace r1 by r5
    await waitHealthy(r5);
    await remove("r1");
    await remove("r2"); // shrink to 3
    stop = true;
    await Promise.all(writers);

    const status = await admin.group("e2e-members");
    expect(status.replicas.map((r) => r.id)).toEqual(["r3", r4, r5]);
    expect(acked.length).toBeGreaterThan(0);
    expect((await admin.kv("e2e-members").get("n")).value).toBe(acked.length);
    for (let i = 0; i < 100; i++) {
      const s = await admin.group("e2e-members");
      if (s.replicas.every((r) => r.appliedSeq === s.commitSeq)) break;
      await admin.query("e2e-members", { op: "get", key: "n" });
    }
    const audit = await admin.audit("e2e-members");
    expect(audit.verdict).toBe("consistent");
    expect(audit.replicas.map((r) => r.id)).toEqual(["r3", r4, r5]);
  });
});
