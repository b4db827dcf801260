// `npm start` on a fresh clone: no tokens configured, so it writes a git-ignored .dev.vars with
// random tokens and says where they are; it never overwrites one, and writes none when tokens
// come as --var. Run in a copy with a stand-in wrangler that records its arguments.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { root } from "../support/server.js";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function copyProject(): string {
  const dir = mkdtempSync(join(tmpdir(), "smr-devvars-"));
  dirs.push(dir);
  mkdirSync(join(dir, "scripts"));
  mkdirSync(join(dir, "node_modules", ".bin"), { recursive: true });
  copyFileSync(join(root, "scripts", "start.mjs"), join(dir, "scripts", "start.mjs"));
  const fake = join(dir, "node_modules", ".bin", "wrangler");
  writeFileSync(fake, `#!/bin/sh\necho "$@" > "${join(dir, "wrangler-args")}"\n`);
  chmodSync(fake, 0o755);
  return dir;
}

const start = (dir: string, args: string[] = []) => execFileSync(process.execPath, [join(dir, "scripts", "start.mjs"), ...args], { cwd: dir, encoding: "utf8" });

describe("npm start's tokens", () => {
  it("creates .dev.vars with random tokens on the first run, keeps it afterwards, and passes wrangler dev its port", () => {
    const dir = copyProject();
    const out = start(dir);
    const file = join(dir, ".dev.vars");
    expect(out).toContain(`Created ${file}`);
    const vars = readFileSync(file, "utf8");
    expect(vars).toMatch(/^ADMIN_TOKEN=[0-9a-f]{48}\nCLIENT_TOKENS=[0-9a-f]{48}\n$/);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, "wrangler-args"), "utf8").trim()).toBe("dev --port 8787 --ip 127.0.0.1");
    expect(start(dir)).toContain(`Tokens for local development are in ${file}`);
    expect(readFileSync(file, "utf8")).toBe(vars);
    // Two fresh copies get different tokens.
    const other = copyProject();
    start(other);
    expect(readFileSync(join(other, ".dev.vars"), "utf8")).not.toBe(vars);
  });

  it("writes nothing when tokens are passed with --var, and passes every argument through", () => {
    const dir = copyProject();
    start(dir, ["--port", "9001", "--var", "ADMIN_TOKEN:s1", "--var", "CLIENT_TOKENS:t1,t2"]);
    expect(existsSync(join(dir, ".dev.vars"))).toBe(false);
    expect(readFileSync(join(dir, "wrangler-args"), "utf8").trim()).toBe("dev --ip 127.0.0.1 --port 9001 --var ADMIN_TOKEN:s1 --var CLIENT_TOKENS:t1,t2");
  });

  it(".dev.vars is git-ignored", () => {
    expect(readFileSync(join(root, ".gitignore"), "utf8").split("\n")).toContain(".dev.vars");
  });
});

describe("npm start's storage folder", () => {
  /** A copy whose stand-in wrangler runs until it is stopped, as a server does. */
  function serving(): string {
    const dir = copyProject();
    writeFileSync(join(dir, "node_modules", ".bin", "wrangler"), "#!/bin/sh\nexec sleep 60\n");
    return dir;
  }
  const startIn = (dir: string, args: string[]) => spawnSync(process.execPath, [join(dir, "scripts", "start.mjs"), "--var", "ADMIN_TOKEN:s1", ...args], { cwd: dir, encoding: "utf8", timeout: 20_000 });

  it("refuses a second server over the same folder, whichever way the folder is named (two acknowledged different commands at the same seqs: a probe), and frees it when stopped", async () => {
    const dir = serving();
    const folder = join(dir, "state");
    const first = spawn(process.execPath, [join(dir, "scripts", "start.mjs"), "--var", "ADMIN_TOKEN:s1", "--persist-to", folder], { cwd: dir, stdio: "ignore" });
    const file = join(folder, "smr-server.pid");
    for (let i = 0; i < 100 && !(existsSync(file) && /^\d+ \d+$/.test(readFileSync(file, "utf8"))); i++) await new Promise((r) => setTimeout(r, 50));
    expect(readFileSync(file, "utf8")).toMatch(new RegExp(`^${first.pid} \\d+$`));
    try {
      for (const args of [["--persist-to", folder], [`--persist-to=${folder}`], ["--persistTo", folder], [`--persistTo=${folder}`], ["--persist-to", "state"]]) {
        const second = startIn(dir, args);
        expect(second.status, args.join(" ")).toBe(1);
        expect(second.stderr, args.join(" ")).toMatch(new RegExp(`^Another server \\(pid ${first.pid}(, \\d+)?\\) is using ${folder}`));
      }
    } finally {
      first.kill("SIGTERM");
      await new Promise((r) => first.once("exit", r));
    }
    expect(existsSync(file)).toBe(false);
  });

  it("lets one of several starts at once over a stale file run, and refuses the others (two ran: a review)", async () => {
    for (let trial = 0; trial < 5; trial++) {
      const dir = serving();
      const folder = join(dir, "state");
      mkdirSync(folder);
      writeFileSync(join(folder, "smr-server.pid"), "999999998 999999999");
      const starts = Array.from({ length: 6 }, () => spawn(process.execPath, [join(dir, "scripts", "start.mjs"), "--var", "ADMIN_TOKEN:s1", "--persist-to", folder], { cwd: dir, stdio: "ignore" }));
      const exits = starts.map((p) => new Promise<number | null>((resolve) => p.once("exit", (code) => resolve(code))));
      const refused = await Promise.race([Promise.all(exits.map((e, i) => e.then((code) => ({ i, code })))), new Promise<null>((r) => setTimeout(() => r(null), 3_000))]);
      // Five exited 1 (refused), one still serves.
      const ended = (await Promise.all(exits.map((e) => Promise.race([e, new Promise<"running">((r) => setTimeout(() => r("running"), 100))]))));
      expect(refused, `trial ${trial}`).toBeNull();
      expect(ended.filter((c) => c === "running"), `trial ${trial}: ${ended}`).toHaveLength(1);
      expect(ended.filter((c) => c === 1), `trial ${trial}: ${ended}`).toHaveLength(5);
      for (const p of starts) p.kill("SIGTERM");
      await Promise.all(exits);
      expect(existsSync(join(folder, "smr-server.pid"))).toBe(false);
    }
  }, 60_000);

  it("says in one line what is wrong with the folder (a file, no value), exit 1", () => {
    const dir = copyProject();
    writeFileSync(join(dir, "afile"), "");
    for (const [args, why] of [[["--persist-to", "afile"], /^Cannot keep the server's storage in .*afile: (EEXIST|ENOTDIR)\n$/], [["--persist-to="], /^--persist-to needs a folder\n$/], [["--persistTo", "--port"], /^--persistTo needs a folder\n$/]] as const) {
      const r = startIn(dir, [...args]);
      expect(r.status, args.join(" ")).toBe(1);
      expect(r.stderr, args.join(" ")).toMatch(why);
    }
  });

  it("takes over a file whose processes are gone (kill -9) or are not a server's (a pid reused)", () => {
    for (const pids of ["999999998 999999999", `${process.pid}`]) {
      const dir = copyProject(); // its stand-in wrangler exits at once
      const folder = join(dir, ".wrangler", "state");
      mkdirSync(folder, { recursive: true });
      writeFileSync(join(folder, "smr-server.pid"), pids);
      const r = startIn(dir, []);
      expect(r.status, `${pids}: ${r.stderr}`).toBe(0);
      expect(existsSync(join(folder, "smr-server.pid"))).toBe(false);
    }
  });
});
