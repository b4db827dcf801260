// smr metrics, and the health of every group at once (smr groups status without a group), both
// read from GET /v1/metrics: one scrape answers for every group (a status call per group would be
// one request each, and the metrics already bound the time a slow group may take).
import { Command } from "commander";
import type { SmrClient } from "../shared/client/index.js";
import { groupArg, upToArg } from "./args.js";
import { metricsPageMax } from "../shared/limits.js";
import { runOf } from "./context.js";
import { note, printJson, printTable } from "./output.js";

export function metricsCommand(): Command {
  return new Command("metrics")
    .description("Prometheus metrics of every group, or of one")
    .option("--group <group>", "only this group", groupArg)
    .option("--after <group>", "a page of groups after this one (the last line says `# next: <name>`)")
    .option("--limit <n>", `groups per page (default 100, max ${metricsPageMax})`, upToArg(metricsPageMax))
    .action(async (opts: { group?: string; after?: string; limit?: number }, cmd: Command) => {
      const { client, json } = runOf(cmd);
      const text = await client.metrics(opts.group, { ...(opts.after ? { after: opts.after } : {}), ...(opts.limit ? { limit: opts.limit } : {}) });
      const next = nextOf(text);
      if (json) return printJson({ samples: samples(text), ...(next ? { next } : {}) });
      process.stdout.write(text.endsWith("\n") ? text : text + "\n");
    });
}

const nextOf = (text: string) => /^# next: (\S+)$/m.exec(text)?.[1];

type Sample = { name: string; labels: Record<string, string>; value: number };

/** Prometheus text's samples (comments skipped): name, labels, value. */
export function samples(text: string): Sample[] {
  const out = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** One group's health, as the metrics tell it. */
export interface GroupHealth {
  group: string;
  /** ok: its objects answered, every replica healthy, its last audit consistent (or none yet); down: its sequencer or directory did not answer. */
  health: "ok" | "degraded" | "down";
  epoch: number | null;
  commitSeq: number | null;
  replicas: { id: string; status: string }[];
  lagMax: number | null;
  /** The newest report (null: none yet, or a group down: its directory's counts were not read). */
  lastAudit: { verdict: string; at: string } | null;
  failovers: number | null;
}

/** Every group's health in the order the scrape lists them. */
export function healthOf(all: Sample[]): GroupHealth[] {
  const byGroup = new Map<string, Sample[]>();
  for (const s of all) {
    const g = s.labels.group;
    if (g === undefined) continue;
    const mine = byGroup.get(g);
    if (mine) mine.push(s);
    else byGroup.set(g, [s]);
  }
  return [...byGroup].map(([group, mine]) => {
    const one = (name: string) => mine.find((s) => s.name === name)?.value ?? null;
    const replicas = mine.filter((s) => s.name === "smr_replica_status" && s.value === 1).map((s) => ({ id: s.labels.replica!, status: s.labels.status! }));
    const lags = mine.filter((s) => s.name === "smr_replica_lag_entries").map((s) => s.value);
    const audits = mine.filter((s) => s.name === "smr_audit_last_timestamp_seconds").sort((a, b) => b.value - a.value);
    const lastAudit = audits[0] ? { verdict: audits[0].labels.verdict!, at: new Date(audits[0].value * 1000).toISOString() } : null;
    const up = one("smr_group_up") === 1;
    const fine = replicas.every((r) => r.status === "healthy") && (lastAudit === null || lastAudit.verdict === "consistent");
    return { group, health: !up ? "down" : fine ? "ok" : "degraded", epoch: one("smr_group_epoch"), commitSeq: one("smr_group_commit_seq"), replicas, lagMax: lags.length ? Math.max(...lags) : null, lastAudit, failovers: one("smr_failovers_total") };
  });
}

/** "3/3 healthy", or "2/3 healthy; r2 down". */
function replicasCell(replicas: GroupHealth["replicas"]): string {
  const healthy = replicas.filter((r) => r.status === "healthy").length;
  const others = replicas.filter((r) => r.status !== "healthy").map((r) => `${r.id} ${r.status}`);
  return [`${healthy}/${replicas.length} healthy`, ...(others.length ? [others.join(", ")] : [])].join("; ");
}

function ago(iso: string, nowMs: number): string {
  const s = Math.max(0, Math.round((nowMs - Date.parse(iso)) / 1000));
  return s < 120 ? `${s} s ago` : s < 7200 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
}

/** smr groups status (no group): every group's health from one scrape (or a page of them). */
export async function printHealth(client: SmrClient, json: boolean, page: { after?: string; limit?: number }): Promise<void> {
  const text = await client.metrics(undefined, page);
  const groups = healthOf(samples(text));
  const next = nextOf(text);
  const unasked = /^# unasked: (.*)$/m.exec(text)?.[1];
  if (json) return printJson({ groups, ...(next ? { next } : {}), ...(unasked ? { unasked } : {}) });
  if (groups.length === 0 && !unasked) return note("no groups");
  const nowMs = Date.now();
  printTable(
    ["group", "health", "epoch", "commitSeq", "replicas", "lag", "last audit", "failovers"],
    groups.map((g) => [g.group, g.health, g.epoch, g.commitSeq, replicasCell(g.replicas), g.lagMax, g.lastAudit ? `${g.lastAudit.verdict}, ${ago(g.lastAudit.at, nowMs)}` : g.health === "down" ? "?" : "none yet", g.failovers]),
  );
  const counts = (h: GroupHealth["health"]) => groups.filter((g) => g.health === h).length;
  note(`${groups.length} groups: ${counts("ok")} ok, ${counts("degraded")} degraded, ${counts("down")} down`);
  if (unasked) note(`not shown: ${unasked}`);
  if (next) note(`more: --after ${next}`);
}
