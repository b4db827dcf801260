import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { api, clientToken, createGroup, expectError, waitFor } from "./helpers.js";

describe("the registry's list of names", () => {
  // A PUT during a DELETE finishes the delete and creates the next incarnation; the DELETE's own
  // finish, later, unlisted that new group: it existed, but neither GET /v1/groups nor the cron saw it.
  it("a late unlist of an older incarnation leaves the group re-created under the name listed", async () => {
    const registry = env.REGISTRY.get(env.REGISTRY.idFromName("registry"));
    await registry.add("relisted", 1);
    await registry.add("relisted", 2);
    expect(await registry.remove("relisted", 1)).toBe(false);
    expect((await registry.list("reliste", 10)).groups).toContain("relisted");
    expect(await registry.remove("relisted", 2)).toBe(true);
    expect((await registry.list("reliste", 10)).groups).not.toContain("relisted");
  });

  it("a group deleted and created again is listed once, and unlisted by its delete", async () => {
    await createGroup("again", { machine: "kv", replicas: 1 });
    expect((await api("DELETE", "/v1/groups/again")).status).toBe(204);
    await createGroup("again", { machine: "kv", replicas: 1 });
    expect((await api("GET", "/v1/groups")).body.groups.filter((g: string) => g === "again")).toEqual(["again"]);
    expect((await api("DELETE", "/v1/groups/again")).status).toBe(204);
    expect((await api("GET", "/v1/groups")).body.groups).not.toContain("again");
  });
});

describe("groups", () => {
  it("creates, gets, lists and deletes a group; creating again with the same config is 200", async () => {
    const created = await createGroup("alpha", { machine: "kv", replicas: 3, locations: ["wnam", "weur", "apac"], checkpointEvery: 10 });
    expect(created).toMatchObject({ group: "alpha", machine: "kv", epoch: 1, commitSeq: 0, outputs: "first", checkpointEvery: 10 });
    expect(created.replicas.map((r: any) => [r.id, r.location, r.status])).toEqual([
      ["r1", "wnam", "healthy"],
      ["r2", "weur", "healthy"],
      ["r3", "apac", "healthy"],
    ]);
    expect(created.warnings).toBeUndefined();
    const again = await api("PUT", "/v1/groups/alpha", { machine: "kv", replicas: 3, locations: ["wnam", "weur", "apac"], checkpointEvery: 10 });
    expect(again.status).toBe(200);
    expectError(await api("PUT", "/v1/groups/alpha", { machine: "bank" }), 409, "conflict", /^group alpha exists with another config: created with machine "kv" \(asked "bank"\), .*replicas added or removed since do not count\)$/);
    // Asking for no co-located replica is a different config too (it was answered 200).
    expectError(await api("PUT", "/v1/groups/alpha", { machine: "kv", replicas: 3, locations: ["wnam", "weur", "apac"], checkpointEvery: 10, colocate: false }), 409, "conflict", /created with colocate true \(asked false\);/);

    await createGroup("beta", { machine: "bank", replicas: 1 });
    expect((await api("GET", "/v1/groups")).body).toEqual({ groups: ["alpha", "beta"] });
    const got = await api("GET", "/v1/groups/beta", undefined, clientToken);
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({ group: "beta", machine: "bank", replicas: [{ id: "r1" }] });

    expect((await api("DELETE", "/v1/groups/beta")).status).toBe(204);
    expectError(await api("GET", "/v1/groups/beta"), 404, "not_found");
    expectError(await api("DELETE", "/v1/groups/beta"), 404, "not_found");
    expect((await api("GET", "/v1/groups")).body).toEqual({ groups: ["alpha"] });
  });

  it("a deleted group's state is destroyed: recreating it starts empty", async () => {
    await createGroup("gamma");
    const w = await api("POST", "/v1/groups/gamma/commands", { client: "c", request: 1, command: { op: "put", key: "k", value: 1 } }, clientToken);
    expect(w.status).toBe(200);
    expect((await api("DELETE", "/v1/groups/gamma")).status).toBe(204);
    await createGroup("gamma");
    const r = await api("POST", "/v1/groups/gamma/query", { query: { op: "get", key: "k" } }, clientToken);
    expect(r.body).toMatchObject({ result: { value: null }, seq: 0 });
    // The old (client, request) pair is gone with the group: it runs again, as seq 1.
    const again = await api("POST", "/v1/groups/gamma/commands", { client: "c", request: 1, command: { op: "put", key: "k", value: 2 } }, clientToken);
    expect(again.body).toMatchObject({ seq: 1, output: { previous: null } });
  });

  it("groups are isolated from each other", async () => {
    await createGroup("iso-a");
    await createGroup("iso-b");
    await api("POST", "/v1/groups/iso-a/commands", { client: "c", request: 1, command: { op: "put", key: "secret", value: "a" } }, clientToken);
    const fromB = await api("POST", "/v1/groups/iso-b/query", { query: { op: "list" } }, clientToken);
    expect(fromB.body.result).toEqual({ items: [] });
    // The same (client, request) in another group is a different command stream.
    const b = await api("POST", "/v1/groups/iso-b/commands", { client: "c", request: 1, command: { op: "put", key: "other", value: "b" } }, clientToken);
    expect(b.body).toMatchObject({ seq: 1, output: { previous: null } });
  });

  it("a creation that places a majority of its voters in one location answers with a warning, again on the same PUT (a probe: no write for the whole outage of that location)", async () => {
    const spec = { machine: "kv", replicas: 3, locations: ["weur", "weur", "wnam"] };
    const created = await api("PUT", "/v1/groups/lopsided", spec);
    expect(created.status).toBe(201);
    expect(created.body.warnings).toEqual([expect.stringMatching(/^2 of the 3 voting replicas are placed in weur, a majority: if weur stops answering, no write commits and no failover can help/)]);
    const again = await api("PUT", "/v1/groups/lopsided", spec);
    expect(again.status).toBe(200);
    expect(again.body.warnings).toEqual(created.body.warnings);
    // Only the PUT says it: a status is not a creation.
    expect((await api("GET", "/v1/groups/lopsided", undefined, clientToken)).body.warnings).toBeUndefined();
  });

  it("a repeated creation's warnings are of the membership in force, not of the PUT's body: none once the location no longer holds enough voters (a review)", async () => {
    const spec = { machine: "kv", replicas: 3, locations: ["weur", "weur", "wnam"] };
    const created = await api("PUT", "/v1/groups/relocated", spec);
    expect(created.status).toBe(201);
    expect(created.body.warnings).toHaveLength(1);
    const removed = await api("DELETE", "/v1/groups/relocated/replicas/r2");
    expect(removed.status, JSON.stringify(removed.body)).toBe(202);
    await waitFor("r2 gone", async () => !(await api("GET", "/v1/groups/relocated")).body.replicas.some((r: { id: string }) => r.id === "r2"), 100);
    // Two voters left, one in weur, one in wnam: nothing to warn of (fewer than three tolerate no loss).
    const again = await api("PUT", "/v1/groups/relocated", spec);
    expect(again.status).toBe(200);
    expect(again.body.warnings).toBeUndefined();
  });

  it("validates the group config and names the field", async () => {
    expectError(await api("PUT", "/v1/groups/bad", { machine: "nope" }), 400, "bad_request", /machine/);
    expectError(await api("PUT", "/v1/groups/bad", { machine: "kv", replicas: 8 }), 400, "bad_request", /replicas/);
    expectError(await api("PUT", "/v1/groups/bad", { machine: "kv", replicas: 2, locations: ["wnam"] }), 400, "bad_request", /locations/);
    expectError(await api("PUT", "/v1/groups/bad", { machine: "kv", outputs: "all" }), 400, "bad_request", /outputs/);
    expectError(await api("PUT", "/v1/groups/bad", { machine: "kv", extra: 1 }), 400, "bad_request");
    expectError(await api("PUT", "/v1/groups/Bad_Name", { machine: "kv" }), 400, "bad_request", /group/);
    expectError(await api("PUT", "/v1/groups/bad", "{not json"), 400, "bad_request", /malformed JSON/);
    expect((await api("GET", "/v1/groups")).body.groups).not.toContain("bad");
  });
});

describe("a PUT across versions of the directory object", () => {
  it("judges a directory's conflict again by the router's own comparison: an older directory compared fields added since, and the same group's PUT was a 409", async () => {
    await createGroup("across");
    const stub = env.DIRECTORY.get(env.DIRECTORY.idFromName("across")) as unknown as DurableObjectStub;
    // What a directory of an older build answers: it keeps storageQuotaMiB in its comparison.
    await runInDurableObject(stub, (inst: unknown) => {
      const proto = Object.getPrototypeOf((inst as { core: object }).core);
      const real = proto.create;
      proto.create = function (this: unknown, ...args: unknown[]) {
        const r = real.apply(this, args);
        return r.kind === "exists" ? { kind: "conflict", record: r.record } : r;
      };
      (globalThis as any).restoreCreate = () => (proto.create = real);
    });
    try {
      expect((await api("PUT", "/v1/groups/across", { machine: "kv" })).status).toBe(200);
      expectError(await api("PUT", "/v1/groups/across", { machine: "bank" }), 409, "conflict", /created with machine "kv" \(asked "bank"\)/);
    } finally {
      await runInDurableObject(stub, (_inst: unknown) => void (globalThis as any).restoreCreate());
    }
  });
});
