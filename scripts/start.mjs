#!/usr/bin/env node
// `npm start`: runs the worker under `wrangler dev` on :8787, passing extra arguments through.
// On a fresh clone there are no tokens: create a git-ignored .dev.vars with random ones first.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, linkSync, mkdirSync, readFileSync, readdirSync, readlinkSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
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
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => child.kill(sig));
child.on("exit", (code, signal) => process.exit(signal ? 1 : (code ?? 0)));

/** The folder wrangler dev keeps the objects' storage in: --persist-to's (or --persistTo's), or its default. */
function persistFolder(argv) {
  const folder = persistFolderOf(argv, root);
  if (folder === null) fail(`${argv.find((a) => a.startsWith("--persist"))?.split("=")[0]} needs a folder`);
  return folder;
}

/** The storage folder of a wrangler dev run with these arguments from `cwd`, its config in `configDir` (null: the flag without a folder). */
function persistFolderOf(argv, cwd, configDir = cwd) {
  const flags = ["--persist-to", "--persistTo"];
  const at = argv.findIndex((a) => flags.includes(a) || flags.some((f) => a.startsWith(`${f}=`)));
  if (at === -1) return join(configDir, ".wrangler", "state");
  const a = argv[at];
  const value = flags.includes(a) ? argv[at + 1] : a.slice(a.indexOf("=") + 1);
  return !value || value.startsWith("--") ? null : resolve(cwd, value);
}

function fail(message) {
  console.error(message);
  process.exit(1);
}

/**
 * One server per storage folder: two wrangler dev over the same SQLite files each ran every
 * group's objects, both acknowledged different commands at the same seqs, and one audit found the
 * state diverged (a probe: a SIGTERM to `npm start` ended npm and its shell without passing it on,
 * and the server went on, re-parented). The folder's `smr-server.pid` names this process and its
 * wrangler. It appears whole (written aside, then linked: a reader never finds it empty), a start
 * finding it refuses while either is a live server's process, and one whose processes are gone
 * (kill -9) or are now others (a pid reused) is moved aside by one start at a time (the one that
 * made `smr-server.pid.takeover`), once read again and found the same.
 */
function claimPersistFolder(folder) {
  const file = join(folder, "smr-server.pid");
  const aside = (what) => `${file}.${what}-${process.pid}`;
  // This start's own files beside it go whatever happens (a failed start left them: a review).
  process.on("exit", () => ["new", "stale", "hold"].forEach((what) => removeQuietly(aside(what))));
  try {
    mkdirSync(folder, { recursive: true });
    writeFileSync(aside("new"), String(process.pid));
  } catch (err) {
    fail(`Cannot keep the server's storage in ${folder}: ${err.code ?? err.message}`);
  }
  for (let tries = 0; ; tries++) {
    if (tries === 200) fail(`Could not take ${file}: other starts keep changing it`);
    try {
      linkOrCreate(aside("new"), file);
      break;
    } catch (err) {
      if (err.code !== "EEXIST") fail(`Cannot write ${file}: ${err.code ?? err.message}`);
    }
    const held = readText(file);
    if (held === null) continue; // gone meanwhile
    const live = serversIn(held);
    if (live.length > 0) {
      rmSync(aside("new"), { force: true });
      fail(`Another server (pid ${live.join(", ")}) is using ${folder}: two over the same storage would each run every group. Stop it first (kill ${live[0]}), or pass another --persist-to.`);
    }
    // One start at a time judges and moves a stale file: without this, of three or more starts at
    // once one's move could take another's fresh file, and two ran (a review).
    if (!takeTurn(`${file}.takeover`)) continue;
    try {
      if (readText(file) !== held) continue; // replaced meanwhile: looked at again
      renameSync(file, aside("stale"));
      rmSync(aside("stale"), { force: true });
    } catch {
      // gone meanwhile: looked at again
    } finally {
      removeQuietly(`${file}.takeover`, true);
    }
  }
  rmSync(aside("new"), { force: true });
  let mine = String(process.pid);
  process.on("exit", () => readText(file) === mine && rmSync(file, { force: true }));
  const unnamed = unnamedServersOver(folder);
  if (unnamed.length > 0) {
    fail(`Another server (pid ${unnamed.join(", ")}) is using ${folder}, started without this script's pid file (an older build's npm start, or wrangler dev by hand): two over the same storage would each run every group. Stop it first (kill ${unnamed[0]}), or pass another --persist-to.`);
  }
  return {
    hold: (childPid) => {
      // Replaced whole (renamed over it): a reader never finds it empty.
      const text = `${process.pid} ${childPid ?? ""}`.trim();
      try {
        writeFileSync(aside("hold"), text);
        renameSync(aside("hold"), file);
        mine = text;
      } catch (err) {
        console.error(`Could not note wrangler's pid in ${file} (${err.code ?? err.message}): a second start is refused only while this one runs`);
      }
    },
  };
}

/**
 * The takeover's turn: a folder made by one start only (mkdir is atomic). Not had: false, after a
 * short pause. One left by a start killed within its turn (a moment's work) is taken after 5 s.
 */
function takeTurn(lock) {
  try {
    mkdirSync(lock);
    return true;
  } catch (err) {
    if (err.code !== "EEXIST") fail(`Cannot take ${lock}: ${err.code ?? err.message}`);
  }
  try {
    if (Date.now() - statSync(lock).mtimeMs > 5_000) removeQuietly(lock, true);
  } catch {
    // gone meanwhile
  }
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  return false;
}

/**
 * `to` made as a copy of `from`, failing with EEXIST if it is there: a hard link (it appears
 * whole), or, on a file system without them (vfat, some network and container mounts: a review),
 * an exclusive create written at once.
 */
function linkOrCreate(from, to) {
  try {
    linkSync(from, to);
  } catch (err) {
    if (!["EPERM", "ENOTSUP", "EOPNOTSUPP", "EXDEV", "ENOSYS"].includes(err.code)) throw err;
    writeFileSync(to, readFileSync(from), { flag: "wx" });
  }
}

function removeQuietly(file, folder = false) {
  try {
    rmSync(file, { force: true, recursive: folder });
  } catch {
    // not there to remove (its folder is no folder)
  }
}

function readText(file) {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return null;
  }
}

/**
 * The `wrangler dev` processes over this folder, found by their command lines (Linux's /proc;
 * elsewhere none): a server no pid file names. A build from before the pid file, started over a
 * folder a current one then took too, ran beside it, and the two acknowledged different commands
 * at the same seq (an upgrade probe).
 */
function unnamedServersOver(folder) {
  let pids;
  try {
    pids = readdirSync("/proc").filter((d) => /^\d+$/.test(d)).map(Number);
  } catch {
    return [];
  }
  const same = (a, b) => a !== null && realPath(a) === realPath(b);
  return pids.filter((pid) => {
    if (pid === process.pid) return false;
    const argv = (readText(`/proc/${pid}/cmdline`) ?? "").split("\0").filter(Boolean);
    const at = argv.findIndex((a) => /(^|\/)wrangler(\.js)?$|wrangler-dist\/cli\.js$/.test(a));
    const rest = argv.slice(at + 1);
    if (at === -1 || !rest.includes("dev")) return false;
    let cwd;
    try {
      cwd = readlinkSync(`/proc/${pid}/cwd`);
    } catch {
      return false; // another user's: not readable, and not a start of this user's either
    }
    // wrangler's default folder is beside its config: --config's, or the nearest up from its cwd.
    return same(persistFolderOf(rest, cwd, configFolder(rest, cwd)), folder);
  });
}

/** The folder of the wrangler config a run uses: -c/--config's, else the nearest holding one up from cwd (else cwd). */
function configFolder(argv, cwd) {
  const at = argv.findIndex((a) => a === "-c" || a === "--config" || a.startsWith("--config="));
  if (at !== -1) {
    const value = argv[at].startsWith("--config=") ? argv[at].slice("--config=".length) : argv[at + 1];
    if (value) return dirname(resolve(cwd, value));
  }
  for (let dir = cwd; ; dir = dirname(dir)) {
    if (["wrangler.toml", "wrangler.json", "wrangler.jsonc"].some((f) => existsSync(join(dir, f)))) return dir;
    if (dirname(dir) === dir) return cwd;
  }
}

/** The path with symbolic links resolved, as far as it exists. */
function realPath(path) {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/** The pids in a pid file that are live processes of a server (start.mjs, wrangler), where /proc tells; alive ones elsewhere. */
function serversIn(text) {
  const pids = (text ?? "").split(/\s+/).map(Number).filter((pid) => Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid);
  return pids.filter((pid) => {
    const cmdline = readText(`/proc/${pid}/cmdline`);
    if (cmdline !== null) return /start\.mjs|wrangler/.test(cmdline);
    try {
      process.kill(pid, 0);
      return true;
    } catch (err) {
      return err.code === "EPERM";
    }
  });
}
