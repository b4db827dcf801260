// The directory's copy of the membership: a change writes both memberships first (in flight),
// and the driver records the log's membership once it is committed, never while a change is under
// way, one write at a time and in order (SequencerDriver.recordMembershipAt).
import { describe, expect, it } from "vitest";
import { membersOf } from "../../shared/protocol/types.js";
import { type Clock, directGroup } from "../support/direct.js";

const config = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "first" as const, checkpointEvery: 50 };
const ids = (c: { members?: unknown }) => membersOf(c as never).map((m) => `${m.id}${m.voter ? "" : "?"}`);
const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));

describe("recording the membership in the directory", () => {
  it("records the log's membership at once when everything up to the seq is committed", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    g.driver.recordMembershipAt(g.driver.core.lastLogSeq);
    await tick();
    expect(g.recorded).toHaveLength(1);
    expect(g.recorded[0]!.inFlight).toBeUndefined();
    expect(ids(g.recorded[0]!)).toEqual(["r1", "r2", "r3"]);
  });

  it("waits while a change is under way, and the change's own records come in order", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    // Two of three replicas away: the add cannot commit yet.
    g.down.add("r2");
    g.down.add("r3");
    const added = g.driver.addReplica(null);
    await tick();
    g.driver.recordMembershipAt(0); // committed already, but a change is under way: not now
    await tick();
    expect(g.recorded.map((c) => c.inFlight?.map((ms) => ms.map((m) => m.id).join(",")) ?? null)).toEqual([["r1,r2,r3", "r1,r2,r3,r4"]]);
    g.down.clear();
    expect(await added).toEqual({ ok: true, id: "r4" });
    await tick();
    const last = g.recorded[g.recorded.length - 1]!;
    expect(last.inFlight).toBeUndefined();
    expect(ids(last)).toEqual(["r1", "r2", "r3", "r4?"]);
  });
});

describe("a replica's backoff", () => {
  it("ends when its timer fires, even if the clock reads a millisecond short of its end", async () => {
    // A clock that moves only when a timer fires, and then to 1 ms short of the time the timer
    // was set for, as Node's timers against Date.now() sometimes do. No heartbeats run here: only
    // the backoff's timer sends again.
    let nowMs = 1_000_000;
    const early: Clock = {
      nowMs: () => nowMs,
      setTimer: (ms, fn) => {
        const due = nowMs + ms - 1;
        const t = setTimeout(() => {
          nowMs = Math.max(nowMs, due);
          fn();
        }, ms);
        return () => clearTimeout(t);
      },
    };
    const g = directGroup(config, { entries: 10_000, slack: 1_000 }, early);
    g.down.add("r2");
    g.down.add("r3");
    const put = g.driver.submit("a", 1, { op: "put", key: "k", value: 1 });
    await tick(5);
    g.down.clear(); // back before their backoff ends: its timer is what sends again
    const answer = await Promise.race([put, tick(2_000).then(() => "no answer in 2 s")]);
    expect(answer).toMatchObject({ kind: "ok" });
  });
});

describe("a removed replica", () => {
  it("leaves no per-replica state in the driver once a heartbeat has passed", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    g.down.add("r3"); // its appends fail: a backoff is recorded for it
    expect((await g.driver.submit("a", 2, { op: "put", key: "k", value: 2 })).kind).toBe("ok");
    await tick();
    expect(g.driver.trackedIds()).toContain("r3");
    expect(await g.driver.removeReplica("r3")).toEqual({ ok: true });
    g.driver.startHeartbeats();
    await tick(1_100);
    expect(g.driver.trackedIds()).toEqual(["r1", "r2"]);
    g.driver.stop();
  });
});
