#!/usr/bin/env node
// `npm test`: strict typecheck, the production bundle (so a broken bundle fails here), then
// every test (plain Node: unit, sim, e2e against the built worker; workerd: Durable Objects).
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const bin = (name) => join(root, "node_modules", ".bin", name);
const env = { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" };

const report = join(root, "dist", "vitest-report.json");
rmSync(report, { force: true });
const steps = [
  ["typecheck", bin("tsc"), ["--noEmit", "-p", "tsconfig.json"]],
  ["bundle", bin("wrangler"), ["deploy", "--dry-run", "--outdir", "dist"]],
  ["tests", bin("vitest"), ["run", "--reporter=default", "--reporter=json", `--outputFile.json=${report}`, ...process.argv.slice(2)]],
];
let failedStep = null;
for (const [name, cmd, args] of steps) {
  console.log(`\n== ${name}: ${[cmd.replace(root + "/", ""), ...args].join(" ")}`);
  const r = spawnSync(cmd, args, { cwd: root, env, stdio: "inherit" });
  if (r.status !== 0) {
    console.error(`\n${name} failed (exit ${r.status ?? r.signal})`);
    failedStep = r.status || 1;
    break;
  }
}
// One plain closing line with the counts, whatever the runner printed above.
if (existsSync(report)) {
  const j = JSON.parse(readFileSync(report, "utf8"));
  console.log(`\ntests: ${j.numPassedTests} passed, ${j.numFailedTests} failed`);
}
process.exit(failedStep ?? 0);
