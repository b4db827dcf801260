import { auditConcurrencyMax, cronClaimMs, cronGroupSubrequestsMax, cronSubrequestsMax } from "../shared/limits.js";
import type { Env } from "./env.js";
import { countingEnv, directoryStub, registryStub, rpc } from "./env.js";
import type { AuditReport } from "../shared/api/types.js";
import type { Unavailable } from "../shared/protocol/io.js";
import * as groups from "./groups.js";

/** What one cron run may spend (shared/limits.ts); tests pass smaller ones. */
export interface CronBudget {
  subrequestsMax: number;
  groupSubrequestsMax: number;
  claimMs: number;
}

const cronBudget: CronBudget = { subrequestsMax: cronSubrequestsMax, groupSubrequestsMax: cronGroupSubrequestsMax, claimMs: cronClaimMs };

/**
 * One cron run: audits groups, a bounded number at a time, taking them from the registry where
 * the last run stopped, for as long as the run's subrequests and time allow; the runs go round
 * every group in turn. One group's failure does not stop the rest. A lookup also finishes a
 * creation or deletion that died midway, and a sequencer without state recovers before its audit.
 */
export async function auditAll(env: Env, budget: CronBudget = cronBudget): Promise<{ audited: number; failed: string[]; subrequests: number }> {
  const calls = { n: 0 };
  const counted = countingEnv(env, calls);
  const startedMs = Date.now();
  const failed: string[] = [];
  const queue: string[] = [];
  let audited = 0;
  let inFlight = 0;
  let lapEnd = false;
  let lapLeft = false;
  let lap: number | undefined;
  /** This run ended its lap and goes on into the next, with names claimed before it began only. */
  let past = false;
  let ended = false;
  const claim = async (): Promise<boolean> => {
    // Room for the claim itself and the run's record at its end, and for the worst case of each
    // group it takes and of those under way.
    const room = Math.floor((budget.subrequestsMax - calls.n - 2) / budget.groupSubrequestsMax) - inFlight;
    if (ended || lapLeft || room <= 0 || Date.now() - startedMs >= budget.claimMs) return false;
    if (lapEnd && !past) (past = true), (lap = lap! + 1); // on into the next lap (RegistryObject.claim, claimedBeforeMs)
    try {
      // Within the lap of its first claim: a run at once with this one may end it (RegistryObject.claim).
      const limit = Math.min(room, auditConcurrencyMax);
      const page = await registryStub(counted).claim(limit, lap, past ? startedMs : undefined);
      lap ??= page.lap;
      queue.push(...page.groups);
      lapEnd ||= page.lapEnd;
      // Past its lap, a short page is the last: nothing more was claimed before this run began.
      ended = past && page.groups.length < limit;
      // Ended by another run: no claim after it (a worker done with a slow audit claimed again,
      // naming the lap the refusal told of, and went round the next lap: a review).
      lapLeft = page.lap !== lap;
      return page.groups.length > 0;
    } catch (err) {
      console.error(`cron: the registry cannot be reached: ${String(err)}`);
      return false;
    }
  };
  // One claim at a time: the workers that find the queue empty wait for the same one.
  let claiming: Promise<boolean> | null = null;
  const next = async (): Promise<string | null> => {
    while (queue.length === 0) {
      claiming ??= claim().finally(() => (claiming = null));
      if (!(await claiming)) return null;
    }
    return queue.shift()!;
  };
  const worker = async () => {
    for (let group = await next(); group !== null; group = await next()) {
      inFlight++;
      const outcome = await auditOne(counted, group).finally(() => inFlight--);
      if (outcome === "audited") audited++;
      else if (outcome === "failed") failed.push(group);
    }
  };
  await Promise.all(Array.from({ length: auditConcurrencyMax }, worker));
  // For the metrics (smr_cron_*): a log line was the only trace of a run.
  await registryStub(counted)
    .finishRun({ audited, failed: failed.length, startedMs, endedMs: Date.now() }, lapEnd)
    .catch((err) => console.error(`cron: the run was not recorded: ${String(err)}`));
  return { audited, failed, subrequests: calls.n };
}

/** One group's audit in a cron run; "gone": deleted meanwhile. */
async function auditOne(env: Env, group: string): Promise<"audited" | "failed" | "gone"> {
  try {
    // The sequencer's audit() logs a change of verdict (shared/log.ts); a lasting one shows in the metrics.
    const r = await groups.withSequencer(env, group, (s) => rpc<AuditReport | Unavailable | null>(s.auditUnlessCutOff()), (r) => r === null);
    // Cut off, and not failed over (the cut-off vote refused): not audited this run.
    if (r !== null && "kind" in r) throw new Error(r.message);
    // Not found consistent (replicas unreachable or behind, a failover under way): taken again
    // next lap even if asleep. An asleep group's insufficient audit otherwise stood for a day,
    // its health degraded (a probe).
    if (r !== null && r.verdict !== "consistent") await unclaim(env, group);
    return "audited";
  } catch (err) {
    if ((err as { code?: string }).code === "not_found") {
      await groups.unlistGone(env, group).catch((e: unknown) => console.error(`cron: ${group}, gone, stays listed: ${String(e)}`));
      return "gone";
    }
    console.error(`audit ${group} failed: ${String(err)}`);
    await recordUnaudited(env, group, err);
    // Taken again next lap, asleep or not (an asleep group's next claim was a day away).
    await unclaim(env, group);
    return "failed";
  }
}

/** The group is taken again at the next lap, asleep or not (RegistryObject.unclaim). */
async function unclaim(env: Env, group: string): Promise<void> {
  await registryStub(env)
    .unclaim(group)
    .catch((err) => console.error(`cron: ${group} is not taken again before its next claim: ${String(err)}`));
}

/**
 * A group the cron could not audit at all gets an `insufficient` report saying why: at 612 groups a
 * probe's group with its sequencer and a replica cut off (no failover possible) kept showing its
 * last `consistent` audit in GET /audits and the metrics through 8 runs; only a log line told.
 */
async function recordUnaudited(env: Env, group: string, err: unknown): Promise<void> {
  try {
    const record = await groups.lookup(env, group);
    const why = err instanceof Error ? err.message : String(err);
    const report: AuditReport = { at: new Date().toISOString(), group, seq: 0, verdict: "insufficient", replicas: [], quarantined: [], unaudited: `not audited: ${why}` };
    await directoryStub(env, group).addAudit(record.config.incarnation, report);
  } catch (e) {
    console.error(`cron: the failed audit of ${group} was not recorded: ${String(e)}`);
  }
}
