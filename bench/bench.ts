// npm run bench [-- --quick] [--seconds S] [--rounds R] [--growth N] [--no-etcd] [--no-build] [--out FILE] [--ab ROUNDS] [--storage disk|memory]
// A full run repeats the rows the targets compare (3-replica, separate, baseline and batched puts;
// 8 groups on one and two processes; reads) in R interleaved rounds (default 3) and takes medians.
// --ab ROUNDS: only 3-replica put rows, co-located and separate in turn, ROUNDS times at 32 and
// 128 clients, then the medians of each (one row alone is noisy on a shared machine).
// Starts the built worker under Miniflare directly (not wrangler dev) on loopback with a persist
// directory in a temp folder, and drives it with closed-loop HTTP clients from this process.
// Every figure of one run comes from the same machine at the same time, so compare ratios
// (bench/ratios.ts: each with its target from issue 15). The smr-sharded rows start a second
// Miniflare, i.e. a second workerd process, and send each group's clients to the process hosting it.
// --storage: where every server and etcd keep their files (bench/storage.ts; default disk). The
// sharded pair (8 groups on one process, then on two) runs on memory storage whatever the run's,
// and in a full run on disk too: two processes on one disk share its journal, two machines do not.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { cpus, freemem, loadavg, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { type Server, root, startServer } from "../test/support/server.js";
import { childPids, withCpu, withCpuSamples } from "./cpu.js";
import { etcdBinary, startEtcd } from "./etcd.js";
import { type LoadResult, runLoad } from "./load.js";
import { batchBody, batchPuts, fillBody, putBody, readBody, value100 } from "./bodies.js";
import { median, medianTable, mediansOf, ratioTable, ratiosOf } from "./ratios.js";
import type { Growth, Run, Work } from "./run.js";
import { type Storage, parseStorage, storageRoot, storages } from "./storage.js";
import { parseFlags } from "../test/support/args.js";

/** --help's text: an unknown option, or --help, started a full 12-minute run over results.json (a probe). */
const usage = "usage: npm run bench [-- --quick] [--seconds S] [--rounds R] [--growth N] [--no-etcd] [--no-build] [--out FILE] [--ab ROUNDS] [--storage disk|memory]\n(README, \"Performance\"; docs/PERFORMANCE.md says how it measures)";

/** The options, each checked: a value that is not one (`--seconds abc`, `--seconds --quick`) ran with NaN (a review). */
function options(argv: string[]): Map<string, string> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(usage);
    process.exit(0);
  }
  const refuse = (why: string): never => {
    console.error(`${why}\n${usage}`);
    process.exit(2);
  };
  const valued = ["seconds", "rounds", "growth", "ab", "out", "storage"];
  const known = [...valued, "quick", "no-etcd", "no-build"];
  for (const [i, a] of argv.entries()) {
    const name = a.startsWith("--") ? a.slice(2).split("=")[0]! : null;
    const isValue = i > 0 && valued.includes(argv[i - 1]!.slice(2)) && !argv[i - 1]!.includes("=");
    if (name !== null && !isValue && !known.includes(name)) refuse(`unknown option ${a}`);
  }
  let parsed: Map<string, string>;
  try {
    parsed = parseFlags(argv, ["quick", "no-etcd", "no-build"]);
  } catch (err) {
    return refuse((err as Error).message);
  }
  const counts: Record<string, number> = { seconds: 1, rounds: 1, growth: 0, ab: 0 };
  for (const [k, v] of parsed) {
    if (k in counts && !(/^\d+$/.test(v) && Number(v) >= counts[k]!)) refuse(`--${k} must be an integer of at least ${counts[k]}, not ${JSON.stringify(v)}`);
    else if (k === "out" && (v === "" || v.startsWith("-"))) refuse(`--out needs a file name, not ${JSON.stringify(v)}`);
    else if (k === "storage" && !(storages as readonly string[]).includes(v)) refuse(`--storage must be ${storages.join(" or ")}, not ${JSON.stringify(v)}`);
  }
  return parsed;
}

const args = options(process.argv.slice(2));
const quick = args.has("quick");
const flag = (name: string, fallback: number) => (args.has(name) ? Number(args.get(name)) : fallback);
const seconds = flag("seconds", quick ? 4 : 8);
const abRounds = flag("ab", 0);
/** Interleaved rounds of the rows the targets compare, in a full run (each ratio takes medians). */
const rounds = flag("rounds", 3);
const growthOps = flag("growth", quick || abRounds > 0 ? 0 : 200_000);
const withEtcd = !args.has("no-etcd");
const runStorage: Storage = parseStorage(args.get("storage"));
/** The smoke test builds dist/ once itself. */
const build = !args.has("no-build");
const outFile = args.get("out") ?? join(root, "bench", "results.json");
/** Seconds of unrecorded load before the first row (at most one row's length). */
const warmUpSecondsMax = 2;
/** Groups the smr-groups and smr-sharded rows spread their clients over. */
const shardGroups = 8;

const admin = "bench-admin";
const client = "bench-client";
const json = { "content-type": "application/json" };
const runs: Run[] = [];
/** The round the rows being recorded belong to (0: rows run once). */
let round = 0;

function row(r: Run): string {
  return [r.system.padEnd(11), String(r.replicas).padStart(3), String(r.clients).padStart(4), r.op.padEnd(16), String(r.opsPerSec).padStart(7), String(r.p50Ms).padStart(8), String(r.p99Ms).padStart(8), String(r.p999Ms).padStart(8), String(r.errors).padStart(6), String(r.cpuUsPerOp ?? "-").padStart(10)].join(" ");
}

type Spread = Pick<Run, "groups" | "processes" | "storage">;

function record(system: Run["system"], replicas: number, clients: number, op: Run["op"], r: LoadResult & { cpuUsPerOp: number | null; loadCpuUsPerOp?: number | null }, spread: Spread = {}, work?: Work): void {
  const run: Run = { system, replicas, clients, op, ...spread, ...(round > 0 ? { round } : {}), opsPerSec: r.opsPerSec, p50Ms: r.p50Ms, p99Ms: r.p99Ms, p999Ms: r.p999Ms, ops: r.ops, errors: r.errors, seconds: r.seconds, cpuUsPerOp: r.cpuUsPerOp, ...(r.loadCpuUsPerOp != null ? { loadCpuUsPerOp: r.loadCpuUsPerOp } : {}), ...(work ? { work } : {}) };
  runs.push(run);
  console.log(row(run) + (work ? `   ${work.commandsPerFlush} cmd/flush, appends/cmd ${work.rpcAppendsPerCommand} rpc + ${work.directAppendsPerCommand} direct` : ""));
}

/** A group's counters from GET /v1/metrics: commands, flushes, appends by RPC and direct. */
type Counters = { commands: number; flushes: number; rpc: number; direct: number };

function countersOf(text: string, group: string): Counters {
  const c: Counters = { commands: 0, flushes: 0, rpc: 0, direct: 0 };
  for (const line of text.split("\n")) {
    if (!line.includes(`group="${group}"`)) continue;
    const value = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (line.startsWith("smr_commands_total{")) c.commands = value;
    else if (line.startsWith("smr_sequencer_flushes_total{")) c.flushes = value;
    else if (line.startsWith("smr_appends_total{")) c[line.includes('colocated="true"') ? "direct" : "rpc"] += value;
  }
  return c;
}

/** Medians of the --ab rows, per layout and client count. */
function abSummary(rows: Run[]): string {
  const lines = ["layout        clients  rows  median ops/s  median cpu us/op  rpc+direct appends/cmd"];
  for (const clients of [32, 128]) {
    for (const system of ["smr", "smr-separate"] as const) {
      const rs = rows.filter((r) => r.system === system && r.clients === clients);
      const work = `${median(rs.map((r) => r.work?.rpcAppendsPerCommand ?? 0))} + ${median(rs.map((r) => r.work?.directAppendsPerCommand ?? 0))}`;
      lines.push([(system === "smr" ? "co-located" : "separate").padEnd(13), String(clients).padStart(7), String(rs.length).padStart(5), String(median(rs.map((r) => r.opsPerSec))).padStart(13), String(median(rs.map((r) => r.cpuUsPerOp ?? 0))).padStart(17), `  ${work}`].join(" "));
    }
  }
  return lines.join("\n");
}

function workBetween(a: Counters, b: Counters): Work {
  const commands = b.commands - a.commands;
  const per = (x: number) => (commands > 0 ? Math.round((x / commands) * 1000) / 1000 : 0);
  return { commands, commandsPerFlush: b.flushes > a.flushes ? Math.round((commands / (b.flushes - a.flushes)) * 10) / 10 : 0, rpcAppendsPerCommand: per(b.rpc - a.rpc), directAppendsPerCommand: per(b.direct - a.direct) };
}

/** A load of n puts per request, counted in puts (its latencies stay per request). */
function inPuts(r: LoadResult, n: number): LoadResult {
  return { ...r, ops: r.ops * n, opsPerSec: r.opsPerSec * n, perTenth: r.perTenth.map((x) => x * n) };
}

/** One run's servers, and what their rows need. */
interface Bench {
  server: Server;
  /** The main server's workerd processes (Miniflare starts workerd as a child of this process). */
  workerd: number[];
  /** Temp folders to remove at the end. */
  dirs: string[];
  /** The sharded rows' processes per storage, started when first needed; the run's first is the main server. */
  hostsOf: Map<Storage, { server: Server; pids: number[] }[]>;
}

const adminHeaders = { ...json, authorization: `Bearer ${admin}` };
const clientHeaders = { ...json, authorization: `Bearer ${client}` };
const putOk = (_s: number, body: string) => body.startsWith('{"seq"');
const batchOk = (_s: number, body: string) => body.startsWith('{"results"') && !body.includes('"error"');
let groupNo = 0;

function ensureBuilt(): void {
  if (!build && existsSync(join(root, "bench", "dist", "worker.js"))) return;
  console.log("building bench/dist/ (the bench's worker: wrangler deploy --dry-run -c bench/wrangler.toml) ...");
  execFileSync(join(root, "node_modules/.bin/wrangler"), ["deploy", "--dry-run", "--outdir", join(root, "bench", "dist"), "-c", join(root, "bench", "wrangler.toml")], {
    cwd: root,
    stdio: "ignore",
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" },
  });
}

function startBenchServer(dir: string): Promise<Server> {
  return startServer({ adminToken: admin, clientTokens: [client], persistDir: join(dir, "persist"), baseline: true, rateLimitPerSec: 0, direct: true });
}

async function createGroup(host: Server, replicas: number, colocate = true): Promise<string> {
  const name = `bench-${replicas}-${++groupNo}`;
  const res = await fetch(`${host.url}/v1/groups/${name}`, { method: "PUT", headers: adminHeaders, body: JSON.stringify({ machine: "kv", replicas, colocate }) });
  if (res.status !== 201) throw new Error(`create ${name}: ${res.status} ${await res.text()}`);
  return name;
}

/**
 * A measured row's groups are deleted after it: an idle group heartbeats its replicas every second
 * until it sleeps, and a full run's hundred groups would tax every later row.
 */
async function dropGroup(host: Server, name: string): Promise<void> {
  const res = await fetch(`${host.url}/v1/groups/${name}`, { method: "DELETE", headers: adminHeaders });
  if (res.status !== 204) throw new Error(`delete ${name}: ${res.status} ${await res.text()}`);
}

async function counters(b: Bench, g: string): Promise<Counters> {
  return countersOf(await (await fetch(`${b.server.url}/v1/metrics?group=${g}`, { headers: adminHeaders })).text(), g);
}

/** colocate false: the smr-separate row, every replica in an object of its own (the A/B of leader-as-replica). */
async function smrPut(b: Bench, replicas: number, clients: number, colocate = true): Promise<void> {
  const g = await createGroup(b.server, replicas, colocate);
  const before = await counters(b, g);
  const r = await withCpu(b.workerd, () => runLoad({ url: `${b.server.url}/v1/groups/${g}/commands`, clients, seconds, headers: clientHeaders, body: putBody, ok: putOk }));
  record(colocate ? "smr" : "smr-separate", replicas, clients, "put", r, {}, workBetween(before, await counters(b, g)));
  await dropGroup(b.server, g);
}

async function smrBatch(b: Bench, clients: number): Promise<void> {
  const g = await createGroup(b.server, 3);
  const load = () => runLoad({ url: `${b.server.url}/v1/groups/${g}/commands`, clients, seconds, headers: clientHeaders, body: batchBody, ok: batchOk });
  record("smr", 3, clients, "put-batch100", await withCpu(b.workerd, async () => inPuts(await load(), batchPuts)));
  await dropGroup(b.server, g);
}

async function startHost(b: Bench, storage: Storage): Promise<{ server: Server; pids: number[] }> {
  const dir = mkdtempSync(join(storageRoot(storage), "smr-bench-"));
  b.dirs.push(dir);
  const before = new Set(childPids("workerd"));
  const server = await startBenchServer(dir);
  return { server, pids: childPids("workerd").filter((p) => !before.has(p)) };
}

/**
 * The same put load over shardGroups groups, on one workerd process or split over two (each
 * group's clients sent to the process hosting it, as the platform places independent objects).
 */
async function spread(b: Bench, clients: number, processes: 1 | 2, storage: Storage): Promise<void> {
  const started = b.hostsOf.get(storage) ?? [];
  b.hostsOf.set(storage, started);
  while (started.length < processes) started.push(await startHost(b, storage));
  const hosts = started.slice(0, processes).map((h) => h.server);
  const groups: { host: Server; name: string }[] = [];
  for (let k = 0; k < shardGroups; k++) {
    const host = hosts[Math.floor((k * hosts.length) / shardGroups)]!;
    groups.push({ host, name: await createGroup(host, 3) });
  }
  // One put per group first, so that bringing shardGroups groups' objects up is not measured.
  for (const g of groups) {
    const res = await fetch(`${g.host.url}/v1/groups/${g.name}/commands`, { method: "POST", headers: clientHeaders, body: JSON.stringify({ client: "warm", request: 1, command: { op: "put", key: "warm", value: value100 } }) });
    if (!res.ok) throw new Error(`warm-up put on ${g.name}: ${res.status} ${await res.text()}`);
  }
  const at = (c: number) => groups[c % shardGroups]!;
  const pids = started.slice(0, processes).flatMap((h) => h.pids);
  const load = () => runLoad({ url: (c) => `${at(c).host.url}/v1/groups/${at(c).name}/commands`, clients, seconds, headers: clientHeaders, body: putBody, ok: putOk });
  record(processes === 2 ? "smr-sharded" : "smr-groups", 3, clients, "put", await withCpu(pids, load), { groups: shardGroups, processes, storage });
  for (const g of groups) await dropGroup(g.host, g.name);
}

async function baselinePut(b: Bench, clients: number): Promise<void> {
  const g = `base-${++groupNo}`;
  record("baseline", 1, clients, "put", await withCpu(b.workerd, () => runLoad({ url: `${b.server.url}/v1/bench/baseline/${g}/commands`, clients, seconds, headers: clientHeaders, body: putBody, ok: putOk })));
}

async function reads(b: Bench, clients: number): Promise<void> {
  const g = await createGroup(b.server, 3);
  const keys = 1_000;
  const url = `${b.server.url}/v1/groups/${g}`;
  const fill = await runLoad({ url: `${url}/commands`, clients: 32, totalOps: keys, headers: clientHeaders, body: fillBody(keys), ok: putOk });
  if (fill.errors > 0) throw new Error("prefill failed");
  // A write's own bookmark, past every prefilled one: a b1 made from the status names no group, and
  // the server serves a sequential read with one as linearizable (a review: the sequential rows
  // measured linearizable reads).
  const last = await fetch(`${url}/commands`, { method: "POST", headers: clientHeaders, body: JSON.stringify({ client: "bench-bookmark", request: 1, command: { op: "put", key: "bookmark", value: 1 } }) });
  const { bookmark } = (await last.json()) as { bookmark: string };
  if (!last.ok || !bookmark?.startsWith("b3.")) throw new Error(`the bookmark's write answered ${last.status}`);
  for (const consistency of ["sequential", "linearizable"] as const) {
    const body = readBody(keys, consistency, bookmark);
    record("smr", 3, clients, `get-${consistency}`, await withCpu(b.workerd, () => runLoad({ url: `${url}/query`, clients, seconds, headers: clientHeaders, body, ok: (_s, r) => r.startsWith('{"result"') })));
  }
  await dropGroup(b.server, g);
}

/** Puts, then txns of batchPuts puts each (etcd's way to put many in one request), one cluster. */
async function etcdPut(bin: string, clients: number): Promise<void> {
  const etcd = await startEtcd(bin, storageRoot(runStorage));
  try {
    const b64 = (s: string) => Buffer.from(s).toString("base64");
    const v = b64(value100);
    const member = (path: string) => (c: number) => `${etcd.clientUrls[c % 3]}${path}`;
    record("etcd", 3, clients, "put", await withCpu(etcd.pids, () => runLoad({ url: member("/v3/kv/put"), clients, seconds, headers: json, body: (c, i) => JSON.stringify({ key: b64(`k-${c}-${i}`), value: v }), ok: (_s, r) => r.includes('"header"') })));
    const txn = (c: number, i: number) => JSON.stringify({ success: Array.from({ length: batchPuts }, (_, j) => ({ requestPut: { key: b64(`b-${c}-${i * batchPuts + j}`), value: v } })) });
    const load = () => runLoad({ url: member("/v3/kv/txn"), clients, seconds, headers: json, body: txn, ok: (_s, r) => r.includes('"succeeded":true') });
    record("etcd", 3, clients, "put-batch100", await withCpu(etcd.pids, async () => inPuts(await load(), batchPuts)));
  } finally {
    await etcd.stop();
  }
}

/**
 * Unrecorded load on a throwaway group and baseline object first: otherwise the first row
 * measured would also pay for compiling the hot paths.
 */
async function warmUp(b: Bench): Promise<void> {
  const warm = await createGroup(b.server, 3);
  const warmSeconds = Math.min(seconds, warmUpSecondsMax);
  for (const url of [`${b.server.url}/v1/groups/${warm}/commands`, `${b.server.url}/v1/bench/baseline/warm/commands`]) {
    await runLoad({ url, clients: 32, seconds: warmSeconds, headers: clientHeaders, body: putBody, ok: putOk });
  }
  await dropGroup(b.server, warm);
}

/**
 * A full run: the rows the targets compare, in interleaved rounds (the ratios take each kind's
 * median); within a round the order alternates, so drift in the machine's load hits both sides.
 */
async function fullRun(b: Bench, bin: string | null): Promise<void> {
  for (round = 1; round <= rounds; round++) {
    for (const clients of [32, 128]) {
      const rows = [() => smrPut(b, 3, clients), () => baselinePut(b, clients), () => smrBatch(b, clients), () => smrPut(b, 3, clients, false)];
      for (const row of round % 2 === 1 ? rows : rows.reverse()) await row();
    }
    for (const storage of runStorage === "disk" ? (["memory", "disk"] as const) : (["memory"] as const)) {
      for (const clients of [32, 128]) {
        const rows = [() => spread(b, clients, 1, storage), () => spread(b, clients, 2, storage)];
        for (const row of round % 2 === 1 ? rows : rows.reverse()) await row();
      }
    }
    for (const clients of [32, 128]) await reads(b, clients);
  }
  round = 0;
  for (const clients of [32, 128]) {
    for (const replicas of [1, 5]) await smrPut(b, replicas, clients);
    if (bin) await etcdPut(bin, clients);
  }
}

/** Every row of the run's mode. */
async function measure(b: Bench, bin: string | null): Promise<void> {
  await warmUp(b);
  if (abRounds > 0) {
    for (let ab = 0; ab < abRounds; ab++) {
      for (const clients of [32, 128]) {
        await smrPut(b, 3, clients, ab % 2 === 0);
        await smrPut(b, 3, clients, ab % 2 !== 0);
      }
    }
    console.log(`\n${abSummary(runs)}`);
  } else if (quick) {
    await smrPut(b, 3, 32);
    await smrPut(b, 3, 32, false);
    await baselinePut(b, 32);
    await smrBatch(b, 32);
    if (bin) await etcdPut(bin, 32);
  } else {
    await fullRun(b, bin);
  }
}

/** growthOps puts on one 3-replica group at 128 clients: the rate and CPU per put of its last tenth against its first. */
async function measureGrowth(b: Bench): Promise<Growth> {
  const g = await createGroup(b.server, 3);
  console.log(`\ngrowth: ${growthOps} puts on one 3-replica group, 128 clients ...`);
  const { result: r, cpuBetween } = await withCpuSamples(b.workerd, () => runLoad({ url: `${b.server.url}/v1/groups/${g}/commands`, clients: 128, totalOps: growthOps, headers: clientHeaders, body: putBody, ok: putOk }));
  const tenth = r.seconds / 10;
  const first = Math.round(r.perTenth[0]! / tenth);
  const last = Math.round(r.perTenth[9]! / tenth);
  // CPU per put in the same windows: unlike the rate, other load on the machine does not move it.
  const usPerOp = (fromS: number, ops: number) => {
    const ms = cpuBetween(fromS * 1000, (fromS + tenth) * 1000);
    return ms === null || ops === 0 ? null : Math.round((ms * 1000) / ops);
  };
  const growth: Growth = {
    ops: r.ops,
    firstTenthOpsPerSec: first,
    lastTenthOpsPerSec: last,
    ratio: Math.round((last / first) * 100) / 100,
    firstTenthCpuUsPerOp: usPerOp(0, r.perTenth[0]!),
    lastTenthCpuUsPerOp: usPerOp(9 * tenth, r.perTenth[9]!),
  };
  console.log(`growth: ${r.ops} ok, ${r.errors} errors, first 10% ${first}/s, last 10% ${last}/s (ratio ${growth.ratio}); CPU per put ${growth.firstTenthCpuUsPerOp ?? "-"} us, then ${growth.lastTenthCpuUsPerOp ?? "-"} us`);
  return growth;
}

function machineOf(loadAtStart: number) {
  return {
    cpu: cpus()[0]?.model ?? "unknown",
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    freeMemoryGiB: Math.round(freemem() / 2 ** 30),
    node: process.version,
    server: "Miniflare (workerd) directly, loopback, to the worker's own socket (no entry worker), a persist folder per server",
    // Where the servers and etcd kept their files (rows with their own storage say so).
    storage: runStorage,
    mode: quick ? "quick" : abRounds > 0 ? "ab" : "full",
    rounds: quick || abRounds > 0 ? 1 : rounds,
    secondsPerRun: seconds,
    // The 1-minute load average at the start and end: other load on a shared machine slows every row.
    loadAverage: [loadAtStart, loadavg()[0]!].map((x) => Math.round(x * 10) / 10),
    date: new Date().toISOString(),
  };
}

async function main() {
  const started = performance.now();
  const loadAtStart = loadavg()[0]!;
  ensureBuilt();
  const dir = mkdtempSync(join(storageRoot(runStorage), "smr-bench-"));
  const server = await startBenchServer(dir);
  const workerd = childPids("workerd");
  const b: Bench = { server, workerd, dirs: [dir], hostsOf: new Map([[runStorage, [{ server, pids: workerd }]]]) };
  console.log(`\nsystem      rep clnt op                 ops/s   p50 ms   p99 ms p99.9 ms errors cpu us/op`);
  const bin = withEtcd ? etcdBinary() : null;
  let growth: Growth | null = null;
  try {
    await measure(b, bin);
    if (!bin) console.log(withEtcd ? "(etcd not on PATH: apt-get install etcd-server to add the peer rows)" : "(etcd rows skipped: --no-etcd)");
    if (growthOps > 0) growth = await measureGrowth(b);
  } finally {
    for (const hosts of b.hostsOf.values()) for (const h of hosts) if (h.server !== server) await h.server.close();
    await server.close();
    for (const d of b.dirs) rmSync(d, { recursive: true, force: true });
  }
  const ratios = ratiosOf(runs, growth);
  const medians = mediansOf(runs);
  if (medians.some((m) => m.rows > 1)) console.log(`\n${medianTable(medians)}`);
  console.log(`\n${ratioTable(ratios)}`);
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(outFile, JSON.stringify({ machine: machineOf(loadAtStart), runs, medians, ratios, growth }, null, 2) + "\n");
  console.log(`wrote ${outFile} (the run took ${Math.round((performance.now() - started) / 1000)} s)`);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
