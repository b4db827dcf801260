import { describe, expect, it } from "vitest";
import { SequencerLifecycle, type SequencerHost } from "../../shared/protocol/lifecycle.js";

/** A host for a sequencer with no state: only destroy is called. */
const host = (): SequencerHost & { wipes: number } => {
  const h = {
    wipes: 0,
    storage: () => {
      throw new Error("no storage in this test");
    },
    prepare: () => {},
    wipe: async () => void h.wipes++,
    io: () => {
      throw new Error("no io in this test");
    },
  };
  return h;
};

describe("destroying a group's sequencer while a destroy is under way", () => {
  // A probe: with a replica 20 s slow, every request to the group being deleted queued its own
  // whole destroy behind the ones before it; a GET answered after 40 s.
  it("joins the destroy of the same incarnation under way instead of queueing another", async () => {
    const h = host();
    const lifecycle = new SequencerLifecycle(h);
    let calls = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const destroyReplicas = async () => {
      calls++;
      await gate;
    };
    const first = lifecycle.destroy(3, destroyReplicas);
    const second = lifecycle.destroy(3, destroyReplicas);
    const third = lifecycle.destroy(3, destroyReplicas);
    await new Promise((r) => setTimeout(r, 10));
    release();
    await Promise.all([first, second, third]);
    expect(calls).toBe(1);
    expect(h.wipes).toBe(1);
  });

  it("tries again after a destroy that failed, and runs one of another incarnation on its own", async () => {
    const h = host();
    const lifecycle = new SequencerLifecycle(h);
    let calls = 0;
    const failing = async () => {
      calls++;
      throw new Error("replica r2 unreachable");
    };
    await expect(lifecycle.destroy(3, failing)).rejects.toThrow(/unreachable/);
    await expect(lifecycle.destroy(3, failing)).rejects.toThrow(/unreachable/);
    expect(calls).toBe(2);
    await lifecycle.destroy(3, async () => void calls++);
    await lifecycle.destroy(4, async () => void calls++);
    expect(calls).toBe(4);
  });
});
