#!/usr/bin/env node
// `npm start`: runs the worker under `wrangler dev` on :8787, passing extra arguments through.
// On a fresh clone there are no tokens: create a git-ignored .dev.vars with random ones first.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const devVars = join(root, ".dev.vars");
const tokensGiven = args.some((a, i) => args[i - 1] === "--var" && /^(ADMIN_TOKEN|CLIENT_TOKENS)[:=]/.test(a));

if (!tokensGiven && !existsSync(devVars)) {
  const admin = randomBytes(24).toString("hex");
  const client = randomBytes(24).toString("hex");
  writeFileSync(devVars, `ADMIN_TOKEN=${admin}\nCLIENT_TOKENS=${client}\n`, { mode: 0o600 });
  console.log(`Created ${devVars} with random tokens (git-ignored):`);
  console.log(`  ADMIN_TOKEN=${admin}`);
  console.log(`  CLIENT_TOKENS=${client}`);
} else if (!tokensGiven) {
  console.log(`Tokens for local development are in ${devVars}`);
}

// Wrangler's local trace store (on by default) keeps every request of `wrangler dev` and is never
// pruned: 27 MB a minute under a soak's load, 1.2 GB in 46 minutes, three times the groups' own
// storage (a probe). Off unless asked for (X_LOCAL_OBSERVABILITY=true); console lines still print.
const env = { X_LOCAL_OBSERVABILITY: "false", ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" };
const wrangler = join(root, "node_modules", ".bin", "wrangler");
const defaults = [];
if (!args.some((a) => a === "--port" || a.startsWith("--port="))) defaults.push("--port", "8787");
if (!args.some((a) => a === "--ip" || a.startsWith("--ip="))) defaults.push("--ip", "127.0.0.1");
const child = spawn(wrangler, ["dev", ...defaults, ...args], { cwd: root, env, stdio: "inherit" });
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => child.kill(sig));
child.on("exit", (code, signal) => process.exit(signal ? 1 : (code ?? 0)));
