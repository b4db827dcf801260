import { describe, expect, it } from "vitest";
import { directGroup, type Clock } from "../support/direct.js";

const config = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "majority" as const, checkpointEvery: 50 };

/** Real time, but no timer ever fires: what settles must settle on answers alone. */
const timersNeverFire: Clock = { nowMs: () => Date.now(), setTimer: () => () => {} };

describe("a retry of a committed command is answered from the replicas' session tables", () => {
  it("as soon as a quorum agrees: a replica that never answers does not hold it (it held it for the command timeout)", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 }, timersNeverFire);
    const first = await g.driver.submit("a", 1, { op: "incr", key: "n", by: 1 });
    expect(first).toMatchObject({ kind: "ok", seq: 1, output: { value: 1 } });
    // r3 stops answering session lookups (a lost answer, or a location gone quiet).
    g.replicas.get("r3")!.session = () => new Promise(() => {});
    const retry = await g.driver.submit("a", 1, { op: "incr", key: "n", by: 1 });
    expect(retry).toMatchObject({ kind: "ok", seq: 1, output: { value: 1 } });
    expect(g.calls.get("r1:session")).toBe(1);
    expect(g.calls.get("r2:session")).toBe(1);
  });

  it("still by a quorum: one corrupted replica's recorded output does not answer it", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 }, timersNeverFire);
    expect((await g.driver.submit("a", 1, { op: "incr", key: "n", by: 1 })).kind).toBe("ok");
    const r1 = g.replicas.get("r1")!;
    const real = r1.session.bind(r1);
    r1.session = async (...args) => {
      const s = await real(...args);
      return s.kind === "found" ? { ...s, output: { value: 99 } } : s;
    };
    const retry = await g.driver.submit("a", 1, { op: "incr", key: "n", by: 1 });
    expect(retry).toMatchObject({ kind: "ok", seq: 1, output: { value: 1 } });
  });
});

describe("a command whose replicas' outputs split with no majority (outputs majority)", () => {
  it("is answered no_majority on a retry too, as it was the first time (the retry said 'timeout: may or may not take effect', though it ran)", async () => {
    const g = directGroup({ ...config, replicas: 2 }, { entries: 10_000, slack: 1_000 }, timersNeverFire);
    // r2's row changed behind its digest (corruption): the same incr outputs 1 on r1, 11 on r2.
    g.stores.get("r2")!.rows.put("m/n", "10");
    const first = await g.driver.submit("a", 1, { op: "incr", key: "n", by: 1 });
    expect(first.kind).toBe("no_majority");
    const retry = await g.driver.submit("a", 1, { op: "incr", key: "n", by: 1 });
    expect(retry).toEqual(first);
  });
});
