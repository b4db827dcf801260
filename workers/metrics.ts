// The figures of GET /v1/metrics, gathered from each group's objects (its directory record, its
// sequencer), a bounded number of groups at a time, each within a time bound: one group that does
// not answer is reported down rather than failing or stalling the scrape; if its sequencer alone
// does not, its replica series are what the replicas say of themselves (one more bound). Reading
// metrics starts no failover and no recovery (withSequencer would): the cron and the next request
// do that.
import { ApiError } from "../shared/api/errors.js";
import { bounded } from "../shared/bounded.js";
import type { GroupCounts, GroupFigures, SequencerWork } from "../shared/api/metrics.js";
import type { GroupStatus } from "../shared/api/types.js";
import type { GroupRecord } from "../shared/control/directory.js";
import { asleepContactStaleMs, metricsCallTimeoutMs, metricsConcurrencyMax, metricsReplicaFallbacksMax, metricsScrapeGroupsMax, metricsScrapeMs, metricsUnansweredWorkers } from "../shared/limits.js";
import { withTimeout } from "../shared/protocol/io.js";
import { type Env, directoryStub, realClock, registryStub, rpc } from "./env.js";
import * as groups from "./groups.js";
import { statusFromReplicas } from "./replica-view.js";

type SequencerFigures = { status: GroupStatus; commandsTotal: number; work: SequencerWork; spentMs?: number } | null;

/**
 * One group's figures; null if there is no such group (deleted meanwhile, or never made).
 * `fallbacks`: how many more groups of this scrape may ask their replicas. At most
 * metricsCallTimeoutMs for the directory and the sequencer, and as much again for the replicas.
 */
export async function groupFigures(env: Env, group: string, fallbacks = { left: 1 }): Promise<GroupFigures | null> {
  let record: GroupRecord | null = null;
  // The directory's counts stand without the sequencer: the audit series stayed away while it
  // did not answer, and an alert on the last consistent audit resolved just then (a review). Kept
  // as they come, so a sequencer that hangs past the bound does not take them with it (a review).
  let counts: GroupCounts | undefined;
  const answers = async () => {
    record = await groups.lookup(env, group);
    const dir = directoryStub(env, group).counters();
    dir.then((c) => (counts = c), () => undefined);
    const askedMs = Date.now();
    // Less its own waits on its replicas (see SequencerObject.statusTimed).
    const figures = rpc<SequencerFigures>(groups.sequencerOf(env, record.config).metrics()).then((f) => ((answerMs = Math.max(0, Date.now() - askedMs - (f?.spentMs ?? 0))), f));
    return Promise.allSettled([figures, dir]);
  };
  let answerMs: number | undefined;
  let seq: SequencerFigures = null;
  try {
    const [s] = await withTimeout(realClock, answers(), metricsCallTimeoutMs, `the metrics of ${group}`);
    if (s.status === "fulfilled") seq = s.value;
    // No state (a sequencer that lost its storage or was just moved away from) is asked of the replicas.
    if (seq && counts) return { group, up: true, status: seq.status, commandsTotal: seq.commandsTotal, counts, work: seq.work, ...(answerMs === undefined ? {} : { answerMs }) };
    if (s.status === "rejected") console.warn(`metrics of ${group}: ${String(s.reason)}`);
  } catch (err) {
    if (err instanceof ApiError && err.code === "not_found") return null;
    // Stuck mid-delete: said so (smr_group_deleting), not only as an outage (a probe). A lookup
    // still helping the delete past the call's time (an object that hangs) is asked of the record.
    if (err instanceof ApiError && err.reason === "deleting") return { group, up: false, deleting: true };
    if (record === null && (await deletingNow(env, group))) return { group, up: false, deleting: true };
    console.warn(`metrics of ${group}: ${String(err)}`);
  }
  // The directory did not answer: no group series; the sequencer's view of its replicas, if any.
  if (seq) return { group, up: false, replicas: seq.status };
  // The sequencer did not answer: what the replicas say of themselves, within as much time again
  // (each replica three quarters of it: the one in the sequencer's object hangs with it).
  const counted = counts ? { counts } : {};
  if (record === null || fallbacks.left-- <= 0) return { group, up: false, ...counted };
  const view = statusFromReplicas(env, record, "the sequencer did not answer the scrape", (metricsCallTimeoutMs * 3) / 4, false);
  const replicas = await withTimeout(realClock, view, metricsCallTimeoutMs, `the replicas of ${group}`).catch(() => null);
  return replicas ? { group, up: false, replicas, ...counted } : { group, up: false, ...counted };
}

/** Whether the group's record says it is being deleted (its directory asked directly, briefly). */
async function deletingNow(env: Env, group: string): Promise<boolean> {
  const record = await withTimeout(realClock, directoryStub(env, group).get() as Promise<GroupRecord | null>, metricsCallTimeoutMs / 4, `the record of ${group}`).catch(() => null);
  return record?.state === "deleting";
}

/**
 * Groups that did not answer a recent scrape of this isolate (name -> when), asked apart in the
 * next: in name order alone, under a region's outage the healthy groups named after the failing
 * ones were the ones left unasked (a probe), every scrape alike. At most metricsScrapeGroupsMax.
 */
const unanswered = new Map<string, number>();
/**
 * Groups a recent scrape asked too late to have their whole time (name -> when): asked first by
 * the workers of the groups that answer, not with the ones that did not (a review: a healthy
 * group cut short once waited behind the down ones). At most metricsScrapeGroupsMax.
 */
const cutShort = new Map<string, number>();
const unansweredForgetMs = 10 * 60_000;

/** `figures` undefined: cut short by the scrape's deadline. */
function noteAnswer(group: string, figures: GroupFigures | null | undefined): void {
  unanswered.delete(group);
  cutShort.delete(group);
  if (figures === undefined) bounded(cutShort, metricsScrapeGroupsMax).set(group, Date.now());
  else if (figures !== null && !figures.up) bounded(unanswered, metricsScrapeGroupsMax).set(group, Date.now());
}

function recent(table: Map<string, number>, group: string): boolean {
  const at = table.get(group);
  return at !== undefined && Date.now() - at < unansweredForgetMs;
}

const lately = (group: string) => recent(unanswered, group);

/**
 * The figures of these groups, metricsConcurrencyMax at a time, within scrapeMs: a group that had
 * its call's time (metricsCallTimeoutMs) and did not answer is down; one asked too late to have it,
 * or not asked at all, is left out and named in `unasked` (down would raise false alarms for groups
 * that may well be up: a probe at 612 groups saw a healthy one at smr_group_up 0, cut short by the
 * deadline). Groups that no longer exist are left out. Groups that did not answer lately are
 * asked by metricsUnansweredWorkers of the workers, the others by the rest (each helps the other
 * queue once its own is empty), those cut short lately first: the ones that answer are not left
 * unasked behind the ones that cannot, and those are still asked.
 */
export async function gather(env: Env, names: string[], scrapeMs = metricsScrapeMs, kept = new Map<string, GroupFigures>()): Promise<Gathered> {
  const out = new Map<string, GroupFigures | null>();
  const endMs = Date.now() + scrapeMs;
  const fallbacks = { left: metricsReplicaFallbacksMax };
  const asleep: Gathered["asleep"] = [];
  const toAsk: string[] = [];
  for (const name of names) {
    const figures = kept.get(name);
    if (figures) out.set(name, figures);
    else toAsk.push(name);
  }
  const late = toAsk.filter(lately);
  const rest = toAsk.filter((n) => !lately(n));
  rest.sort((a, b) => Number(recent(cutShort, b)) - Number(recent(cutShort, a))); // stable: name order within each
  const worker = async (own: string[], other: string[]) => {
    while (Date.now() < endMs) {
      const name = own.shift() ?? other.shift();
      if (name === undefined) return;
      const askedMs = Date.now();
      const figures = groupFigures(env, name, fallbacks);
      const answer = await withTimeout(realClock, figures, endMs - askedMs, `the metrics of ${name}`).catch(() => (endMs - askedMs < metricsCallTimeoutMs ? undefined : { group: name, up: false as const }));
      noteAnswer(name, answer);
      if (answer !== undefined) out.set(name, answer);
      if (answer?.up && answer.status.sequencer.asleepSince !== undefined) asleep.push({ figures: answer, askedMs });
    }
  };
  const workers = Math.min(metricsConcurrencyMax, toAsk.length);
  const forLate = Math.min(metricsUnansweredWorkers, late.length);
  await Promise.all(Array.from({ length: workers }, (_, i) => (i < forLate ? worker(late, rest) : worker(rest, late))));
  return { figures: names.map((n) => out.get(n)).filter((f): f is GroupFigures => !!f), unasked: names.filter((n) => !out.has(n)), asleep };
}

/** What a scrape gathered: the figures, the groups not asked in time, and the asleep groups asked (and when), to keep. */
export interface Gathered {
  figures: GroupFigures[];
  unasked: string[];
  asleep: { figures: Extract<GroupFigures, { up: true }>; askedMs: number }[];
}

/**
 * The asleep groups' figures a scrape asked, kept in the registry for the next scrapes within
 * half of asleepContactStaleMs to all of it (they take them instead of starting the objects:
 * RegistryObject.keepFigures).
 * Without the answer time, which was of that call.
 */
export function keepAsleep(env: Env, asleep: Gathered["asleep"]): Promise<void> {
  const items = asleep.map(({ figures: { answerMs: _answerMs, ...figures }, askedMs }) => ({ name: figures.group, incarnation: figures.status.incarnation ?? 0, askedMs, figures: JSON.stringify(figures) }));
  return registryStub(env)
    .keepFigures(items, asleepContactStaleMs)
    .catch((err) => console.warn(`keeping the figures of ${items.length} asleep groups: ${String(err)}`));
}

/** The registry's kept figures (JSON by name), parsed; one that does not parse is asked instead. */
export function keptFigures(kept: Record<string, string>): Map<string, GroupFigures> {
  const out = new Map<string, GroupFigures>();
  for (const [name, text] of Object.entries(kept)) {
    try {
      const figures = JSON.parse(text) as GroupFigures;
      if (figures.group === name && figures.up) out.set(name, figures);
    } catch {
      // asked
    }
  }
  return out;
}
