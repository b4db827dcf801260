// A recovery's event says whether it was the sequencer's first: the directory keeps a move's or a
// failover's event with the first only (SequencerChange), and a recovery after a fencing must not
// give that change its epoch (a review: its first event lost, a fencing days later did).
import { describe, expect, it } from "vitest";
import { SequencerLifecycle } from "../../shared/protocol/lifecycle.js";
import { MemorySequencerStorage } from "../../shared/protocol/memory.js";
import type { GroupConfig } from "../../shared/protocol/types.js";
import { directGroup } from "../support/direct.js";

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
      recovered: async (_config, _epoch, message, fields) => (reported.push({ message, ...fields }), true),
      recoveryFailed: (_c, reason) => void reported.push({ failed: reason }),
    });
    expect(await lifecycle.recover(moved)).toEqual({ ok: true, epoch: 2, eventKept: true });
    expect(reported).toEqual([{ message: "sequencer g~s1 recovered 1 entries at epoch 2", sequencer: "g~s1" }]);
    // Asked again while serving: no second recovery, no event.
    expect(await lifecycle.recover(moved)).toEqual({ ok: true, epoch: 2 });
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
