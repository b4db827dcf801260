// The figures of GET /v1/metrics, gathered from each group's objects (its directory record, its
// sequencer), a bounded number of groups at a time, each within a time bound: one group that does
// not answer is reported down rather than failing or stalling the scrape. Reading metrics starts
// no failover and no recovery (withSequencer would): the cron and the next request do that.
import { ApiError } from "../shared/api/errors.js";
import type { GroupFigures, SequencerWork } from "../shared/api/metrics.js";
import type { GroupStatus } from "../shared/api/types.js";
import { metricsCallTimeoutMs, metricsConcurrencyMax } from "../shared/limits.js";
import { withTimeout } from "../shared/protocol/io.js";
import { type Env, directoryStub, realClock, rpc } from "./env.js";
import * as groups from "./groups.js";

async function figuresNow(env: Env, group: string): Promise<GroupFigures> {
  const record = await groups.lookup(env, group);
  const [seq, counts] = await Promise.all([
    rpc<{ status: GroupStatus; commandsTotal: number; work: SequencerWork } | null>(groups.sequencerOf(env, record.config).metrics()),
    directoryStub(env, group).counters(),
  ]);
  // No state: a sequencer that lost its storage or was just moved away from; it is recovered elsewhere.
  if (!seq) return { group, up: false };
  return { group, up: true, status: seq.status, commandsTotal: seq.commandsTotal, counts, work: seq.work };
}

/** One group's figures; null if there is no such group (deleted meanwhile, or never made). */
export async function groupFigures(env: Env, group: string): Promise<GroupFigures | null> {
  try {
    return await withTimeout(realClock, figuresNow(env, group), metricsCallTimeoutMs, `the metrics of ${group}`);
  } catch (err) {
    if (err instanceof ApiError && err.code === "not_found") return null;
    console.warn(`metrics of ${group}: ${String(err)}`);
    return { group, up: false };
  }
}

/** The figures of these groups, in their order, metricsConcurrencyMax at a time; groups that no longer exist are left out. */
export async function gather(env: Env, names: string[]): Promise<GroupFigures[]> {
  const out: (GroupFigures | null)[] = new Array(names.length).fill(null);
  let next = 0;
  const worker = async () => {
    while (next < names.length) {
      const i = next++;
      out[i] = await groupFigures(env, names[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(metricsConcurrencyMax, names.length) }, worker));
  return out.filter((f): f is GroupFigures => f !== null);
}
