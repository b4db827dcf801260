// A cron run that ends a lap goes on into the next with the names it has room for, taken before it
// began: runs that stopped at a lap's end alternated between a full run and the few names past it
// (382 and 9 of 411 groups), each group audited every other run while the last lap's time said
// every run (a probe: 124 s between a group's audits, 62 s shown).
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { auditAll } from "../../workers/auditor.js";
import { type Env, countingEnv } from "../../workers/env.js";
import { api, clientToken, createGroup } from "./helpers.js";

async function auditCount(group: string): Promise<number> {
  return (await api("GET", `/v1/groups/${group}/audits?limit=100`, undefined, clientToken)).body.audits.length;
}

describe("cron runs over more groups than one run audits", () => {
  it("each audits as many as it has room for, going on past a lap's end, and the groups are audited in turn", async () => {
    const names = Array.from({ length: 7 }, (_, i) => `lap-${i}`);
    for (const g of names) await createGroup(g);
    const budget = { subrequestsMax: 16, groupSubrequestsMax: 4, claimMs: 60_000 };
    const audited: number[] = [];
    for (let i = 0; i < 4; i++) {
      const calls = { n: 0 };
      audited.push((await auditAll(countingEnv(env as unknown as Env, calls), budget)).audited);
      expect(calls.n).toBeLessThanOrEqual(budget.subrequestsMax);
    }
    // Every run after the first that ended mid-lap takes the names past it and goes on: none of
    // them audits only the few left at a lap's end.
    const least = Math.min(...audited);
    expect(audited.every((n) => n >= least && n > 2), `audited per run: ${audited.join(", ")}`).toBe(true);
    const counts = await Promise.all(names.map(auditCount));
    expect(counts.reduce((s, n) => s + n, 0)).toBe(audited.reduce((s, n) => s + n, 0));
    // In turn: no group audited twice before another once more.
    expect(Math.max(...counts) - Math.min(...counts), `audits per group: ${counts.join(", ")}`).toBeLessThanOrEqual(1);
  }, 120_000);
});
