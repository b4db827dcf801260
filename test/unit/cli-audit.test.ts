// `smr audit` exits 1 when the audit found replicas that disagree or an alarm (cli/members.ts
// auditFailure): it exited 0 whatever the verdict, so `smr audit g && ...` went on regardless.
import { describe, expect, it } from "vitest";
import { auditFailure, auditRow, everyFewSeconds } from "../../cli/members.js";
import { lastAuditCell } from "../../cli/metrics.js";

const agree = { id: "r1", verdict: "agrees" };

describe("smr audit's exit", () => {
  it("fails on a diverged verdict, naming the replicas and the quarantine", () => {
    const a = { verdict: "diverged", replicas: [agree, { id: "r2", verdict: "diverged" }], quarantined: ["r2"] };
    expect(auditFailure(a)).toBe("the replicas diverged (r2); quarantined: r2");
  });

  it("fails on an alarm", () => {
    expect(auditFailure({ verdict: "consistent", replicas: [agree], alarm: "2 of 3 voters failed the same check" })).toBe("audit alarm: 2 of 3 voters failed the same check");
  });

  it("passes a consistent one", () => {
    expect(auditFailure({ verdict: "consistent", replicas: [agree] })).toBeNull();
  });

  it("fails an insufficient one, naming the replicas it could not compare: nothing was checked (a probe: exit 0 with no replica reached)", () => {
    expect(auditFailure({ verdict: "insufficient", replicas: [agree, { id: "r2", verdict: "unreachable" }] })).toBe("too few replicas to compare, nothing was checked (r2 unreachable)");
    expect(auditFailure({ verdict: "insufficient", replicas: [] })).toBe("too few replicas to compare, nothing was checked (no replica answered)");
  });
});

describe("smr audits' rows", () => {
  const base = { group: "g", at: "2026-12-06T05:00:00.000Z", seq: 0, verdict: "insufficient" as const, replicas: [], quarantined: [] };
  it("a group the cron could not audit: no seq, and why in the replicas cell (it showed seq 0 and nothing)", () => {
    expect(auditRow({ ...base, unaudited: "not audited: the sequencer has had no quorum for 20018 ms" })).toEqual([base.at, "-", "insufficient", "not audited: the sequencer has had no quorum for 20018 ms"]);
  });
  it("a compared one shows its seq and each replica's verdict", () => {
    expect(auditRow({ ...base, seq: 12, verdict: "consistent", replicas: [{ id: "r1", appliedSeq: 12, digest: "ab", verdict: "agrees" }] })).toEqual([base.at, 12, "consistent", "r1:agrees"]);
    expect(auditRow({ ...base, compared: false, replicas: [{ id: "r1", appliedSeq: null, digest: null, verdict: "unreachable" }] })).toEqual([base.at, "-", "insufficient", "r1:unreachable"]);
  });
});

describe("smr groups status' last audit", () => {
  it("none yet when the directory's counts were read (its failovers known), ? only when they were not", () => {
    expect(lastAuditCell({ lastAudit: null, failovers: 0 }, 0)).toBe("none yet");
    expect(lastAuditCell({ lastAudit: null, failovers: null }, 0)).toBe("?");
    expect(lastAuditCell({ lastAudit: { verdict: "consistent", at: new Date(0).toISOString() }, failovers: 1 }, 5_000)).toMatch(/^consistent, /);
  });
});

describe("smr replicas repair's progress poll", () => {
  it("runs one at a time, and its stop aborts the one under way and runs no more", async () => {
    let started = 0;
    let aborted = 0;
    const stop = everyFewSeconds(
      (signal) =>
        new Promise<void>((resolve) => {
          started++;
          signal.addEventListener("abort", () => (aborted++, resolve()));
        }),
      5,
    );
    await new Promise((r) => setTimeout(r, 60));
    expect(started).toBe(1); // the first never answered: no second one meanwhile
    stop();
    expect(aborted).toBe(1);
    await new Promise((r) => setTimeout(r, 30));
    expect(started).toBe(1);
  });
});
