// A group the cron cannot audit at all (its sequencer cut off, and no failover: the replica in its
// object is cut with it and another is away) gets an `insufficient` report saying why, counted in
// the metrics: it kept showing its last `consistent` audit (a probe at 612 groups, 8 runs).
import { SELF, env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { auditAll } from "../../workers/auditor.js";
import type { Env } from "../../workers/env.js";
import { adminToken, api, clientToken, createGroup } from "./helpers.js";

describe("the cron and a group it cannot audit", () => {
  it("records an insufficient report that says why, and the metrics count it", async () => {
    await createGroup("unaud");
    expect((await api("POST", "/v1/groups/unaud/audit")).body.verdict).toBe("consistent");
    for (const target of ["sequencer", "r2"]) expect((await api("POST", "/v1/groups/unaud/faults", { target, fault: "unreachable" })).status).toBe(200);
    try {
      const r = await auditAll(env as unknown as Env);
      expect(r.failed).toEqual(["unaud"]);
      const [latest] = (await api("GET", "/v1/groups/unaud/audits?limit=1", undefined, clientToken)).body.audits;
      expect(latest).toMatchObject({ group: "unaud", verdict: "insufficient", replicas: [], unaudited: expect.stringMatching(/^not audited: .*sequencer/) });
    } finally {
      for (const target of ["sequencer", "r2"]) await api("POST", "/v1/groups/unaud/faults", { target, fault: "none" });
    }
    // Counted with the audits by verdict (the group's series, once its sequencer answers again).
    const metrics = await (await SELF.fetch("http://smr.test/v1/metrics?group=unaud", { headers: { authorization: `Bearer ${adminToken}` } })).text();
    expect(metrics).toMatch(/smr_audits_total\{group="unaud",verdict="insufficient"\} 1/);
  }, 60_000);
});
