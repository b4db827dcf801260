// The cron over many groups: a run stays within an invocation's subrequests, and the runs go round
// every group (where the last one stopped is kept), instead of each starting at the first name.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { auditAll } from "../../workers/auditor.js";
import { type Env, countingEnv } from "../../workers/env.js";
import { api, clientToken, createGroup } from "./helpers.js";

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
    // Each group once: the runs did not start again at the first name each time.
    const counts = await Promise.all(names.map(auditCount));
    expect(counts).toEqual(names.map(() => 1));
  });
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
