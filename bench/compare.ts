// npm run compare -- --a OLD/index.js [--b dist/index.js] [--replicas-a N --replicas-b M] [--flags-a F,G --flags-b F,G] [--op put|batch|get] [--clients N] [--rounds R] [--seconds S] [--storage disk|memory]
// An A/B of two builds of the worker: both run at once (each its own workerd), and rows of the
// same load alternate between them, so a change is measured against the code before it on the
// same machine at the same time (one row alone moves 20-40% here). Prints each row, then the
// medians of puts/s and of workerd CPU µs per put. Without --a, both sides run this build and
// differ in --replicas-a / --replicas-b. Build A from an older commit with
// `git worktree add /tmp/a REV && cd /tmp/a && ln -s $PWD/node_modules && npm run build`.
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { childPids, withCpu } from "./cpu.js";
import { batchBody, batchPuts, fillBody, putBody, readBody } from "./bodies.js";
import { runLoad } from "./load.js";
import { median } from "./ratios.js";
import { parseStorage, storageRoot, storages } from "./storage.js";
import { toolFlags } from "../test/support/args.js";
import { type Server, root, startServer } from "../test/support/server.js";

const usage = `usage: npm run compare -- --a OLD/index.js [--b dist/index.js] [--replicas-a N --replicas-b M] [--flags-a F,G --flags-b F,G] [--op put|batch|get] [--clients N] [--rounds R] [--seconds S] [--storage disk|memory]
  two builds of the worker side by side, rows of the same load alternating between them; prints each
  row, then the medians of puts/s and of workerd CPU µs per put. Without --a, both sides run this
  build and differ in --replicas-a / --replicas-b or --flags-a / --flags-b`;
const args = toolFlags(process.argv.slice(2), {
  usage,
  counts: { clients: 1, rounds: 1, seconds: 1, "replicas-a": 1, "replicas-b": 1 },
  choices: { op: ["put", "batch", "get"], storage: storages },
  texts: ["a", "b", "flags-a", "flags-b"],
});
const flag = (name: string, fallback: string) => args.get(name) ?? fallback;
const builds = { a: flag("a", ""), b: flag("b", join(root, "dist", "index.js")) };
const op = flag("op", "batch");
const clients = Number(flag("clients", "32"));
const rounds = Number(flag("rounds", "5"));
const seconds = Number(flag("seconds", "5"));
const perRequest = op === "batch" ? batchPuts : 1;
/** Replicas of each side's groups (--replicas-a, --replicas-b): the same build against itself measures what a replica costs. */
const replicasOf = { a: Number(flag("replicas-a", "3")), b: Number(flag("replicas-b", "3")) };
/** Compatibility flags of each side (--flags-a, --flags-b; default wrangler.toml's): what a flag costs. */
const flagsOf = { a: flag("flags-a", ""), b: flag("flags-b", "") };
const readKeys = 1_000;
/** Where both sides keep their files (bench/storage.ts), disk by default as in the bench. */
const storage = parseStorage(flag("storage", "disk"));
const persistRoot = mkdtempSync(join(storageRoot(storage), "smr-compare-"));
const unit = op === "get" ? "reads" : "puts";
const body = op === "get" ? readBody(readKeys, "sequential") : op === "batch" ? batchBody : putBody;

interface Side {
  server: Server;
  pids: number[];
  groups: number;
  replicas: number;
  rows: { opsPerSec: number; cpuUsPerOp: number | null; p99Ms: number }[];
}

async function start(scriptPath: string, replicas: number, flags: string): Promise<Side> {
  const before = new Set(childPids("workerd"));
  const persistDir = mkdtempSync(join(persistRoot, "side-"));
  const compatibilityFlags = flags ? flags.split(",") : undefined;
  const server = await startServer({ adminToken: "a", clientTokens: ["c"], rateLimitPerSec: 0, scriptPath, persistDir, assets: false, direct: true, compatibilityFlags });
  return { server, pids: childPids("workerd").filter((p) => !before.has(p)), groups: 0, rows: [], replicas };
}

/** One row on a fresh group of this side. */
async function row(side: Side, name: string, record: boolean): Promise<void> {
  const group = `cmp-${++side.groups}`;
  const res = await fetch(`${side.server.url}/v1/groups/${group}`, { method: "PUT", headers: { "content-type": "application/json", authorization: "Bearer a" }, body: JSON.stringify({ machine: "kv", replicas: side.replicas }) });
  if (res.status !== 201) throw new Error(`${name}: create ${res.status} ${await res.text()}`);
  const headers = { "content-type": "application/json", authorization: "Bearer c" };
  if (op === "get") {
    const fill = await runLoad({ url: `${side.server.url}/v1/groups/${group}/commands`, clients: 32, totalOps: readKeys, headers, body: fillBody(readKeys) });
    if (fill.errors > 0) throw new Error(`${name}: prefill failed`);
  }
  const url = `${side.server.url}/v1/groups/${group}/${op === "get" ? "query" : "commands"}`;
  const r = await withCpu(side.pids, async () => {
    const l = await runLoad({ url, clients, seconds, headers, body });
    return { ...l, ops: l.ops * perRequest, opsPerSec: l.opsPerSec * perRequest };
  });
  if (!record) return;
  side.rows.push({ opsPerSec: r.opsPerSec, cpuUsPerOp: r.cpuUsPerOp, p99Ms: r.p99Ms });
  console.log(`${name}  ${String(r.opsPerSec).padStart(7)} ${unit}/s  ${String(r.cpuUsPerOp ?? "-").padStart(6)} µs CPU/${unit.slice(0, -1)}  p99 ${r.p99Ms} ms  ${r.errors} errors`);
}


async function main() {
  if (!builds.a && replicasOf.a === replicasOf.b && flagsOf.a === flagsOf.b) throw new Error("--a: the other build's index.js (or --replicas-a/--replicas-b, or --flags-a/--flags-b)");
  const a = await start(builds.a || builds.b, replicasOf.a, flagsOf.a);
  const b = await start(builds.b, replicasOf.b, flagsOf.b);
  try {
    await row(a, "A (warm-up)", false);
    await row(b, "B (warm-up)", false);
    for (let i = 0; i < rounds; i++) {
      // Alternate which goes first: the machine's load drifts within a round too.
      const order: [Side, string][] = i % 2 === 0 ? [[a, "A"], [b, "B"]] : [[b, "B"], [a, "A"]];
      for (const [side, name] of order) await row(side, name, true);
    }
    for (const [side, name] of [[a, "A"], [b, "B"]] as const) {
      console.log(`${name}: median ${median(side.rows.map((r) => r.opsPerSec))} ${unit}/s, ${median(side.rows.map((r) => r.cpuUsPerOp ?? 0))} µs CPU/${unit.slice(0, -1)}, p99 ${Math.round(median(side.rows.map((r) => r.p99Ms)) * 100) / 100} ms (${op}, ${clients} clients, ${side.rows.length} rows)`);
    }
    const cpu = (s: Side) => median(s.rows.map((r) => r.cpuUsPerOp ?? 0));
    console.log(`B/A: ${unit}/s ${(median(b.rows.map((r) => r.opsPerSec)) / median(a.rows.map((r) => r.opsPerSec))).toFixed(2)}, CPU per ${unit.slice(0, -1)} ${(cpu(b) / cpu(a)).toFixed(2)}`);
  } finally {
    await a.server.close();
    await b.server.close();
    rmSync(persistRoot, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
