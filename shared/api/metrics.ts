// GET /v1/metrics: the Prometheus text exposition format, version 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/), and the series API.md lists,
// built from the figures the router gathers from each group's objects. Pure: no I/O.
import type { GroupStatus } from "./types.js";

export const metricsContentType = "text/plain; version=0.0.4; charset=utf-8";

export type MetricType = "counter" | "gauge";

export interface Sample {
  labels: Record<string, string>;
  value: number;
}

/** One metric: its HELP and TYPE lines, then its samples (the format wants a metric's samples together). */
export interface Family {
  name: string;
  help: string;
  type: MetricType;
  samples: Sample[];
}

const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const labelName = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A label value inside double quotes: backslash, double quote and line feed escaped. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** HELP text: backslash and line feed escaped (a double quote stays). */
export function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** A sample value as Go's ParseFloat reads it: NaN, +Inf and -Inf spelled so. */
export function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

function sampleLine(name: string, s: Sample): string {
  const labels = Object.entries(s.labels);
  for (const [k] of labels) if (!labelName.test(k) || k.startsWith("__")) throw new Error(`metric ${name}: bad label name ${k}`);
  const set = labels.length === 0 ? "" : `{${labels.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(",")}}`;
  return `${name}${set} ${formatValue(s.value)}`;
}

/** The exposition text: every family (an empty one still says what it is), then comment lines (each prefixed "# "). */
export function exposition(families: Family[], comments: string[] = []): string {
  const lines: string[] = [];
  for (const f of families) {
    if (!metricName.test(f.name)) throw new Error(`bad metric name ${f.name}`);
    lines.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) lines.push(sampleLine(f.name, s));
  }
  for (const c of comments) lines.push(`# ${c.replace(/\n/g, " ")}`);
  return lines.join("\n") + "\n";
}

// ---- the series of API.md ----------------------------------------------------------------------

/** The counts a group's directory keeps (shared/control/directory.ts, GroupCounters). */
export interface GroupCounts {
  failovers: number;
  audits: Record<string, number>;
  /** ISO time of the last report of each verdict (absent: none yet). */
  lastAudits?: Record<string, string>;
}

/** What one group's objects said, or that they could not be reached. */
export type GroupFigures =
  /** `deleting`: being deleted, not every object destroyed yet (its lookup's 503 said so). */
  | { group: string; up: false; replicas?: GroupStatus; counts?: GroupCounts; deleting?: true }
  | { group: string; up: true; status: GroupStatus; commandsTotal: number; counts: GroupCounts; work?: SequencerWork; answerMs?: number };

/** What the sequencer in office has done since it started: flushes of its log, append messages per replica. */
export interface SequencerWork {
  flushes: number;
  appends: Record<string, number>;
}

/** The cron's progress, as the registry keeps it (workers/registry.ts, RegistryObject.cron). */
export interface CronFigures {
  lastRun?: { audited: number; failed: number; startedMs: number; endedMs: number };
  lapStartedMs?: number;
  lapGroups?: number;
  lastLapMs?: number;
  lastLapGroups?: number;
  /** Laps ended so far (absent before the first): a run stops at the end of the lap it began in. */
  laps?: number;
  /** Groups whose sequencer is asleep (the registry's count; absent from a registry older than the field). */
  asleep?: number;
}

/**
 * The cron's series (beyond API.md's): its last run, and its laps over every group. A run audits
 * as many groups as its subrequests allow, so whether every group is covered, and how often, is a
 * lap's time; a log line was the only trace of a run (a probe). Absent before the first run.
 */
export function cronFamilies(known: CronFigures | null): Family[] {
  const family = (name: string, type: MetricType, help: string, value?: number): Family => ({ name, type, help, samples: value === undefined ? [] : [{ labels: {}, value }] });
  const s = (ms?: number) => (ms === undefined ? undefined : ms / 1000);
  const c = known ?? {};
  return [
    // Without it, series absent for want of the registry's answer read as "no run yet" (a review).
    family("smr_cron_known", "gauge", "1 if the registry told this scrape the cron's progress; 0 if it did not answer (the other smr_cron_* series are then absent, not zero).", known === null ? 0 : 1),
    family("smr_cron_last_run_timestamp_seconds", "gauge", "When the cron's last run ended (Unix time, seconds).", s(c.lastRun?.endedMs)),
    family("smr_cron_last_run_duration_seconds", "gauge", "How long the cron's last run took.", c.lastRun ? (c.lastRun.endedMs - c.lastRun.startedMs) / 1000 : undefined),
    family("smr_cron_last_run_audited", "gauge", "Groups the cron's last run audited.", c.lastRun?.audited),
    family("smr_cron_last_run_failed", "gauge", "Groups the cron's last run could not audit.", c.lastRun?.failed),
    family("smr_cron_last_lap_seconds", "gauge", "How long the cron's last whole lap over every group due took, from its first claim to the end of the run that took its last group: each awake group is audited about this often, or at each cron run if that is longer (an asleep one once a day).", s(c.lastLapMs)),
    family("smr_cron_last_lap_groups", "gauge", "Groups the cron's last whole lap took (awake ones, and asleep ones due their daily audit).", c.lastLapGroups),
    family("smr_cron_lap_groups", "gauge", "Groups the cron's lap under way has taken so far.", c.lapGroups),
    family("smr_groups_asleep", "gauge", "Groups whose sequencer has stopped its heartbeats for lack of client activity; the cron audits each once a day (not each lap), so that its objects can be evicted.", c.asleep),
  ].filter((f) => f.samples.length > 0);
}

/** The directory's counts: failovers, audits by verdict and when the last of each was made (with or without the sequencer). */
function countSamples(f: { failovers: Family; audits: Family; lastAudit: Family }, group: string, counts: GroupCounts): void {
  f.failovers.samples.push({ labels: { group }, value: counts.failovers });
  for (const [verdict, n] of Object.entries(counts.audits)) {
    f.audits.samples.push({ labels: { group, verdict }, value: n });
    const at = counts.lastAudits?.[verdict];
    if (at !== undefined) f.lastAudit.samples.push({ labels: { group, verdict }, value: Date.parse(at) / 1000 });
  }
}

/** The families of API.md's Metrics section (and smr_group_up), over the groups in order. */
export function groupFamilies(groups: GroupFigures[]): Family[] {
  const family = (name: string, type: MetricType, help: string): Family => ({ name, type, help, samples: [] });
  const up = family("smr_group_up", "gauge", "1 if the group's sequencer and directory answered this scrape (an asleep group's: a scrape within 5 minutes, whose figures the registry keeps, so that a scrape does not start its objects), 0 if not (its sequencer's series are then absent, its replica series what the replicas that answered say of themselves, its failover and audit series there if its directory answered).");
  const commit = family("smr_group_commit_seq", "gauge", "The group's commit position (highest committed log seq).");
  const epoch = family("smr_group_epoch", "gauge", "The epoch of the group's sequencer.");
  const noQuorum = family("smr_group_no_quorum_seconds", "gauge", "How long the group's sequencer, which answered, has heard no quorum of its voters (sequencer timeout or more: no write can commit, a failover may replace it); 0 while it has one. smr_group_up stays 1: alert on this too.");
  const deleting = family("smr_group_deleting", "gauge", "1 while the group is being deleted and not every one of its objects has been destroyed yet (smr_group_up is 0 then: it serves nothing; a retry of the DELETE, or the next request, finishes it); absent otherwise.");
  const asleep = family("smr_group_asleep", "gauge", "1 while the group sleeps (no client work for SLEEP_AFTER_SECONDS: no heartbeats, audited once a day, not each lap), 0 while awake.");
  const commands = family("smr_commands_total", "counter", "Command entries the group's sequencer ordered; starts again at 0 when a sequencer recovers (failover, move).");
  const failovers = family("smr_failovers_total", "counter", "Failovers of the group's sequencer.");
  const applied = family("smr_replica_applied_seq", "gauge", "The log position a replica has applied, as its sequencer last heard.");
  const lag = family("smr_replica_lag_entries", "gauge", "Committed entries a replica has not applied yet (commit seq - applied seq, at least 0).");
  const stateRows = family("smr_replica_state_rows", "gauge", "Rows of a replica's replicated state (machine rows, client books, sessions and the idle index), as its last finished scrub counted them; from the group's last audit.");
  const storageBytes = family("smr_replica_storage_bytes", "gauge", "Bytes a replica's Durable Object storage takes (the co-located replica's include the sequencer's log); from its last append's answer or the group's last audit.");
  const quota = family("smr_group_storage_quota_bytes", "gauge", "The group's storage quota: while a replica's smr_replica_storage_bytes is at or over it, commands that write are refused (503) and only small ones that grow no state go.");
  const status = family("smr_replica_status", "gauge", "1 for a replica's current status (healthy, joining, lagging, suspect, down, quarantined, repairing, removed).");
  const damaged = family("smr_replica_damaged", "gauge", "1 while a replica's rows failed their digest at its last scrub (the audits found it damaged; not quarantined while the group has no healthy majority without it): repair it. 0 otherwise.");
  const audits = family("smr_audits_total", "counter", "Audit reports of the group, by verdict.");
  const lastAudit = family("smr_audit_last_timestamp_seconds", "gauge", "When the group's last audit report of each verdict was made (Unix time, seconds); absent for a verdict never reported.");
  const flushes = family("smr_sequencer_flushes_total", "counter", "Log writes of the group's sequencer that ordered commands (each one batch); starts again at 0 when the sequencer restarts.");
  const answer = family("smr_sequencer_answer_seconds", "gauge", "How long the group's sequencer took to answer this scrape's call: a slow one (a location answering slowly) keeps its office while it answers, and every command waits at least as long.");
  const appends = family("smr_appends_total", "counter", "Append messages (heartbeats included) the group's sequencer sent each replica; `colocated` marks the direct call to the replica in its own object. Starts again at 0 when the sequencer restarts.");
  /**
   * Positions only of replicas heard from (lastContact), by the sequencer or the router; not an
   * audit's (`audited`: an old position read as a lag, a probe): no answer is not seq 0. A co-located replica cut off with its sequencer's object, which no
   * audit had reached, showed applied seq 0 and a lag of the whole log after the failover (a probe).
   */
  const replicaSamples = (s: GroupStatus) => {
    for (const r of s.replicas) {
      const labels = { group: s.group, replica: r.id };
      status.samples.push({ labels: { ...labels, status: r.status }, value: 1 });
      damaged.samples.push({ labels, value: r.damaged ? 1 : 0 });
      if (r.lastContact === null) continue;
      applied.samples.push({ labels, value: r.appliedSeq });
      lag.samples.push({ labels, value: Math.max(0, s.commitSeq - r.appliedSeq) });
      if (r.stateRows !== undefined) stateRows.samples.push({ labels, value: r.stateRows });
      if (r.storageBytes !== undefined) storageBytes.samples.push({ labels, value: r.storageBytes });
    }
  };
  for (const g of groups) {
    const group = g.group;
    up.samples.push({ labels: { group }, value: g.up ? 1 : 0 });
    if (!g.up && g.deleting) deleting.samples.push({ labels: { group }, value: 1 });
    if (g.counts) countSamples({ failovers, audits, lastAudit }, group, g.counts);
    if (!g.up) {
      // The sequencer did not answer: what the replicas say of themselves (an outage is when an
      // operator needs them; the probe saw every series vanish while the replicas answered).
      if (g.replicas) replicaSamples(g.replicas);
      continue;
    }
    const s = g.status;
    commit.samples.push({ labels: { group }, value: s.commitSeq });
    epoch.samples.push({ labels: { group }, value: s.epoch });
    noQuorum.samples.push({ labels: { group }, value: (s.sequencer.noQuorumMs ?? 0) / 1000 });
    if (s.storageQuotaMiB !== undefined) quota.samples.push({ labels: { group }, value: s.storageQuotaMiB * 1024 * 1024 });
    asleep.samples.push({ labels: { group }, value: s.sequencer.asleepSince === undefined ? 0 : 1 });
    commands.samples.push({ labels: { group }, value: g.commandsTotal });
    if (g.answerMs !== undefined) answer.samples.push({ labels: { group }, value: g.answerMs / 1000 });
    if (g.work) {
      flushes.samples.push({ labels: { group }, value: g.work.flushes });
      for (const r of s.replicas) appends.samples.push({ labels: { group, replica: r.id, colocated: String(r.colocated === true) }, value: g.work.appends[r.id] ?? 0 });
    }
    replicaSamples(s);
  }
  return [up, deleting, commit, epoch, noQuorum, asleep, commands, failovers, applied, lag, stateRows, storageBytes, quota, status, damaged, audits, lastAudit, flushes, answer, appends];
}
