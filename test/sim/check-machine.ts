// npm run check-machine -- NAME [--seeds K] [--ops N] [--replicas 3,5] [--commands N]
// Checks that a listed machine is deterministic (docs/MACHINES.md): a static scan of
// shared/machines/NAME.ts and what it imports, its generated commands applied twice to cloned
// states, and the simulator under faults. Prints a report; exits 0 if every check passed.
import { existsSync } from "node:fs";
import { machineFor, machineNames } from "../../shared/machines/index.js";
import { parseFlags } from "../support/args.js";
import { checkFaults, cloneCheck, freshInstance, simCheck, staticCheck } from "./machine-checks.js";

/** How much of one failure's line is printed. */
const failureCharsShown = 600;

function count(args: Map<string, string>, name: string, fallback: number): number {
  const v = args.get(name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer`);
  return n;
}

async function main(): Promise<number> {
  const [name, ...rest] = process.argv.slice(2);
  if (!name || name.startsWith("--")) throw new Error(`usage: npm run check-machine -- NAME [--seeds K] [--ops N] [--replicas 3,5] [--commands N]; machines: ${machineNames.join(", ")}`);
  if (!machineNames.includes(name)) throw new Error(`${name} is not listed in shared/machines/index.ts (listed: ${machineNames.join(", ")})`);
  const args = parseFlags(rest);
  for (const k of args.keys()) if (!["seeds", "ops", "replicas", "commands"].includes(k)) throw new Error(`unknown option --${k}`);
  const machine = machineFor(name);
  const seeds = Array.from({ length: count(args, "seeds", 3) }, (_, i) => i + 1);
  const replicas = (args.get("replicas") ?? "3,5").split(",").map(Number);
  if (replicas.some((r) => !Number.isInteger(r) || r < 1 || r > 7)) throw new Error("--replicas must list counts in 1..7");
  let failed = 0;
  const section = (title: string, failures: string[]) => {
    console.log(`${failures.length === 0 ? "PASS" : "FAIL"} ${title}`);
    // Cut: a failure quotes whole rows and outputs, several KB each for a machine of large values (a probe).
    for (const f of failures) console.log(`  - ${f.length > failureCharsShown ? `${f.slice(0, failureCharsShown)}... (${f.length} characters)` : f}`);
    if (failures.length > 0) failed++;
  };

  const file = `shared/machines/${name}.ts`;
  if (!existsSync(file)) section(`static check: ${file} not found (a machine lives in shared/machines/NAME.ts)`, [`no file ${file}`]);
  else section(`static check of ${file} and its imports: no clock, randomness, timers or I/O`, staticCheck(file).map((f) => `${f.file}:${f.line}: ${f.what}`));

  const commands = count(args, "commands", 300);
  // The second clone runs a fresh instance of the module: state kept outside the rows shows.
  const clone: string[] = [];
  for (const seed of seeds) {
    const fresh = existsSync(file) ? await freshInstance(file, name) : undefined;
    clone.push(...cloneCheck(machine, { seed, prefix: 50, commands, ...(fresh ? { fresh } : {}) }).map((f) => `seed ${seed}: ${f}`));
  }
  section(`${seeds.length} x ${commands} generated commands applied twice to cloned states (one by a fresh copy of the module), then replayed from the start`, clone);

  const ops = count(args, "ops", 200);
  console.log(`simulating ${replicas.join(" and ")} replicas x ${seeds.length} seeds, ${ops} operations each, faults ${checkFaults.join(",")}, outputs majority:`);
  section("simulation: equal digests and outputs on every replica, reads equal to the reference", await simCheck(name, { seeds, replicas, ops, faults: checkFaults }, (line) => console.log(line)));

  console.log(failed === 0 ? `${name}: every check passed` : `${name}: ${failed} check(s) failed`);
  return failed === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(String(err instanceof Error ? err.message : err));
    process.exit(2);
  },
);
