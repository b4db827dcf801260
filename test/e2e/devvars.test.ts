// `npm start` on a fresh clone: no tokens configured, so it writes a git-ignored .dev.vars with
// random tokens and says where they are; it never overwrites one, and writes none when tokens
// come as --var. Run in a copy with a stand-in wrangler that records its arguments.
import { execFileSync } from "node:child_process";
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
