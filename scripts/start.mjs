#!/usr/bin/env node
// `npm start`: runs the worker under `wrangler dev` on :8787, passing extra arguments through.
// On a fresh clone there are no tokens: create a git-ignored .dev.vars with random ones first.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
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
const lock = claimPersistFolder(persistFolder(args));
const child = spawn(wrangler, ["dev", ...defaults, ...args], { cwd: root, env, stdio: "inherit" });
lock.hold(child.pid);
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(sig, () => child.kill(sig));
child.on("exit", (code, signal) => process.exit(signal ? 1 : (code ?? 0)));
// A SIGTERM to `npm start` ends npm and its shell without passing it on (npm 11, dash): this
// process, wrangler and workerd went on serving, re-parented to init (a probe). Parent gone: stop.
const parent = process.ppid;
setInterval(() => process.ppid !== parent && child.kill("SIGTERM"), 1_000).unref();

/** The folder wrangler dev keeps the objects' storage in: --persist-to's, or its default. */
function persistFolder(argv) {
  const at = argv.findIndex((a) => a === "--persist-to" || a.startsWith("--persist-to="));
  if (at === -1) return join(root, ".wrangler", "state");
  return resolve(root, argv[at].includes("=") ? argv[at].slice(argv[at].indexOf("=") + 1) : (argv[at + 1] ?? ""));
}

/**
 * One server per storage folder: two wrangler dev over the same SQLite files each ran every
 * group's objects, both acknowledged different commands at the same seqs, and one audit found the
 * state diverged (a probe, after an orphaned server kept running). The folder's `smr-server.pid`
 * names this process and its wrangler; a live one refuses the start, a dead one's is taken over.
 */
function claimPersistFolder(folder) {
  const file = join(folder, "smr-server.pid");
  mkdirSync(folder, { recursive: true });
  let held = null;
  try {
    held = readFileSync(file, "utf8");
  } catch {
    // no server has it
  }
  const alive = (pid) => {
    try {
      return process.kill(pid, 0), true;
    } catch (err) {
      return err.code === "EPERM";
    }
  };
  const live = (held ?? "").split(/\s+/).map(Number).filter((pid) => Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && alive(pid));
  if (live.length > 0) {
    console.error(`Another server (pid ${live.join(", ")}) is using ${folder}: two over the same storage would each run every group. Stop it first, pass another --persist-to, or delete ${file} if no such server runs.`);
    process.exit(1);
  }
  let mine = String(process.pid);
  writeFileSync(file, mine);
  process.on("exit", () => {
    try {
      if (readFileSync(file, "utf8") === mine) unlinkSync(file);
    } catch {
      // gone already
    }
  });
  return { hold: (childPid) => writeFileSync(file, (mine = `${process.pid} ${childPid ?? ""}`.trim())) };
}
