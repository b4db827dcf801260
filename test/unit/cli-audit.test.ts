// `smr audit` exits 1 when the audit found replicas that disagree or an alarm (cli/members.ts
// auditFailure): it exited 0 whatever the verdict, so `smr audit g && ...` went on regardless.
import { describe, expect, it } from "vitest";
import { auditFailure } from "../../cli/members.js";

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
