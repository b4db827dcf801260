// A rule no test held until mutation testing (replica.ts beginInstall without its epoch check): a state transfer begun
// by a deposed sequencer (an epoch below the one this replica was fenced at) must not clear the
// replica: the newer sequencer's recovery may have counted its log, and a deposed sequencer's
// source may hold a state the newer one's log does not (nothing else on the target's side stops it).
import { describe, expect, it } from "vitest";
import { Cluster } from "../support/cluster.js";

describe("an install asked by a sequencer of an older epoch than the replica's", () => {
  it("is refused, and the replica keeps its log and state", () => {
    const c = Cluster.of("kv");
    for (let r = 1; r <= 3; r++) c.submit("a", r, { op: "put", key: `k${r}`, value: r });
    c.settle();
    const r3 = c.replicas.get("r3")!;
    expect(r3.fence(2, "successor").accepted).toBe(true); // a newer sequencer's recovery fenced it
    const before = r3.position();
    const info = c.replicas.get("r1")!.beginSnapshot()!;
    expect(r3.beginInstall(info, "t-old", 1)).toBe(false);
    expect(r3.position()).toEqual(before);
    expect(r3.withheld).toBe(false);
    // The sequencer of its epoch may.
    expect(r3.beginInstall(info, "t-new", 2)).toBe(true);
  });
});
