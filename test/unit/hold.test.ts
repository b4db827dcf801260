import { describe, expect, it } from "vitest";
import type { HoldReason } from "../../shared/protocol/sequencer.js";
import { directGroup } from "../support/direct.js";

const config = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "first" as const, checkpointEvery: 50 };
const put = (key: string) => ({ op: "put", key, value: 1 });

/** A group whose sequencer records every message the driver chose to hold back, and why. */
function recordingGroup() {
  const g = directGroup(config, { entries: 10_000, slack: 1_000 });
  const held: HoldReason[] = [];
  const driver = g.driver as unknown as { holdBack(id: string, why: HoldReason, advanced: boolean): boolean };
  const holdBack = driver.holdBack.bind(driver);
  driver.holdBack = (id, why, advanced) => {
    const decided = holdBack(id, why, advanced);
    if (decided) held.push(why);
    return decided;
  };
  return { ...g, held };
}

describe("holding new entries back until another voter's ack (SequencerDriver.holdBack)", () => {
  it("never holds entries for a lone client", async () => {
    const g = recordingGroup();
    for (let r = 1; r <= 30; r++) expect((await g.driver.submit("lone", r, put(`k${r}`))).kind).toBe("ok");
    expect(g.held.filter((why) => why === "in-flight-elsewhere")).toEqual([]);
  });

  it("holds them under load, and every command is still answered once, in order", async () => {
    const g = recordingGroup();
    expect((await g.driver.submit("warm", 1, put("w"))).kind).toBe("ok"); // every replica heard from
    const answers = await Promise.all(Array.from({ length: 64 }, (_, i) => g.driver.submit(`c${i}`, 1, put(`k${i}`))));
    expect(answers.every((a) => a.kind === "ok")).toBe(true);
    expect(new Set(answers.map((a) => (a.kind === "ok" ? a.seq : 0))).size).toBe(64);
    expect(g.held).toContain("in-flight-elsewhere");
    // Held messages went out: every replica ends with the whole log applied.
    await new Promise((r) => setTimeout(r, 20));
    for (const s of g.stores.values()) expect(s.meta!.appliedSeq).toBe(65);
  });
});
