// A watch from a position the replica's log no longer holds: the 410 says where its log starts now,
// as the log route's does (a watch probe: it named only the position asked for).
import { describe, expect, it } from "vitest";
import { compactionSlackEntries, logRetentionEntries } from "../../shared/limits.js";
import { api, clientToken, createGroup, expectError } from "./helpers.js";

describe("a watch from before the retained log", () => {
  it("is a 410 compacted that names where the replica's log starts", async () => {
    await createGroup("watch-compacted", { machine: "kv" });
    const total = logRetentionEntries + compactionSlackEntries + 300;
    for (let request = 1; request <= total; ) {
      const commands = Array.from({ length: Math.min(256, total - request + 1) }, (_, i) => ({ request: request + i, command: { op: "put", key: `k${(request + i) % 50}`, value: request + i } }));
      const r = await api("POST", "/v1/groups/watch-compacted/commands", { client: "w", commands }, clientToken);
      expect(r.status).toBe(200);
      request += commands.length;
    }
    const watch = await api("GET", "/v1/groups/watch-compacted/watch?from=1", undefined, clientToken);
    expectError(watch, 410, "compacted", /^entries after 1 were compacted at r\d \(its log holds the entries after (\d+)\); read the state/);
    const base = Number(/entries after (\d+)\)/.exec(watch.body.error.message)![1]);
    expect(base).toBeGreaterThan(1);
    expect(base).toBeLessThanOrEqual(total - logRetentionEntries);
  }, 120_000);
});
