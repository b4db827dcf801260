// The cron over many groups: a run stays within an invocation's subrequests, and the runs go round
// every group (where the last one stopped is kept), instead of each starting at the first name.
import { SELF, env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { auditAll } from "../../workers/auditor.js";
import { type Env, countingEnv } from "../../workers/env.js";
import type { RegistryObject } from "../../workers/registry.js";
import { registryCallTimeoutMs, sequencerTimeoutMs } from "../../shared/limits.js";
import { adminToken, api, clientToken, createGroup } from "./helpers.js";

/**
 * The env with every call to a Durable Object counted (a subrequest of the invocation making it),
 * by the cron's own counter around the env it is given: the run counts again inside.
 */
function counted(calls: { n: number }): Env {
  return countingEnv(env as unknown as Env, calls);
}

async function auditCount(group: string): Promise<number> {
  return (await api("GET", `/v1/groups/${group}/audits?limit=100`, undefined, clientToken)).body.audits.length;
}

describe("the cron over many groups", () => {
  it("a run stops within its subrequests; the next goes on where it stopped, and every group is audited in turn", async () => {
    const names = Array.from({ length: 12 }, (_, i) => `cron-many-${String(i).padStart(2, "0")}`);
    for (const g of names) await createGroup(g);
    const budget = { subrequestsMax: 24, groupSubrequestsMax: 4, claimMs: 60_000 };
    const runs: { audited: number; calls: number }[] = [];
    // A lap of 12 groups at up to 24 subrequests a run (about 2 a group) takes several runs.
    for (let i = 0; i < 8 && runs.reduce((s, r) => s + r.audited, 0) < names.length; i++) {
      const calls = { n: 0 };
      const r = await auditAll(counted(calls), budget);
      runs.push({ audited: r.audited, calls: calls.n });
    }
    for (const r of runs) {
      expect(r.calls).toBeLessThanOrEqual(budget.subrequestsMax);
      expect(r.audited).toBeGreaterThan(0);
    }
    expect(runs.length).toBeGreaterThan(1);
    // Each group in turn: the runs did not start again at the first name each time (the run that
    // ended the lap went on into the next with the room it had left: cron-lap.test.ts).
    const counts = await Promise.all(names.map(auditCount));
    expect(Math.min(...counts)).toBe(1);
    expect(Math.max(...counts)).toBeLessThanOrEqual(2);
    expect(counts.reduce((s, n) => s + n, 0)).toBe(runs.reduce((s, r) => s + r.audited, 0));
    // The metrics say what the last run did and what a whole lap took (a log line was all there was).
    const scrape = await SELF.fetch("http://smr.test/v1/metrics", { headers: { authorization: `Bearer ${adminToken}` } });
    const series = new Map((await scrape.text()).split("\n").filter((l) => l.startsWith("smr_cron_")).map((l) => [l.split(" ")[0]!, Number(l.split(" ")[1])]));
    expect(series.get("smr_cron_known")).toBe(1);
    expect(series.get("smr_cron_last_run_audited")).toBe(runs.at(-1)!.audited);
    expect(series.get("smr_cron_last_run_failed")).toBe(0);
    expect(series.get("smr_cron_last_run_timestamp_seconds")! * 1000).toBeGreaterThan(Date.now() - 60_000);
    expect(series.get("smr_cron_last_run_duration_seconds")).toBeGreaterThanOrEqual(0);
    // The lap took every group listed (these and any other test's in this file's storage).
    expect(series.get("smr_cron_last_lap_groups")).toBeGreaterThanOrEqual(names.length);
    // From its first claim to its last (the run that took the last names went on into the next lap).
    expect(series.get("smr_cron_last_lap_seconds")).toBeGreaterThan(0);
    // A page after the first repeats none of them.
    const later = await SELF.fetch(`http://smr.test/v1/metrics?after=${names[0]}&limit=2`, { headers: { authorization: `Bearer ${adminToken}` } });
    expect(await later.text()).not.toMatch(/^smr_cron_/m);
  });
});

describe("cron runs at once", () => {
  it("go round every group once between them: each stops at the end of the lap it began in (three runs at once took 300 audits of 100 groups)", async () => {
    const names = Array.from({ length: 20 }, (_, i) => `cron-overlap-${String(i).padStart(2, "0")}`);
    for (const g of names) await createGroup(g);
    // Claims of auditConcurrencyMax (8) groups interleave: one run's claim ends the lap while the others are under way.
    const runs = await Promise.all([0, 1, 2].map(() => auditAll(env as unknown as Env)));
    expect(runs.every((r) => r.failed.length === 0)).toBe(true);
    expect(await Promise.all(names.map(auditCount))).toEqual(names.map(() => 1));
    // And the next run takes each again, once.
    await auditAll(env as unknown as Env);
    expect(await Promise.all(names.map(auditCount))).toEqual(names.map(() => 2));
  }, 120_000);

  it("a run stops once another ended its lap, even when a slow audit's worker claims again later (it went round the next lap: a review)", async () => {
    const names = Array.from({ length: 10 }, (_, i) => `cron-slow-lap-${String(i).padStart(2, "0")}`);
    for (const g of names) await createGroup(g);
    const registry = env.REGISTRY.get(env.REGISTRY.idFromName("registry"));
    // To a lap's end first, so that the next run's first claim starts one (every name of this file's storage after it).
    for (let i = 0; i < 100 && !(await registry.claim(1000)).lapEnd; i++);
    const before = await Promise.all(names.map(auditCount));
    const slow = names.slice(0, 8);
    // Slow enough that no worker of the run is free to claim again before the other run below has
    // ended the lap (at 400 ms, then at 1.5 s, a loaded machine's polling took longer, and the run
    // took the last two).
    for (const g of slow) await api("POST", `/v1/groups/${g}/faults`, { target: "sequencer", fault: "slow", ms: g === slow[0] ? 5_000 : 4_000 });
    try {
      const claimedMs = () => runInDurableObject(registry, (_: RegistryObject, state) => state.storage.sql.exec<{ c: number }>("SELECT claimed_ms AS c FROM names WHERE name = ?", names[0]!).one().c);
      const lapClaimMs = await claimedMs();
      const run = auditAll(env as unknown as Env); // claims the first 8
      // Its first claim made (150 ms was not always enough on a loaded machine: the loop below then took the lap's first names).
      for (let i = 0; i < 500 && (await claimedMs()) === lapClaimMs; i++) await new Promise((r) => setTimeout(r, 10));
      // Another run takes the rest and ends the lap.
      for (let i = 0; i < 100 && !(await registry.claim(8)).lapEnd; i++);
      await run;
    } finally {
      for (const g of slow) await api("POST", `/v1/groups/${g}/faults`, { target: "sequencer", fault: "none" });
    }
    const after = await Promise.all(names.map(auditCount));
    // The run audited its 8 once each; the other 2 were the other run's (claimed, not audited here).
    expect(after.map((n, i) => n - before[i]!)).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
  }, 120_000);
});

describe("the registry's cron cursor", () => {
  it("a claim whose cursor has no names after it (deleted since) starts the lap again at once", async () => {
    const registry = env.REGISTRY.get(env.REGISTRY.idFromName("registry"));
    for (const n of ["zz-cursor-a", "zz-cursor-b", "zz-cursor-c"]) await registry.add(n, 1);
    // One name a claim, until the cursor stands at b (c after it).
    for (let i = 0; i < 100 && (await registry.claim(1)).groups[0] !== "zz-cursor-b"; i++);
    await registry.remove("zz-cursor-c");
    const next = await registry.claim(1);
    expect(next.groups).toHaveLength(1);
    expect(next.groups[0]! < "zz-cursor-b").toBe(true);
    for (const n of ["zz-cursor-a", "zz-cursor-b"]) await registry.remove(n);
  });
});

describe("the cron and a cut-off sequencer", () => {
  it("fails over an idle group's sequencer that answers, slowly, but has had no quorum (slowed past its appends' timeout)", async () => {
    await createGroup("cron-slow");
    const put = await api("POST", "/v1/groups/cron-slow/commands", { client: "c", request: 1, command: { op: "put", key: "k", value: 1 } }, clientToken);
    expect(put.status).toBe(200);
    // Every call to it and from it takes 4 s: its appends to r2 and r3 time out (3 s), so it has
    // no quorum, yet it answers the cron's calls. It answered the audits and kept its office
    // until a client wrote (a probe: three cron runs in 75 s).
    await api("POST", "/v1/groups/cron-slow/faults", { target: "sequencer", fault: "slow", ms: 4_000 });
    try {
      await new Promise((r) => setTimeout(r, sequencerTimeoutMs + 2_000));
      const run = await auditAll(env as unknown as Env);
      expect(run.failed).not.toContain("cron-slow");
    } finally {
      await api("POST", "/v1/groups/cron-slow/faults", { target: "sequencer", fault: "none" });
    }
    expect((await api("GET", "/v1/groups/cron-slow")).body.epoch).toBe(2);
    const events = (await api("GET", "/v1/groups/cron-slow/events", undefined, clientToken)).body.events;
    expect(events).toContainEqual(expect.objectContaining({ kind: "failover", cause: expect.stringMatching(/no quorum/) }));
    // The successor was audited in the same run.
    expect(await auditCount("cron-slow")).toBe(1);
  }, 60_000);
});

describe("the cron and a slow registry", () => {
  it("a claim the registry does not answer within registryCallTimeoutMs ends the run (nothing audited), not a run as long as the registry is slow", async () => {
    await createGroup("cron-slow-reg");
    expect((await api("POST", "/v1/groups/cron-slow-reg/faults", { target: "registry", fault: "slow", ms: 20_000 })).status).toBe(200);
    try {
      const startedMs = Date.now();
      const run = await auditAll(env as unknown as Env);
      expect(run.audited).toBe(0);
      expect(Date.now() - startedMs).toBeLessThan(registryCallTimeoutMs + 5_000);
    } finally {
      await api("POST", "/v1/groups/cron-slow-reg/faults", { target: "registry", fault: "none" });
    }
    // With the registry answering again, the next runs go round to the group.
    let audits = 0;
    for (let i = 0; i < 5 && audits === 0; i++) {
      await auditAll(env as unknown as Env);
      audits = await auditCount("cron-slow-reg");
    }
    expect(audits).toBe(1);
  }, 60_000);
});
