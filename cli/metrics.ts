// smr metrics, and the health of every group at once (smr groups status without a group), both
// read from GET /v1/metrics: one scrape answers for every group (a status call per group would be
// one request each, and the metrics already bound the time a slow group may take).
import { Command } from "commander";
import type { SmrClient } from "../shared/client/index.js";
import { groupArg, upToArg, UsageError } from "./args.js";
import { metricsPageMax } from "../shared/limits.js";
import { runOf } from "./context.js";
import { note, printJson, printTable } from "./output.js";
// The health rule and the scrape's parsing, shared with the dashboard (which has no build step).
import { deletingText, groupsHealth, noQuorumText, quotaText, replicaTrouble, samples, slowText, type GroupHealth } from "../public/health.js";
import { span } from "../public/units.js";

export function metricsCommand(): Command {
  return new Command("metrics")
    .description("Prometheus metrics of every group, or of one")
    .option("--group <group>", "only this group", groupArg)
    .option("--after <group>", "a page of groups after this one (the last line says `# next: <name>`)")
    .option("--limit <n>", `groups per page (default 100, max ${metricsPageMax})`, upToArg(metricsPageMax))
    .action(async (opts: { group?: string; after?: string; limit?: number }, cmd: Command) => {
      // They page the groups: with one group they were dropped in silence (a probe).
      if (opts.group !== undefined && (opts.after !== undefined || opts.limit !== undefined)) throw new UsageError("--after and --limit page every group's metrics: not with --group");
      const { client, json } = runOf(cmd);
      const text = await client.metrics(opts.group, { ...(opts.after ? { after: opts.after } : {}), ...(opts.limit ? { limit: opts.limit } : {}) });
      const next = nextOf(text);
      if (json) return printJson({ samples: samples(text), ...(next ? { next } : {}) });
      process.stdout.write(text.endsWith("\n") ? text : text + "\n");
    });
}

const nextOf = (text: string) => /^# next: (\S+)$/m.exec(text)?.[1];

/** "3/3 healthy", or "2/3 healthy; r2 down". */
function replicasCell(g: GroupHealth): string {
  if (g.deleting) return deletingText;
  const healthy = g.replicas.filter((r) => r.status === "healthy").length;
  const others = replicaTrouble(g.replicas);
  const noQuorum = noQuorumText(g.noQuorumMs);
  const full = quotaText(g.replicas, g.quotaBytes);
  return [...(noQuorum ? [noQuorum] : []), ...(full ? [full] : []), `${healthy}/${g.replicas.length} healthy`, ...(others.length ? [others.join(", ")] : []), ...slowNote(g.answerMs)].join("; ");
}

/** "sequencer slow (1.5 s to answer)" past slowAnswerMs, else nothing. */
export function slowNote(answerMs: number | null | undefined): string[] {
  const text = slowText(answerMs);
  return text === null ? [] : [text];
}

function ago(iso: string, nowMs: number): string {
  return `${span((nowMs - Date.parse(iso)) / 1000)} ago`;
}

/** smr groups status (no group): every group's health from one scrape (or a page of them). */
/**
 * "?" only where the group's directory counts were not read (its failovers are unknown too): a
 * group down for want of a quorum, whose counts said no audit yet, showed "?" (a probe).
 */
export function lastAuditCell(g: Pick<GroupHealth, "lastAudit" | "failovers">, nowMs: number): string {
  if (g.lastAudit) return `${g.lastAudit.verdict}, ${ago(g.lastAudit.at, nowMs)}`;
  return g.failovers === null ? "?" : "none yet";
}

export async function printHealth(client: SmrClient, json: boolean, page: { after?: string; limit?: number }, unhealthy = false): Promise<void> {
  const text = await client.metrics(undefined, page);
  const scraped = samples(text);
  const all = groupsHealth(scraped);
  // --unhealthy: at hundreds of groups the few that need a look were lost among the rest (a probe).
  const groups = unhealthy ? all.filter((g) => g.health !== "ok") : all;
  const next = nextOf(text);
  const unasked = /^# unasked: (.*)$/m.exec(text)?.[1];
  // --unhealthy exits 1 when it lists any, so a script or an alert can run it (as smr audit does).
  if (unhealthy && groups.length > 0) process.exitCode = 1;
  if (json) return printJson({ groups, ...(next ? { next } : {}), ...(unasked ? { unasked } : {}) });
  if (groups.length === 0 && !unasked) return note(unhealthy && all.length > 0 ? `${plural(all.length, "group")}, all ok` : "no groups");
  const nowMs = Date.now();
  printTable(
    ["group", "health", "epoch", "commitSeq", "replicas", "lag", "last audit", "failovers"],
    groups.map((g) => [g.group, g.health, g.epoch, g.commitSeq, replicasCell(g), g.lagMax ?? "?", lastAuditCell(g, nowMs), g.failovers]),
  );
  const counts = (h: GroupHealth["health"]) => all.filter((g) => g.health === h).length;
  note(`${plural(all.length, "group")}: ${counts("ok")} ok, ${counts("degraded")} degraded, ${counts("down")} down`);
  if (unasked) note(`not shown: ${unasked}`);
  if (next) note(`more: --after=${next}`);
  const cron = cronLine(scraped);
  if (cron) note(cron);
}

/** "cron: last run 40 s ago, 12 audited, 0 failed; the last whole lap took 2 min" (null before any run). */
export function cronLine(all: { name: string; value: number }[]): string | null {
  const value = (name: string) => all.find((x) => x.name === name)?.value;
  if (value("smr_cron_known") === 0) return "cron: unknown (the registry did not answer for its progress)";
  const at = value("smr_cron_last_run_timestamp_seconds");
  if (at === undefined) return null;
  const lapS = value("smr_cron_last_lap_seconds");
  const asleep = value("smr_groups_asleep") ?? 0;
  // The lap is of the groups awake then, the asleep count of now: "a lap over every awake group"
  // next to today's asleep count read as one moment (an operator probe: 7 + 4 of 9 groups).
  const lap = lapS === undefined ? "no whole lap yet" : `the last whole lap took ${span(lapS)}`;
  const sleeping = asleep > 0 ? `; now ${asleep} ${asleep === 1 ? "group" : "groups"} asleep (audited once a day, not in laps)` : "";
  return `cron: last run ${span(Date.now() / 1000 - at)} ago, ${value("smr_cron_last_run_audited")} audited, ${value("smr_cron_last_run_failed")} failed; ${lap}${sleeping}`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}
