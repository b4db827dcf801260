import { describe, expect, it } from "vitest";
import { MajorityConfig, majority } from "../../shared/protocol/quorum.js";
import { directGroup } from "../support/direct.js";
import { SequencerCore } from "../../shared/protocol/sequencer.js";
import { MemorySequencerStorage } from "../../shared/protocol/memory.js";

const config = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "first" as const, checkpointEvery: 50 };

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

describe("every tally counts through the one quorum", () => {
  const put = (key: string, value: unknown) => ({ op: "put", key, value });
  const members = [
    { id: "r1", location: null, voter: true },
    { id: "r2", location: null, voter: true },
    { id: "r3", location: null, voter: true },
    { id: "r4", location: null, voter: false },
  ];

  it("commit: a joining replica's ack never completes a quorum, nor a quarantined voter's; a removal shrinks the quorum", async () => {
    const { Cluster } = await import("../support/cluster.js");
    const c = new Cluster({ group: "g", incarnation: 0, machine: "kv", replicas: 4, locations: [], outputs: "first", checkpointEvery: 100, members });
    c.down.add("r2");
    c.down.add("r3");
    c.submit("a", 1, put("k", 1));
    c.settle(5);
    expect(c.sequencer.commitSeq).toBe(0); // held by r1 (a voter) and r4 (joining): no quorum of r1..r3
    c.down.delete("r2");
    c.settle();
    expect(c.sequencer.commitSeq).toBe(1);
    // r2 quarantined once the next entry is queued: r1 and r2 hold it, but only r1's vote counts.
    expect(c.submit("a", 2, put("k", 2)).kind).toBe("queued");
    c.sequencer.setQuarantined("r2", true);
    c.settle(5);
    expect(c.sequencer.lastLogSeq).toBe(2);
    expect(c.sequencer.commitSeq).toBe(1);
    // Released, its ack counts again: entry 2 commits without another message.
    c.sequencer.setQuarantined("r2", false);
    expect(c.sequencer.commitSeq).toBe(2);
    c.settle();
    // Remove r3: the quorum is now a majority of {r1, r2}.
    expect("refused" in c.sequencer.appendConfig({ op: "remove", id: "r3" }, "t")).toBe(false);
    expect(c.sequencer.votingConfig().need).toBe(2);
    expect([...c.sequencer.votingConfig().voters]).toEqual(["r1", "r2"]);
    c.settle();
    expect(c.sequencer.commitSeq).toBe(3);
  });
});

describe("status after a restart", () => {
  it("a replica not heard from since the sequencer started is lagging, not healthy with a stale appliedSeq", async () => {
    const { Cluster } = await import("../support/cluster.js");
    const c = Cluster.of("kv", 3);
    for (let r = 1; r <= 5; r++) c.submit("a", r, { op: "put", key: `k${r}`, value: r });
    c.settle();
    expect(c.sequencer.replicaStatuses().map((s) => s.status)).toEqual(["healthy", "healthy", "healthy"]);
    c.restartSequencer();
    expect(c.sequencer.commitSeq).toBe(5);
    expect(c.sequencer.replicaStatuses().map((s) => [s.status, s.appliedSeq])).toEqual([["lagging", 0], ["lagging", 0], ["lagging", 0]]);
    c.submit("a", 6, { op: "put", key: "k6", value: 6 });
    c.settle();
    expect(c.sequencer.replicaStatuses().map((s) => s.status)).toEqual(["healthy", "healthy", "healthy"]);
  });
});

describe("repairs at once", () => {
  // A replica being rebuilt refuses every recovery's fence: at most as many voters are repaired at
  // once as the group can lose (at least one), or a sequencer lost midway leaves no quorum to fence.
  it("are at most the voters a group can lose, and at least one", () => {
    for (const [replicas, atOnce] of [[1, 1], [2, 1], [3, 1], [4, 1], [5, 2], [7, 3]] as const) {
      const core = new SequencerCore(new MemorySequencerStorage(), { config: { ...config, replicas }, epoch: 1, commitSeq: 0, quarantined: [] });
      const ids = core.replicaIds();
      const begun = ids.filter((id) => core.beginRepair(id));
      expect(begun, `${replicas} replicas`).toHaveLength(atOnce);
      core.endRepair(begun[0]!, null, 0);
      expect(core.beginRepair(ids[atOnce]!), `${replicas} replicas: the next once one ends`).toBe(replicas > atOnce);
    }
  });

  it("count the voters a transfer left half-done (they refuse fences too), and such a voter may always be repaired", () => {
    const core = new SequencerCore(new MemorySequencerStorage(), { config: { ...config, replicas: 5 }, epoch: 1, commitSeq: 0, quarantined: [] });
    // r4's and r5's transfers (a restore's, or repairs) stopped halfway: two of the two at once.
    core.noteRebuilding("r4");
    core.noteRebuilding("r5");
    expect(core.beginRepair("r1")).toBe(false);
    expect(core.beginRepair("r4")).toBe(true);
    expect(core.beginRepair("r5")).toBe(true);
    expect(core.transferCandidates()).toEqual([]);
    expect(core.needsTransfer("r4")).toBe(true); // so no repair copies from it
    core.endRepair("r4", 0, 0); // rebuilt
    expect(core.needsTransfer("r4")).toBe(false);
    expect(core.beginRepair("r1")).toBe(true); // with r5: two
    core.endRepair("r5", null, 0); // failed again: still half-done, so still counted
    expect(core.beginRepair("r2")).toBe(false);
    core.endRepair("r1", 0, 0);
    expect(core.beginRepair("r2")).toBe(true);
    expect(core.beginRepair("r3")).toBe(false);
  });
});
