// Every replica left halfway through a restore's install (a server killed mid-restore, a probe:
// the group answered 503 for good until a DELETE): with no replica to copy from, the sequencer,
// whose log holds every entry from the first, rebuilds them empty and the group takes writes.
import { describe, expect, it } from "vitest";
import { api, clientToken, command, createGroup, replicaObject } from "./helpers.js";

describe("a group whose replicas were all cut off halfway through a restore's install", () => {
  it("is rebuilt from the empty state and its log, and takes writes again", async () => {
    await createGroup("rcut", { machine: "kv", replicas: 3 });
    const inc = (await api("GET", "/v1/groups/rcut", undefined, clientToken)).body.incarnation ?? 1;
    const info = { seq: 1, digest: "ab".repeat(32), logHash: "cd".repeat(32), entryEpoch: 1, timestamp: null, epoch: 1 };
    for (const id of ["r1", "r2", "r3"]) {
      const stub = replicaObject("rcut", id) as any;
      expect(await stub.call(inc, "beginInstall", [info, `restore:1:1:0:${id}`, 1])).toBe(true);
      expect(await stub.call(inc, "installPage", [`restore:1:1:0:${id}`, [["m/a", "1"]]])).toBe(true);
    }
    expect((await api("POST", "/v1/groups/rcut/audit")).status).toBe(200);
    let status = 0;
    for (let i = 0; i < 40 && status !== 200; i++) {
      status = (await command("rcut", { op: "put", key: "k", value: 1 }, "w", 1)).status;
      if (status !== 200) await new Promise((r) => setTimeout(r, 250));
    }
    expect(status).toBe(200);
    const replicas = (await api("GET", "/v1/groups/rcut/replicas", undefined, clientToken)).body.replicas;
    expect(replicas.filter((r: any) => r.status === "healthy").length).toBeGreaterThanOrEqual(2);
    const events = (await api("GET", "/v1/groups/rcut/events", undefined, clientToken)).body.events;
    expect(events.some((e: any) => e.kind === "repair" && /rebuilt empty/.test(e.message))).toBe(true);
    // Nothing of the half-installed rows is left.
    expect((await api("POST", "/v1/groups/rcut/query", { query: { op: "list" } }, clientToken)).body.result.items).toEqual([["k", 1]]);
  }, 30_000);
});
