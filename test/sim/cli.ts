// npm run sim -- --seed S --ops N [--replicas R] [--faults LIST] [--machine NAME] [--outputs first|majority] [--variant V]
// npm run sim -- --seeds K [--ops N] ...   (K random seeds; prints each failing seed)
// npm run sim -- --geo [--locations wnam,weur,apac] [--sequencer wnam]   (the geography report)
// SIM_TRACE=1 npm run sim -- --seed S ...   also prints the run's trace (faults, restarts, failed recoveries; not each message) to stderr
// SIM_TRACE=log ... adds the sequencer driver's log lines; SIM_TRACE=all ... every message delivered or dropped too
import { isLocationHint, locationHints } from "../../shared/geo.js";
import { machineNames } from "../../shared/machines/index.js";
import { extraFaultKinds, faultKinds, type FaultKind, laterFaultKinds, reproduce, simulate, type SimOptions, type SimResult } from "./run.js";
import { parseFlags } from "../support/args.js";


function int(args: Map<string, string>, name: string, fallback: number): number {
  const v = args.get(name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer`);
  return n;
}

/** --help's text (it said "--help needs a value": a probe). */
const usage = `usage:
  npm run sim -- --seed S [--ops N] [--replicas R] [--faults all|none|LIST] [--machine ${machineNames.join("|")}] [--outputs first|majority] [--variant correct|stale-reads|early-commit|apply-uncommitted]
  npm run sim -- --seeds K [...]          K random seeds; prints each failing seed, the failovers and the slowest seeds
  npm run sim -- --geo [--locations wnam,weur,apac] [--sequencer wnam] [--seed S]   latency per location, failover
  more: --clients N, --no-batches, --no-colocate, --session-idle MS, --output-free CHARS, --sleep-after MS, --log-bytes N
  faults: ${faultKinds.join(", ")}; not in all (all+ adds them): ${[...extraFaultKinds, ...laterFaultKinds].join(", ")}
  SIM_TRACE=1|log|all prints the run's trace to stderr (docs/SIMULATOR.md)`;

async function main(): Promise<number> {
  if (process.argv.slice(2).some((a) => a === "--help" || a === "-h")) {
    console.log(usage);
    return 0;
  }
  const args = parseFlags(process.argv.slice(2), ["geo", "no-batches", "no-colocate"]);
  const known = new Set(["seed", "seeds", "ops", "replicas", "faults", "machine", "variant", "clients", "geo", "locations", "sequencer", "outputs", "no-batches", "no-colocate", "session-idle", "output-free", "sleep-after", "log-bytes", "watchers"]);
  for (const k of args.keys()) if (!known.has(k)) throw new Error(`unknown option --${k}`);
  const faultsArg = args.get("faults") ?? "all";
  const faults = (faultsArg === "all" ? [...faultKinds] : faultsArg === "all+" ? [...faultKinds, ...extraFaultKinds, ...laterFaultKinds] : faultsArg === "none" ? [] : faultsArg.split(",").flatMap((f) => (f === "all" ? [...faultKinds] : [f]))) as FaultKind[];
  for (const f of faults) if (![...faultKinds, ...extraFaultKinds, ...laterFaultKinds].includes(f as never)) throw new Error(`unknown fault ${f}; known: ${faultKinds.join(", ")}`);
  const machine = args.get("machine") ?? "kv";
  if (!machineNames.includes(machine)) throw new Error(`--machine must be one of ${machineNames.join(", ")}`);
  const outputs = args.get("outputs") as SimOptions["outputs"];
  if (outputs !== undefined && outputs !== "first" && outputs !== "majority") throw new Error("--outputs must be first or majority");
  // With "first" a corrupted replica's outputs answer clients until the next audit (docs/OPERATIONS.md):
  // by design, so every checker of outputs would fail for it (run.ts draws "majority" with these faults).
  const damaging = faults.filter((f) => f === "corrupt" || f === "corrupt-any" || f === "corrupt-again");
  if (outputs === "first" && damaging.length > 0) throw new Error(`--outputs first with ${damaging.join(", ")}: a corrupted replica's outputs answer clients until the next audit (by design, docs/OPERATIONS.md), and the checkers fail every such run; leave --outputs out (majority is drawn) or leave the corrupt faults out`);
  const variant = (args.get("variant") ?? "correct") as SimOptions["variant"];
  if (!["correct", "stale-reads", "early-commit", "apply-uncommitted"].includes(variant!)) throw new Error("--variant must be correct, stale-reads, early-commit or apply-uncommitted");
  const geo = args.has("geo") ? geoOptions(args) : undefined;
  const base: Omit<SimOptions, "seed"> = {
    ops: int(args, "ops", 300),
    replicas: int(args, "replicas", geo ? geo.locations.length : 3),
    faults: geo && !args.has("faults") ? ["isolate-location"] : faults,
    machine,
    ...(outputs ? { outputs } : {}),
    variant,
    clients: int(args, "clients", geo ? geo.locations.length : 5),
    batches: !args.has("no-batches"),
    colocate: !args.has("no-colocate"),
    ...(args.has("session-idle") ? { sessionIdleMs: int(args, "session-idle", 0) } : {}),
    // Negative: every session row keeps the marker (every retry of an executed command answers it).
    ...(args.has("output-free") ? { sessionOutputFreeChars: Number(args.get("output-free")) } : {}),
    ...(args.has("sleep-after") ? { sleepAfterMs: int(args, "sleep-after", 0) } : {}),
    ...(args.has("log-bytes") ? { logBytes: int(args, "log-bytes", 0) } : {}),
    ...(args.has("watchers") ? { watchers: int(args, "watchers", 0) } : {}),
    ...(geo ? { geo } : {}),
  };
  if (base.replicas < 1 || base.replicas > 7) throw new Error("--replicas must be 1..7");

  if (args.has("seeds")) {
    const k = int(args, "seeds", 10);
    let failed = 0;
    let ops = 0;
    let failovers = 0;
    let forgotten = 0;
    let sleeps = 0;
    let moves = 0;
    let requarantined = 0;
    let requarantinedRuns = 0;
    let watchEvents = 0;
    const takeovers: number[] = [];
    const slowest: { seed: number; ms: number }[] = [];
    for (let i = 0; i < k; i++) {
      const seed = Math.floor(Math.random() * 2 ** 31);
      // Named before it runs: a run that kills the process (V8's heap limit) still leaves its seed.
      process.stderr.write(`running seed ${seed} (${i + 1} of ${k})\n`);
      let first: string | null;
      try {
        const r = await simulate({ ...base, seed });
        ops += Number(r.stats.acked ?? 0); // a run that failed early has no counts
        failovers += Number(r.stats.failovers ?? 0);
        forgotten += Number(r.stats.forgotten ?? 0);
        sleeps += Number(r.stats.sleeps ?? 0);
        moves += Number(r.stats.moves ?? 0);
        requarantined += Number(r.stats.requarantined ?? 0);
        if (Number(r.stats.requarantined ?? 0) > 0) requarantinedRuns++;
        watchEvents += Number(r.stats.watchEvents ?? 0);
        if (r.stats.takeoverMs !== undefined) {
          takeovers.push(Number(r.stats.takeoverMs));
          slowest.push({ seed, ms: Number(r.stats.takeoverMs) });
        }
        first = r.failures[0] ?? null;
      } catch (err) {
        // A crash of the run itself (the harness or a checker, e.g. the linearizability search
        // outgrowing its memo on a long, very concurrent history) still names its seed.
        first = `the run itself threw: ${err instanceof Error ? err.message : String(err)}`;
      }
      if (first !== null) {
        failed++;
        console.log(`FAIL seed ${seed}: ${first}\n  reproduce: ${reproduce({ ...base, seed })}`);
      }
    }
    takeovers.sort((a, b) => a - b);
    const takeover = takeovers.length > 0 ? `; takeover (isolation to the successor's first acknowledged write) p50 ${takeovers[Math.floor(takeovers.length / 2)]} ms, max ${takeovers[takeovers.length - 1]} ms over ${takeovers.length} runs` : "";
    console.log(`${k - failed} passed, ${failed} failed (${k} seeds, ${ops} acknowledged commands, ${failovers} failovers${base.sessionIdleMs !== undefined ? `, ${forgotten} clients forgotten` : ""}${base.sleepAfterMs !== undefined ? `, ${sleeps} sleeps` : ""}${moves > 0 ? `, ${moves} moves` : ""}, ${requarantined} healthy replicas told "quarantined" in ${requarantinedRuns} runs${base.watchers ? `, ${watchEvents} watch events` : ""}${takeover})`);
    slowest.sort((a, b) => b.ms - a.ms);
    if (slowest.length > 0) console.log(`slowest takeovers: ${slowest.slice(0, 5).map((t) => `seed ${t.seed} ${t.ms} ms`).join(", ")}`);
    return failed > 0 ? 1 : 0;
  }

  const seed = int(args, "seed", 1);
  const r = await simulate({ ...base, seed });
  console.log(`seed ${seed}: ${Object.entries(r.stats).map(([k, v]) => `${k}=${v}`).join(" ")}`);
  console.log(`trace ${r.trace}`);
  if (r.geo) printGeo(r.geo, base.geo!);
  if (r.failures.length === 0) {
    console.log("ok: every checker passed");
    return 0;
  }
  console.log(`FAILED (${r.failures.length}):`);
  for (const f of r.failures) console.log(`  - ${f}`);
  console.log(`reproduce: ${reproduce({ ...base, seed })}`);
  return 1;
}

function geoOptions(args: Map<string, string>): NonNullable<SimOptions["geo"]> {
  const locations = (args.get("locations") ?? "wnam,weur,apac").split(",");
  for (const l of locations) if (!isLocationHint(l)) throw new Error(`unknown location ${l}; known: ${locationHints.join(", ")}`);
  const sequencer = args.get("sequencer") ?? locations[0]!;
  if (!isLocationHint(sequencer)) throw new Error(`unknown location ${sequencer}`);
  return { locations, sequencer };
}

function printGeo(geo: NonNullable<SimResult["geo"]>, where: NonNullable<SimOptions["geo"]>): void {
  console.log(`\ngeography: replicas in ${where.locations.join(", ")}, sequencer in ${where.sequencer}; one client per location, reading at its nearest replica`);
  console.log("client at | write p50/p99 ms | linearizable | sequential | stale");
  for (const [at, kinds] of Object.entries(geo.latencies)) {
    const cell = (k: string) => (kinds[k] ? `${kinds[k]!.p50} / ${kinds[k]!.p99} (${kinds[k]!.n})` : "-");
    console.log(`${at} | ${cell("write")} | ${cell("linearizable")} | ${cell("sequential")} | ${cell("stale")}`);
  }
  const t = geo.takeoverMs;
  console.log(t.length > 0 ? `writes resumed after the sequencer's location was isolated: ${t.join(", ")} ms (isolation to the successor's first acknowledged write)` : "no takeover in this run");
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(String(err instanceof Error ? err.message : err));
    process.exit(2);
  },
);
