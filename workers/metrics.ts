// The figures of GET /v1/metrics, gathered from each group's objects (its directory record, its
// sequencer), a bounded number of groups at a time, each within a time bound: one group that does
// not answer is reported down rather than failing or stalling the scrape; if its sequencer alone
// does not, its replica series are what the replicas say of themselves (one more bound). Reading
// metrics starts no failover and no recovery (withSequencer would): the cron and the next request
// do that.
import { ApiError } from "../shared/api/errors.js";
import type { GroupFigures, SequencerWork } from "../shared/api/metrics.js";
import type { GroupStatus } from "../shared/api/types.js";
import type { GroupRecord } from "../shared/control/directory.js";
import { metricsCallTimeoutMs, metricsConcurrencyMax, metricsReplicaFallbacksMax, metricsScrapeMs } from "../shared/limits.js";
import { withTimeout } from "../shared/protocol/io.js";
import { type Env, directoryStub, realClock, rpc } from "./env.js";
import * as groups from "./groups.js";
import { statusFromReplicas } from "./replica-view.js";

type SequencerFigures = { status: GroupStatus; commandsTotal: number; work: SequencerWork } | null;

/**
 * One group's figures; null if there is no such group (deleted meanwhile, or never made).
 * `fallbacks`: how many more groups of this scrape may ask their replicas. At most
 * metricsCallTimeoutMs for the directory and the sequencer, and as much again for the replicas.
 */
export async function groupFigures(env: Env, group: string, fallbacks = { left: 1 }): Promise<GroupFigures | null> {
  let record: GroupRecord | null = null;
  const answers = async () => {
    record = await groups.lookup(env, group);
    return Promise.allSettled([rpc<SequencerFigures>(groups.sequencerOf(env, record.config).metrics()), directoryStub(env, group).counters()]);
  };
  let seq: SequencerFigures = null;
  try {
    const [s, counts] = await withTimeout(realClock, answers(), metricsCallTimeoutMs, `the metrics of ${group}`);
    if (s.status === "fulfilled") seq = s.value;
    // No state (a sequencer that lost its storage or was just moved away from) is asked of the replicas.
    if (seq && counts.status === "fulfilled") return { group, up: true, status: seq.status, commandsTotal: seq.commandsTotal, counts: counts.value, work: seq.work };
    if (s.status === "rejected") console.warn(`metrics of ${group}: ${String(s.reason)}`);
  } catch (err) {
    if (err instanceof ApiError && err.code === "not_found") return null;
    console.warn(`metrics of ${group}: ${String(err)}`);
  }
  // The directory did not answer: no group series; the sequencer's view of its replicas, if any.
  if (seq) return { group, up: false, replicas: seq.status };
  // The sequencer did not answer: what the replicas say of themselves, within as much time again
  // (each replica three quarters of it: the one in the sequencer's object hangs with it).
  if (record === null || fallbacks.left-- <= 0) return { group, up: false };
  const view = statusFromReplicas(env, record, "the sequencer did not answer the scrape", (metricsCallTimeoutMs * 3) / 4);
  const replicas = await withTimeout(realClock, view, metricsCallTimeoutMs, `the replicas of ${group}`).catch(() => null);
  return replicas ? { group, up: false, replicas } : { group, up: false };
}

/**
 * The figures of these groups, in their order, metricsConcurrencyMax at a time, within scrapeMs:
 * a group asked but not answered by then is down; those not asked by then are left out and
 * named in `unasked` (down would raise false alarms for groups that may well be up). Groups that
 * no longer exist are left out.
 */
export async function gather(env: Env, names: string[], scrapeMs = metricsScrapeMs): Promise<{ figures: GroupFigures[]; unasked: string[] }> {
  const out: (GroupFigures | null | undefined)[] = new Array(names.length).fill(undefined);
  const endMs = Date.now() + scrapeMs;
  let next = 0;
  const fallbacks = { left: metricsReplicaFallbacksMax };
  const worker = async () => {
    while (next < names.length && Date.now() < endMs) {
      const i = next++;
      const figures = groupFigures(env, names[i]!, fallbacks);
      out[i] = await withTimeout(realClock, figures, endMs - Date.now(), `the metrics of ${names[i]}`).catch(() => ({ group: names[i]!, up: false as const }));
    }
  };
  await Promise.all(Array.from({ length: Math.min(metricsConcurrencyMax, names.length) }, worker));
  return { figures: out.filter((f): f is GroupFigures => !!f), unasked: names.filter((_, i) => out[i] === undefined) };
}
