// docs/MACHINES.md: a machine's query "must only read". A query that wrote changed the rows of the
// one replica that served it, with no entry in the log: the next audit quarantined that replica,
// and a probe's replicas that each served one such read agreed on rows no replay of the log gives
// (a restart took them as their state). The replica hands a query a view that refuses writes.
import { describe, expect, it } from "vitest";
import { kv } from "../../shared/machines/kv.js";
import { MemoryReplicaStorage } from "../../shared/protocol/memory.js";
import { ReplicaCore, newReplicaMeta } from "../../shared/protocol/replica.js";
import { ReplicaDriver } from "../../shared/protocol/replica-driver.js";
import { realClock } from "../support/direct.js";

describe("a machine's query that writes", () => {
  it("is refused by the replica (answered query_wrote: a 500, not a replica that failed), and leaves its rows and digest as they were", async () => {
    const store = new MemoryReplicaStorage();
    const meta = newReplicaMeta("g", "r1", "kv", 100);
    store.saveMeta(meta);
    const writer = { ...kv, query: (state: any, q: any) => (q.op === "get" ? (state.put(q.key, "written by a read"), null) : kv.query(state, q)) };
    const core = new ReplicaCore(store, meta, writer, { entries: 100, slack: 10 });
    const driver = new ReplicaDriver(core, realClock);
    const before = core.position();
    const digest = core.beginExport("before")!.digest;
    // Answered (a 500 at the router), not thrown: a thrown query is a replica that failed, and the router asked the next (a 503).
    expect(await driver.query({ op: "get", key: "k" }, 0, 0)).toEqual({ kind: "query_wrote", replica: "r1", message: expect.stringMatching(/only read/) });
    const after = await driver.query({ op: "list" }, 0, 0);
    expect(after).toMatchObject({ kind: "ok", result: { items: [] } });
    expect(core.position()).toEqual(before);
    expect(core.beginExport("after")!.digest).toBe(digest);
  });
});
