// `smr events` (cli/members.ts eventKind): since only API.md's kinds are written, a release, an
// audit alarm, a rejoin and a restore are told apart by their `action`; the table showed the kind
// alone, so an operator's release read as a quarantine.
import { describe, expect, it } from "vitest";
import { eventKind } from "../../cli/members.js";

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
