// npm run fuzz -- [--runs N] [--seed S] [--path P] [--cases-per-run M] [--batch B] [--allow-changed]
//
// The core fuzz property (test/fuzz/cores.ts) for N cases (default 10,000): generated bodies
// through the router's gate, the accepted ones into fresh groups of real cores over UTF-8 storage,
// checked every B cases (default 50). Prints a summary; exits 1 on the first failure, with the
// seed and path that replay it: npm run fuzz -- --seed S --path P (same --cases-per-run).
import fc from "fast-check";
import { coresProperty, FuzzStats } from "./cores.js";
import { toolFlags } from "../support/args.js";

const usage = `usage: npm run fuzz -- [--runs N] [--seed S] [--path P] [--cases-per-run M] [--batch B] [--allow-changed]
  N generated cases (default 10,000) through the router's gate into fresh groups of real cores,
  checked every B cases (default 50); exits 1 on a failure, printing the --seed and --path that replay it`;

function int(args: Map<string, string>, name: string, fallback: number, min = 1): number {
  const v = args.get(name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}`);
  return n;
}

function main(): number {
  const args = toolFlags(process.argv.slice(2), { usage, switches: ["allow-changed"], texts: ["runs", "seed", "path", "cases-per-run", "batch"] });
  const cases = int(args, "runs", 10_000);
  const perRun = int(args, "cases-per-run", 250);
  const batch = int(args, "batch", 50);
  const allowChanged = args.has("allow-changed");
  const baseSeed = args.has("seed") ? int(args, "seed", 0, -(2 ** 31)) | 0 : (Math.random() * 2 ** 31) | 0;
  const stats = new FuzzStats();
  const property = coresProperty(stats, perRun, { batch, allowChanged });
  const started = Date.now();
  const reproduce = (seed: number, path: string) =>
    `npm run fuzz -- --seed ${seed} --path ${path} --cases-per-run ${perRun}${batch !== 50 ? ` --batch ${batch}` : ""}${allowChanged ? " --allow-changed" : ""}`;

  const runOnce = (seed: number, numRuns: number, path?: string): boolean => {
    const r = fc.check(property, { seed, numRuns, ...(path ? { path } : {}) });
    if (!r.failed) return true;
    const err = r.errorInstance instanceof Error ? r.errorInstance.message : String(r.errorInstance);
    console.log(`FAILED after ${r.numRuns} runs (shrunk ${r.numShrinks} times): ${err}`);
    console.log(`counterexample: ${fc.stringify(r.counterexample).slice(0, 20_000)}`);
    if (r.counterexamplePath !== null) console.log(`\nreproduce: ${reproduce(r.seed, r.counterexamplePath)}`);
    return false;
  };

  let ok = true;
  if (args.has("path")) {
    ok = runOnce(baseSeed, 1, args.get("path"));
  } else {
    // Chunks of runs, each with its own seed, until N cases have been run (a run's length varies).
    for (let chunk = 0; ok && stats.cases < cases; chunk++) {
      const left = cases - stats.cases;
      const numRuns = Math.max(1, Math.min(100, Math.ceil(left / (perRun / 2))));
      ok = runOnce((baseSeed + chunk * 7919) | 0, numRuns);
    }
  }
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`\nfuzz ${ok ? "ok" : "FAILED"}: ${stats.line()}, ${secs} s (base seed ${baseSeed})`);
  console.log(stats.summary());
  if (stats.changed > 0) console.log(`changed by validation, first: ${stats.changedFirst}`);
  return ok ? 0 : 1;
}

try {
  process.exit(main());
} catch (err) {
  console.error(err instanceof Error ? err.message : err);
  process.exit(2);
}
