// `smr events` (cli/members.ts eventKind): since only API.md's kinds are written, a release, an
// audit alarm, a rejoin and a restore are told apart by their `action`; the table showed the kind
// alone, so an operator's release read as a quarantine.
import { describe, expect, it } from "vitest";
import { eventKind, eventText } from "../../cli/members.js";

describe("smr events' kind column", () => {
  it("shows the action with the kind", () => {
    expect(eventKind({ kind: "quarantine", action: "release" })).toBe("quarantine (release)");
    expect(eventKind({ kind: "recovery", action: "restore" })).toBe("recovery (restore)");
  });
  it("shows a kind without an action as it is", () => {
    expect(eventKind({ kind: "quarantine" })).toBe("quarantine");
    expect(eventKind({ kind: "replica-added" })).toBe("replica-added");
  });
});

describe("smr events' message column", () => {
  const at = "2026-12-07T22:00:00.000Z";
  it("gives a failover's down time and cause (only --json showed them)", () => {
    const failover = { at, kind: "failover" as const, epoch: 2, message: "sequencer ga replaced by ga~s1 at epoch 2", from: "ga", to: "ga~s1", downMs: 5135, cause: "Error: injected fault: sequencer of ga is unreachable" };
    expect(eventText(failover)).toBe("sequencer ga replaced by ga~s1 at epoch 2 (down 5.1 s: Error: injected fault: sequencer of ga is unreachable)");
    expect(eventText({ ...failover, cause: "" })).toBe("sequencer ga replaced by ga~s1 at epoch 2 (down 5.1 s)");
  });
  it("is the message alone for other events", () => {
    expect(eventText({ at, kind: "repair", epoch: 1, message: "replica r2 rebuilt from r1 at seq 9 (3 rows)", replica: "r2" })).toBe("replica r2 rebuilt from r1 at seq 9 (3 rows)");
  });
});
