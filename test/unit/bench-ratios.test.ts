// The bench's ratios take the median of each kind of row over a full run's interleaved rounds.
import { describe, expect, it } from "vitest";
import { mediansOf, ratiosOf } from "../../bench/ratios.js";
import type { Run } from "../../bench/run.js";

function row(system: Run["system"], replicas: number, op: Run["op"], opsPerSec: number, cpuUsPerOp: number, round: number): Run {
  return { system, replicas, clients: 32, op, round, opsPerSec, p50Ms: 1, p99Ms: opsPerSec / 100, p999Ms: 1, ops: 1, errors: 0, seconds: 1, cpuUsPerOp };
}

describe("bench medians and ratios", () => {
  const runs: Run[] = [
    row("smr", 3, "put", 900, 1000, 1),
    row("baseline", 1, "put", 1000, 800, 1),
    row("smr", 3, "put", 1500, 700, 2),
    row("baseline", 1, "put", 400, 2000, 2),
    row("smr", 3, "put", 1200, 900, 3),
    row("baseline", 1, "put", 1100, 900, 3),
    row("smr", 3, "put-batch100", 5000, 200, 1),
    row("smr", 3, "put-batch100", 7000, 180, 2),
  ];

  it("gives one row per kind, in the order the kinds first ran, with the median of each figure", () => {
    const m = mediansOf(runs);
    expect(m.map((x) => [x.system, x.op, x.rows])).toEqual([["smr", "put", 3], ["baseline", "put", 3], ["smr", "put-batch100", 2]]);
    expect(m[0]).toMatchObject({ opsPerSec: 1200, cpuUsPerOp: 900, p99Ms: 12 });
    expect(m[1]).toMatchObject({ opsPerSec: 1000, cpuUsPerOp: 900 });
    expect(m[2]).toMatchObject({ opsPerSec: 6000, cpuUsPerOp: 190 }); // an even count: the mean of the middle two
  });

  it("compares medians, not the first row of a kind", () => {
    const r = ratiosOf(runs, null);
    expect(r["smr3/baseline@32"]).toEqual({ value: 1.2, target: ">= 1", met: true });
    expect(r["cpu smr3/baseline@32"]).toEqual({ value: 1, target: "<= 1", met: true });
    expect(r["batch100/smr3put@32"]).toEqual({ value: 5, target: ">= 10", met: false });
    expect(r["sharded/groups@32"]).toEqual({ value: null, target: ">= 1.7", met: null });
  });

  it("keeps a sharded pair's rows on memory and on disk apart, and holds the target to memory's", () => {
    const spread = (system: "smr-groups" | "smr-sharded", storage: "disk" | "memory", opsPerSec: number): Run => ({
      ...row(system, 3, "put", opsPerSec, 1000, 1),
      groups: 8,
      processes: system === "smr-sharded" ? 2 : 1,
      storage,
    });
    const pairs = [spread("smr-groups", "memory", 1000), spread("smr-sharded", "memory", 1800), spread("smr-groups", "disk", 600), spread("smr-sharded", "disk", 720)];
    const m = mediansOf(pairs);
    expect(m.map((x) => [x.system, x.storage, x.opsPerSec])).toEqual([
      ["smr-groups", "memory", 1000],
      ["smr-sharded", "memory", 1800],
      ["smr-groups", "disk", 600],
      ["smr-sharded", "disk", 720],
    ]);
    const r = ratiosOf(pairs, null);
    expect(r["sharded/groups@32"]).toEqual({ value: 1.8, target: ">= 1.7", met: true });
    expect(r["sharded/groups disk@32"]).toEqual({ value: 1.2, target: null, met: null });
  });
});
