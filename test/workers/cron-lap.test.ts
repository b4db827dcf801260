// A cron run that ends a lap goes on into the next with the names it has room for, taken before it
// began: runs that stopped at a lap's end alternated between a full run and the few names past it
// (382 and 9 of 411 groups), each group audited every other run while the last lap's time said
// every run (a probe: 124 s between a group's audits, 62 s shown).
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { auditAll } from "../../workers/auditor.js";
import { type Env, countingEnv } from "../../workers/env.js";
import type { RegistryObject } from "../../workers/registry.js";
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

describe("a run's claims past the end of its lap (RegistryObject.claim with claimedBeforeMs)", () => {
  const registry = () => env.REGISTRY.get(env.REGISTRY.idFromName("registry"));
  const registrySql = (sql: string, ...args: (string | number | null)[]) =>
    runInDurableObject(registry(), (_: RegistryObject, state) => void state.storage.sql.exec(sql, ...args));
  const names = ["zz-a", "zz-b", "zz-c", "zz-d", "zz-e"];
  /** To the end of the lap under way, then a lap of every name (each taken before `startedMs`). */
  async function lapTaken(): Promise<{ startedMs: number; lap: number }> {
    for (let i = 0; i < 100 && !(await registry().claim(1000)).lapEnd; i++);
    const whole = await registry().claim(1000);
    expect(whole.groups).toEqual(expect.arrayContaining(names));
    expect(whole.lapEnd).toBe(true);
    await new Promise((r) => setTimeout(r, 5));
    const startedMs = Date.now();
    await new Promise((r) => setTimeout(r, 5));
    return { startedMs, lap: whole.lap + 1 };
  }

  it("take only names claimed before the run began, stopping at the first it may not take (an unclaimed one, one taken since)", async () => {
    // Only these names (the test above listed others).
    await registrySql("DELETE FROM names");
    await registrySql("DELETE FROM cron");
    for (const n of names) await registry().add(n, 1);
    // zz-c's audit failed (unclaimed: taken again next lap), and this run may have just audited it.
    let { startedMs, lap } = await lapTaken();
    await registry().unclaim("zz-c");
    const first = await registry().claim(1000, lap, startedMs);
    expect(first).toMatchObject({ groups: ["zz-a", "zz-b"], lapEnd: false });
    expect((await registry().claim(1000, lap, startedMs)).groups).toEqual([]);
    // The next run goes on from there in the same lap: zz-c was not passed over.
    expect(await registry().claim(1000, lap)).toMatchObject({ groups: ["zz-c", "zz-d", "zz-e"], lapEnd: true });
    // One taken since the run began (by a run at once) stops it the same way.
    ({ startedMs, lap } = await lapTaken());
    await registrySql("UPDATE names SET claimed_ms = ? WHERE name = ?", Date.now(), "zz-b");
    expect((await registry().claim(1000, lap, startedMs)).groups).toEqual(["zz-a"]);
    expect((await registry().claim(1000, lap)).groups).toEqual(["zz-b", "zz-c", "zz-d", "zz-e"]);
  });
});
