// Fault injection against the real server (ALLOW_FAULTS=1): an unreachable registry does not stop
// an existing group; a read near an unreachable replica falls back to the next nearest.
import { describe, expect, it } from "vitest";
import { routeCacheMs, slowReplicaAvoidMs } from "../../shared/limits.js";
import { serverFixture } from "../support/fixture.js";

const server = serverFixture("faults", { faults: true });
const { admin, client, call } = server;

const fault = (group: string, target: string, kind: string, ms?: number) => call("POST", `/v1/groups/${group}/faults`, admin, { target, fault: kind, ...(ms ? { ms } : {}) });

describe("fault injection", () => {
  it("an unreachable registry stops no existing group (after the route caches expire); listing answers 503, not 500", async () => {
    expect((await call("PUT", "/v1/groups/no-registry", admin, { machine: "kv" })).status).toBe(201);
    expect((await call("PUT", "/v1/groups/doomed", admin, { machine: "kv" })).status).toBe(201);
    const f = await fault("no-registry", "registry", "unreachable");
    expect(f.status).toBe(200);
    expect(f.body.faults).toEqual([{ target: "registry", fault: "unreachable", ms: 0 }]);
    await new Promise((r) => setTimeout(r, routeCacheMs + 200));
    for (let i = 1; i <= 5; i++) {
      const w = await call("POST", "/v1/groups/no-registry/commands", client, { client: "c", request: i, command: { op: "incr", key: "n", by: 1 } });
      expect(w.status, JSON.stringify(w.body)).toBe(200);
    }
    for (const consistency of ["linearizable", "sequential", "stale"]) {
      expect((await call("POST", "/v1/groups/no-registry/query", client, { query: { op: "get", key: "n" }, consistency })).status).toBe(200);
    }
    expect((await call("GET", "/v1/groups/no-registry", client)).status).toBe(200);
    expect((await call("POST", "/v1/groups/no-registry/audit", admin)).body.verdict).toBe("consistent");
    const list = await call("GET", "/v1/groups", admin);
    expect(list.status).toBe(503);
    expect(list.body.error.code).toBe("unavailable");
    // A delete that cannot unlist the name is a 503 and stays to be finished (it was a 500 that
    // left the name listed for ever).
    const del = await call("DELETE", "/v1/groups/doomed", admin);
    expect(del.status, JSON.stringify(del.body)).toBe(503);
    expect(del.body.error.message).toMatch(/registry cannot unlist group doomed/);
    expect((await fault("no-registry", "registry", "none")).body.faults).toEqual([]);
    expect((await call("GET", "/v1/groups", admin)).body.groups).toContain("no-registry");
    expect((await call("DELETE", "/v1/groups/doomed", admin)).status).toBe(204);
    expect((await call("GET", "/v1/groups", admin)).body.groups).not.toContain("doomed");
    expect((await call("GET", "/v1/groups/doomed", admin)).status).toBe(404);
  });

  it("x-smr-near picks the replica in that location, and falls back to the next nearest while it is unreachable", async () => {
    expect((await call("PUT", "/v1/groups/near-fault", admin, { machine: "kv", replicas: 3, locations: ["wnam", "weur", "apac"] })).status).toBe(201);
    expect((await call("POST", "/v1/groups/near-fault/commands", client, { client: "c", request: 1, command: { op: "put", key: "k", value: 1 } })).status).toBe(200);
    const read = () => call("POST", "/v1/groups/near-fault/query", client, { query: { op: "get", key: "k" }, consistency: "stale" }, { "x-smr-near": "weur" });
    expect((await read()).body.replica).toBe("r2");
    await fault("near-fault", "r2", "unreachable");
    const r = await read();
    expect(r.status).toBe(200);
    expect(r.body.replica).toBe("r1");
    // Writes go on with r2 cut off (two of three voters).
    expect((await call("POST", "/v1/groups/near-fault/commands", client, { client: "c", request: 2, command: { op: "put", key: "k", value: 2 } })).status).toBe(200);
    await fault("near-fault", "r2", "none");
    // r2 failed this router's read while cut off: it is asked last for slowReplicaAvoidMs, then
    // first again (workers/slow-replicas.ts).
    expect((await read()).body.replica).toBe("r1");
    await new Promise((resolve) => setTimeout(resolve, slowReplicaAvoidMs));
    expect((await read()).body.replica).toBe("r2");
  }, 30_000);

  it("a slow replica still answers, later", async () => {
    expect((await call("PUT", "/v1/groups/slow-one", admin, { machine: "kv", replicas: 1 })).status).toBe(201);
    await fault("slow-one", "r1", "slow", 300);
    const started = Date.now();
    const w = await call("POST", "/v1/groups/slow-one/commands", client, { client: "c", request: 1, command: { op: "put", key: "k", value: 1 } });
    expect(w.status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    await fault("slow-one", "r1", "none");
  });
});
