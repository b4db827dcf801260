// A replica's silence survives its object's eviction: once it has heard nothing from its sequencer
// for sequencerTimeoutMs it writes down since when, so a start woken by a PreVote does not count as
// contact (it did, and a cut-off sequencer of a quiet group was never failed over).
import { describe, expect, it } from "vitest";
import { sequencerTimeoutMs } from "../../shared/limits.js";
import { replicaWorld } from "../support/replica-world.js";

const world = replicaWorld;

describe("a replica's silence across a restart", () => {
  it("is written down once the sequencer has been silent for sequencerTimeoutMs, and a restart votes from it", () => {
    const w = world();
    const d = w.start();
    expect(d.fence(1, "seq")?.accepted).toBe(true); // hears its sequencer
    w.advance(sequencerTimeoutMs - 1);
    expect(w.storage.meta!.silentSinceMs).toBeUndefined(); // no write while it may still hear
    w.advance(1);
    const silentSinceMs = w.storage.meta!.silentSinceMs!;
    expect(silentSinceMs).toBeDefined();
    expect(w.pendingTimers()).toBe(0); // one write per silence, then nothing more
    // Evicted; 20 s later a PreVote wakes it: gone, heard nothing for 25 s (it said 0 ms: not gone).
    w.advance(20_000);
    const again = w.start();
    expect(again.vote()).toMatchObject({ gone: true, heardAgoMs: sequencerTimeoutMs + 20_000 });
    expect(again.silentMs()).toBe(sequencerTimeoutMs + 20_000);
  });

  it("is cleared when it hears again, so a later restart counts its start as before", () => {
    const w = world();
    const d = w.start();
    d.fence(1, "seq");
    w.advance(sequencerTimeoutMs + 1_000);
    expect(w.storage.meta!.silentSinceMs).toBeDefined();
    expect(d.fence(2, "successor")?.accepted).toBe(true);
    expect(w.storage.meta!.silentSinceMs).toBeUndefined();
    w.advance(1_000);
    const again = w.start(); // a deploy's restart: it heard a second ago
    expect(again.vote()).toMatchObject({ gone: false, heardAgoMs: 0 });
  });

  it("records a silence that began at a start woken by a vote: the next wake-up votes gone", () => {
    const w = world();
    w.start().vote(); // woken by a PreVote, hears nothing
    w.advance(sequencerTimeoutMs);
    expect(w.storage.meta!.silentSinceMs).toBeDefined();
    w.advance(10_000);
    expect(w.start().vote()).toMatchObject({ gone: true });
  });

  it("writes nothing while the sequencer's heartbeats keep coming", () => {
    const w = world();
    const d = w.start();
    d.fence(1, "seq");
    for (let i = 0; i < 20; i++) {
      w.advance(1_000);
      d.fence(1, "seq"); // the same recovery again: heard
    }
    expect(w.storage.meta!.silentSinceMs).toBeUndefined();
    expect(w.pendingTimers()).toBe(1);
  });
});

describe("a state transfer's target", () => {
  it("hears its sequencer in the transfer's pages: no silence written, no gone vote while it is fed", () => {
    const w = world();
    const d = w.start();
    d.fence(1, "seq");
    const info = d.beginSnapshot()!;
    expect(d.beginInstall(info, "t1", 1)).toBe(true);
    for (let i = 0; i < 7; i++) {
      w.advance(1_000);
      expect(d.installPage("t1", [])).toBe(true);
    }
    expect(w.storage.meta!.silentSinceMs).toBeUndefined();
    expect(d.vote()).toMatchObject({ gone: false });
  });
});
