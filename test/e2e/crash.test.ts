// Faults against the real server: the built worker under Miniflare in its own process group,
// SIGKILLed in the middle of a write load and started again on the same persist directory; and
// one replica's SQLite file corrupted on disk while the server is down.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { afterAll, describe, expect, it } from "vitest";
import { ApiRequestError, SmrClient } from "../../shared/client/index.js";
import { kv } from "../../shared/machines/kv.js";
import { canonicalJson } from "../../shared/protocol/hash.js";
import { MemoryRowStore } from "../../shared/protocol/memory.js";
import { DigestedState, applyEntry } from "../../shared/protocol/state.js";
import type { Entry } from "../../shared/api/types.js";
import { root } from "../support/server.js";

const admin = "crash-admin";
const token = "crash-client";
const dirs: string[] = [];
const children: ChildProcess[] = [];

afterAll(() => {
  for (const c of children) if (c.exitCode === null) killGroup(c, "SIGKILL");
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function killGroup(child: ChildProcess, signal: NodeJS.Signals) {
  try {
    process.kill(-child.pid!, signal);
  } catch {
    // already gone
  }
}

async function serve(persistDir: string): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(join(root, "node_modules/.bin/tsx"), [join(root, "test/support/serve.ts"), persistDir, admin, token], {
    cwd: root,
    detached: true, // its own process group: workerd dies with it
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let out = "";
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${err}`)), 30_000);
    child.stdout!.on("data", (d) => {
      out += d;
      const line = out.split("\n").find((l) => l.startsWith("{"));
      if (line) {
        clearTimeout(timer);
        resolve(JSON.parse(line).url);
      }
    });
  });
  return { url, child };
}

async function sigkill(child: ChildProcess) {
  const exited = new Promise((r) => child.on("exit", r));
  killGroup(child, "SIGKILL");
  await exited;
}

async function fullLog(c: SmrClient, group: string): Promise<Entry[]> {
  const entries: Entry[] = [];
  for (let from = 1; ; ) {
    const page = await c.log(group, from, 1000);
    entries.push(...page.entries);
    if (page.entries.length === 0 || from + page.entries.length > page.lastSeq) return entries;
    from += page.entries.length;
  }
}

async function settle(c: SmrClient, group: string) {
  for (let i = 0; i < 100; i++) {
    const s = await c.group(group);
    if (s.replicas.every((r) => r.appliedSeq === s.commitSeq && r.status === "healthy") && s.commitSeq === s.lastSeq) return s;
    await c.query(group, { op: "get", key: "k" });
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`group ${group} did not settle: ${JSON.stringify(await c.group(group))}`);
}

/** A server on a fresh persist directory (removed after the tests) with one 3-replica kv group. */
async function withGroup(group: string, checkpointEvery: number) {
  const dir = mkdtempSync(join(tmpdir(), `smr-${group}-`));
  dirs.push(dir);
  const server = await serve(dir);
  const adminClient = new SmrClient({ baseUrl: server.url, token: admin });
  await adminClient.createGroup(group, { machine: "kv", replicas: 3, checkpointEvery });
  return { dir, server, adminClient };
}

describe("the real server under faults", () => {
  it("SIGKILL mid-load: after a restart every acknowledged command is there, in order, with its output, and digests agree", async () => {
    const started = await withGroup("crash", 10);
    const dir = started.dir;
    let server = started.server;

    const acked: { client: string; request: number; seq: number; output: unknown }[] = [];
    let stop = false;
    const worker = async (w: number) => {
      const c = new SmrClient({ baseUrl: server.url, token, clientId: `w${w}`, attemptsMax: 1 });
      for (let i = 1; !stop; i++) {
        const command = i % 3 === 0 ? { op: "incr", key: `n${w % 3}`, by: 1 } : { op: "put", key: `k${w}-${i}`, value: i };
        try {
          const r = await c.submit("crash", command, i);
          acked.push({ client: `w${w}`, request: i, seq: r.seq, output: r.output });
        } catch (err) {
          if (!(err instanceof ApiRequestError)) throw err;
          return; // the server is gone: this client's last command has an unknown outcome
        }
      }
    };
    const load = Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)));
    while (acked.length < 150) await new Promise((r) => setTimeout(r, 10));
    await sigkill(server.child);
    stop = true;
    await load;

    server = await serve(dir);
    const c = new SmrClient({ baseUrl: server.url, token: admin });
    const status = await settle(c, "crash");
    const log = await fullLog(c, "crash");
    expect(log.map((e) => e.seq)).toEqual(Array.from({ length: status.lastSeq }, (_, i) => i + 1));
    // Replaying the log gives exactly the outputs the clients were given, at the seqs they were given.
    const state = new DigestedState(new MemoryRowStore());
    // With the group's session window, as its replicas apply them.
    const expiry = status.sessionIdleSeconds ? { idleMs: status.sessionIdleSeconds * 1000 } : null;
    const outputs = new Map(log.map((e) => [e.seq, applyEntry(state, kv, e, undefined, expiry)]));
    for (const a of acked) {
      const e = log[a.seq - 1]!;
      expect([e.client, e.request]).toEqual([a.client, a.request]);
      expect(canonicalJson(outputs.get(a.seq)!.output)).toBe(canonicalJson(a.output));
    }
    expect(new Set(status.replicas.map((r) => r.digest))).toEqual(new Set([state.digest]));
    const audit = await c.audit("crash");
    expect(audit.verdict).toBe("consistent");
    killGroup(server.child, "SIGTERM");
  }, 120_000);

  it("one replica's state corrupted on disk while the server is down: the audit flags exactly it and repairs it", async () => {
    const started = await withGroup("disk", 5);
    const dir = started.dir;
    let server = started.server;
    let c = started.adminClient;
    for (let i = 1; i <= 20; i++) await c.kv("disk").put(`key${i}`, i);
    await settle(c, "disk");
    // Replicas store applied rows in batches (the log covers the rest); an audit stores them.
    expect((await c.audit("disk")).verdict).toBe("consistent");
    await sigkill(server.child);

    // Find r2's SQLite file among the Durable Object files and change one state row in it.
    const files: string[] = [];
    const walk = (d: string) => {
      for (const f of readdirSync(d)) {
        const p = join(d, f);
        if (statSync(p).isDirectory()) walk(p);
        else if (p.endsWith(".sqlite")) files.push(p);
      }
    };
    walk(dir);
    let corrupted = 0;
    for (const f of files) {
      const db = new DatabaseSync(f);
      try {
        const meta = db.prepare("SELECT v FROM meta WHERE k = 'replica'").get() as { v: string } | undefined;
        if (meta && JSON.parse(meta.v).id === "r2" && JSON.parse(meta.v).group === "disk") {
          corrupted += Number(db.prepare("UPDATE state SET v = '\"rot\"' WHERE k = 'm/key7'").run().changes);
        }
      } catch {
        // not a replica's database
      } finally {
        db.close();
      }
    }
    expect(corrupted).toBe(1);

    server = await serve(dir);
    c = new SmrClient({ baseUrl: server.url, token: admin });
    const report = await c.audit("disk");
    expect(report.verdict).toBe("diverged");
    expect(report.replicas.map((r) => [r.id, r.verdict])).toEqual([
      ["r1", "agrees"],
      ["r2", "diverged"],
      ["r3", "agrees"],
    ]);
    await c.kv("disk").put("after", 1);
    const status = await settle(c, "disk");
    expect(new Set(status.replicas.map((r) => r.digest)).size).toBe(1);
    const again = await c.audit("disk");
    expect(again.verdict).toBe("consistent");
    expect(await c.kv("disk").get("key7")).toEqual({ value: 7 });
    killGroup(server.child, "SIGTERM");
  }, 120_000);
});
