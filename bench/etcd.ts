// A three-member etcd cluster on loopback, started and stopped by the benchmark (the peer).
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export function etcdBinary(): string | null {
  try {
    return execFileSync("sh", ["-c", "command -v etcd"], { encoding: "utf8" }).trim() || null;
  } catch {
    return null;
  }
}

export interface EtcdCluster {
  clientUrls: string[];
  /** The three etcd processes (for their CPU time). */
  pids: number[];
  version: string;
  stop(): Promise<void>;
}

/** root: the folder its data folders go under (the bench's storage: bench/storage.ts). */
export async function startEtcd(bin: string, root = tmpdir(), basePort = 23790): Promise<EtcdCluster> {
  const dir = mkdtempSync(join(root, "bench-etcd-"));
  const names = ["e1", "e2", "e3"];
  const peer = (i: number) => `http://127.0.0.1:${basePort + 100 + i}`;
  const client = (i: number) => `http://127.0.0.1:${basePort + i}`;
  const initial = names.map((n, i) => `${n}=${peer(i)}`).join(",");
  const procs: ChildProcess[] = names.map((name, i) =>
    spawn(
      bin,
      [
        "--name", name,
        "--data-dir", join(dir, name),
        "--listen-peer-urls", peer(i),
        "--initial-advertise-peer-urls", peer(i),
        "--listen-client-urls", client(i),
        "--advertise-client-urls", client(i),
        "--initial-cluster", initial,
        "--initial-cluster-state", "new",
        "--initial-cluster-token", "bench",
        "--log-level", "error",
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    ),
  );
  let log = "";
  for (const p of procs) p.stderr!.on("data", (d) => (log += d));
  const version = execFileSync(bin, ["--version"], { encoding: "utf8" }).split("\n")[0]!.trim();
  const deadline = Date.now() + 30_000;
  for (;;) {
    const healthy = await Promise.all(
      names.map((_, i) => fetch(`${client(i)}/health`).then((r) => r.json() as Promise<{ health: string }>, () => null)),
    );
    if (healthy.every((h) => h?.health === "true")) break;
    if (Date.now() > deadline) {
      for (const p of procs) p.kill("SIGKILL");
      throw new Error(`etcd did not become healthy: ${log.slice(-500)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    clientUrls: names.map((_, i) => client(i)),
    pids: procs.map((p) => p.pid!),
    version,
    stop: async () => {
      for (const p of procs) p.kill("SIGTERM");
      await Promise.all(procs.map((p) => new Promise((r) => (p.exitCode !== null ? r(null) : p.on("exit", r)))));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
