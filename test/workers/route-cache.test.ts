import { afterEach, describe, expect, it, vi } from "vitest";
import { routeCacheGroupsMax } from "../../shared/limits.js";
import { failover, lookup } from "../../workers/groups.js";

afterEach(() => vi.restoreAllMocks());

describe("the router's cache of group records", () => {
  it("the router's group records: at most routeCacheGroupsMax, the least recently read going first", async () => {
    // Each isolate kept the record of every group it had ever looked up.
    const reads: string[] = [];
    const record = (group: string) => ({ state: "ready", config: { group, incarnation: 1 } });
    const env = {
      DIRECTORY: {
        idFromName: (name: string) => name,
        get: (name: string) => ({ call: async (method: string) => (method === "get" ? (reads.push(name), record(name)) : null) }),
      },
    };
    // One instant for the whole test: no entry expires (routeCacheMs), so a read again is a push out (a review).
    vi.spyOn(Date, "now").mockReturnValue(Date.parse("2026-12-05T00:00:00Z"));
    const names = Array.from({ length: routeCacheGroupsMax + 1 }, (_, i) => `g${i}`);
    for (const g of names) await lookup(env as never, g);
    expect(reads).toHaveLength(names.length);
    // The newest is still cached (no read); the first was pushed out by the last (read again).
    await lookup(env as never, names.at(-1)!);
    expect(reads).toHaveLength(names.length);
    await lookup(env as never, "g0");
    expect(reads.at(-1)).toBe("g0");
    expect(reads).toHaveLength(names.length + 1);
  });
});

describe("the router's failover rounds", () => {
  // Keyed by name alone, a round for a deleted group's sequencer `g` went on against the re-created
  // group's `g` (its voters asked to vote it out), and requests for either shared one round.
  it("leave a sequencer of another incarnation alone: the group's current record, no vote asked", async () => {
    const calls: string[] = [];
    const config = (incarnation: number) => ({ group: "fo", incarnation, machine: "kv", replicas: 3, locations: [], outputs: "first", checkpointEvery: 100 });
    const env = {
      DIRECTORY: {
        idFromName: (name: string) => name,
        get: () => ({ call: async (method: string) => (calls.push(`directory.${method}`), method === "get" ? { state: "ready", config: config(2) } : null) }),
      },
      REPLICA: {
        idFromName: (name: string) => name,
        get: () => ({ call: async (_inc: number, method: string) => (calls.push(`replica.${method}`), { heard: true }) }),
      },
    };
    const record = await failover(env as never, "fo", config(1) as never, "unreachable");
    expect(record.config.incarnation).toBe(2);
    expect(calls.filter((c) => c.startsWith("replica."))).toEqual([]);
  });

  // A sequencer cut off with commands queued answers them 504 with cutOffMs, which begins a
  // cut-off round (a 6 s confirmation, then the sequencer asked again); then it stops answering.
  // The requests that cannot reach it joined that round: writes resumed after 11.7 s, not 5.2.
  it("a request that cannot reach the sequencer runs the PreVote on silence, not the cut-off round under way", async () => {
    const config = { group: "fo2", incarnation: 1, machine: "kv", replicas: 3, locations: [], outputs: "first", checkpointEvery: 100 };
    const moved: unknown[] = [];
    const env = {
      DIRECTORY: {
        idFromName: (name: string) => name,
        get: () => ({
          call: async (method: string, args: unknown[]) => {
            if (method === "get") return { state: "ready", config };
            if (method === "replaceSequencer") return (moved.push(args[2]), args[2]);
            return null;
          },
        }),
      },
      // Every voter lost the sequencer 7 s ago and has answered for 1 s: no shortcut in the cut-off round.
      REPLICA: { idFromName: (name: string) => name, get: () => ({ call: async () => ({ epoch: 1, heardAgoMs: 7_000, gone: true, upMs: 1_000 }) }) },
      SEQUENCER: {
        idFromName: (name: string) => name,
        get: () => ({
          quorumLostMs: async () => {
            throw new Error("injected: the sequencer no longer answers");
          },
          recover: async () => ({ ok: true, epoch: 2, eventKept: true }),
        }),
      },
    };
    const cutOff = failover(env as never, "fo2", config as never, "no quorum", 5_100).catch((err: unknown) => err);
    const startMs = Date.now();
    const record = await failover(env as never, "fo2", config as never, "unreachable");
    expect(Date.now() - startMs).toBeLessThan(3_000); // not the cut-off round's 6 s wait and more
    expect(record.config.sequencer).toMatchObject({ name: "fo2~s1" });
    expect(moved).toHaveLength(1);
    // The cut-off round, refused once its wait ends (the sequencer does not answer again), gives
    // its waiters the successor the directory names by then, not a refusal (a review).
    (env.DIRECTORY as any).get = () => ({ call: async (method: string) => (method === "get" ? { state: "ready", config: { ...config, sequencer: { name: "fo2~s1", location: null, no: 1 } } } : null) });
    expect(await cutOff).toMatchObject({ config: { sequencer: { name: "fo2~s1" } } });
  }, 30_000);
});
