// npm run profile [-- --op put|batch|get] [--clients N] [--seconds S] [--top N] [--replicas N] [--prefill N] [--inclusive] [--callers F,G]
// A V8 CPU profile of workerd under one 3-replica load (per-request puts or batches of 100), taken
// through its inspector, and the functions with the most self time: where a put's CPU goes.
// Needs dist/ (npm run build). Prints per function: self ms, % of samples, µs per put (per read with --op get).
import { type Server, startServer } from "../test/support/server.js";
import { batchBody, batchPuts, fillBody, putBody, readBody } from "./bodies.js";
import { runLoad } from "./load.js";
import { toolFlags } from "../test/support/args.js";

const usage = `usage: npm run profile [-- --op put|batch|get] [--clients N] [--seconds S] [--top N] [--replicas N] [--prefill N] [--callers F,G] [--inclusive] [--baseline]
  a V8 CPU profile of workerd under one load (default: batches of 100 from 32 clients for 8 s), and the
  functions with the most self time (--top, default 45); needs dist/ (npm run build). --callers F: also
  the call paths of F's samples; --inclusive: total time too; --baseline: the unreplicated object's puts`;
const args = toolFlags(process.argv.slice(2), {
  usage,
  switches: ["inclusive", "baseline"],
  counts: { clients: 1, seconds: 1, top: 1, replicas: 1, prefill: 0 },
  choices: { op: ["put", "batch", "get"] },
  texts: ["callers"],
});
const flag = (name: string, fallback: string) => args.get(name) ?? fallback;
const op = flag("op", "batch");
const clients = Number(flag("clients", "32"));
const seconds = Number(flag("seconds", "8"));
const top = Number(flag("top", "45"));
/** --callers NAME: also the call paths (3 frames up) of the samples spent in functions named NAME. */
const callersOf = flag("callers", "");
/**
 * --prefill N: N puts of the same load first, by the clients then profiled, which carry on where
 * they stopped (the growth run's later part: a large table, and full session windows evicting).
 */
const prefill = Number(flag("prefill", "0"));
const replicas = Number(flag("replicas", "3"));
/** --baseline: the unreplicated baseline object's put route instead (bench/dist/worker.js: run npm run bench once to build it). */
const baseline = args.has("baseline");
const inspectorPort = 9230 + Math.floor(Math.random() * 500);
const perRequest = op === "batch" ? batchPuts : 1;

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
}

interface NodeSocket {
  onopen: ((e: unknown) => void) | null;
  onerror: ((e: unknown) => void) | null;
  onmessage: ((m: { data: unknown }) => void) | null;
  send(data: string): void;
  close(): void;
}

/** One inspector session: sends CDP commands and resolves their results. */
async function inspect(wsUrl: string) {
  // Node 22's WebSocket (the project's types are workerd's, whose WebSocket differs).
  const ws = new (globalThis as unknown as { WebSocket: new (url: string) => NodeSocket }).WebSocket(wsUrl);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  let next = 1;
  const waiting = new Map<number, (r: unknown) => void>();
  ws.onmessage = (m: { data: unknown }) => {
    const msg = JSON.parse(String(m.data)) as { id?: number; result?: unknown };
    if (msg.id !== undefined) waiting.get(msg.id)?.(msg.result);
  };
  const send = (method: string, params: object = {}) =>
    new Promise<any>((resolve) => {
      const id = next++;
      waiting.set(id, resolve);
      ws.send(JSON.stringify({ id, method, params }));
    });
  return { send, close: () => ws.close() };
}

/** Self time per function (name, file, line), largest first. */
function selfTimes(p: Profile): [string, number][] {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const ms = new Map<string, number>();
  p.samples.forEach((id, i) => {
    const f = byId.get(id)!.callFrame;
    const key = `${f.functionName || "(anonymous)"} ${f.url.split("/").pop()}:${f.lineNumber + 1}`;
    ms.set(key, (ms.get(key) ?? 0) + (p.timeDeltas[i] ?? 0) / 1000);
  });
  return [...ms].sort((a, b) => b[1] - a[1]);
}

function frameName(n: Node): string {
  const f = n.callFrame;
  return `${f.functionName || "(anonymous)"}:${f.lineNumber + 1}`;
}

/** Self time in functions named `name`, by the chain of their three callers. */
function callerTimes(p: Profile, name: string): [string, number][] {
  const parent = new Map<number, Node>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n);
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const ms = new Map<string, number>();
  p.samples.forEach((id, i) => {
    const leaf = byId.get(id)!;
    if (leaf.callFrame.functionName !== name) return;
    const chain: string[] = [];
    for (let n = parent.get(leaf.id); n && chain.length < 3; n = parent.get(n.id)) chain.push(frameName(n));
    const key = chain.join(" < ");
    ms.set(key, (ms.get(key) ?? 0) + (p.timeDeltas[i] ?? 0) / 1000);
  });
  return [...ms].sort((a, b) => b[1] - a[1]);
}

/** Time in each function including its callees (a sample counts once per function on its stack). */
function inclusiveTimes(p: Profile): [string, number][] {
  const parent = new Map<number, Node>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n);
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const ms = new Map<string, number>();
  p.samples.forEach((id, i) => {
    const seen = new Set<string>();
    for (let n: Node | undefined = byId.get(id); n; n = parent.get(n.id)) {
      const key = frameName(n);
      if (seen.has(key)) continue;
      seen.add(key);
      ms.set(key, (ms.get(key) ?? 0) + (p.timeDeltas[i] ?? 0) / 1000);
    }
  });
  return [...ms].sort((a, b) => b[1] - a[1]);
}

async function main() {
  const server: Server = await startServer({ adminToken: "a", clientTokens: ["c"], inspectorPort, rateLimitPerSec: 0, baseline, assets: false, direct: true });
  try {
    const admin = { "content-type": "application/json", authorization: "Bearer a" };
    const headers = { "content-type": "application/json", authorization: "Bearer c" };
    const create = await fetch(`${server.url}/v1/groups/prof`, { method: "PUT", headers: admin, body: JSON.stringify({ machine: "kv", replicas }) });
    if (create.status !== 201) throw new Error(`create: ${create.status}`);
    const readKeys = 1_000;
    const body = op === "get" ? readBody(readKeys, "sequential") : op === "batch" ? batchBody : putBody;
    const url = baseline ? `${server.url}/v1/bench/baseline/prof/commands` : `${server.url}/v1/groups/prof/${op === "get" ? "query" : "commands"}`;
    const commands = `${server.url}/v1/groups/prof/commands`;
    // Reads read keys r0 .. r999, written first; the warm-up of the others writes under other clients.
    if (op === "get") await runLoad({ url: commands, clients: 32, totalOps: readKeys, headers, body: fillBody(readKeys) });
    await runLoad({ url: op === "get" ? commands : url, clients, seconds: 2, headers, body: (c, i) => (op === "get" ? putBody : body)(c + 1000, i) });
    // Requests each client sent while prefilling: the profiled load goes on from there.
    const sent = new Map<number, number>();
    if (prefill > 0) {
      const t0 = performance.now();
      const counted = (c: number, i: number) => {
        sent.set(c, Math.max(sent.get(c) ?? 0, i + 1));
        return body(c + 2000, i);
      };
      const r = await runLoad({ url, clients, totalOps: Math.ceil(prefill / perRequest), headers, body: counted });
      console.log(`prefill: ${r.ops * perRequest} puts in ${Math.round(performance.now() - t0) / 1000} s`);
    }
    const targets = (await (await fetch(`http://127.0.0.1:${inspectorPort}/json/list`)).json()) as { id: string; title: string; webSocketDebuggerUrl: string }[];
    const target = targets.find((t) => !t.title.includes("miniflare")) ?? targets[0]!;
    const cdp = await inspect(target.webSocketDebuggerUrl);
    await cdp.send("Profiler.enable");
    await cdp.send("Profiler.setSamplingInterval", { interval: 200 });
    await cdp.send("Profiler.start");
    const r = await runLoad({ url, clients, seconds, headers, body: prefill > 0 ? (c, i) => body(c + 2000, i + (sent.get(c) ?? 0)) : body });
    const { profile } = (await cdp.send("Profiler.stop")) as { profile: Profile };
    cdp.close();
    const puts = r.ops * perRequest;
    const total = profile.timeDeltas.reduce((a, b) => a + b, 0) / 1000;
    const rows = selfTimes(profile);
    const idle = rows.filter(([k]) => k.startsWith("(idle)")).reduce((a, [, m]) => a + m, 0);
    console.log(`${op}, ${clients} clients: ${puts} ${op === "get" ? "reads" : "puts"} in ${r.seconds} s (${Math.round(puts / r.seconds)}/s), ${r.errors} errors; profile ${Math.round(total)} ms, JS thread busy ${Math.round(total - idle)} ms = ${Math.round(((total - idle) * 1000) / puts)} µs per ${op === "get" ? "read" : "put"} (targets: ${targets.map((t) => t.title).join(", ")})`);
    const line = ([key, ms]: [string, number]) => `${ms.toFixed(0).padStart(7)} ms ${((ms / total) * 100).toFixed(1).padStart(5)}% ${((ms * 1000) / puts).toFixed(1).padStart(7)} µs  ${key}`;
    for (const r of rows.slice(0, top)) console.log(line(r));
    if (args.has("inclusive")) {
      console.log("\nincluding callees:");
      for (const r of inclusiveTimes(profile).slice(0, top)) console.log(line(r));
    }
    for (const name of callersOf ? callersOf.split(",") : []) {
      console.log(`\n${name}, by caller:`);
      for (const r of callerTimes(profile, name).slice(0, 20)) console.log(line(r));
    }
  } finally {
    await server.close();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
