// The directory's copy of the membership: a change writes both memberships first (in flight),
// and the driver records the log's membership once it is committed, never while a change is under
// way, one write at a time and in order (SequencerDriver.recordMembershipAt).
import { describe, expect, it } from "vitest";
import { type GroupConfig, membersOf } from "../../shared/protocol/types.js";
import { commandTimeoutMs, directoryWriteTimeoutMs, heartbeatMs, pageBytesMax, startSettleWaitMs } from "../../shared/limits.js";
import { entryBytes } from "../../shared/protocol/entry.js";
import { type Clock, directGroup, fastClock, overrideCall, realClock } from "../support/direct.js";
import { MemoryReplicaStorage, MemorySequencerStorage } from "../../shared/protocol/memory.js";
import { ReplicaCore, newReplicaMeta } from "../../shared/protocol/replica.js";
import { ReplicaDriver } from "../../shared/protocol/replica-driver.js";
import { machineFor } from "../../shared/machines/index.js";
import type { DriverIO } from "../../shared/protocol/io.js";
import { recoverSequencer } from "../../shared/protocol/recovery.js";
import { SequencerLifecycle } from "../../shared/protocol/lifecycle.js";
import { SequencerDriver } from "../../shared/protocol/driver.js";
import { SequencerCore } from "../../shared/protocol/sequencer.js";

const config = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "first" as const, checkpointEvery: 50 };
const ids = (c: { members?: unknown }) => membersOf(c as never).map((m) => `${m.id}${m.voter ? "" : "?"}`);
const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));

/**
 * The directory takes the group's write-aheads (memberships in flight) and refuses every record
 * without them, as one unreachable after a change's write-ahead would. Returns the driver's I/O.
 */
function refusingRecords(g: ReturnType<typeof directGroup>): DriverIO {
  const io = (g.driver as unknown as { io: DriverIO }).io;
  const write = io.recordMemberships!;
  io.recordMemberships = async (c) => {
    if (!c.inFlight) throw new Error("directory unreachable");
    return write(c);
  };
  return io;
}

/**
 * The replicas go away once the change's write-ahead is recorded: after the heartbeat round that
 * a change first needs from a quorum of its next voters, so it is ordered and cannot commit.
 */
function downAtWriteAhead(g: ReturnType<typeof directGroup>, ids: string[]): void {
  const record = g.io.recordMemberships!;
  g.io.recordMemberships = async (c) => {
    if (c.inFlight) for (const id of ids) g.down.add(id);
    return record(c);
  };
}

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
    downAtWriteAhead(g, ["r2", "r3"]);
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

describe("a new storage quota", () => {
  it("is refused while a membership change is under way: its record, the whole config, dropped the change's write-ahead from the directory (a review)", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    downAtWriteAhead(g, ["r2", "r3"]);
    const added = g.driver.addReplica(null);
    await tick();
    expect(await g.driver.setQuota(64)).toEqual({ ok: false, reason: expect.stringMatching(/membership change is under way/) });
    expect(g.recorded.at(-1)!.inFlight, "the write-ahead kept").toBeDefined();
    expect(g.driver.core.config.storageQuotaMiB, "not set: a 503 is certainly not done").toBeUndefined();
    g.down.clear();
    expect(await added).toEqual({ ok: true, id: "r4" });
    await tick();
    expect(await g.driver.setQuota(64)).toEqual({ ok: true });
    expect(g.recorded.at(-1)).toMatchObject({ storageQuotaMiB: 64 });
    expect(g.recorded.at(-1)!.inFlight).toBeUndefined();
    g.driver.stop();
  });

  it("is refused while a new sequencer's log is not known committed, saying so (it said \"a membership change is under way\" after a move: a probe)", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    g.driver.stop();
    // A sequencer started over that log, as after a move or a failover, with nothing of it known committed.
    for (const id of ["r1", "r2", "r3"]) g.down.add(id);
    const meta = { ...structuredClone(g.seqStore.meta!), commitSeq: 0 };
    const next = new SequencerDriver(new SequencerCore(g.seqStore, meta), g.io, { entries: 10_000, slack: 1_000 });
    expect(next.core.configChangePending).toBe(true);
    expect(await next.setQuota(64)).toEqual({ ok: false, reason: expect.stringMatching(/^the log holds a membership change not known committed yet \(a change under way, or a new sequencer's start after a move or a failover\); retry in a moment$/) });
    expect(next.core.config.storageQuotaMiB, "not set: a 503 is certainly not done").toBeUndefined();
    next.stop();
  });

  it("not recorded in the directory is an unknown outcome (504), not a refusal: it is in force here already (a review)", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    g.io.recordMemberships = async () => {
      throw new Error("the directory is out of reach");
    };
    expect(await g.driver.setQuota(64)).toEqual({ ok: false, unknown: true, reason: expect.stringMatching(/in force at this sequencer, but the directory did not take it/) });
    expect(g.driver.core.config.storageQuotaMiB).toBe(64);
    g.driver.stop();
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

describe("a removed replica that is slow to destroy", () => {
  it("does not hold the removal's answer: its destruction goes on after it (a probe: a replica slowed 15 s held the DELETE 10 s)", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    let destroyed = false;
    g.io.retire = (id) => new Promise((resolve) => setTimeout(() => resolve(void (destroyed = id === "r3")), 3_000));
    const answer = await Promise.race([g.driver.removeReplica("r3"), tick(1_500).then(() => "no answer in 1.5 s")]);
    expect(answer).toEqual({ ok: true });
    expect(destroyed).toBe(false);
    for (let i = 0; i < 100 && !destroyed; i++) await tick(50);
    expect(destroyed).toBe(true);
  });
});

describe("a membership change", () => {
  const statusOf = (g: ReturnType<typeof directGroup>, id: string) => g.driver.core.replicaStatuses().find((r) => r.id === id)?.status;

  it("that the new membership's reachable voters could not commit is refused before it is ordered (etcd's strict reconfiguration check)", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    g.down.add("r2");
    for (let i = 2; i < 40 && statusOf(g, "r2") !== "down"; i++) {
      expect((await g.driver.submit("a", i, { op: "put", key: "k", value: i })).kind).toBe("ok");
      await tick(30);
    }
    expect(statusOf(g, "r2")).toBe("down");
    const lastSeq = g.driver.core.lastLogSeq;
    const records = g.recorded.length;
    // Removing a healthy replica while another is down would leave {r1, r2} with one voter reachable.
    const refused = await g.driver.removeReplica("r3");
    expect(refused).toMatchObject({ ok: false, refused: "no_quorum", reason: expect.stringMatching(/1 reachable voter of 2, 2 needed/) });
    expect(g.driver.core.lastLogSeq).toBe(lastSeq);
    expect(g.driver.core.replicaIds()).toEqual(["r1", "r2", "r3"]);
    expect(g.recorded).toHaveLength(records); // no write-ahead of a change that cannot be made
    // Removing the down one leaves {r1, r3}, both reachable: accepted.
    expect(await g.driver.removeReplica("r2")).toEqual({ ok: true });
    expect(g.retired).toEqual(["r2"]);
    // An add needs the current membership's quorum: with r3 down too, none is provisioned.
    g.down.add("r3");
    for (let i = 100; i < 140 && statusOf(g, "r3") !== "down"; i++) {
      void g.driver.submit("a", i, { op: "put", key: "k", value: i });
      await tick(30);
    }
    expect(statusOf(g, "r3")).toBe("down");
    expect(await g.driver.addReplica(null)).toMatchObject({ ok: false, refused: "no_quorum" });
    expect(g.provisioned).toEqual([]);
    g.driver.stop();
  });

  it("ordered but not committed in time says so, and once it commits its event is written and a removed replica retired", async () => {
    // The commit wait (commandTimeoutMs) ends after 50 ms; every other timer runs as set.
    const clock: Clock = {
      nowMs: () => Date.now(),
      setTimer: (ms, fn) => {
        const t = setTimeout(fn, ms >= commandTimeoutMs ? 50 : ms);
        return () => clearTimeout(t);
      },
    };
    const g = directGroup(config, { entries: 10_000, slack: 1_000 }, clock);
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    // r2 stops answering, not yet counted down: the removal of r3 is ordered, and {r1, r2} cannot commit it.
    downAtWriteAhead(g, ["r2"]);
    const late = await g.driver.removeReplica("r3");
    expect(late).toMatchObject({ ok: false, refused: "not_committed", reason: expect.stringMatching(/ordered but not committed in time; it may still take effect/) });
    expect(g.driver.core.replicaIds()).toEqual(["r1", "r2"]);
    expect(g.events).toEqual([]);
    expect(g.retired).toEqual([]);
    g.down.clear();
    for (let i = 0; i < 100 && g.events.length === 0; i++) await tick(30);
    expect(g.events.map((e) => [e.kind, e.fields.replica])).toEqual([["replica-removed", "r3"]]);
    await tick();
    expect(g.retired).toEqual(["r3"]);
    g.driver.stop();
  });
});

describe("membership changes begun at once", () => {
  /** Every provision takes 30 ms, as making a replica object does a call or two. */
  function slowProvisions(g: ReturnType<typeof directGroup>): void {
    const provision = g.io.provision!;
    g.io.provision = async (id, location) => {
      await tick(30);
      return provision(id, location);
    };
  }

  it("two adds: the second is refused before it provisions anything (it provisioned the first's id again)", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    slowProvisions(g);
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    const first = g.driver.addReplica("weur");
    await tick(5);
    const second = await g.driver.addReplica("apac");
    expect(second).toMatchObject({ ok: false, refused: "change_pending" });
    expect(await first).toEqual({ ok: true, id: "r4" });
    expect(g.provisioned).toEqual(["r4"]);
    g.driver.stop();
  });

  it("an add then a removal: the removal waits its turn, and the add's replica is ordered (it was left made but never ordered)", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    slowProvisions(g);
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    const added = g.driver.addReplica(null);
    await tick(5);
    expect(await g.driver.removeReplica("r3")).toMatchObject({ ok: false, refused: "change_pending" });
    expect(await added).toEqual({ ok: true, id: "r4" });
    expect(g.provisioned).toEqual(["r4"]);
    expect(g.driver.core.replicaIds()).toContain("r4");
    g.driver.stop();
  });
});

describe("the strict check of a change", () => {
  it("asks the next membership's voters for a fresh heartbeat: a replica just cut off, not yet counted down, fails it", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    g.down.add("r3"); // no append has missed it yet: the counted misses say it is reachable
    await tick(5); // (its last answer was to a message sent before the change's heartbeat)
    const refused = await g.driver.removeReplica("r1");
    expect(refused).toMatchObject({ ok: false, refused: "no_quorum", reason: expect.stringMatching(/fewer than 2 of its 2 voters answering a heartbeat/) });
    expect(g.recorded).toEqual([]); // nothing written ahead, nothing ordered
    expect(g.driver.core.replicaIds()).toEqual(["r1", "r2", "r3"]);
    // Removing the cut-off one leaves {r1, r2}, which answer: it goes.
    expect(await g.driver.removeReplica("r3")).toEqual({ ok: true });
    g.driver.stop();
  });
});

describe("an add refused after its replica is made", () => {
  it("a restore begun during the provision: refused (its entry would make the restore a 409); the next add takes the same id again", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    const provision = g.io.provision!;
    let restoreOnce = true;
    g.io.provision = async (id, location) => {
      await provision(id, location);
      if (restoreOnce) g.driver.restoring = true;
      restoreOnce = false;
    };
    expect(await g.driver.addReplica(null)).toMatchObject({ ok: false, refused: "restoring" });
    expect(g.driver.core.replicaIds()).toEqual(["r1", "r2", "r3"]);
    g.driver.restoring = false;
    // Not destroyed meanwhile (that raced the next add, or a successor's: a review): made again.
    expect(await g.driver.addReplica(null)).toEqual({ ok: true, id: "r4" });
    expect(g.provisioned).toEqual(["r4", "r4"]);
    await tick();
    expect(g.retired).toEqual([]);
    g.driver.stop();
  });
});

describe("a replica told it is quarantined", () => {
  it("refuses the word of a sequencer older than the one it follows (a deposed one's late re-tell would undo a repair)", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    const r2 = g.replicas.get("r2")!;
    const epoch = g.driver.core.epoch;
    expect(epoch).toBeGreaterThan(0);
    r2.setQuarantined(true, epoch - 1);
    expect(r2.position()!.quarantined).toBe(false);
    r2.setQuarantined(true, epoch);
    expect(r2.position()!.quarantined).toBe(true);
    g.driver.stop();
  });
});

describe("the membership record after a change", () => {
  it("is written again until the directory takes it: a failed write left the change in flight there for ever", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    const io = (g.driver as unknown as { io: { recordMemberships: (c: unknown) => Promise<void> } }).io;
    const write = io.recordMemberships;
    let failing = false;
    io.recordMemberships = async (c) => {
      if (failing && !(c as { inFlight?: unknown }).inFlight) throw new Error("directory unreachable");
      return write(c);
    };
    failing = true; // the write-ahead (in flight) goes through; the record after the commit fails
    expect(await g.driver.addReplica(null)).toEqual({ ok: true, id: "r4" });
    await tick();
    expect(g.recorded[g.recorded.length - 1]!.inFlight).toBeDefined();
    failing = false;
    g.driver.startHeartbeats();
    await tick(1_200);
    expect(g.recorded[g.recorded.length - 1]!.inFlight).toBeUndefined();
    expect(ids(g.recorded[g.recorded.length - 1]!)).toEqual(["r1", "r2", "r3", "r4?"]);
    g.driver.stop();
  });
});

describe("a directory write that does not settle", () => {
  // The writes are one at a time, in order; one that hung held the change waiting on it, and with
  // it the group's one change at a time, for as long as it hung. Now the change gives up after
  // directoryWriteTimeoutMs with nothing ordered; the write keeps its place, and the membership
  // in force is recorded after it once it lands.
  /** A group with one write; the directory's writes from now on wait until `land` is called. */
  async function hungDirectory() {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    const io = (g.driver as unknown as { io: DriverIO }).io;
    const write = io.recordMemberships!;
    let land: () => void = () => {};
    const hung = new Promise<void>((resolve) => (land = resolve));
    io.recordMemberships = async (c) => (await hung, write(c));
    return { g, land: () => land() };
  }

  it("refuses the change in bounded time, and the record is mended once the directory answers", async () => {
    const { g, land } = await hungDirectory();
    const startMs = Date.now();
    const refused = await g.driver.addReplica(null);
    expect(refused).toMatchObject({ ok: false, refused: "not_recorded" });
    expect((refused as { reason: string }).reason).toMatch(/directory did not take the change of r4 first .*nothing was ordered/);
    expect(Date.now() - startMs).toBeLessThan(directoryWriteTimeoutMs + 2_000);
    expect(g.driver.core.lastLogSeq).toBe(1); // nothing ordered
    expect(g.recorded).toHaveLength(0);
    // The hung write-ahead lands late; the membership in force is recorded after it.
    land();
    g.driver.startHeartbeats();
    await tick(1_200);
    expect(g.recorded[0]!.inFlight).toBeDefined();
    expect(g.recorded[g.recorded.length - 1]!.inFlight).toBeUndefined();
    expect(ids(g.recorded[g.recorded.length - 1]!)).toEqual(["r1", "r2", "r3"]);
    // And the next change goes through.
    expect(await g.driver.addReplica(null)).toEqual({ ok: true, id: "r4" });
    g.driver.stop();
  }, 20_000);

  it("queues no more records behind one that hangs: one write-ahead and one record land once it answers", async () => {
    // A review: each timed-out record was due again at the next heartbeat and queued one more
    // behind the hung write, every 5 s, all landing at once later.
    const { g, land } = await hungDirectory();
    g.driver.startHeartbeats();
    expect(await g.driver.addReplica(null)).toMatchObject({ ok: false, refused: "not_recorded" });
    await tick(directoryWriteTimeoutMs + 3_000);
    land();
    await tick(1_500);
    expect(g.recorded.map((c) => (c.inFlight ? "write-ahead" : "record"))).toEqual(["write-ahead", "record"]);
    g.driver.stop();
  }, 30_000);
});

describe("a recovery after the membership record was lost", () => {
  // The change commits, its record never reaches the directory (which keeps both memberships in
  // flight), and compaction drops the change's entry from every log: a recovery that started
  // from the directory's older membership could not see the change, and brought a removed
  // replica back (or dropped an added one). It starts from the log's own membership instead.
  it("keeps a removal whose entry every replica has compacted away", async () => {
    const g = directGroup(config, { entries: 10, slack: 5 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    const io = refusingRecords(g);
    expect(await g.driver.removeReplica("r3")).toEqual({ ok: true });
    const changeSeq = g.driver.core.lastLogSeq;
    for (let r = 2; r <= 40; r++) expect((await g.driver.submit("a", r, { op: "put", key: `k${r}`, value: r })).kind).toBe("ok");
    await tick();
    g.driver.stop();
    for (const id of ["r1", "r2"]) expect(g.replicas.get(id)!.fence(0)!.baseSeq).toBeGreaterThan(changeSeq);
    const directory = g.recorded[g.recorded.length - 1]!;
    expect(directory.inFlight).toBeDefined(); // stale: the change is long committed
    const r = await recoverSequencer(directory, new MemorySequencerStorage(), io);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(ids(r.meta.config)).toEqual(["r1", "r2"]);
  });

  it("keeps an addition whose entry every replica has compacted away, and its replica number", async () => {
    const g = directGroup(config, { entries: 10, slack: 5 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    const io = refusingRecords(g);
    expect(await g.driver.addReplica("weur")).toEqual({ ok: true, id: "r4" });
    const changeSeq = g.driver.core.lastLogSeq;
    for (let r = 2; r <= 40; r++) expect((await g.driver.submit("a", r, { op: "put", key: `k${r}`, value: r })).kind).toBe("ok");
    await tick();
    g.driver.stop();
    for (const id of ["r1", "r2", "r3"]) expect(g.replicas.get(id)!.fence(0)!.baseSeq).toBeGreaterThan(changeSeq);
    // The directory's stale record is the write-ahead's: recover from one that knows only the
    // old membership, as a record written before the change would.
    const directory = { ...g.recorded[g.recorded.length - 1]!, members: undefined, lastReplicaNo: 3, inFlight: [membersOf(config)] };
    const r = await recoverSequencer(directory, new MemorySequencerStorage(), io);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(ids(r.meta.config)).toEqual(["r1", "r2", "r3", "r4?"]);
    expect(r.meta.config.lastReplicaNo).toBe(4);
    expect(r.meta.config.members!.find((m) => m.id === "r4")!.location).toBe("weur");
  });
});

describe("a replica's stored membership after an older version applied a change", () => {
  // A version older than ReplicaMeta.membership (a rollback) keeps the field through its saves
  // ({...meta, ...changes}) while it applies config entries without updating it. After the next
  // deploy of this one, a recovery started from that stale membership once compaction had dropped
  // the change's entry: an addition made under the older version was dropped (a removal undone).
  it("is not taken for the log's when the log moved past it meanwhile", async () => {
    const g = directGroup(config, { entries: 10, slack: 5 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    expect(await g.driver.removeReplica("r3")).toEqual({ ok: true });
    await tick();
    // What this version stored after its last change: {r1, r2}.
    const stale = new Map([...g.stores].map(([id, store]) => [id, structuredClone(store.meta!)]));
    expect(stale.get("r1")!.membership?.members.map((m) => m.id)).toEqual(["r1", "r2"]);
    // The older version's turn: it adds r4 and writes on until the entry is compacted away.
    expect(await g.driver.addReplica("weur")).toEqual({ ok: true, id: "r4" });
    const changeSeq = g.driver.core.lastLogSeq;
    for (let r = 2; r <= 40; r++) expect((await g.driver.submit("a", r, { op: "put", key: `k${r}`, value: r })).kind).toBe("ok");
    await tick();
    g.driver.stop();
    const directory = g.recorded[g.recorded.length - 1]!;
    expect(ids(directory)).toEqual(["r1", "r2", "r4?"]);
    for (const id of ["r1", "r2"]) {
      const store = g.stores.get(id)!;
      // Its saves kept the fields as this version had left them.
      const { membership, membershipAt } = stale.get(id)! as { membership?: unknown; membershipAt?: number };
      store.saveMeta({ ...store.meta!, membership: membership as never, membershipAt });
      // This version again: the object starts from its storage.
      g.replicas.set(id, new ReplicaDriver(new ReplicaCore(store, store.meta!, machineFor("kv"), { entries: 10, slack: 5 }), realClock));
      expect(g.replicas.get(id)!.fence(0)!.baseSeq).toBeGreaterThan(changeSeq);
    }
    const r = await recoverSequencer(directory, new MemorySequencerStorage(), g.io);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(ids(r.meta.config)).toEqual(["r1", "r2", "r4?"]);
  });
});

describe("a change inherited in flight from a lost sequencer", () => {
  it("is finished only once the recovery's no-op commits: a replica provisioned for an add that never reached the log is destroyed, with no event", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    const old = membersOf(config);
    g.down.add("r2");
    g.down.add("r3");
    const noopSeq = g.driver.core.commitSeq + 1;
    g.driver.finishInherited([old, [...old, { id: "r4", location: null, voter: false }]], [], noopSeq);
    g.driver.recordMembershipAt(noopSeq); // as a recovery does
    const pending = g.driver.submit("a", 2, { op: "put", key: "k", value: 2 });
    await tick(100);
    expect(g.retired).toEqual([]); // not committed yet: a later recovery could still decide otherwise
    g.down.clear();
    expect((await pending).kind).toBe("ok");
    await tick();
    expect(g.retired).toEqual(["r4"]);
    expect(g.events.filter((e) => e.kind.startsWith("replica-"))).toEqual([]);
    g.driver.stop();
  });
});

describe("a removed replica's storage", () => {
  // A review's finding: destroyed as soon as the change (or a successor's no-op) committed, while
  // the directory, unreachable, still held the change in flight. Every recovery must fence a
  // quorum of the old membership then, the destroyed replica included: a group of two that
  // removed one could never recover again. It now waits for the directory to take a membership
  // without it.
  it("is destroyed only once the directory records a membership without it", async () => {
    const two = { ...config, replicas: 2 };
    const g = directGroup(two, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    const io = (g.driver as unknown as { io: DriverIO }).io;
    const write = io.recordMemberships!;
    let reachable = false;
    let lose = false;
    io.recordMemberships = async (c) => {
      if (c.inFlight) lose = true; // after the change's heartbeat round
      if (!c.inFlight && !reachable) throw new Error("directory unreachable");
      return write(c);
    };
    // r1's answers to appends are lost: the first sequencer never sees the removal commit.
    const real = g.replicas.get("r1")!;
    g.replicas.set("r1", new Proxy(real, {
      get(t, k) {
        const v = (t as unknown as Record<PropertyKey, unknown>)[k];
        if (k === "append" && lose) return (...a: unknown[]) => ((v as (...a: unknown[]) => unknown).apply(t, a), Promise.reject(new Error("answer lost")));
        return typeof v === "function" ? v.bind(t) : v;
      },
    }));
    void g.driver.removeReplica("r2");
    await tick(100);
    g.driver.stop();
    lose = false;
    const directory = g.recorded[g.recorded.length - 1]!;
    expect(directory.inFlight?.map((ms) => ms.map((m) => m.id).join(","))).toEqual(["r1,r2", "r1"]);
    const destroyed: string[] = [];
    const host = () => {
      let s = new MemorySequencerStorage();
      return {
        storage: () => s,
        prepare: () => {},
        wipe: async () => void (s = new MemorySequencerStorage()),
        io: (): DriverIO => ({ ...io, retire: async (id: string) => void destroyed.push(id) }),
      };
    };
    // The successor recovers {r1} and commits its no-op, but cannot record it: r2 must stay.
    const second = new SequencerLifecycle(host());
    expect((await second.recover(directory)).ok).toBe(true);
    expect(membersOf(second.core!.config).map((m) => m.id)).toEqual(["r1"]);
    await tick(200);
    expect(destroyed).toEqual([]);
    second.stop();
    // So a third, from the same record, can still fence a quorum of {r1, r2}; once the directory
    // takes its membership, r2 goes.
    const third = new SequencerLifecycle(host());
    expect(await third.recover(g.recorded[g.recorded.length - 1]!)).toMatchObject({ ok: true });
    reachable = true;
    await tick(1_200);
    expect(g.recorded[g.recorded.length - 1]!.inFlight).toBeUndefined();
    expect(destroyed).toEqual(["r2"]);
    third.stop();
  }, 30_000);
});

describe("a removed replica's storage, after the directory took an earlier removal", () => {
  // A review's finding: the directory's last membership without a change in flight was {r1}; a
  // later add of r3 was written ahead but never recorded as done, so when r3 was removed the
  // driver thought the directory no longer named it, and destroyed it while the directory held
  // [[r1, r3], [r1]] in flight: no recovery could fence a quorum of {r1, r3} again.
  it("waits for a record made after the change's write-ahead", async () => {
    const two = { ...config, replicas: 2 };
    const retention = { entries: 10_000, slack: 1_000 };
    const g = directGroup(two, retention);
    const io = (g.driver as unknown as { io: DriverIO }).io;
    io.provision = async (id) => {
      const store = new MemoryReplicaStorage();
      const meta = newReplicaMeta("g", id, "kv", 50);
      store.saveMeta(meta);
      g.replicas.set(id, new ReplicaDriver(new ReplicaCore(store, meta, machineFor("kv"), retention), realClock));
    };
    g.driver.startHeartbeats();
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    expect(await g.driver.removeReplica("r2")).toEqual({ ok: true });
    await tick(50);
    expect(g.retired).toEqual(["r2"]);
    const write = io.recordMemberships!;
    io.recordMemberships = async (c) => {
      if (!c.inFlight) throw new Error("directory unreachable"); // write-aheads pass, records after a commit do not
      return write(c);
    };
    expect(await g.driver.addReplica(null)).toEqual({ ok: true, id: "r3" });
    for (let i = 0; i < 100 && ids(g.driver.core.config).join() !== "r1,r3"; i++) await tick(50);
    expect(ids(g.driver.core.config)).toEqual(["r1", "r3"]); // promoted: two voters
    expect(await g.driver.removeReplica("r3")).toEqual({ ok: true });
    await tick(50);
    expect(g.recorded[g.recorded.length - 1]!.inFlight?.map((ms) => ms.map((m) => m.id).join())).toEqual(["r1,r3", "r1"]);
    expect(g.retired).toEqual(["r2"]);
    g.driver.stop();
  }, 30_000);
});

describe("a retry's session question", () => {
  it("a replica quarantined while it waited to apply the seq abstains (its 'missing' alone could answer 409 with outputs 'first')", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    const r1 = g.replicas.get("r1")!;
    const pending = r1.session("a", 7, r1.core!.appliedSeq + 1, 2_000);
    r1.setQuarantined(true, r1.core!.position().epoch); // an audit's verdict meanwhile
    expect((await g.driver.submit("b", 1, { op: "put", key: "k", value: 2 })).kind).toBe("ok");
    expect(await pending).toEqual({ kind: "timeout" });
    expect(await g.replicas.get("r2")!.session("a", 1, 1, 100)).toMatchObject({ kind: "found" });
    g.driver.stop();
  });
});

describe("a change in flight when its sequencer restarted", () => {
  // A deploy restarts every object: a removal ordered but not yet committed lost its sequencer's
  // memory of it (the wait for its commit), so nothing wrote its event or destroyed the removed
  // replica's storage, ever. The restarted sequencer reads the directory's record and finishes it.
  it("is finished by the restarted sequencer once its log commits: the event, and the removed replica's storage", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    downAtWriteAhead(g, ["r2"]); // not yet known down: the removal is ordered, but {r1, r2} cannot commit it
    const removing = g.driver.removeReplica("r3");
    await tick(50);
    g.driver.stop(); // the restart: its memory of the change is gone, its storage stays
    await removing;
    expect(g.recorded[g.recorded.length - 1]!.inFlight).toBeDefined();
    expect(g.retired).toEqual([]);
    g.down.delete("r2");
    const io = (g.driver as unknown as { io: DriverIO }).io;
    const restarted = new SequencerLifecycle({
      storage: () => g.seqStore,
      prepare: () => {},
      wipe: async () => {},
      io: () => io,
      directoryConfig: async () => structuredClone(g.recorded[g.recorded.length - 1]!),
    });
    restarted.start(g.seqStore.meta);
    for (let i = 0; i < 100 && g.retired.length === 0; i++) await tick(20);
    expect(membersOf(restarted.core!.config).map((m) => m.id)).toEqual(["r1", "r2"]);
    expect(g.recorded[g.recorded.length - 1]!.inFlight).toBeUndefined();
    expect(g.retired).toEqual(["r3"]);
    expect(g.events.filter((e) => e.kind === "replica-removed").map((e) => e.fields)).toEqual([{ replica: "r3", seq: expect.any(Number) }]);
    restarted.stop();
  });
});

describe("a start's reading of the directory (a review's findings)", () => {
  const restart = (g: ReturnType<typeof directGroup>, io: DriverIO, directoryConfig: () => Promise<GroupConfig | null>) => {
    const lifecycle = new SequencerLifecycle({ storage: () => g.seqStore, prepare: () => {}, wipe: async () => {}, io: () => io, directoryConfig });
    lifecycle.start(g.seqStore.meta);
    return lifecycle;
  };

  it("never gives again an id the directory named: an add retried after a restart does not get the one the restart destroys", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    const io = (g.driver as unknown as { io: DriverIO }).io;
    const write = io.recordMemberships!;
    // The write-ahead reaches the directory; its answer never comes back: a restart before the append.
    io.recordMemberships = async (c) => {
      await write(c);
      if (c.inFlight) await new Promise(() => {});
    };
    void g.driver.addReplica(null);
    await tick();
    g.driver.stop();
    expect(g.provisioned).toEqual(["r4"]);
    const slowDirectory: DriverIO = { ...io, recordMemberships: async (c) => (await tick(30), write(c)) };
    const restarted = restart(g, slowDirectory, async () => structuredClone(g.recorded[g.recorded.length - 1]!));
    await tick(5);
    const added = await restarted.driver!.addReplica(null); // the operator retries the add
    await tick(100);
    expect(added).toEqual({ ok: true, id: "r5" });
    expect(g.retired).toEqual(["r4"]); // provisioned for the add the log never got
    expect(membersOf(restarted.core!.config).map((m) => m.id)).toEqual(["r1", "r2", "r3", "r5"]);
    restarted.stop();
  });

  it("no change begins before the directory's record is read (its own write-ahead would be read back as the inherited change): it waits for the read", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    g.driver.stop();
    const io = (g.driver as unknown as { io: DriverIO }).io;
    let read = false;
    const restarted = restart(g, io, async () => (await tick(50), (read = true), structuredClone(g.recorded[g.recorded.length - 1] ?? null)));
    // Sent before the read came back (the request that woke the sequencer): it was refused as
    // "another membership change is not committed yet", with none under way (a probe).
    const removing = restarted.driver!.removeReplica("r3");
    await tick(10);
    expect(read).toBe(false);
    expect(await removing).toEqual({ ok: true });
    await tick();
    expect(g.events.filter((e) => e.kind === "replica-removed").map((e) => e.fields.replica)).toEqual(["r3"]);
    restarted.stop();
  });

  it("a change waits startSettleWaitMs for a directory that does not answer, then is refused as the sequencer starting (nothing ordered)", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    g.driver.stop();
    const io = (g.driver as unknown as { io: DriverIO }).io;
    const restarted = restart(g, io, () => new Promise<never>(() => {}));
    const lastSeq = restarted.core!.lastLogSeq;
    const startedMs = Date.now();
    const added = await restarted.driver!.addReplica(null);
    expect(added).toMatchObject({ ok: false, refused: "starting", reason: expect.stringMatching(/starting.*nothing was ordered/) });
    expect(Date.now() - startedMs).toBeGreaterThanOrEqual(startSettleWaitMs - 50);
    expect(restarted.core!.lastLogSeq).toBe(lastSeq);
    expect(g.provisioned).toEqual([]);
    restarted.stop();
  });

  it("a read that fails is tried again, and nothing is recorded before it succeeds (the record would clear the change for good)", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    downAtWriteAhead(g, ["r2"]);
    const removing = g.driver.removeReplica("r3");
    await tick(50);
    g.driver.stop();
    await removing;
    g.down.delete("r2");
    const io = (g.driver as unknown as { io: DriverIO }).io;
    let failures = 1;
    const restarted = restart(g, io, async () => {
      if (failures-- > 0) throw new Error("directory unreachable for a moment");
      return structuredClone(g.recorded[g.recorded.length - 1]!);
    });
    await tick(300);
    expect(g.recorded[g.recorded.length - 1]!.inFlight).toBeDefined(); // not recorded yet
    for (let i = 0; i < 100 && g.retired.length === 0; i++) await tick(20);
    expect(g.retired).toEqual(["r3"]);
    expect(g.recorded[g.recorded.length - 1]!.inFlight).toBeUndefined();
    restarted.stop();
  });
});

describe("a removed replica whose destruction fails", () => {
  it("is destroyed at a later heartbeat (it was logged and dropped, its storage kept until the group's deletion)", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    const io = (g.driver as unknown as { io: DriverIO }).io;
    const destroy = io.retire!;
    let failures = 1;
    io.retire = async (id) => {
      if (failures-- > 0) throw new Error("the replica's object cannot be reached");
      return destroy(id);
    };
    g.driver.startHeartbeats();
    expect(await g.driver.removeReplica("r3")).toEqual({ ok: true });
    expect(g.retired).toEqual([]);
    await tick(1_200);
    expect(g.retired).toEqual(["r3"]);
    await tick(1_200);
    expect(g.retired).toEqual(["r3"]); // once
    g.driver.stop();
  });
});

describe("a recovery given an older membership than the directory's", () => {
  // A fenced sequencer recovers with its own config from its start; a change recorded since (a
  // write-ahead, before its entry was ordered) is in the directory. The recovery fences, and
  // counts the old read lease, by the directory's (recovery.ts, oldLeaseEndMs).
  it("recovers with the directory's record when that names this sequencer", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    g.driver.stop();
    const io = (g.driver as unknown as { io: DriverIO }).io;
    const newer = { ...config, members: [...membersOf(config), { id: "r4", location: null, voter: false }], lastReplicaNo: 4 };
    let s = new MemorySequencerStorage();
    const lifecycle = new SequencerLifecycle({
      storage: () => s,
      prepare: () => {},
      wipe: async () => void (s = new MemorySequencerStorage()),
      io: () => io,
      inOffice: async () => true,
      directoryConfig: async () => structuredClone(newer),
    });
    expect((await lifecycle.recover(config)).ok).toBe(true);
    expect(membersOf(lifecycle.core!.config).map((m) => m.id)).toEqual(["r1", "r2", "r3", "r4"]);
    lifecycle.stop();
  });
});

describe("bringing a stored membership up to date at load", () => {
  // The log since the membership's mark can hold logRetentionEntries + slack entries of up to
  // bodyBytesMax each (GBs): read at once, an object would die of it at load, and again at every
  // restart. Read in pages of about pageBytesMax, as every other read of the log is.
  it("reads the log in bounded pages, and still finds a config entry past the first page", () => {
    const store = new MemoryReplicaStorage();
    const big = "x".repeat(200 * 1024);
    const last = 40; // 40 entries of 200 KiB: 8 MiB, two pageBytesMax pages
    const members = [{ id: "r1", location: null, voter: true }, { id: "r2", location: null, voter: true }];
    const entries = [];
    for (let seq = 1; seq <= last; seq++) {
      const config = seq === last - 1;
      entries.push({
        seq,
        epoch: 1,
        kind: config ? ("config" as const) : ("command" as const),
        client: config ? null : "c",
        request: config ? null : seq,
        command: config ? { op: "remove", id: "r3", members, lastReplicaNo: 3 } : { op: "put", key: `k${seq}`, value: big },
        timestamp: new Date(0).toISOString(),
        hash: `h${seq}`,
      });
    }
    store.appendEntries(entries);
    const stale = { seq: 0, members: [...members, { id: "r3", location: null, voter: true }], lastReplicaNo: 3 };
    const meta = { ...newReplicaMeta("g", "r1", "kv", 50), epoch: 1, lastSeq: last, lastHash: `h${last}`, commitSeq: last, appliedSeq: last, stateSeq: last, membership: stale, membershipAt: 0 };
    store.saveMeta(meta);
    const read = store.readEntries.bind(store);
    const pages: number[] = [];
    store.readEntries = (fromSeq, toSeq, bytesMax) => {
      const got = read(fromSeq, toSeq, bytesMax);
      pages.push(got.reduce((n, e) => n + entryBytes(e), 0));
      return got;
    };
    const core = new ReplicaCore(store, store.meta!, machineFor("kv"));
    expect(core.fence(2)!.membership).toEqual({ seq: last - 1, members, lastReplicaNo: 3 });
    expect(pages.length).toBeGreaterThan(0);
    for (const bytes of pages) expect(bytes).toBeLessThanOrEqual(pageBytesMax);
  });
});

describe("removed replicas a start finds listed for destruction", () => {
  it("are destroyed, except one the membership names (checked at each try: an id named again is never destroyed)", async () => {
    const g = directGroup({ group: "g", incarnation: 1, machine: "kv", replicas: 3, locations: [], outputs: "first", checkpointEvery: 100 } as GroupConfig, { entries: 10_000, slack: 1_000 });
    g.io.leftovers = async () => ["r2", "r9"];
    g.driver.settleStart(null, [], 0);
    for (let i = 0; i < 20 && g.retired.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
    expect(g.retired).toEqual(["r9"]);
    g.driver.stop();
  });

  it("are read again at the heartbeats when the start's read of the list fails", async () => {
    const g = directGroup({ group: "g", incarnation: 1, machine: "kv", replicas: 3, locations: [], outputs: "first", checkpointEvery: 100 } as GroupConfig, { entries: 10_000, slack: 1_000 });
    let reads = 0;
    g.io.leftovers = async () => {
      if (++reads === 1) throw new Error("the directory could not be reached");
      return ["r9"];
    };
    g.driver.settleStart(null, [], 0);
    g.driver.startHeartbeats();
    const untilMs = Date.now() + 3 * heartbeatMs + 1_000;
    while (Date.now() < untilMs && g.retired.length === 0) await new Promise((r) => setTimeout(r, 20));
    expect([reads, g.retired]).toEqual([2, ["r9"]]);
    g.driver.stop();
  });

  it("are tried again at the heartbeats while a destroy fails (the object unreachable)", async () => {
    const g = directGroup({ group: "g", incarnation: 1, machine: "kv", replicas: 3, locations: [], outputs: "first", checkpointEvery: 100 } as GroupConfig, { entries: 10_000, slack: 1_000 });
    g.io.leftovers = async () => ["r9"];
    let tries = 0;
    g.io.retire = async (id) => {
      if (++tries <= 2) throw new Error(`${id} is unreachable`);
      g.retired.push(id);
    };
    g.driver.settleStart(null, [], 0);
    g.driver.startHeartbeats();
    const untilMs = Date.now() + 3 * heartbeatMs + 1_000;
    while (Date.now() < untilMs && g.retired.length === 0) await new Promise((r) => setTimeout(r, 20));
    expect(tries).toBe(3);
    expect(g.retired).toEqual(["r9"]);
    g.driver.stop();
  });
});

describe("the quarantine list the directory refuses", () => {
  // A probe: deleting 204 idle groups logged 81 warnings; each DELETE woke its sequencer, whose
  // start wrote the (empty) list into a directory already deleting the group.
  it("is said at info, not warned about, and not written again; a write that fails is warned about", async () => {
    const g = directGroup({ group: "g", incarnation: 1, machine: "kv", replicas: 3, locations: [], outputs: "first", checkpointEvery: 100 } as GroupConfig, { entries: 10_000, slack: 1_000 });
    const logs: [string, string][] = [];
    g.io.log = (level, message) => void logs.push([level, message]);
    let writes = 0;
    g.io.recordQuarantined = async () => (writes++, false);
    g.driver.startHeartbeats();
    await tick();
    expect(writes).toBe(1);
    expect(logs.filter(([, m]) => m.includes("quarantine"))).toEqual([["info", expect.stringMatching(/did not take its quarantine list/)]]);
    g.driver.stop();

    const h = directGroup({ group: "h", incarnation: 1, machine: "kv", replicas: 3, locations: [], outputs: "first", checkpointEvery: 100 } as GroupConfig, { entries: 10_000, slack: 1_000 });
    const warned: string[] = [];
    h.io.log = (level, message) => void (level === "warn" && warned.push(message));
    h.io.recordQuarantined = async () => {
      throw new Error("the directory could not be reached");
    };
    h.driver.startHeartbeats();
    await tick();
    expect(warned).toEqual([expect.stringMatching(/^recording the quarantined replicas of h: Error: the directory could not be reached/)]);
    h.driver.stop();
  });
});

describe("an audit whose replicas share no position at first", () => {
  it("sends the commit and asks again before it says insufficient (the health reads that as degraded)", async () => {
    const g = directGroup({ group: "g", incarnation: 1, machine: "kv", replicas: 3, locations: [], outputs: "first", checkpointEvery: 100 } as GroupConfig, { entries: 10_000, slack: 1_000 });
    for (let i = 1; i <= 3; i++) expect((await g.driver.submit("a", i, { op: "put", key: `k${i}`, value: i })).kind).toBe("ok");
    for (let i = 0; i < 50 && [...g.replicas.values()].some((r) => r.core!.appliedSeq < 3); i++) await tick();
    // The first round's answers: each replica just past a different position, none shared.
    const link = g.io.link;
    let calls = 0;
    const marks: (number | undefined)[] = [];
    g.io.link = (id: string) => {
      const real = link(id);
      return new Proxy(real, {
        get: (target, name) =>
          name !== "auditInfo"
            ? target[name as keyof typeof target]
            : async (markSeq?: number) => {
                marks.push(markSeq);
                // A write between the rounds: the mark stays the audit's (a later round's replaced
                // a mark a slow replica had not reached yet: a review).
                if (calls === 0) void g.driver.submit("a", 99, { op: "put", key: "between", value: 1 });
                const info = await real.auditInfo(markSeq);
                if (++calls > 3 || !info) return info;
                const n = Number(id.slice(1));
                return { ...info, appliedSeq: info.appliedSeq + n, checkpoints: [...info.checkpoints.filter((c) => c.seq === 0), { seq: info.appliedSeq + n, digest: "00" }] };
              },
      });
    };
    const report = await g.driver.audit();
    expect(calls).toBe(6);
    expect(new Set(marks).size).toBe(1);
    expect(marks[0]).toBeLessThan(g.driver.core.lastLogSeq + 1);
    expect([report.verdict, report.replicas.map((r) => r.verdict)]).toEqual(["consistent", ["agrees", "agrees", "agrees"]]);
    // Not when one did not answer: each round would wait its whole timeout (three outlasted the router's call).
    calls = 0;
    g.down.add("r3");
    const without = await g.driver.audit();
    expect([calls, without.verdict]).toEqual([2, "insufficient"]);
    g.driver.stop();
  });

  it("marks the next entry's seq, which every replica then records as a checkpoint", async () => {
    const g = directGroup({ group: "g", incarnation: 1, machine: "kv", replicas: 3, locations: [], outputs: "first", checkpointEvery: 100 } as GroupConfig, { entries: 10_000, slack: 1_000 });
    for (let i = 1; i <= 3; i++) expect((await g.driver.submit("a", i, { op: "put", key: `k${i}`, value: i })).kind).toBe("ok");
    const next = g.driver.core.lastLogSeq + 1;
    expect((await g.driver.audit()).verdict).toBe("consistent");
    for (let i = 4; i <= 5; i++) expect((await g.driver.submit("a", i, { op: "put", key: `k${i}`, value: i })).kind).toBe("ok");
    for (let i = 0; i < 50 && [...g.replicas.values()].some((r) => r.core!.appliedSeq < next + 1); i++) await tick();
    // Past it (a replica standing at `next` would list it as its current position, mark or not).
    for (const r of g.replicas.values()) expect(r.core!.appliedSeq).toBeGreaterThan(next);
    for (const r of g.replicas.values()) expect(r.core!.auditInfo().checkpoints.map((cp) => cp.seq)).toContain(next);
    g.driver.stop();
  });
});

describe("a removal in flight", () => {
  /** A group whose r2 holds every append made while a membership change is pending, until `release`. */
  function holdingChange() {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 }, fastClock);
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    overrideCall(g.io, "r2", "append", (real, ...args) => (g.driver.core.configChangePending ? held.then(() => real(...args)) : real(...args)));
    return { g, release };
  }
  const until = async (what: () => boolean) => {
    for (let i = 0; i < 200 && !what(); i++) await tick(5);
    expect(what()).toBe(true);
  };

  it("counts as removed for good only once it commits (a repair answered 404 \"removed\" for a removal a failover could still lose: a review)", async () => {
    const { g, release } = holdingChange();
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    const removal = g.driver.removeReplica("r3");
    await until(() => g.driver.core.configChangePending);
    expect(g.driver.core.replicaIds()).toEqual(["r1", "r2"]); // appended: no longer in the membership in force
    let answer: boolean | null = null;
    const gone = g.driver.removedForGood("r3").then((x) => (answer = x));
    await tick(40);
    expect(answer).toBe(null); // waits for the commit
    release();
    await gone;
    expect(answer).toBe(true);
    expect(await removal).toEqual({ ok: true });
    expect(await g.driver.removedForGood("r2")).toBe(false);
    g.driver.stop();
  });

  it("is not removed for good when its change never commits within a command's timeout", async () => {
    const { g } = holdingChange();
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    const removal = g.driver.removeReplica("r3");
    await until(() => g.driver.core.configChangePending);
    expect(await g.driver.removedForGood("r3")).toBe(false);
    expect((await removal).ok).toBe(false);
    g.driver.stop();
  });
});
