// Creating a group while some of its replicas cannot be reached (a location outage): a quorum of
// replicas is enough, as for a write; without one the PUT is a 503 to retry. A review found the PUT
// answered 500 with one replica of three unreachable, and left the group "creating", so every later
// request to it was a 500 too until that replica came back; a slow replica hung the PUT.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { auditAll } from "../../workers/auditor.js";
import { directoryStub, registryStub, type Env } from "../../workers/env.js";
import { setFault } from "../../workers/faults.js";
import { api, clientToken, command, expectError, query, replicaStatuses, waitFor } from "./helpers.js";

const put = (group: string) => api("PUT", `/v1/groups/${group}`, { machine: "kv", replicas: 3 });

describe("creating a group while replicas cannot be reached", () => {
  it("one of three unreachable: created, takes writes, and the replica is brought in once it answers", async () => {
    setFault("cf-one", "r3", "unreachable", 0);
    try {
      const created = await put("cf-one");
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      expect((await command("cf-one", { op: "put", key: "a", value: 1 })).status).toBe(200);
      expect(["suspect", "down"]).toContain((await replicaStatuses("cf-one")).r3.status);
    } finally {
      setFault("cf-one", "r3", "none", 0);
    }
    expect((await command("cf-one", { op: "put", key: "b", value: 2 })).status).toBe(200);
    await waitFor("r3 made and caught up", async () => {
      const r3 = (await replicaStatuses("cf-one")).r3;
      return r3.status === "healthy" && r3.appliedSeq >= 2;
    }, 200);
    expect((await api("POST", "/v1/groups/cf-one/audit")).body.verdict).toBe("consistent");
  });

  it("two of three unreachable: a 503 to retry, the group's routes 503 too, and a retry once they answer creates it", async () => {
    setFault("cf-two", "r2", "unreachable", 0);
    setFault("cf-two", "r3", "unreachable", 0);
    try {
      expectError(await put("cf-two"), 503, "unavailable", /1 of 3 replicas/);
      expectError(await command("cf-two", { op: "put", key: "a", value: 1 }), 503, "unavailable");
      expectError(await api("GET", "/v1/groups/cf-two", undefined, clientToken), 503, "unavailable");
    } finally {
      setFault("cf-two", "r2", "none", 0);
      setFault("cf-two", "r3", "none", 0);
    }
    // The first PUT made the group's record: this one finishes that creation, a 201 (the group was
    // not there before it; a 200 had the client's retry say "nothing changed": a review). Then 200.
    expect((await put("cf-two")).status).toBe(201);
    expect((await put("cf-two")).status).toBe(200);
    expect((await command("cf-two", { op: "put", key: "a", value: 1 })).status).toBe(200);
    expect((await query("cf-two", { op: "get", key: "a" })).body.result).toEqual({ value: 1 });
  });

  it("a replica that does not answer (slow) does not hold the PUT up", async () => {
    setFault("cf-slow", "r2", "slow", 120_000);
    try {
      const created = await put("cf-slow");
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      expect((await command("cf-slow", { op: "put", key: "a", value: 1 })).status).toBe(200);
    } finally {
      setFault("cf-slow", "r2", "none", 0);
    }
  });

  it("a creation that stops midway is listed, and the cron finishes it with no request naming the group (unlisted, it waited for one: a probe)", async () => {
    const workerEnv = env as unknown as Env;
    setFault("cf-cron", "r2", "unreachable", 0);
    setFault("cf-cron", "r3", "unreachable", 0);
    try {
      expectError(await put("cf-cron"), 503, "unavailable", /the cron finishes it/);
    } finally {
      setFault("cf-cron", "r2", "none", 0);
      setFault("cf-cron", "r3", "none", 0);
    }
    expect((await api("GET", "/v1/groups")).body.groups).toContain("cf-cron");
    expect((await directoryStub(workerEnv, "cf-cron").get())?.state).toBe("creating");
    await auditAll(workerEnv);
    expect((await directoryStub(workerEnv, "cf-cron").get())?.state).toBe("ready");
    expect((await command("cf-cron", { op: "put", key: "a", value: 1 })).status).toBe(200);
  });

  it("the cron unlists a name with no group behind it (a creation killed after its listing, deleted meanwhile), not one that exists", async () => {
    const workerEnv = env as unknown as Env;
    const registry = registryStub(workerEnv);
    await registry.add("cf-ghost", 3);
    expect((await api("GET", "/v1/groups")).body.groups).toContain("cf-ghost");
    await auditAll(workerEnv);
    expect(await registry.incarnationOf("cf-ghost")).toBeNull();
    expect((await api("GET", "/v1/groups")).body.groups).not.toContain("cf-ghost");
    // A group that exists is left listed.
    expect((await put("cf-real")).status).toBe(201);
    await auditAll(workerEnv);
    expect((await api("GET", "/v1/groups")).body.groups).toContain("cf-real");
  });
});
