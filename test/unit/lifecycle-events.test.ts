// A recovery's event says whether it was the sequencer's first: the directory keeps a move's or a
// failover's event with the first only (SequencerChange), and a recovery after a fencing must not
// give that change its epoch (a review: its first event lost, a fencing days later did).
import { describe, expect, it } from "vitest";
import { SequencerLifecycle } from "../../shared/protocol/lifecycle.js";
import { MemorySequencerStorage } from "../../shared/protocol/memory.js";
import type { GroupConfig } from "../../shared/protocol/types.js";
import { directGroup, fastClock as fast } from "../support/direct.js";
import { memoryDirectory } from "../support/directory.js";

const config: GroupConfig = { group: "g", incarnation: 0, machine: "kv", replicas: 3, locations: [], outputs: "first", checkpointEvery: 50 } as never;
const moved: GroupConfig = { ...config, sequencer: { name: "g~s1", location: null, no: 1 } } as never;

describe("a recovery's event", () => {
  it("is awaited and reported kept; one after a fencing says `again`", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    g.driver.stop();
    let storage = new MemorySequencerStorage();
    const reported: Record<string, unknown>[] = [];
    const lifecycle = new SequencerLifecycle({
      storage: () => storage,
      prepare: () => {},
      wipe: async () => void (storage = new MemorySequencerStorage()),
      io: () => g.io,
      recovered: async (_config, _epoch, message, fields) => (reported.push({ message, ...fields }), "2026-12-07T23:00:00.000Z"),
      recoveryFailed: (_c, reason) => void reported.push({ failed: reason }),
    });
    // The kept event's time comes back: the router's log line gives the down time the event keeps.
    expect(await lifecycle.recover(moved)).toEqual({ ok: true, epoch: 2, eventKept: true, eventAt: "2026-12-07T23:00:00.000Z" });
    expect(reported).toEqual([{ message: "sequencer g~s1 recovered 1 entries at epoch 2", sequencer: "g~s1" }]);
    // Asked again while serving: no second recovery, no second event; the kept one's time again
    // (the router that named it may ask after another request's recovery: see below).
    expect(await lifecycle.recover(moved)).toEqual({ ok: true, epoch: 2, eventKept: true, eventAt: "2026-12-07T23:00:00.000Z" });
    expect(reported).toHaveLength(1);
    // Fenced (a newer epoch answered): it wipes and recovers again, at a new epoch, "again".
    (lifecycle as unknown as { fenced(c: GroupConfig): void }).fenced(moved);
    // (A recovery waits out the read lease the sequencer before may still hold.)
    for (let i = 0; i < 500 && reported.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    // (Its first recovery appended a no-op: two entries now.)
    expect(reported[1]).toEqual({ message: "sequencer g~s1 recovered 2 entries at epoch 3", sequencer: "g~s1", again: true });
    // Fenced again with every replica away: that recovery fails; the next request's is not a first either.
    for (const id of ["r1", "r2", "r3"]) g.down.add(id);
    (lifecycle as unknown as { fenced(c: GroupConfig): void }).fenced(moved);
    for (let i = 0; i < 500 && reported.length < 3; i++) await new Promise((r) => setTimeout(r, 20));
    expect(reported[2]).toMatchObject({ failed: expect.any(String) });
    g.down.clear();
    expect(await lifecycle.recover(moved)).toMatchObject({ ok: true, eventKept: true });
    expect(reported[3]).toMatchObject({ sequencer: "g~s1", again: true });
    lifecycle.stop();
  }, 40_000);
});



describe("a recovery asked twice at once (the failover's router, and another router's request that found the new sequencer with no state)", () => {
  // A review: the router that made the failover logs its down time from the kept event's time
  // (Recovered.eventAt); when another request's recovery came first, its own call answered
  // "serving" with no time, and its log line reckoned the down time from its own clock again.
  it("gives both the kept event's time, once it is kept", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    g.driver.stop();
    let storage = new MemorySequencerStorage();
    let events = 0;
    const lifecycle = new SequencerLifecycle({
      storage: () => storage,
      prepare: () => {},
      wipe: async () => void (storage = new MemorySequencerStorage()),
      io: () => g.io,
      // The directory takes 200 ms to keep it.
      recovered: async () => (events++, await new Promise((r) => setTimeout(r, 200)), "2026-12-07T23:00:00.000Z"),
    });
    const [first, second] = await Promise.all([lifecycle.recover(moved), lifecycle.recover(moved)]);
    expect(events).toBe(1);
    expect(first).toEqual({ ok: true, epoch: 2, eventKept: true, eventAt: "2026-12-07T23:00:00.000Z" });
    expect(second).toEqual(first);
    lifecycle.stop();
  }, 40_000);
});

describe("a re-created group's sequencer named like one of the deleted group's", () => {
  // A probe: fg failed over twice (fg~s1 fenced out by fg~s2), deleted and re-created; its first
  // failover (fg -> fg~s1, the same object as the old fg~s1) was kept with epoch 0, "its recovery
  // was not recorded": the old incarnation's fencing made the new one's first recovery say `again`.
  it("reports its first recovery of the new incarnation as a first: the failover is kept with its epoch", async () => {
    const dir = memoryDirectory();
    const base = { group: "g", machine: "kv", replicas: 3, locations: [], outputs: "first", checkpointEvery: 50 } as unknown as GroupConfig;
    const named = (c: GroupConfig, no: number): GroupConfig => ({ ...c, sequencer: { name: `g~s${no}`, location: null, no } }) as GroupConfig;
    const failover = (c: GroupConfig, no: number) =>
      dir.replaceSequencer(c.incarnation, no - 1, named(c, no), { kind: "failover", from: no === 1 ? "g" : `g~s${no - 1}`, to: `g~s${no}`, cause: "unreachable", downMs: 0, atMs: fast.nowMs() }, fast.nowMs())!;
    /** A group of that incarnation whose first sequencer (`g`, epoch 1) wrote one entry and is gone. */
    const incarnation = async (): Promise<{ config: GroupConfig; group: ReturnType<typeof directGroup> }> => {
      const created = dir.create(base, new Date(fast.nowMs()).toISOString());
      expect(created.kind).toBe("created");
      const config = created.record.config;
      dir.setState(config.incarnation, "ready");
      const group = directGroup(config, { entries: 10_000, slack: 1_000 }, fast);
      expect((await group.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
      group.driver.stop();
      return { config, group };
    };

    // The object `g~s1`, as the Durable Object runs it: its recovery's event goes to the directory.
    let current = await incarnation();
    let storage = new MemorySequencerStorage();
    const lifecycle = new SequencerLifecycle({
      storage: () => storage,
      prepare: () => {},
      wipe: async () => void (storage = new MemorySequencerStorage()),
      io: () => current.group.io,
      inOffice: async (c) => dir.get()?.config.incarnation === c.incarnation && dir.get()?.config.sequencer?.name === "g~s1",
      directoryConfig: async () => dir.get()?.config ?? null,
      recovered: async (c, epoch, message, fields) => {
        const at = new Date(fast.nowMs()).toISOString();
        return dir.addEvent(c.incarnation, { at, kind: "recovery", epoch, message, ...fields }) ? at : null;
      },
    });
    const first = current.config.incarnation;

    // The first incarnation: g -> g~s1 (epoch 2), then g~s1 fenced out by g~s2's recovery.
    const s1 = failover(current.config, 1);
    expect(await lifecycle.recover(s1)).toMatchObject({ ok: true, epoch: 2, eventKept: true });
    expect(dir.events(10).find((e) => e.kind === "failover")).toMatchObject({ epoch: 2, message: "sequencer g replaced by g~s1 at epoch 2" });
    failover(current.config, 2);
    (lifecycle as unknown as { fenced(c: GroupConfig): void }).fenced(s1);
    // Its own recovery after the fencing is refused: the directory names g~s2 (queued, so this waits for it).
    expect(await lifecycle.recover(s1)).toMatchObject({ ok: false, deposed: true });
    expect(lifecycle.core).toBeNull();

    // Deleted (a DELETE destroys g~s2 and g, not this object) and created again: g -> g~s1.
    expect(dir.setState(first, "deleted")).toBe(true);
    current = await incarnation();
    expect(current.config.incarnation).toBe(first + 1);
    const again = failover(current.config, 1);
    expect(await lifecycle.recover(again)).toMatchObject({ ok: true, epoch: 2, eventKept: true });
    const events = dir.events(10);
    expect(events.find((e) => e.kind === "failover")).toMatchObject({ epoch: 2, message: "sequencer g replaced by g~s1 at epoch 2" });
    expect(events.find((e) => e.kind === "recovery")).not.toHaveProperty("again");
    lifecycle.stop();
  }, 40_000);
});
