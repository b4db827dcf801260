// Runs the CLI (bin/smr.mjs, as `npx smr` does) as a child process, in a directory of the test's
// choosing and with only the SMR_* variables the test gives it.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { join } from "node:path";
import { root } from "./server.js";

export const smrBin = join(root, "bin", "smr.mjs");

/**
 * A URL whose port nothing listens on (taken, then let go): a server that is down. Not a port
 * fetch blocks (`:9`, `:1`): those fail before connecting, and the client gives up at once.
 */
export async function downUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}`;
}

export interface SmrRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** The environment without the caller's own SMR_URL / SMR_TOKEN, plus the given variables. */
export function smrEnv(vars: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.SMR_URL;
  delete env.SMR_TOKEN;
  return { ...env, NO_COLOR: "1", ...vars };
}

export function smr(args: string[], opts: { cwd: string; env?: Record<string, string> }): Promise<SmrRun> {
  return new Promise((resolve) => {
    execFile(process.execPath, [smrBin, ...args], { cwd: opts.cwd, env: smrEnv(opts.env), encoding: "utf8", timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Like smr(), but fails the test with the CLI's stderr when it does not exit 0. */
export async function smrOk(args: string[], opts: { cwd: string; env?: Record<string, string> }): Promise<string> {
  const r = await smr(args, opts);
  if (r.code !== 0) throw new Error(`smr ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** A long-running CLI (watch): its output so far, and a way to wait for enough of it. */
export function smrSpawn(args: string[], opts: { cwd: string; env?: Record<string, string> }) {
  const child: ChildProcess = spawn(process.execPath, [smrBin, ...args], { cwd: opts.cwd, env: smrEnv(opts.env), stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return {
    child,
    exited,
    output: () => ({ stdout, stderr }),
    /** Resolves once stdout has `lines` lines; rejects if the process exits first or after timeoutMs. */
    async waitLines(lines: number, timeoutMs = 60_000): Promise<string[]> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const got = stdout.split("\n").filter((l) => l.length > 0);
        if (got.length >= lines) return got;
        if (child.exitCode !== null) throw new Error(`smr exited ${child.exitCode} after ${got.length} lines: ${stderr}`);
        if (Date.now() > deadline) throw new Error(`smr printed ${got.length} of ${lines} lines in ${timeoutMs} ms: ${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}
