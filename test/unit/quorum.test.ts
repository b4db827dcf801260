import { describe, expect, it } from "vitest";
import { MajorityConfig, majority } from "../../shared/protocol/quorum.js";
import { directGroup } from "../support/direct.js";

describe("one quorum: a majority of the voters", () => {
  it("counts voters only", () => {
    const q = new MajorityConfig(["r1", "r2", "r3"]);
    expect(q.need).toBe(2);
    expect(q.reached(["r1", "r4", "r5"])).toBe(false); // r4, r5 are not voters
    expect(q.reached(["r1", "r3"])).toBe(true);
    expect(q.committed((id) => ({ r1: 9, r2: 4, r3: 7, r4: 100 })[id] ?? null)).toBe(7);
    expect(new MajorityConfig([]).committed(() => 1)).toBeNull();
    expect([1, 2, 3, 4, 5].map(majority)).toEqual([1, 2, 2, 3, 3]);
  });
});

describe("regression: the session-table answer to a retry counted joining replicas", () => {
  it("outputs majority, three voters with one down and one joining replica: a fresh command and every retry of it are answered", async () => {
    const members = [
      { id: "r1", location: null, voter: true },
      { id: "r2", location: null, voter: true },
      { id: "r3", location: null, voter: true },
      { id: "r4", location: null, voter: false },
    ];
    const g = directGroup({ group: "g", incarnation: 0, machine: "kv", replicas: 4, locations: [], outputs: "majority", checkpointEvery: 50, members }, { entries: 10_000, slack: 1_000 });
    g.down.add("r3");
    g.down.add("r4"); // joining, and not caught up: it stays a non-voter
    const first = await g.driver.submit("c", 1, { op: "incr", key: "n", by: 1 });
    expect(first).toMatchObject({ kind: "ok", output: { value: 1 } });
    expect(g.driver.core.voterIds()).toEqual(["r1", "r2", "r3"]);
    for (let i = 0; i < 3; i++) {
      const retry = await g.driver.submit("c", 1, { op: "incr", key: "n", by: 1 });
      expect(retry).toMatchObject({ kind: "ok", seq: (first as any).seq, output: { value: 1 } });
    }
  });
});
