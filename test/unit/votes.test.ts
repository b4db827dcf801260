// Output votes in "majority" mode: decided once a quorum agrees, a differing replica reported,
// and what is held per seq is one copy of each distinct outcome, not one per voter.
import { describe, expect, it } from "vitest";
import { MajorityConfig } from "../../shared/protocol/quorum.js";
import { type Decision, OutputVotes } from "../../shared/protocol/votes.js";
import type { AppliedOutput } from "../../shared/protocol/types.js";

const out = (seq: number, output: unknown): AppliedOutput => ({ seq, status: "ok", originalSeq: seq, output });

describe("output votes (majority)", () => {
  const voters = new MajorityConfig(["r1", "r2", "r3"]);
  const active = ["r1", "r2", "r3"];

  it("decides on the first quorum of equal outputs (key order does not matter) and names the replica that differs", () => {
    const votes = new OutputVotes(100);
    votes.open(1);
    const decided: Decision[] = [];
    const diverged: string[] = [];
    votes.collect("r1", [out(1, { a: 1, b: 2 })], "majority", voters, active, decided, diverged);
    votes.collect("r3", [out(1, { a: 9 })], "majority", voters, active, decided, diverged);
    expect(decided).toEqual([]);
    votes.collect("r2", [out(1, { b: 2, a: 1 })], "majority", voters, active, decided, diverged);
    expect(decided).toEqual([{ seq: 1, outcome: out(1, { a: 1, b: 2 }) }]);
    expect(diverged).toEqual(["r3"]);
    expect(votes.outputsHeld).toBe(0); // everyone voted: forgotten
  });

  it("says the install count of the outvoted replica's losing votes: one cast before its rebuild is stamped with the count before it (the simulator, seed 455436698)", () => {
    const votes = new OutputVotes(100);
    votes.open(1);
    votes.open(2);
    const decided: Decision[] = [];
    const diverged: string[] = [];
    const stamps: { divergedAt?: Map<string, number> } = {};
    // r3 voted on seq 1 while damaged (no install yet), then was rebuilt (install 1) and voted on seq 2.
    votes.collect("r3", [out(1, "bad")], "majority", voters, active, decided, diverged, 0, stamps);
    votes.collect("r3", [out(2, "bad too")], "majority", voters, active, decided, diverged, 1, stamps);
    votes.collect("r1", [out(1, "good")], "majority", voters, active, decided, diverged, 0, stamps);
    votes.collect("r2", [out(1, "good")], "majority", voters, active, decided, diverged, 0, stamps);
    expect(diverged).toEqual(["r3"]);
    expect(stamps.divergedAt?.get("r3"), "its vote on seq 1 only: from before the rebuild").toBe(0);
    votes.collect("r1", [out(2, "good")], "majority", voters, active, decided, diverged, 0, stamps);
    votes.collect("r2", [out(2, "good")], "majority", voters, active, decided, diverged, 0, stamps);
    expect(stamps.divergedAt?.get("r3"), "a losing vote cast after it: the newest count").toBe(1);
  });

  it("holds one copy of an outcome however many voters report it, and none once decided", () => {
    const five = new MajorityConfig(["r1", "r2", "r3", "r4", "r5"]);
    const all = ["r1", "r2", "r3", "r4", "r5"];
    const votes = new OutputVotes(100);
    const big = "x".repeat(100_000);
    for (let seq = 1; seq <= 10; seq++) votes.open(seq);
    const decided: Decision[] = [];
    const vote = (id: string) => votes.collect(id, Array.from({ length: 10 }, (_, i) => out(i + 1, { v: big })), "majority", five, all, decided, []);
    vote("r1");
    vote("r2");
    expect(decided).toEqual([]);
    expect(votes.outputsHeld).toBe(10); // two equal votes per seq: one copy each, not two
    vote("r3");
    expect(decided.map((d) => d.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(decided[0]!.outcome).toEqual(out(1, { v: big }));
    vote("r4");
    expect(votes.outputsHeld).toBe(0); // decided: later voters are compared by identity alone
    const diverged: string[] = [];
    votes.collect("r5", Array.from({ length: 10 }, (_, i) => out(i + 1, { v: "other" })), "majority", five, all, decided, diverged);
    expect(diverged).toEqual(["r5"]);
    expect(decided).toHaveLength(10); // decided once
  });

  it("without a majority, decides null once every active voter has voted", () => {
    const votes = new OutputVotes(100);
    votes.open(1);
    const decided: Decision[] = [];
    for (const [id, v] of [["r1", 1], ["r2", 2], ["r3", 3]] as const) votes.collect(id, [out(1, v)], "majority", voters, active, decided, []);
    expect(decided).toEqual([{ seq: 1, outcome: null }]);
  });
});
