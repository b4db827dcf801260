import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { SmrClient } from "../../shared/client/index.js";
import { lock } from "../../shared/machines/lock.js";
import { api, clientToken, createGroup, expectError, query, waitFor } from "./helpers.js";

const smr = new SmrClient({ baseUrl: "http://smr.test", token: clientToken, clientId: "lock-tester", fetch: (input, init) => SELF.fetch(input, init) });

describe("the lock machine over HTTP", () => {
  it("a lock group grants, refuses, renews and releases leases with increasing tokens, timed by entry timestamps", async () => {
    expect((await createGroup("locks1", { machine: "lock" })).machine).toBe("lock");
    const locks = smr.machine("locks1", lock);

    const first = await locks.submit({ op: "acquire", lock: "db", owner: "a", ttlMs: 60_000 });
    expect(first.output).toMatchObject({ ok: true, token: 1 });
    // expiresAt is the entry's timestamp plus the ttl.
    const entry = (await api("GET", `/v1/groups/locks1/log?from=${first.seq}&limit=1`)).body.entries[0];
    expect((first.output as any).expiresAt).toBe(new Date(Date.parse(entry.timestamp) + 60_000).toISOString());

    expect((await locks.submit({ op: "acquire", lock: "db", owner: "b", ttlMs: 1_000 })).output).toEqual({
      ok: false,
      holder: "a",
      expiresAt: (first.output as any).expiresAt,
    });
    const renewed = (await locks.submit({ op: "renew", lock: "db", owner: "a", token: 1, ttlMs: 120_000 })).output as any;
    expect(renewed).toMatchObject({ ok: true, token: 1 });
    expect(Date.parse(renewed.expiresAt)).toBeGreaterThan(Date.parse((first.output as any).expiresAt));
    expect((await locks.submit({ op: "renew", lock: "db", owner: "a", token: 2, ttlMs: 1_000 })).output).toEqual({ ok: false, reason: "not_holder" });
    expect((await locks.query({ op: "get", lock: "db" })).result).toEqual({ holder: "a", token: 1, expiresAt: renewed.expiresAt });

    expect((await locks.submit({ op: "release", lock: "db", owner: "a", token: 1 })).output).toEqual({ released: true });
    expect((await locks.query({ op: "get", lock: "db" }, "sequential")).result).toBeNull();
    expect((await locks.submit({ op: "acquire", lock: "db", owner: "b", ttlMs: 60_000 })).output).toMatchObject({ ok: true, token: 2 });

    // A 1 ms lease lapses by the timestamp of a later entry: another owner gets it, fenced by a higher token.
    expect((await locks.submit({ op: "acquire", lock: "job", owner: "a", ttlMs: 1 })).output).toMatchObject({ ok: true, token: 3 });
    let taken: any = null;
    await waitFor("the 1 ms lease to lapse", async () => {
      taken = (await locks.submit({ op: "acquire", lock: "job", owner: "b", ttlMs: 60_000 })).output;
      return taken.ok === true;
    }, 5);
    expect(taken.token).toBeGreaterThan(3);
    expect((await locks.submit({ op: "release", lock: "job", owner: "a", token: 3 })).output).toEqual({ released: false });

    const list = (await locks.query({ op: "list", limit: 1 })).result as any;
    expect(list.locks.map((l: any) => [l.lock, l.holder])).toEqual([["db", "b"]]);
    expect(list.next).toBe("db");

    // Every replica applies the same entries to the same state.
    const commitSeq = (await api("GET", "/v1/groups/locks1")).body.commitSeq;
    await waitFor("every replica to apply the log", async () => {
      const replicas = (await api("GET", "/v1/groups/locks1/replicas", undefined, clientToken)).body.replicas;
      return replicas.every((r: any) => r.appliedSeq === commitSeq) && new Set(replicas.map((r: any) => r.digest)).size === 1;
    }, 5);
  });

  it("validates lock commands against the lock machine's schema (400 naming the field)", async () => {
    await createGroup("locks2", { machine: "lock" });
    const bad = async (command: unknown) => api("POST", "/v1/groups/locks2/commands", { client: "c", request: 1, command }, clientToken);
    expectError(await bad({ op: "acquire", lock: "l", owner: "o", ttlMs: 0 }), 400, "bad_request", /command\.ttlMs/);
    expectError(await bad({ op: "acquire", lock: "l", owner: "o", ttlMs: 3_600_001 }), 400, "bad_request", /command\.ttlMs/);
    expectError(await bad({ op: "acquire", lock: "x".repeat(257), owner: "o", ttlMs: 10 }), 400, "bad_request", /command\.lock/);
    expectError(await bad({ op: "put", key: "k", value: 1 }), 400, "bad_request");
    expectError(await query("locks2", { op: "balances" }), 400, "bad_request");
    expectError(await api("PUT", "/v1/groups/locks3", { machine: "locks" }), 400, "bad_request", /machine/);
  });
});

// The typed helper refuses what the lock machine's schema would (a compile-time check).
export function typed(locks: ReturnType<typeof smr.machine<typeof lock>>) {
  // @ts-expect-error: ttlMs is required
  void locks.submit({ op: "acquire", lock: "l", owner: "o" });
  // @ts-expect-error: no such query
  void locks.query({ op: "balances" });
}
