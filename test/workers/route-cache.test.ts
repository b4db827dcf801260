import { afterEach, describe, expect, it, vi } from "vitest";
import { routeCacheGroupsMax } from "../../shared/limits.js";
import { lookup } from "../../workers/groups.js";

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
