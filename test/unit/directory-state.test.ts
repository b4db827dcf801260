import { describe, expect, it } from "vitest";
import { memoryDirectory } from "../support/directory.js";
import type { GroupConfig } from "../../shared/protocol/types.js";


const config = { group: "g", machine: "kv", replicas: 3, outputs: "first", checkpointEvery: 100 } as unknown as GroupConfig;

describe("the directory's lifecycle states", () => {
  // A probe: a PUT whose registry call was slow marked "ready" the group whose DELETE had begun
  // meanwhile and stopped at an unreachable replica; every command then answered 504 for good.
  it("a creation cannot mark ready a record a DELETE has marked deleting", () => {
    const d = memoryDirectory();
    const made = d.create(config, "2026-01-01T00:00:00.000Z");
    const inc = made.record.config.incarnation;
    expect(d.setState(inc, "deleting")).toBe(true);
    expect(d.setState(inc, "ready")).toBe(false);
    expect(d.get()?.state).toBe("deleting");
    expect(d.setState(inc, "deleted")).toBe(true);
    expect(d.get()).toBeNull();
  });

  it("a creation finished twice (a resumed PUT) is ready both times", () => {
    const d = memoryDirectory();
    const inc = d.create(config, "2026-01-01T00:00:00.000Z").record.config.incarnation;
    expect(d.setState(inc, "ready")).toBe(true);
    expect(d.setState(inc, "ready")).toBe(true);
    expect(d.get()?.state).toBe("ready");
  });
});

describe("removed replicas to destroy", () => {
  const member = (id: string) => ({ id, location: null, voter: true });
  const cfg = (inc: number, ids: string[], inFlight?: string[][]) =>
    ({ ...config, locations: [], incarnation: inc, members: ids.map(member), ...(inFlight ? { inFlight: inFlight.map((m) => m.map(member)) } : {}) }) as GroupConfig;

  it("are the members a membership recorded with nothing in flight no longer names, until destroyed; a new incarnation starts with none", () => {
    const d = memoryDirectory();
    const inc = d.create({ ...config, locations: [] } as GroupConfig, "2026-01-01T00:00:00.000Z").record.config.incarnation;
    expect(d.setState(inc, "ready")).toBe(true);
    // The change in flight still names r3 (a recovery must fence it): not yet.
    // A change's write-ahead names the next membership, with [in force, next] in flight.
    expect(d.update(inc, cfg(inc, ["r1", "r2"], [["r1", "r2", "r3"], ["r1", "r2"]]))).toBe(true);
    expect(d.retiring(inc)).toEqual([]);
    expect(d.update(inc, cfg(inc, ["r1", "r2"]))).toBe(true);
    expect(d.retiring(inc)).toEqual(["r3"]);
    // An add refused after its write-ahead: never a member, and its id goes to the next add (a
    // review: listed, that next add's replica would have been destroyed). Not listed.
    expect(d.update(inc, cfg(inc, ["r1", "r2", "r4"], [["r1", "r2"], ["r1", "r2", "r4"]]))).toBe(true);
    expect(d.update(inc, cfg(inc, ["r1", "r2"]))).toBe(true);
    expect(d.retiring(inc)).toEqual(["r3"]);
    // An id named again (it cannot be, for a removed member) leaves the list at once.
    expect(d.update(inc, cfg(inc, ["r1", "r2", "r3"], [["r1", "r2"], ["r1", "r2", "r3"]]))).toBe(true);
    expect(d.retiring(inc)).toEqual([]);
    expect(d.update(inc, cfg(inc, ["r1", "r2"]))).toBe(true);
    expect(d.update(inc, cfg(inc, ["r1"]))).toBe(true);
    expect(d.retiring(inc)).toEqual(["r2"]);
    expect(d.update(inc, cfg(inc, ["r1", "r3"]))).toBe(true);
    expect(d.retiring(inc)).toEqual(["r2"]);
    d.retired(inc, "r2");
    expect(d.update(inc, cfg(inc, ["r3"]))).toBe(true);
    expect(d.retiring(inc)).toEqual(["r1"]);
    expect(d.retiring(inc + 1)).toEqual([]);
    expect(d.setState(inc, "deleted")).toBe(true);
    const next = d.create({ ...config, locations: [] } as GroupConfig, "2026-01-02T00:00:00.000Z").record.config.incarnation;
    expect(d.retiring(next)).toEqual([]);
    expect(d.retiring(inc)).toEqual([]);
  });

  // A review: a removal whose final record failed, followed at once by another change, was never
  // listed (that change's write-ahead has a change in flight, and its final record's "in force"
  // was the membership after the removal): only the running sequencer's memory retried its destroy.
  it("include a removed member whose final record failed, at the next change's write-ahead; a refused add's id still is not", () => {
    const d = memoryDirectory();
    const inc = d.create({ ...config, locations: [] } as GroupConfig, "2026-01-01T00:00:00.000Z").record.config.incarnation;
    expect(d.setState(inc, "ready")).toBe(true);
    expect(d.update(inc, cfg(inc, ["r1", "r2"], [["r1", "r2", "r3"], ["r1", "r2"]]))).toBe(true);
    // The removal committed; its final record failed. The next change (an add) writes ahead.
    expect(d.update(inc, cfg(inc, ["r1", "r2", "r4"], [["r1", "r2"], ["r1", "r2", "r4"]]))).toBe(true);
    expect(d.retiring(inc)).toEqual(["r3"]);
    // That add is refused and its record fails too; the next change's write-ahead does not list r4.
    expect(d.update(inc, cfg(inc, ["r1"], [["r1", "r2"], ["r1"]]))).toBe(true);
    expect(d.retiring(inc)).toEqual(["r3"]);
    expect(d.update(inc, cfg(inc, ["r1"]))).toBe(true);
    expect(d.retiring(inc)).toEqual(["r3", "r2"]);
  });
});
