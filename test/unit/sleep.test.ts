// Idle groups sleep (docs/PROTOCOL.md, "Idle groups sleep"): after io.sleepAfterMs without client
// work the sequencer tells its replicas and stops its heartbeats, so the platform can evict the
// group's objects; client work wakes it, and a PreVote at a sleeping replica wakes the sequencer
// instead of voting it gone.
import { describe, expect, it } from "vitest";
import { asleepContactStaleMs, sequencerTimeoutMs, statusContactWaitMs, watchSilenceMs } from "../../shared/limits.js";
import { SequencerDriver } from "../../shared/protocol/driver.js";
import type { DriverIO } from "../../shared/protocol/io.js";
import { SequencerCore } from "../../shared/protocol/sequencer.js";
import { zeroHash } from "../../shared/protocol/hash.js";
import { directGroup, fastClock } from "../support/direct.js";
import { replicaWorld } from "../support/replica-world.js";
import { decodeAppend, encodeAppend } from "../../workers/wire.js";

const config = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "majority" as const, checkpointEvery: 50 };
const put = (key: string) => ({ op: "put", key, value: 1 });
/** Real milliseconds for virtual ones under fastClock (50 times faster). */
const pause = (virtualMs: number) => new Promise((r) => setTimeout(r, virtualMs / 50));
const sleepAfterMs = 3_000;

/** afterMs null: no sleepAfterMs (never sleeps). `compacting`: a log compacted after a few entries (no rebuild from the log alone). */
function sleepyGroup(afterMs: number | null = sleepAfterMs, compacting = false) {
  const g = compacting ? directGroup({ ...config, checkpointEvery: 5 }, { entries: 10, slack: 5 }, fastClock) : directGroup(config, { entries: 10_000, slack: 1_000 }, fastClock);
  const notes: (number | null)[] = [];
  /** Whether each note was a change (a start's note is not: no log line for it). */
  const changes: boolean[] = [];
  Object.assign(g.io as DriverIO, { sleepAfterMs: afterMs ?? undefined, onSleep: (since: number | null, changed: boolean) => void (notes.push(since), changes.push(changed)) });
  g.driver.startHeartbeats();
  const appends = () => ["r1", "r2", "r3"].reduce((n, id) => n + (g.calls.get(`${id}:append`) ?? 0), 0);
  return { ...g, notes, changes, appends };
}

async function until(what: string, ok: () => boolean, virtualMs = 30_000): Promise<void> {
  const endMs = fastClock.nowMs() + virtualMs;
  while (!ok()) {
    if (fastClock.nowMs() > endMs) throw new Error(`not ${what} within ${virtualMs} ms`);
    await pause(100);
  }
}

describe("an idle group sleeps", () => {
  it("tells its replicas, then sends nothing; a command wakes it and is answered", async () => {
    const g = sleepyGroup();
    const workMs = fastClock.nowMs();
    expect((await g.driver.submit("c", 1, put("a"))).kind).toBe("ok");
    await until("asleep", () => g.driver.asleepSinceMs !== null);
    // Not before sleepAfterMs of no client work, and no later than two heartbeats after it.
    expect(g.driver.asleepSinceMs! - workMs).toBeGreaterThanOrEqual(sleepAfterMs);
    expect(g.driver.asleepSinceMs! - workMs).toBeLessThan(sleepAfterMs + 2_500);
    // Awake at its start (said every start: a successor must not stay marked asleep), then asleep.
    expect(g.notes).toEqual([null, g.driver.asleepSinceMs]);
    expect(g.changes).toEqual([false, true]);
    // A quorum heard the notice (all three here): they record it, and their silence is idleness.
    for (const id of ["r1", "r2", "r3"]) {
      expect(g.stores.get(id)!.meta!.asleepSinceMs, id).toBeDefined();
      expect(g.replicas.get(id)!.silentMs(), id).toBe(0);
    }
    const sent = g.appends();
    await pause(4 * sequencerTimeoutMs);
    expect(g.appends()).toBe(sent); // no heartbeat while asleep
    for (const id of ["r1", "r2", "r3"]) expect(g.stores.get(id)!.meta!.silentSinceMs, id).toBeUndefined();
    // Asleep, it expects no answer: not "cut off" (a router would fail it over), however long.
    expect(g.driver.quorumLostMs()).toBe(0);
    expect(g.driver.cutOffMs()).toBeNull();

    expect((await g.driver.submit("c", 2, put("b"))).kind).toBe("ok");
    expect(g.driver.asleepSinceMs).toBeNull();
    expect(g.notes.at(-1)).toBeNull();
    for (const id of ["r1", "r2", "r3"]) expect(g.stores.get(id)!.meta!.asleepSinceMs, id).toBeUndefined();
    const after = g.appends();
    await pause(2_500);
    expect(g.appends()).toBeGreaterThan(after); // heartbeats again
    g.driver.stop();
  }, 30_000);

  it("wakes for a linearizable read and a membership change, not for an audit", async () => {
    const g = sleepyGroup();
    await until("asleep", () => g.driver.asleepSinceMs !== null);
    const report = await g.driver.audit();
    expect(report.verdict).toBe("consistent");
    expect(g.driver.asleepSinceMs).not.toBeNull(); // the cron's audit is not client work
    expect((await g.driver.readIndex()).kind).toBe("ok");
    expect(g.driver.asleepSinceMs).toBeNull();
    await until("asleep again", () => g.driver.asleepSinceMs !== null);
    const removed = await g.driver.removeReplica("r3");
    expect(removed.ok).toBe(true);
    expect(g.notes.filter((n) => n === null).length).toBe(3); // the start's, the read's, the change's
    g.driver.stop();
  }, 30_000);

  it("sleeps after a repair too (a count of transfers begun, never decremented, kept it awake for good: a review)", async () => {
    const g = sleepyGroup();
    expect((await g.driver.submit("c", 1, put("a"))).kind).toBe("ok");
    expect(await g.driver.repair("r3")).toBe(true);
    await until("asleep after the repair", () => g.driver.asleepSinceMs !== null);
    g.driver.stop();
  }, 30_000);

  it("asleep, does not retry a replica that is down (a timer kept the object in memory), and catches it up once awake", async () => {
    const g = sleepyGroup();
    g.down.add("r3");
    expect((await g.driver.submit("c", 1, put("a"))).kind).toBe("ok");
    await until("asleep", () => g.driver.asleepSinceMs !== null);
    await pause(4_000); // a retry armed before the sleep may still fire once
    const tried = g.calls.get("r3:append") ?? 0;
    await pause(4 * sequencerTimeoutMs);
    expect(g.calls.get("r3:append") ?? 0).toBe(tried);
    g.down.delete("r3");
    expect((await g.driver.submit("c", 2, put("b"))).kind).toBe("ok");
    await until("r3 caught up", () => g.replicas.get("r3")!.core!.appliedSeq >= g.driver.core.commitSeq);
    g.driver.stop();
  }, 30_000);

  it("does not sleep while a replica is quarantined: its rebuild is retried until it is done, without client work (a probe: quarantined for a day)", async () => {
    const g = sleepyGroup();
    expect((await g.driver.submit("c", 1, put("a"))).kind).toBe("ok");
    g.replicas.get("r2")!.core!.saveState();
    g.stores.get("r2")!.rows.put("m/a", JSON.stringify(999));
    // Once its rebuild has begun, r2 is cut off: the rebuild fails halfway.
    g.hooks.served = (id, method) => {
      if (id !== "r2" || method !== "beginInstall") return;
      g.down.add("r2");
      g.hooks.served = undefined;
    };
    expect((await g.driver.audit()).verdict).toBe("diverged");
    expect(g.driver.core.quarantinedIds()).toEqual(["r2"]);
    await pause(2 * sleepAfterMs + 4_000);
    expect(g.driver.asleepSinceMs).toBeNull();
    g.down.delete("r2");
    await until("r2 rebuilt", () => g.driver.core.quarantinedIds().length === 0 && g.replicas.get("r2")!.core!.appliedSeq >= g.driver.core.commitSeq);
    await until("asleep once it is", () => g.driver.asleepSinceMs !== null);
    g.driver.stop();
  }, 30_000);

  /** r<id>'s rows no longer hash to its digest (damaged storage). */
  const corrupt = (g: ReturnType<typeof sleepyGroup>, id: string) => {
    g.replicas.get(id)!.core!.saveState();
    g.stores.get(id)!.rows.put("m/a", JSON.stringify(999));
  };
  /** r<id> is cut off for good once its rebuild has begun. */
  const lostMidRebuild = (g: ReturnType<typeof sleepyGroup>, id: string) => {
    g.hooks.served = (at, method) => {
      if (at !== id || method !== "beginInstall") return;
      g.down.add(id);
      g.hooks.served = undefined;
    };
  };
  const snapshots = (g: ReturnType<typeof sleepyGroup>) => ["r1", "r2", "r3"].reduce((n, id) => n + (g.calls.get(`${id}:beginSnapshot`) ?? 0), 0);

  it("awake for a quarantined replica out of reach, asks it before freezing a source: no copy of a healthy replica's whole state at each retry (a review)", async () => {
    const g = sleepyGroup();
    expect((await g.driver.submit("c", 1, put("a"))).kind).toBe("ok");
    corrupt(g, "r2");
    lostMidRebuild(g, "r2");
    expect((await g.driver.audit()).verdict).toBe("diverged");
    await pause(2 * sleepAfterMs);
    const before = snapshots(g);
    const asked = g.calls.get("r2:position") ?? 0;
    await pause(30_000);
    expect(g.driver.asleepSinceMs).toBeNull();
    expect(snapshots(g)).toBe(before);
    expect(g.calls.get("r2:position") ?? 0).toBeGreaterThan(asked); // still tried
    g.driver.stop();
  }, 30_000);

  it("sleeps with a quarantined replica that only an operator can mend (every source failed its scrub)", async () => {
    const g = sleepyGroup(sleepAfterMs, true);
    for (let r = 1; r <= 40; r++) expect((await g.driver.submit("c", r, put(`k${r}`))).kind).toBe("ok");
    await pause(500);
    expect(g.driver.core.baseSeq).toBeGreaterThan(0);
    corrupt(g, "r3");
    lostMidRebuild(g, "r3");
    expect((await g.driver.audit()).verdict).toBe("diverged");
    corrupt(g, "r1");
    corrupt(g, "r2");
    expect((await g.driver.audit()).alarm).toMatch(/failed the same check/);
    expect(g.driver.core.quarantinedIds()).toEqual(["r3"]);
    expect(g.driver.repairRefusal("r3")?.code).toBe("conflict");
    await until("asleep", () => g.driver.asleepSinceMs !== null);
    g.driver.stop();
  }, 30_000);

  it("does not sleep until a quorum of voters has heard the notice", async () => {
    const g = sleepyGroup();
    expect((await g.driver.submit("c", 1, put("a"))).kind).toBe("ok");
    g.down.add("r2");
    g.down.add("r3");
    await pause(sleepAfterMs + 5_000);
    expect(g.driver.asleepSinceMs).toBeNull(); // only r1 heard it: the others would vote on a silence
    // Falling asleep: what a replica's probe is told (told "awake", r1 ended its sleep: a review).
    expect(g.driver.sleepingSinceMs).not.toBeNull();
    const sent = g.appends();
    await pause(2_500);
    expect(g.appends()).toBeGreaterThan(sent); // still beating (with the notice)
    g.down.delete("r3");
    await until("asleep once r3 is back", () => g.driver.asleepSinceMs !== null);
    expect(g.stores.get("r2")!.meta!.asleepSinceMs).toBeUndefined();
    g.driver.stop();
  }, 30_000);

  it("stays asleep across a restart of its object (a status or the daily audit starts it), until client work", async () => {
    const g = sleepyGroup();
    await until("asleep", () => g.driver.asleepSinceMs !== null);
    const since = g.driver.asleepSinceMs;
    g.driver.stop();
    expect(g.seqStore.meta!.asleepSinceMs).toBe(since);
    // Restarted as the lifecycle does (a kick first), with r1 reached by a direct call as the
    // co-located replica is: the first kick built r1's message before startHeartbeats, without
    // the notice, and r1 took the group for awake (a review).
    Object.assign(g.io, { directReplica: "r1" });
    const again = new SequencerDriver(new SequencerCore(g.seqStore, g.seqStore.meta!), g.io, { entries: 10_000, slack: 1_000 });
    again.kickAll();
    again.startHeartbeats();
    expect(again.asleepSinceMs).toBe(since);
    expect(g.notes.at(-1)).toBe(since); // said again at the start (a lost note is not for good)
    expect(g.changes.at(-1)).toBe(false); // not a change: no "sleeps" log line at each start
    await pause(3 * sequencerTimeoutMs);
    for (const id of ["r1", "r2", "r3"]) expect(g.stores.get(id)!.meta!.asleepSinceMs, id).toBeDefined();
    for (const id of ["r1", "r2", "r3"]) expect(g.replicas.get(id)!.silentMs(), id).toBe(0);
    const sent = g.appends();
    await pause(3 * sequencerTimeoutMs);
    expect(g.appends()).toBe(sent);
    expect((await again.submit("c", 1, put("a"))).kind).toBe("ok");
    expect(again.asleepSinceMs).toBeNull();
    expect(g.seqStore.meta!.asleepSinceMs).toBeUndefined();
    again.stop();
  }, 30_000);

  it("started again after an eviction while awake, counts its idleness from the last client work its meta kept, and has its host start it when the sleep is due (a probe: under wrangler dev, a quiet group's sequencer was evicted before its sleep and never slept)", async () => {
    const starts: number[] = [];
    const g = sleepyGroup();
    Object.assign(g.io, { startAt: (atMs: number) => void starts.push(atMs) });
    const workMs = fastClock.nowMs();
    expect((await g.driver.submit("c", 1, put("a"))).kind).toBe("ok");
    await until("a start asked for", () => starts.length > 0);
    // When the sleep is due: the work's time plus sleepAfterMs (and a heartbeat), asked once for it.
    expect(starts[0]! - workMs).toBeGreaterThanOrEqual(sleepAfterMs - 100);
    expect(starts[0]! - workMs).toBeLessThanOrEqual(sleepAfterMs + 1_100);
    await pause(sleepAfterMs / 2);
    expect(starts).toHaveLength(1);
    // Evicted: its heartbeats end with it. Started again (the host's alarm, a scrape, an audit).
    g.driver.stop();
    expect(g.seqStore.meta!.activeMs, "kept with the command's commit").toBeGreaterThanOrEqual(workMs);
    const again = new SequencerDriver(new SequencerCore(g.seqStore, g.seqStore.meta!), g.io, { entries: 10_000, slack: 1_000 });
    const startedMs = fastClock.nowMs();
    again.startHeartbeats();
    await until("asleep", () => again.asleepSinceMs !== null);
    // Asleep by the work's time plus sleepAfterMs (and two heartbeats), not the start's plus it.
    expect(again.asleepSinceMs! - workMs).toBeLessThan(sleepAfterMs + 2_500);
    expect(again.asleepSinceMs! - startedMs).toBeLessThan(sleepAfterMs);
    again.stop();
  }, 30_000);

  it("with no client work since its start, keeps that start as its last work when it asks to be started: the start the host makes counts from it (a probe: each such start counted from itself, evicted again before its sleep)", async () => {
    const starts: number[] = [];
    const startedMs = fastClock.nowMs();
    const g = sleepyGroup();
    Object.assign(g.io, { startAt: (atMs: number) => void starts.push(atMs) });
    await until("a start asked for", () => starts.length > 0);
    expect(g.seqStore.meta!.activeMs, "written when the start was asked for").toBeGreaterThanOrEqual(startedMs);
    await pause(sleepAfterMs / 2);
    g.driver.stop(); // evicted
    const again = new SequencerDriver(new SequencerCore(g.seqStore, g.seqStore.meta!), g.io, { entries: 10_000, slack: 1_000 });
    const restartedMs = fastClock.nowMs();
    again.startHeartbeats();
    await until("asleep", () => again.asleepSinceMs !== null);
    expect(again.asleepSinceMs! - restartedMs).toBeLessThan(sleepAfterMs);
    again.stop();
  }, 30_000);

  it("counts no acknowledgement of a message sent in the millisecond its sleep began (that message carried no notice)", () => {
    let nowMs = 1_000_000;
    const g = directGroup(config, { entries: 10_000, slack: 1_000 }, { nowMs: () => nowMs, setTimer: () => () => {} });
    Object.assign(g.io as DriverIO, { sleepAfterMs });
    const d = g.driver as any; // the heartbeat's sleep step and the acknowledgements are private
    d.noteQuarantines(); // as the first heartbeat does: nothing left to record
    nowMs += sleepAfterMs;
    expect(d.sleepTick(nowMs)).toBe(false);
    expect(g.driver.sleepingSinceMs).toBe(nowMs);
    const beganMs = nowMs;
    for (const id of ["r1", "r2", "r3"]) d.ackedSentMs.set(id, beganMs);
    nowMs += 10;
    expect(d.sleepTick(nowMs)).toBe(false);
    expect(g.driver.asleepSinceMs).toBeNull();
    // A notice sent a millisecond later, acknowledged by a quorum.
    for (const id of ["r1", "r2"]) d.ackedSentMs.set(id, beganMs + 1);
    expect(d.sleepTick(nowMs)).toBe(true);
    expect(g.driver.asleepSinceMs).toBe(beganMs);
  });

  it("keeps a down replica down, with its last contact, across a restart while asleep (it showed suspect and no contact: an operator's probe)", async () => {
    // Long enough awake for r3's misses to reach down first (once asleep, none are counted).
    const g = sleepyGroup(8_000);
    expect((await g.driver.submit("c", 1, put("a"))).kind).toBe("ok");
    g.down.add("r3");
    await until("r3 down and the group asleep", () => g.driver.asleepSinceMs !== null && g.driver.core.replicaStatuses().find((s) => s.id === "r3")!.status === "down");
    const before = g.driver.core.replicaStatuses();
    const r3 = before.find((s) => s.id === "r3")!;
    expect(r3.lastContact).not.toBeNull();
    g.driver.stop();
    const again = new SequencerDriver(new SequencerCore(g.seqStore, g.seqStore.meta!), g.io, { entries: 10_000, slack: 1_000 });
    again.kickAll();
    again.startHeartbeats();
    await again.hearUnheard(2_000); // as a status right after the start does
    const after = again.core.replicaStatuses();
    expect(after.find((s) => s.id === "r3")).toMatchObject({ status: "down", lastContact: r3.lastContact, lastSeq: r3.lastSeq, appliedSeq: r3.appliedSeq });
    // The others were asked again at the start: healthy, contacted now.
    for (const id of ["r1", "r2"]) expect(after.find((s) => s.id === id)).toMatchObject({ status: "healthy", lastSeq: before.find((s) => s.id === id)!.lastSeq });
    expect(again.asleepSinceMs).not.toBeNull();
    // Awake again, the kept figures go with the wake.
    g.down.delete("r3");
    expect((await again.submit("c", 2, put("b"))).kind).toBe("ok");
    expect(g.seqStore.meta!.contacts).toBeUndefined();
    again.stop();
  }, 30_000);

  it("asleep, a status asks again each replica not heard from for asleepContactStaleMs (one cut off after the sleep showed healthy until the daily audit: a probe)", async () => {
    const g = sleepyGroup();
    expect((await g.driver.submit("c", 1, put("a"))).kind).toBe("ok");
    await until("asleep", () => g.driver.asleepSinceMs !== null);
    g.down.add("r3");
    const status = (id: string) => g.driver.core.replicaStatuses().find((s) => s.id === id)!;
    const before = g.appends();
    await g.driver.hearUnheard(statusContactWaitMs);
    expect(g.appends()).toBe(before); // heard within the bound: nobody asked
    expect(status("r3").status).toBe("healthy");
    await pause(asleepContactStaleMs + 1_000);
    await g.driver.hearUnheard(statusContactWaitMs);
    expect(status("r3").status).toBe("suspect");
    // A silent one is asked again a bound later, not at each status (by when it was asked).
    const asked = g.calls.get("r3:append") ?? 0;
    await g.driver.hearUnheard(statusContactWaitMs);
    expect(g.calls.get("r3:append") ?? 0).toBe(asked);
    for (const id of ["r1", "r2"]) {
      expect(status(id).status).toBe("healthy");
      expect(Date.parse(status(id).lastContact!)).toBeGreaterThan(fastClock.nowMs() - asleepContactStaleMs);
    }
    expect(g.driver.asleepSinceMs).not.toBeNull(); // still asleep: a status is no client work
    g.driver.stop();
  }, 30_000);

  it("does not show a replica healthy from what it said before the sleep until it is asked again (one that hangs showed healthy: a review)", async () => {
    const g = sleepyGroup();
    expect((await g.driver.submit("c", 1, put("a"))).kind).toBe("ok");
    await until("asleep", () => g.driver.asleepSinceMs !== null);
    g.driver.stop();
    g.slow.set("r3", 60_000); // hangs: a call to it fails only at replicaRpcTimeoutMs
    const again = new SequencerDriver(new SequencerCore(g.seqStore, g.seqStore.meta!), g.io, { entries: 10_000, slack: 1_000 });
    again.kickAll();
    again.startHeartbeats();
    await again.hearUnheard(statusContactWaitMs); // what a status does first
    expect(again.core.unheardIds()).toEqual(["r3"]);
    const r3 = again.core.replicaStatuses().find((s) => s.id === "r3")!;
    expect(r3.status).toBe("lagging"); // not known to be healthy
    expect(r3.lastContact).not.toBeNull(); // what it knew: its last contact before the sleep
    await until("r3's miss counted", () => again.core.replicaStatuses().find((s) => s.id === "r3")!.status === "suspect");
    // Asleep, a meta write keeps what it learned since: the miss outlives an eviction.
    again.stop();
    expect(g.seqStore.meta!.contacts!.r3!.misses).toBe(1);
  }, 30_000);

  it("falling asleep, is awake again once work is under way that did not come through wake() (a repair begun by an answer: a mutation probe)", () => {
    let nowMs = 1_000_000;
    const g = directGroup(config, { entries: 10_000, slack: 1_000 }, { nowMs: () => nowMs, setTimer: () => () => {} });
    Object.assign(g.io as DriverIO, { sleepAfterMs });
    const d = g.driver as any; // the heartbeat's sleep step and the repairs' count are private
    d.noteQuarantines();
    nowMs += sleepAfterMs;
    d.sleepTick(nowMs);
    expect(g.driver.sleepingSinceMs).toBe(nowMs);
    d.repairing = 1; // as a transfer started from a replica's answer does
    nowMs += 1_000;
    expect(d.sleepTick(nowMs)).toBe(false);
    expect(g.driver.sleepingSinceMs).toBeNull(); // its messages carry no notice while it works
    d.repairing = 0;
    nowMs += 1_000;
    d.sleepTick(nowMs);
    expect(g.driver.sleepingSinceMs).toBe(nowMs); // falling asleep again with a fresh notice, not on the old one
  });

  it("never sleeps without sleepAfterMs", async () => {
    const g = sleepyGroup(null);
    await pause(sleepAfterMs + 5_000);
    expect(g.driver.asleepSinceMs).toBeNull();
    const sent = g.appends();
    await pause(2_500);
    expect(g.appends()).toBeGreaterThan(sent);
    expect(g.notes).toEqual([null]); // the start's only
    g.driver.stop();
  }, 30_000);
});

const beat = (sleep: boolean) => ({ epoch: 1, prevSeq: 0, prevHash: zeroHash, entries: [], commitSeq: 0, ...(sleep ? { sleep: true as const } : {}) });

/** A replica (on a manual clock) that heard its sequencer of epoch 1 say it sleeps. */
function asleepReplica() {
  const w = replicaWorld();
  const d = w.start();
  d.fence(1, "seq");
  expect(d.append(beat(true)).ok).toBe(true);
  return { w, d };
}

describe("a replica whose sequencer sleeps", () => {
  it("records no silence, and a PreVote wakes the sequencer instead of voting it gone", () => {
    const { w, d } = asleepReplica();
    w.advance(10 * 60_000);
    expect(w.storage.meta!.silentSinceMs).toBeUndefined();
    expect(d.silentMs()).toBe(0);
    expect(d.vote()).toMatchObject({ gone: false, heardAgoMs: 0, waking: true });
    expect(w.wakes.n).toBe(1);
    // Its silence counts from the vote, written down at once: a sequencer that does not wake is
    // voted gone sequencerTimeoutMs later, by this object or by a new start of it.
    w.advance(sequencerTimeoutMs);
    expect(d.vote()).toMatchObject({ gone: true });
    expect(w.start().vote()).toMatchObject({ gone: true });
    expect(w.wakes.n).toBe(1);
  });

  it("asks the sequencer again each second after a PreVote until it hears it (one lost wake must not depose a sequencer that is up)", () => {
    const { w, d } = asleepReplica();
    w.advance(60_000);
    d.vote();
    expect(w.wakes.n).toBe(1);
    w.advance(1_000);
    w.advance(1_000);
    expect(w.wakes.n).toBe(3); // unheard: asked again
    expect(d.vote()).toMatchObject({ gone: false, waking: true }); // not heard since
    d.append(beat(false)); // it woke and heartbeats
    w.advance(3_000);
    expect(w.wakes.n).toBe(3);
    expect(d.vote()!.waking).toBeUndefined(); // heard: it hears the sequencer, no longer waking it
  });

  it("while a watch asks about its silence, checks every sequencer timeout that the sequencer still sleeps, and ends its sleep if not", async () => {
    const { w, d } = asleepReplica();
    let asleep = true;
    let asked = 0;
    d.sequencerAsleep = async () => (asked++, asleep);
    w.advance(60_000);
    expect(d.silentMs()).toBe(0);
    await Promise.resolve();
    expect(asked).toBe(1);
    w.advance(1_000);
    expect(d.silentMs()).toBe(0);
    expect(asked).toBe(1); // not more often than every sequencerTimeoutMs
    // The group woke, and nothing reached this replica (cut off): its sleep ends unheard, and its
    // silence counts from the answer (an awake sequencer in reach would be heard within a second).
    asleep = false;
    w.advance(sequencerTimeoutMs);
    expect(d.silentMs()).toBe(0);
    await Promise.resolve();
    expect(asked).toBe(2);
    expect(w.storage.meta!.asleepSinceMs).toBeUndefined();
    w.advance(watchSilenceMs);
    expect(d.silentMs()).toBe(watchSilenceMs); // its watches end now
    expect(w.storage.meta!.silentSinceMs).toBeDefined();
  });

  it("takes a probe's answer for the sleep it asked about only", async () => {
    const { w, d } = asleepReplica();
    let answer!: (asleep: boolean) => void;
    d.sequencerAsleep = () => new Promise((resolve) => (answer = resolve));
    w.advance(60_000);
    d.silentMs(); // asks; the answer is late
    d.append(beat(false)); // the group woke
    d.append(beat(true)); // and fell asleep again
    answer(false); // "awake", of the first sleep
    await Promise.resolve();
    expect(w.storage.meta!.asleepSinceMs).toBeDefined();
    w.advance(watchSilenceMs);
    expect(d.silentMs()).toBe(0);
  });

  it("ends its sleep unheard when the sequencer cannot be asked either", async () => {
    const { w, d } = asleepReplica();
    d.sequencerAsleep = () => Promise.reject(new Error("unreachable"));
    w.advance(60_000);
    expect(d.silentMs()).toBe(0);
    await new Promise((r) => setTimeout(r, 0));
    w.advance(watchSilenceMs);
    expect(d.silentMs()).toBe(watchSilenceMs);
  });

  it("remembers the sleep across an eviction", () => {
    const { w } = asleepReplica();
    w.advance(3_600_000);
    const again = w.start(); // evicted in its sleep; a PreVote starts it an hour later
    expect(again.silentMs()).toBe(0);
    expect(again.vote()).toMatchObject({ gone: false });
    expect(w.wakes.n).toBe(1);
  });

  it("hears its sequencer again at the next message without the notice", () => {
    const { w, d } = asleepReplica();
    w.advance(60_000);
    d.append(beat(false));
    expect(w.storage.meta!.asleepSinceMs).toBeUndefined();
    w.advance(sequencerTimeoutMs);
    expect(w.storage.meta!.silentSinceMs).toBeDefined(); // silence is failure again
    expect(d.vote()).toMatchObject({ gone: true });
    expect(w.wakes.n).toBe(0);
  });
});

describe("the append on the wire (workers/wire.ts)", () => {
  it("carries every field of the message, the sleep notice included", () => {
    const msg = { ...beat(true), cutOffMs: 7_000, entries: [] };
    expect(decodeAppend(encodeAppend(msg))).toEqual(msg);
    expect(decodeAppend(encodeAppend(beat(false)))).toEqual(beat(false));
  });
});
