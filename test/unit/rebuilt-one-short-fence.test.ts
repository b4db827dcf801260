// A rule no test held until mutation testing (replica.ts amnesiac comparing lastSeq with rejoinSeq - 1): a replica whose
// install cleared a log it had acknowledged up to rejoinSeq accepts no fence until its log holds
// rejoinSeq again. The existing test rebuilds four entries short; one short is the boundary: the
// entry at rejoinSeq may be committed with this replica's ack, and a recovery counting its log
// would not see it.
import { describe, expect, it } from "vitest";
import { Cluster } from "../support/cluster.js";

const put = (n: number) => ({ op: "put", key: `k${n}`, value: n });

describe("a replica rebuilt one entry short of what it acknowledged", () => {
  it("accepts no fence until its log holds that entry again", () => {
    const c = Cluster.of("kv");
    for (let r = 1; r <= 5; r++) c.submit("a", r, put(r));
    c.settle();
    const source = c.replicas.get("r1")!;
    const info = source.beginSnapshot()!;
    expect(info.seq).toBe(5);
    const rows = source.snapshotPage(5, null, 1 << 20)!;
    c.submit("a", 6, put(6));
    c.settle();
    const r2 = c.replicas.get("r2")!;
    expect(r2.position().lastSeq).toBe(6); // it acknowledged entry 6

    expect(r2.beginInstall(info, "t1", 1)).toBe(true);
    expect(c.replicaStores.get("r2")!.meta!.rejoinSeq).toBe(6);
    expect(r2.installPage("t1", rows)).toBe(true);
    expect(r2.endInstall("t1").ok).toBe(true);
    expect(r2.position().lastSeq).toBe(5);
    expect(r2.fence(2).accepted).toBe(false); // 6 is not in its log

    c.sequencer.beginRepair("r2");
    c.sequencer.endRepair("r2", 5, c.nowMs);
    c.settle();
    expect(r2.position().lastSeq).toBe(6);
    expect(r2.fence(2).accepted).toBe(true);
  });
});
