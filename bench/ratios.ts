// The ratios issue 15 sets targets for, computed from the rows of one run (figures from different
// runs on this shared machine are not comparable), each with its target and whether it was met.
// A row kind repeated over the run's interleaved rounds counts with its median: one row alone
// moves 20-40% with the machine's load, and the rows a ratio compares ran minutes apart.
import type { Growth, Median, Run } from "./run.js";
import type { Storage } from "./storage.js";

export interface Ratio {
  value: number | null;
  /** The target, e.g. ">= 1" or "<= 2"; null for a ratio kept only for comparison. */
  target: string | null;
  /** null when the run lacks a row the ratio needs (quick runs, no etcd) or it has no target. */
  met: boolean | null;
}

type Target = { atLeast: number } | { atMost: number } | null;

const round = (x: number) => Math.round(x * 100) / 100;

/** The middle value (the mean of the middle two for an even count; 0 for none). */
export function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** One median row per kind of row, in the order the kinds first ran. */
export function mediansOf(runs: Run[]): Median[] {
  const kinds = new Map<string, Run[]>();
  for (const r of runs) {
    const key = `${r.system}/${r.replicas}/${r.clients}/${r.op}/${r.storage ?? ""}`;
    kinds.set(key, [...(kinds.get(key) ?? []), r]);
  }
  return [...kinds.values()].map((rs) => {
    const cpu = rs.map((r) => r.cpuUsPerOp).filter((x): x is number => x !== null);
    const load = rs.map((r) => r.loadCpuUsPerOp).filter((x): x is number => x != null);
    const { system, replicas, clients, op, storage } = rs[0]!;
    return {
      system,
      replicas,
      clients,
      op,
      ...(storage ? { storage } : {}),
      rows: rs.length,
      opsPerSec: Math.round(median(rs.map((r) => r.opsPerSec))),
      p99Ms: round(median(rs.map((r) => r.p99Ms))),
      cpuUsPerOp: cpu.length === rs.length ? Math.round(median(cpu)) : null,
      ...(load.length === rs.length ? { loadCpuUsPerOp: Math.round(median(load)) } : {}),
    };
  });
}

export function ratiosOf(runs: Run[], growth: Growth | null): Record<string, Ratio> {
  const medians = mediansOf(runs);
  // A storage picks one of a kind's rows kept on different storage (the sharded pairs); without
  // one, any row of the kind (the run has it on its own storage only).
  const find = (system: Run["system"], clients: number, op: Run["op"] = "put", replicas = 3, storage?: Storage) =>
    medians.find((r) => r.system === system && r.replicas === replicas && r.clients === clients && r.op === op && (storage === undefined || r.storage === storage));
  const ratios: Record<string, Ratio> = {};
  const add = (name: string, a: number | null | undefined, b: number | null | undefined, target: Target) => {
    const value = a == null || !b ? null : round(a / b);
    const met = value === null || target === null ? null : "atLeast" in target ? value >= target.atLeast : value <= target.atMost;
    ratios[name] = { value, target: target === null ? null : "atLeast" in target ? `>= ${target.atLeast}` : `<= ${target.atMost}`, met };
  };
  for (const c of [32, 128]) {
    const smr = find("smr", c);
    const base = find("baseline", c, "put", 1);
    const etcd = find("etcd", c);
    const batch = find("smr", c, "put-batch100");
    add(`smr3/baseline@${c}`, smr?.opsPerSec, base?.opsPerSec, { atLeast: 1 });
    add(`cpu smr3/baseline@${c}`, smr?.cpuUsPerOp, base?.cpuUsPerOp, { atMost: 1 });
    add(`p99 smr3/baseline@${c}`, smr?.p99Ms, base?.p99Ms, { atMost: 2 });
    add(`seqread/smr3put@${c}`, find("smr", c, "get-sequential")?.opsPerSec, smr?.opsPerSec, { atLeast: 2 });
    add(`batch100/smr3put@${c}`, batch?.opsPerSec, smr?.opsPerSec, { atLeast: 10 });
    add(`batch100 smr3/etcd@${c}`, batch?.opsPerSec, find("etcd", c, "put-batch100")?.opsPerSec, { atLeast: 1 });
    // Two processes stand for two machines, so each keeps its files apart: on tmpfs, as one disk
    // shared by both (its one ext4 journal takes every fsync) is what two machines do not share.
    const spread = (system: Run["system"], storage: Storage) => find(system, c, "put", 3, storage)?.opsPerSec;
    add(`sharded/groups@${c}`, spread("smr-sharded", "memory"), spread("smr-groups", "memory"), { atLeast: 1.7 });
    add(`sharded/groups disk@${c}`, spread("smr-sharded", "disk"), spread("smr-groups", "disk"), null);
    add(`smr3/separate@${c}`, smr?.opsPerSec, find("smr-separate", c)?.opsPerSec, null);
    add(`cpu smr3/separate@${c}`, smr?.cpuUsPerOp, find("smr-separate", c)?.cpuUsPerOp, null);
    add(`smr3/etcd@${c}`, smr?.opsPerSec, etcd?.opsPerSec, null);
    add(`cpu smr3/etcd@${c}`, smr?.cpuUsPerOp, etcd?.cpuUsPerOp, null);
  }
  add("growth last/first", growth?.lastTenthOpsPerSec, growth?.firstTenthOpsPerSec, { atLeast: 0.8 });
  return ratios;
}

/** The ratios as a small text table, for the end of a run. */
export function ratioTable(ratios: Record<string, Ratio>): string {
  const lines = [`${"ratio".padEnd(28)} ${"value".padStart(6)}  target  met`];
  for (const [name, r] of Object.entries(ratios)) {
    const met = r.met === null ? "-" : r.met ? "yes" : "no";
    lines.push(`${name.padEnd(28)} ${String(r.value ?? "-").padStart(6)}  ${(r.target ?? "-").padEnd(6)}  ${met}`);
  }
  return lines.join("\n");
}

/** The medians as a small text table. */
export function medianTable(medians: Median[]): string {
  const lines = [`${"median of rows".padEnd(28)} rep clnt op                 ops/s   p99 ms cpu us/op`];
  for (const m of medians) {
    lines.push(
      [`${m.system}${m.storage ? ` ${m.storage}` : ""} (${m.rows})`.padEnd(28), String(m.replicas).padStart(3), String(m.clients).padStart(4), m.op.padEnd(16), String(m.opsPerSec).padStart(7), String(m.p99Ms).padStart(8), String(m.cpuUsPerOp ?? "-").padStart(9)].join(" "),
    );
  }
  return lines.join("\n");
}
