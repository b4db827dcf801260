// SequencerLifecycle.resign: a sequencer that heard it is out of office (a rejoin it refused)
// stops and wipes, unless the directory names it again by then or cannot be read.
import { describe, expect, it } from "vitest";
import { SequencerLifecycle } from "../../shared/protocol/lifecycle.js";
import type { GroupConfig } from "../../shared/protocol/types.js";
import { directGroup } from "../support/direct.js";

const config: GroupConfig = { group: "g", incarnation: 2, machine: "kv", replicas: 3, locations: [], outputs: "first", checkpointEvery: 50, sequencer: { name: "g~s1", location: null, no: 1 } } as never;

function serving(office: () => Promise<boolean>) {
  const g = directGroup(config, { entries: 10_000, slack: 1_000 });
  let wipes = 0;
  const lifecycle = new SequencerLifecycle({
    storage: () => g.seqStore,
    prepare: () => {},
    wipe: async () => void wipes++,
    io: () => g.io,
    inOffice: office,
  });
  lifecycle.start(g.seqStore.meta!, [], config, false);
  return { lifecycle, wipes: () => wipes };
}

describe("a sequencer that heard it is out of office", () => {
  it("stops and wipes when the directory names another sequencer or no group", async () => {
    const s = serving(async () => false);
    expect(s.lifecycle.driver).not.toBeNull();
    expect(await s.lifecycle.resign(config)).toBe(true);
    expect(s.lifecycle.driver).toBeNull();
    expect(s.wipes()).toBe(1);
  });

  it("keeps serving when the directory names it again, or cannot be read", async () => {
    for (const office of [async () => true, async () => Promise.reject(new Error("directory unreachable"))]) {
      const s = serving(office);
      expect(await s.lifecycle.resign(config)).toBe(false);
      expect(s.lifecycle.driver).not.toBeNull();
      expect(s.wipes()).toBe(0);
      s.lifecycle.stop();
    }
  });

  it("leaves alone a core of another incarnation or name than the one that heard it", async () => {
    const s = serving(async () => false);
    expect(await s.lifecycle.resign({ ...config, incarnation: 1 })).toBe(false);
    expect(await s.lifecycle.resign({ ...config, sequencer: { name: "g~s2", location: null, no: 2 } } as never)).toBe(false);
    expect(s.lifecycle.driver).not.toBeNull();
    expect(s.wipes()).toBe(0);
    s.lifecycle.stop();
  });
});

describe("a stopped lifecycle (its process gone)", () => {
  it("wipes nothing when asked to hand over or to resign", async () => {
    const s = serving(async () => false);
    s.lifecycle.stop();
    await s.lifecycle.handOver().catch(() => undefined);
    expect(await s.lifecycle.resign(config)).toBe(false);
    expect(s.wipes()).toBe(0);
  });
});
