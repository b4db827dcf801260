// `npm start` (scripts/start.mjs -> wrangler dev) serves the API with tokens passed as --var.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { freePort, root } from "../support/server.js";

let child: ChildProcess | undefined;
const dir = mkdtempSync(join(tmpdir(), "smr-start-"));
afterAll(() => {
  child?.kill("SIGTERM");
  rmSync(dir, { recursive: true, force: true });
});

describe("npm start", () => {
  it("passes --port, --persist-to and --var through to wrangler dev and serves the API", async () => {
    const port = await freePort();
    child = spawn(
      process.execPath,
      [join(root, "scripts/start.mjs"), "--port", String(port), "--persist-to", dir, "--var", "ADMIN_TOKEN:s1", "--var", "CLIENT_TOKENS:t1,t2"],
      // Without the caller's own X_LOCAL_OBSERVABILITY: start.mjs's default is what is tested.
      { cwd: root, stdio: "pipe", env: Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== "X_LOCAL_OBSERVABILITY")) },
    );
    let output = "";
    child.stdout!.on("data", (d) => (output += d));
    child.stderr!.on("data", (d) => (output += d));
    const url = `http://127.0.0.1:${port}`;
    let healthy = false;
    for (let i = 0; i < 120 && !healthy; i++) {
      await new Promise((r) => setTimeout(r, 500));
      healthy = await fetch(`${url}/healthz`).then((r) => r.ok, () => false);
    }
    expect(healthy, output).toBe(true);
    const put = await fetch(`${url}/v1/groups/started`, {
      method: "PUT",
      headers: { authorization: "Bearer s1" },
      body: JSON.stringify({ machine: "kv", replicas: 1 }),
    });
    expect(put.status).toBe(201);
    const cmd = await fetch(`${url}/v1/groups/started/commands`, {
      method: "POST",
      headers: { authorization: "Bearer t2" },
      body: JSON.stringify({ client: "c", request: 1, command: { op: "put", key: "k", value: 1 } }),
    });
    expect(await cmd.json()).toMatchObject({ seq: 1, output: { previous: null } });
    const forbidden = await fetch(`${url}/v1/groups`, { headers: { authorization: "Bearer t1" } });
    expect(forbidden.status).toBe(403);
    const cron = await fetch(`${url}/cdn-cgi/handler/scheduled`);
    expect(cron.status).toBe(200);
    const audits = await fetch(`${url}/v1/groups/started/audits`, { headers: { authorization: "Bearer t1" } });
    expect(((await audits.json()) as any).audits.length).toBeGreaterThanOrEqual(1);
    // --persist-to: the objects' SQLite files are in that folder.
    expect(readdirSync(dir, { recursive: true }).filter((f) => String(f).endsWith(".sqlite")).length).toBeGreaterThan(0);
    // Wrangler's local trace store stays off (it kept every request, 27 MB a minute under load: a probe).
    expect(readdirSync(dir, { recursive: true }).filter((f) => String(f).includes("observability"))).toEqual([]);
    // A second server over the same storage is refused (two ran every group, and acknowledged
    // different commands at the same seqs: a probe).
    const second = spawnSync(process.execPath, [join(root, "scripts/start.mjs"), "--port", String(await freePort()), `--persist-to=${dir}`, "--var", "ADMIN_TOKEN:s1"], { cwd: root, encoding: "utf8", timeout: 30_000 });
    expect(second.status).toBe(1);
    expect(second.stderr).toMatch(new RegExp(`^Another server \\(pid ${child.pid}, \\d+\\) is using ${dir}`));
    expect(readFileSync(join(dir, "smr-server.pid"), "utf8")).toMatch(new RegExp(`^${child.pid} \\d+$`));
    // A server no pid file names (an older build's start wrote none, and one ran beside a current
    // one: an upgrade probe) is found by its command line.
    renameSync(join(dir, "smr-server.pid"), join(dir, "smr-server.pid.kept"));
    try {
      const third = spawnSync(process.execPath, [join(root, "scripts/start.mjs"), "--port", String(await freePort()), "--persist-to", dir, "--var", "ADMIN_TOKEN:s1"], { cwd: root, encoding: "utf8", timeout: 30_000 });
      expect(third.status, third.stderr).toBe(1);
      expect(third.stderr).toMatch(new RegExp(`^Another server \\(pid \\d+(, \\d+)*\\) is using ${dir}, started without this script's pid file`));
      expect(existsSync(join(dir, "smr-server.pid"))).toBe(false); // the refused start leaves none behind
    } finally {
      renameSync(join(dir, "smr-server.pid.kept"), join(dir, "smr-server.pid"));
    }
  }, 90_000);
});
