// Tenant isolation: group tokens (API.md, "Group tokens").
import { SELF, env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { directoryClient } from "../../workers/directory.js";
import { TokenLookups, addressBlock } from "../../workers/auth.js";
import { routeCacheMs, unknownTokenLookupsAnyGroupBurst, unknownTokenLookupsAnyGroupPerSec, unknownTokenLookupsBurst } from "../../shared/limits.js";
import { api, clientToken, createGroup, expectError } from "./helpers.js";

const put = (key: string, value: unknown) => ({ op: "put", key, value });

describe("group tokens", () => {
  it("are created, listed (no secrets) and revoked by the admin; scoped to one group, read or write; pairs namespaced per token", async () => {
    await createGroup("tenant-a");
    await createGroup("tenant-b");
    const w = await api("POST", "/v1/groups/tenant-a/tokens", { scope: "write", name: "app" });
    expect(w.status).toBe(201);
    expect(w.body).toMatchObject({ scope: "write", name: "app" });
    expect(w.body.token).toMatch(/^g\.tenant-a\.[0-9a-f]{8}\.[0-9a-f]{32}$/);
    const r = (await api("POST", "/v1/groups/tenant-a/tokens", { scope: "read" })).body;
    expectError(await api("POST", "/v1/groups/tenant-a/tokens", { scope: "admin" }), 400, "bad_request", /scope/);
    expectError(await api("POST", "/v1/groups/tenant-a/tokens", { scope: "read" }, clientToken), 403, "forbidden");

    const listed = (await api("GET", "/v1/groups/tenant-a/tokens")).body.tokens;
    expect(listed.map((t: any) => t.id).sort()).toEqual([w.body.id, r.id].sort());
    expect(JSON.stringify(listed)).not.toContain(w.body.token.split(".")[3]);
    expect(listed.every((t: any) => t.hash === undefined && t.token === undefined)).toBe(true);
    // Only the hash is stored.
    const stored = await directoryClient(env.DIRECTORY.get(env.DIRECTORY.idFromName("tenant-a")) as never).token(w.body.id);
    expect(stored!.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(stored)).not.toContain(w.body.token.split(".")[3]);

    // A write token writes and reads its own group.
    const cmd = { client: "c", request: 1, command: put("k", "from-token") };
    const mine = await api("POST", "/v1/groups/tenant-a/commands", cmd, w.body.token);
    expect(mine.status).toBe(200);
    expect((await api("POST", "/v1/groups/tenant-a/query", { query: { op: "get", key: "k" } }, w.body.token)).body.result).toEqual({ value: "from-token" });
    expect((await api("GET", "/v1/groups/tenant-a", undefined, w.body.token)).status).toBe(200);
    // The same (client, request) from another token is another command: executed, not answered with mine.
    const other = await api("POST", "/v1/groups/tenant-a/commands", { ...cmd, command: put("k", "from-client") }, clientToken);
    expect(other.status).toBe(200);
    expect(other.body.seq).not.toBe(mine.body.seq);
    const again = await api("POST", "/v1/groups/tenant-a/commands", cmd, w.body.token);
    expect(again.body).toMatchObject({ seq: mine.body.seq, output: mine.body.output });
    // The pair reused with another command is a 409 that names the client as the token sent it,
    // not as it is recorded (`<token id>~c`), in a single command and in a batch.
    const reused = await api("POST", "/v1/groups/tenant-a/commands", { ...cmd, command: put("k", "another") }, w.body.token);
    expectError(reused, 409, "conflict", /client c\b/);
    expect(reused.body.error.message).not.toContain(w.body.id);
    const inBatch = await api("POST", "/v1/groups/tenant-a/commands", { client: "c", commands: [{ request: 1, command: put("k", "another") }] }, w.body.token);
    expect(inBatch.body.results[0].error).toMatchObject({ code: "conflict", message: expect.stringMatching(/client c\b/) });
    expect(inBatch.body.results[0].error.message).not.toContain(w.body.id);
    // The name the token's pair is recorded under is not a client id another token may send: it
    // would be the same pair, answered with the token's output.
    for (const body of [{ ...cmd, client: `${w.body.id}~c` }, { client: `${w.body.id}~c`, commands: [{ request: 1, command: cmd.command }] }]) {
      expectError(await api("POST", "/v1/groups/tenant-a/commands", body, clientToken), 400, "bad_request", /client: .*reserved for group tokens/);
    }
    expect((await api("POST", "/v1/groups/tenant-a/commands", { ...cmd, client: "0123abcd~c", request: 5 }, w.body.token)).status).toBe(200);
    expect((await api("POST", "/v1/groups/tenant-a/commands", { ...cmd, client: "c~1", request: 5 }, clientToken)).status).toBe(200);

    // A read token reads but does not write; neither works on another group or on admin routes.
    expect((await api("POST", "/v1/groups/tenant-a/query", { query: { op: "get", key: "k" } }, r.token)).status).toBe(200);
    expect((await api("GET", "/v1/groups/tenant-a/events", undefined, r.token)).status).toBe(200);
    expectError(await api("POST", "/v1/groups/tenant-a/commands", { client: "c", request: 2, command: put("k", 1) }, r.token), 403, "forbidden");
    expectError(await api("POST", "/v1/groups/tenant-b/query", { query: { op: "get", key: "k" } }, w.body.token), 403, "forbidden");
    expectError(await api("POST", "/v1/groups/tenant-b/commands", cmd, w.body.token), 403, "forbidden");
    expectError(await api("GET", "/v1/groups", undefined, w.body.token), 403, "forbidden");
    expectError(await api("GET", "/v1/groups/tenant-a/log", undefined, w.body.token), 403, "forbidden");
    expectError(await api("POST", "/v1/groups/tenant-a/audit", undefined, w.body.token), 403, "forbidden");
    // A made-up token of the right shape, or a wrong secret: 401.
    const forged = w.body.token.slice(0, -4) + "0000";
    expectError(await api("GET", "/v1/groups/tenant-a", undefined, forged), 401, "unauthorized");

    // Revoked: 401 at once where it was revoked (other routers: within the route cache time).
    expect((await api("DELETE", `/v1/groups/tenant-a/tokens/${w.body.id}`)).status).toBe(204);
    expectError(await api("DELETE", `/v1/groups/tenant-a/tokens/${w.body.id}`), 404, "not_found");
    expectError(await api("GET", "/v1/groups/tenant-a", undefined, w.body.token), 401, "unauthorized");
    await new Promise((res) => setTimeout(res, routeCacheMs + 100));
    expectError(await api("GET", "/v1/groups/tenant-a", undefined, w.body.token), 401, "unauthorized");
    expect((await api("GET", "/v1/groups/tenant-a", undefined, r.token)).status).toBe(200);

    // A deleted group's tokens die with it: a token still in this router's cache writes nothing
    // to the group of the same name created next.
    const w2 = (await api("POST", "/v1/groups/tenant-a/tokens", { scope: "write" })).body;
    expect((await api("POST", "/v1/groups/tenant-a/commands", { client: "c", request: 9, command: put("k", 1) }, w2.token)).status).toBe(200);
    expect((await api("DELETE", "/v1/groups/tenant-a")).status).toBe(204);
    await createGroup("tenant-a");
    expectError(await api("POST", "/v1/groups/tenant-a/commands", { client: "c", request: 10, command: put("old", 1) }, w2.token), 401, "unauthorized");
    expectError(await api("GET", "/v1/groups/tenant-a", undefined, r.token), 401, "unauthorized");
    expect((await api("POST", "/v1/groups/tenant-a/query", { query: { op: "get", key: "old" } })).body.result).toEqual({ value: null });
  });
});

describe("group listing is paged", () => {
  it("GET /v1/groups?after=&limit= pages through the names in order", async () => {
    for (const g of ["page-a", "page-b", "page-c"]) await createGroup(g);
    const first = (await api("GET", "/v1/groups?limit=2")).body;
    expect(first.groups.length).toBe(2);
    expect(first.next).toBe(first.groups[1]);
    const all: string[] = [];
    let after: string | undefined;
    for (let i = 0; i < 20; i++) {
      const p = (await api("GET", `/v1/groups?limit=1${after ? `&after=${after}` : ""}`)).body;
      all.push(...p.groups);
      if (!p.next) break;
      after = p.next;
    }
    expect(all).toEqual((await api("GET", "/v1/groups")).body.groups);
    expect(all).toEqual(expect.arrayContaining(["page-a", "page-b", "page-c"]));
    expectError(await api("GET", "/v1/groups?limit=1001"), 400, "bad_request", /limit/);
  });
});

describe("a token that only looks like a group token", () => {
  it("is refused without creating storage: a lookup in a group's directory that was never written writes nothing", async () => {
    for (let i = 0; i < 3; i++) {
      const forged = `g.forged-${i}.00000000.${"0".repeat(32)}`;
      expectError(await api("GET", `/v1/groups/forged-${i}`, undefined, forged), 401, "unauthorized");
    }
    const stub = env.DIRECTORY.get(env.DIRECTORY.idFromName("forged-1"));
    const tables = await runInDurableObject(stub, async (_obj, state) => state.storage.sql.exec("SELECT count(*) AS n FROM sqlite_master").one().n);
    expect(tables).toBe(0);
    // The group still works once made: its directory is written then.
    await createGroup("forged-1");
    expect((await api("GET", "/v1/groups/forged-1")).status).toBe(200);
  });

  it("made-up ids of a group's tokens are looked up at most a bucket's worth per caller address and group, then 429", async () => {
    await createGroup("victim");
    await createGroup("bystander");
    const minted = await api("POST", "/v1/groups/victim/tokens", { scope: "read" });
    const from = async (address: string, token: string, group = "victim") => {
      const res = await SELF.fetch(`http://smr.test/v1/groups/${group}`, { headers: { authorization: `Bearer ${token}`, "cf-connecting-ip": address } });
      return { status: res.status, body: await res.json(), headers: res.headers } as any;
    };
    // The real token, looked up once before (and found) from that address.
    expect((await from("192.0.2.7", minted.body.token)).status).toBe(200);
    const forged = (i: number, group = "victim") => `g.${group}.${i.toString(16).padStart(8, "0")}.${"0".repeat(32)}`;
    // All at once: each is charged before its lookup, so a wave cannot pass one check together.
    const wave = await Promise.all(Array.from({ length: 2 * unknownTokenLookupsBurst }, (_, i) => from("192.0.2.7", forged(i))));
    const statuses = wave.map((r) => r.status);
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(unknownTokenLookupsBurst + 10);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(unknownTokenLookupsBurst - 10);
    expect(statuses.every((s) => s === 401 || s === 429)).toBe(true);
    const limited = wave.find((r) => r.status === 429);
    expectError(limited, 429, "rate_limited", /unknown group tokens from this address/);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    // Not held up: the real token once its cached lookup is stale (found here before), the same
    // address on another group, another address, the admin, tokens of no group's form.
    await new Promise((resolve) => setTimeout(resolve, routeCacheMs + 100));
    expect((await from("192.0.2.7", minted.body.token)).status).toBe(200);
    expectError(await from("192.0.2.7", forged(1, "bystander"), "bystander"), 401, "unauthorized");
    expectError(await from("198.51.100.1", forged(9_999)), 401, "unauthorized");
    expect((await from("192.0.2.7", "test-admin-token")).status).toBe(200);
    expectError(await from("203.0.113.9", "nonsense"), 401, "unauthorized");
    // An IPv6 address is limited with its /64.
    expect(addressBlock("2001:db8:1:2:aaaa::1")).toBe(addressBlock("2001:db8:1:2:ffff:0:0:9"));
    expect(addressBlock("2001:db8::1")).toBe("2001:db8:0:0::/64");
    expect(addressBlock("192.0.2.7")).toBe("192.0.2.7");
  });

  it("made-up tokens of ever new group names are limited per caller address too: each cost a directory object's call, without a 429 (a probe)", async () => {
    const from = async (address: string, group: string) => {
      const res = await SELF.fetch(`http://smr.test/v1/groups/${group}`, { headers: { authorization: `Bearer g.${group}.00000001.${"0".repeat(32)}`, "cf-connecting-ip": address } });
      return { status: res.status, body: await res.json(), headers: res.headers } as any;
    };
    // Waves until the limit answers: on a loaded machine the first 600 took 7 s, and the bucket's
    // refill (40 a second) let every one through (a flaky run). Without a limit no wave ever ends so.
    const cycled = unknownTokenLookupsAnyGroupBurst + unknownTokenLookupsBurst;
    const startedMs = Date.now();
    const wave: any[] = [];
    while (wave.length < 4 * cycled && !wave.some((r) => r.status === 429)) {
      const at = wave.length;
      wave.push(...(await Promise.all(Array.from({ length: 100 }, (_, i) => from("192.0.2.99", `cycled-${at + i}`)))));
    }
    const refilled = ((Date.now() - startedMs) / 1000) * unknownTokenLookupsAnyGroupPerSec;
    const statuses = wave.map((r) => r.status);
    expect(statuses.every((s) => s === 401 || s === 429)).toBe(true);
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(unknownTokenLookupsAnyGroupBurst + refilled + 10);
    expectError(wave.find((r) => r.status === 429), 429, "rate_limited", /unknown group tokens from this address/);
    // Another address is not held up (a name not tried yet: a tried one's miss is cached, and never reaches the limiter: a review).
    expectError(await from("198.51.100.2", "other-0"), 401, "unauthorized");
  });

  it("does not push real tokens out of a router's cache: misses are bounded apart from found tokens", () => {
    const record = { id: "0badcafe", scope: "read" as const, name: null, hash: "0".repeat(64), created: "2026-01-01T00:00:00Z" };
    const lookups = new TokenLookups(2, 3);
    lookups.set("real/0badcafe", record, 0);
    for (let i = 0; i < 50; i++) lookups.set(`forged-${i}/00000000`, null, 0);
    expect(lookups.get("real/0badcafe", 1)).toEqual(record);
    // The misses keep only the newest three; an older one is unknown again (looked up anew).
    expect(lookups.get("forged-49/00000000", 1)).toBeNull();
    expect(lookups.get("forged-0/00000000", 1)).toBeUndefined();
    expect(lookups.keys()).toHaveLength(4);
    // A found token and a miss both expire after routeCacheMs; a key found later is no longer a miss.
    expect(lookups.get("real/0badcafe", routeCacheMs)).toBeUndefined();
    lookups.set("forged-49/00000000", record, 0);
    expect(lookups.get("forged-49/00000000", 1)).toEqual(record);
    expect(lookups.keys()).toHaveLength(4);
  });
});
