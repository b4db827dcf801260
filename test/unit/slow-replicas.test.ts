import { describe, expect, it } from "vitest";
import { slowReplicaAvoidMs, slowReplicasMax } from "../../shared/limits.js";
import { isSlow, noteAnswered, noteSlow, slowLast } from "../../workers/slow-replicas.js";

const rs = (...ids: string[]) => ids.map((id) => ({ id }));
const g = { group: "g", incarnation: 1 };

describe("replicas a router saw fail or overtaken are asked last for a while", () => {
  it("moves a marked replica last, keeps the others' order, and forgets it after the window or an answer", () => {
    noteSlow(g, "r2", 1_000);
    expect(slowLast(g, rs("r2", "r1", "r3"), 1_000).map((r) => r.id)).toEqual(["r1", "r3", "r2"]);
    expect(slowLast({ group: "other", incarnation: 1 }, rs("r2", "r1"), 1_000).map((r) => r.id)).toEqual(["r2", "r1"]);
    // The group deleted and made again (a new incarnation, the same replica ids): no marks.
    expect(slowLast({ group: "g", incarnation: 2 }, rs("r2", "r1"), 1_000).map((r) => r.id)).toEqual(["r2", "r1"]);
    expect(isSlow(g, "r2", 1_000 + slowReplicaAvoidMs - 1)).toBe(true);
    expect(isSlow(g, "r2", 1_000 + slowReplicaAvoidMs)).toBe(false);
    noteSlow(g, "r3", 2_000);
    noteAnswered(g, "r3");
    expect(slowLast(g, rs("r3", "r1"), 2_000).map((r) => r.id)).toEqual(["r3", "r1"]);
  });

  it("holds at most slowReplicasMax marks, dropping the oldest", () => {
    const many = { group: "many", incarnation: 1 };
    for (let i = 0; i <= slowReplicasMax; i++) noteSlow(many, `r${i}`, 5_000 + i);
    expect(isSlow(many, "r0", 5_000)).toBe(false);
    expect(isSlow(many, "r1", 5_001)).toBe(true);
    expect(isSlow(many, `r${slowReplicasMax}`, 5_000 + slowReplicasMax)).toBe(true);
  });
});
