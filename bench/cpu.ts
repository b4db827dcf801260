// CPU time the server processes spent, from /proc (Linux only): per operation it is a steadier
// figure than ops/s on a shared, noisy machine (other load slows a run down, but it does not make
// each operation cost more CPU).
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";

let ticksPerSec: number | null = null;
function clockTicksPerSec(): number {
  if (ticksPerSec === null) {
    try {
      ticksPerSec = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      ticksPerSec = 100;
    }
  }
  return ticksPerSec;
}

/** Pids of this process's children whose command name is `name` (workerd, etcd). */
export function childPids(name: string): number[] {
  if (!existsSync("/proc/self/stat")) return [];
  const out: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      const comm = stat.slice(stat.indexOf("(") + 1, close);
      const ppid = Number(stat.slice(close + 2).split(" ")[1]);
      if (comm === name && ppid === process.pid) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** User + system CPU milliseconds of these processes (all their threads) so far; null off Linux. */
export function cpuMs(pids: number[]): number | null {
  if (pids.length === 0) return null;
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]); // utime, stime
    } catch {
      return null;
    }
  }
  return (ticks * 1000) / clockTicksPerSec();
}

/**
 * Runs f and adds the CPU microseconds per operation the given processes spent meanwhile, and the
 * load generator's own (this process: it shares the machine's cores with the servers).
 */
export async function withCpu<T extends { ops: number }>(pids: number[], f: () => Promise<T>): Promise<T & { cpuUsPerOp: number | null; loadCpuUsPerOp: number | null }> {
  const before = cpuMs(pids);
  const own = process.cpuUsage();
  const r = await f();
  const after = cpuMs(pids);
  const ownUs = process.cpuUsage(own);
  const cpuUsPerOp = before === null || after === null || r.ops === 0 ? null : Math.round(((after - before) * 1000) / r.ops);
  const loadCpuUsPerOp = r.ops === 0 ? null : Math.round((ownUs.user + ownUs.system) / r.ops);
  return { ...r, cpuUsPerOp, loadCpuUsPerOp };
}

/**
 * Samples the processes' CPU time every intervalMs while f runs, so CPU can be told per time
 * window afterwards: cpuBetween(fromMs, toMs) in milliseconds since f started (null off Linux).
 */
export async function withCpuSamples<T>(pids: number[], f: () => Promise<T>, intervalMs = 200): Promise<{ result: T; cpuBetween(fromMs: number, toMs: number): number | null }> {
  const started = performance.now();
  const samples: [number, number][] = [];
  const sample = () => {
    const cpu = cpuMs(pids);
    if (cpu !== null) samples.push([performance.now() - started, cpu]);
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  try {
    const result = await f();
    sample();
    return {
      result,
      cpuBetween(fromMs, toMs) {
        if (samples.length < 2) return null;
        // The CPU counter at time t, read off the nearest sample at or before t (at most one interval off).
        const at = (t: number) => (samples.filter(([ts]) => ts <= t).at(-1) ?? samples[0]!)[1];
        return at(toMs) - at(fromMs);
      },
    };
  } finally {
    clearInterval(timer);
  }
}
