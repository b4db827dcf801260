import { describe, expect, it } from "vitest";
import { bank } from "../../shared/machines/bank.js";
import { validateCommand } from "../../shared/api/commands.js";
import { type KvCommand, kv } from "../../shared/machines/kv.js";
import { MemoryReplicaStorage, MemoryRowStore } from "../../shared/protocol/memory.js";
import { DigestedState, applyEntry, prefetchFor, recomputeDigest, sessionKey } from "../../shared/protocol/state.js";
import { type RowStore, ResultTooLarge } from "../../shared/machines/types.js";
import { accountCharsMax, queryResultBytesMax } from "../../shared/limits.js";
import { serialize } from "node:v8";
import { ReplicaCore, newReplicaMeta } from "../../shared/protocol/replica.js";
import { ReplicaDriver } from "../../shared/protocol/replica-driver.js";
import { realClock } from "../support/direct.js";
import { materialized } from "../../shared/machines/output.js";
import { entryHash } from "../../shared/protocol/entry.js";
import { zeroHash } from "../../shared/protocol/hash.js";
import type { Entry } from "../../shared/api/types.js";

/** A row store that reports each call (its method and the keys it names) and passes it on. */
function spied(rows: MemoryRowStore, on: (method: keyof RowStore, keys: string[]) => void): RowStore {
  return {
    get: (k) => (on("get", [k]), rows.get(k)),
    put: (k, v) => (on("put", [k]), rows.put(k, v)),
    delete: (k) => (on("delete", [k]), rows.delete(k)),
    scan: (p, a, l, b) => (on("scan", [p]), rows.scan(p, a, l, b)),
    lastKey: (p) => (on("lastKey", [p]), rows.lastKey(p)),
    getMany: (ks) => (on("getMany", ks), rows.getMany(ks)),
    writeMany: (p, d) => (on("writeMany", [...p.map(([k]) => k), ...d]), rows.writeMany(p, d)),
  };
}

/** kv's output as a replica answers it (its stored values parsed: shared/machines/output.ts). */
const applyKv = (...args: Parameters<typeof kv.apply>) => materialized(kv.apply(...args));

function fresh() {
  const rows = new MemoryRowStore();
  return { rows, state: new DigestedState(rows) };
}

describe("kv machine", () => {
  it("put, get, delete, cas and incr give the documented outputs", () => {
    const { state } = fresh();
    const v = state.machineView();
    expect(applyKv(v, { op: "put", key: "a", value: { x: 1 } }, { seq: 1, timestamp: "" })).toEqual({ previous: null });
    expect(applyKv(v, { op: "put", key: "a", value: 2 }, { seq: 2, timestamp: "" })).toEqual({ previous: { x: 1 } });
    expect(applyKv(v, { op: "get", key: "a" }, { seq: 3, timestamp: "" })).toEqual({ value: 2 });
    expect(applyKv(v, { op: "cas", key: "a", expected: 3, value: 4 }, { seq: 4, timestamp: "" })).toEqual({ ok: false, value: 2 });
    expect(applyKv(v, { op: "cas", key: "a", expected: 2, value: 4 }, { seq: 5, timestamp: "" })).toEqual({ ok: true, value: 4 });
    expect(applyKv(v, { op: "cas", key: "new", expected: null, value: 1 }, { seq: 6, timestamp: "" })).toEqual({ ok: true, value: 1 });
    // Equal as JSON whatever the order of an object's keys; arrays keep their order.
    applyKv(v, { op: "put", key: "o", value: { a: 1, b: [1, { c: 2, d: 3 }] } }, { seq: 7, timestamp: "" });
    expect(applyKv(v, { op: "cas", key: "o", expected: { b: [1, { d: 3, c: 2 }], a: 1 }, value: 5 }, { seq: 8, timestamp: "" })).toEqual({ ok: true, value: 5 });
    applyKv(v, { op: "put", key: "o", value: { a: [1, 2] } }, { seq: 9, timestamp: "" });
    const unequals: Extract<KvCommand, { op: "cas" }>["expected"][] = [{ a: [2, 1] }, { a: [1, 2], b: null }, { a: { 0: 1, 1: 2 } }, { a: [1] }];
    const unequal: KvCommand[] = unequals.map((expected) => ({ op: "cas", key: "o", expected, value: 6 }));
    for (const cas of unequal) {
      expect(applyKv(v, cas, { seq: 10, timestamp: "" }), JSON.stringify(cas)).toEqual({ ok: false, value: { a: [1, 2] } });
    }
    applyKv(v, { op: "put", key: "p", value: { y: 1, x: 2 } }, { seq: 11, timestamp: "" });
    const txn: KvCommand = { op: "txn", compare: [{ key: "o", value: { a: [1, 2] } }, { key: "p", value: { x: 2, y: 1 } }], success: [{ op: "get", key: "o" }] };
    expect(applyKv(v, txn, { seq: 12, timestamp: "" })).toMatchObject({ succeeded: true });
    expect(applyKv(v, { op: "incr", key: "a", by: 3 }, { seq: 7, timestamp: "" })).toEqual({ value: 7 });
    expect(applyKv(v, { op: "incr", key: "fresh", by: -2 }, { seq: 8, timestamp: "" })).toEqual({ value: -2 });
    applyKv(v, { op: "put", key: "s", value: "text" }, { seq: 9, timestamp: "" });
    expect(applyKv(v, { op: "incr", key: "s", by: 1 }, { seq: 10, timestamp: "" })).toEqual({ error: "not_integer" });
    expect(applyKv(v, { op: "delete", key: "a" }, { seq: 11, timestamp: "" })).toEqual({ deleted: true });
    expect(applyKv(v, { op: "delete", key: "a" }, { seq: 12, timestamp: "" })).toEqual({ deleted: false });
    expect(kv.query(v, { op: "get", key: "a" })).toEqual({ value: null });
  });

  it("tells a watch the keys an entry changed: not a key a txn put and deleted while it was absent", () => {
    const { state } = fresh();
    const at = { seq: 1, timestamp: "" };
    state.machineView().put("old", 1);
    const changes = new Map<string, string | null>();
    const txn: KvCommand = {
      op: "txn",
      compare: [],
      success: [
        { op: "put", key: "ghost", value: 1 },
        { op: "delete", key: "ghost" },
        { op: "put", key: "old", value: 2 },
        { op: "delete", key: "old" },
        { op: "put", key: "back", value: 1 },
        { op: "delete", key: "back" },
        { op: "put", key: "back", value: 3 },
      ],
    };
    expect(applyKv(state.machineView(changes), txn, at)).toMatchObject({ succeeded: true });
    expect([...changes]).toEqual([["old", null], ["back", "3"]]);
    // A put of the value a key holds is still a put the watch is told of (as etcd's watch is).
    const again = new Map<string, string | null>();
    applyKv(state.machineView(again), { op: "put", key: "back", value: 3 }, at);
    expect([...again]).toEqual([["back", "3"]]);
  });

  it("keeps its rules for a stored null and an unsafe integer (a restarted replica replays its log and must reach the same digest: MACHINES.md)", () => {
    const { state } = fresh();
    const changes = new Map<string, string | null>();
    const v = state.machineView(changes);
    const at = { seq: 1, timestamp: "" };
    expect(applyKv(v, { op: "put", key: "n", value: null }, at)).toEqual({ previous: null });
    expect([...changes]).toEqual([["n", "null"]]);
    expect(kv.query(v, { op: "list" })).toEqual({ items: [["n", null]] });
    expect(applyKv(v, { op: "incr", key: "n", by: 1 }, at)).toEqual({ value: 1 });
    applyKv(v, { op: "put", key: "big", value: 1e21 }, at);
    expect(applyKv(v, { op: "incr", key: "big", by: 1 }, at)).toEqual({ error: "not_integer" });
    applyKv(v, { op: "put", key: "m", value: null }, at);
    expect(applyKv(v, { op: "delete", key: "m" }, at)).toEqual({ deleted: true });
  });

  it("lists in key order with prefix, after, limit and next", () => {
    const { state } = fresh();
    const v = state.machineView();
    for (const k of ["b2", "a1", "b1", "b3", "c1"]) applyKv(v, { op: "put", key: k, value: k }, { seq: 1, timestamp: "" });
    expect(kv.query(v, { op: "list", prefix: "b", limit: 2 })).toEqual({ items: [["b1", "b1"], ["b2", "b2"]], next: "b2" });
    expect(kv.query(v, { op: "list", prefix: "b", after: "b2", limit: 2 })).toEqual({ items: [["b3", "b3"]] });
    expect(kv.query(v, { op: "list" })).toEqual({ items: ["a1", "b1", "b2", "b3", "c1"].map((k) => [k, k]) });
  });

  it("validates commands and names the field", () => {
    expect(kv.commandSchema.safeParse({ op: "put", key: "", value: 1 }).success).toBe(false);
    expect(kv.commandSchema.safeParse({ op: "nope", key: "a" }).success).toBe(false);
    expect(kv.commandSchema.safeParse({ op: "incr", key: "a", by: 1.5 }).success).toBe(false);
    expect(kv.commandSchema.safeParse({ op: "put", key: "x".repeat(513), value: 1 }).success).toBe(false);
    expect(kv.commandSchema.safeParse({ op: "put", key: "k", value: [1, { a: null }] }).success).toBe(true);
  });
});

describe("bank machine", () => {
  it("opens accounts, transfers, refuses overdrafts and unknown accounts, conserves the total", () => {
    const { state } = fresh();
    const v = state.machineView();
    const ctx = { seq: 1, timestamp: "" };
    expect(bank.apply(v, { op: "open", account: "a", balance: 100 }, ctx)).toEqual({ ok: true });
    expect(bank.apply(v, { op: "open", account: "a", balance: 5 }, ctx)).toEqual({ ok: false });
    expect(bank.apply(v, { op: "open", account: "b", balance: 0 }, ctx)).toEqual({ ok: true });
    expect(bank.apply(v, { op: "transfer", from: "a", to: "b", amount: 30 }, ctx)).toEqual({ ok: true });
    expect(bank.apply(v, { op: "transfer", from: "b", to: "a", amount: 31 }, ctx)).toEqual({ ok: false, reason: "insufficient" });
    expect(bank.apply(v, { op: "transfer", from: "a", to: "zz", amount: 1 }, ctx)).toEqual({ ok: false, reason: "unknown_account" });
    expect(bank.query(v, { op: "balances" })).toEqual({ accounts: { a: 70, b: 30 }, total: 100 });
    expect(bank.commandSchema.safeParse({ op: "transfer", from: "a", to: "b", amount: 0 }).success).toBe(false);
    expect(bank.commandSchema.safeParse({ op: "open", account: "a", balance: -1 }).success).toBe(false);
  });

  it("lists an account named __proto__ like any other (its balance was counted in total but missing from accounts)", () => {
    const { state } = fresh();
    const v = state.machineView();
    const ctx = { seq: 1, timestamp: "" };
    expect(bank.apply(v, { op: "open", account: "__proto__", balance: 7 }, ctx)).toEqual({ ok: true });
    expect(bank.apply(v, { op: "open", account: "a", balance: 1 }, ctx)).toEqual({ ok: true });
    const answer = bank.query(v, { op: "balances" }) as { accounts: Record<string, number>; total: number };
    expect(JSON.parse(JSON.stringify(answer))).toEqual(JSON.parse('{"accounts":{"__proto__":7,"a":1},"total":8}'));
    expect(Object.keys(answer.accounts)).toEqual(["__proto__", "a"]);
  });

  it("past 2^53 - 1 the total's digits are in totalExact, and a credit past a safe balance says overflow", () => {
    const { state } = fresh();
    const v = state.machineView();
    const ctx = { seq: 1, timestamp: "" };
    const max = Number.MAX_SAFE_INTEGER;
    expect(bank.apply(v, { op: "open", account: "a", balance: max }, ctx)).toEqual({ ok: true });
    expect(bank.apply(v, { op: "open", account: "b", balance: max }, ctx)).toEqual({ ok: true });
    expect(bank.apply(v, { op: "open", account: "c", balance: 3 }, ctx)).toEqual({ ok: true });
    expect(bank.query(v, { op: "balances" })).toEqual({ accounts: { a: max, b: max, c: 3 }, total: 2 * max + 3, totalExact: "18014398509481985" });
    expect(bank.apply(v, { op: "transfer", from: "c", to: "a", amount: 1 }, ctx)).toEqual({ ok: false, reason: "insufficient", detail: "overflow" });
    expect(bank.apply(v, { op: "transfer", from: "a", to: "c", amount: max }, ctx)).toEqual({ ok: false, reason: "insufficient", detail: "overflow" });
    expect(bank.apply(v, { op: "transfer", from: "c", to: "b", amount: 4 }, ctx)).toEqual({ ok: false, reason: "insufficient" });
    expect(bank.apply(v, { op: "transfer", from: "a", to: "c", amount: max - 3 }, ctx)).toEqual({ ok: true });
    expect(bank.query(v, { op: "balances" })).toMatchObject({ accounts: { a: 3, b: max, c: max }, totalExact: "18014398509481985" });
  });

  it("balances too many to answer at once is a ResultTooLarge naming the snapshot (it failed as an RPC over 32 MiB: a 503 for ever)", () => {
    const { state } = fresh();
    const v = state.machineView();
    const ctx = { seq: 1, timestamp: "" };
    const name = (i: number) => `${String(i).padStart(8, "0")}${"n".repeat(accountCharsMax - 8)}`;
    // Each account counts 2 * 128 + 24 bytes: this many fit exactly, one more does not.
    const fit = Math.floor(queryResultBytesMax / (2 * accountCharsMax + 24));
    for (let i = 0; i < fit; i++) bank.apply(v, { op: "open", account: name(i), balance: 1 }, ctx);
    const all = bank.query(v, { op: "balances" }) as { accounts: Record<string, number>; total: number };
    expect(all.total).toBe(fit);
    // What fits is well inside one RPC message (V8's serialization of it).
    expect(serialize(all).length).toBeLessThan(32 * 1024 * 1024);
    bank.apply(v, { op: "open", account: name(fit), balance: 1 }, ctx);
    expect(() => bank.query(v, { op: "balances" })).toThrow(ResultTooLarge);
    expect(() => bank.query(v, { op: "balances" })).toThrow(/snapshot/);
  });
});

describe("digest", () => {
  it("is maintained incrementally and equals a full recomputation, independent of write order", () => {
    const one = fresh();
    const two = fresh();
    const ops: [string, unknown][] = [["a", 1], ["b", 2], ["a", 3], ["c", { d: [1] }]];
    for (const [k, val] of ops) one.state.machineView().put(k, val);
    one.state.machineView().delete("b");
    for (const [k, val] of [...ops].reverse().filter(([k]) => k !== "b")) two.state.machineView().put(k, val);
    two.state.machineView().put("a", 3);
    // Writes reach the store when they are saved (a replica does so every few hundred entries, in a step's transaction).
    expect(one.rows.size).toBe(0);
    one.state.save();
    expect(one.state.digest).toBe(recomputeDigest(one.rows, 2).digest);
    expect(one.state.digest).toBe(two.state.digest);
    one.state.machineView().put("a", 4);
    expect(one.state.digest).not.toBe(two.state.digest);
  });

  it("starts at the zero hash and returns to it when the state is emptied", () => {
    const { state } = fresh();
    expect(state.digest).toBe(zeroHash);
    state.machineView().put("x", 1);
    state.machineView().delete("x");
    expect(state.digest).toBe(zeroHash);
  });
});

describe("row stores", () => {
  it("lastKey gives the greatest key under a prefix, in code point order", () => {
    const rows = new MemoryRowStore();
    for (const k of ["a", "s/1:c/0002", "s/1:c/0010", "s/1:d/0001", "s/2:c\u{10ffff}/1", "t"]) rows.put(k, "v");
    expect(rows.lastKey("s/1:c/")).toBe("s/1:c/0010");
    expect(rows.lastKey("s/1:d/")).toBe("s/1:d/0001");
    expect(rows.lastKey("s/1:e/")).toBe(null);
    expect(rows.lastKey("s/2:c\u{10ffff}")).toBe("s/2:c\u{10ffff}/1");
    expect(rows.lastKey("s/")).toBe("s/2:c\u{10ffff}/1");
    expect(rows.lastKey("")).toBe("t");
  });
});

describe("sessions (exactly-once in the replicated state)", () => {
  function entry(seq: number, client: string, request: number, command: unknown): Entry {
    const body = { seq, epoch: 1, kind: "command" as const, client, request, command, timestamp: "t" };
    return { ...body, hash: entryHash(zeroHash, body) };
  }

  it("executes a (client, request) once; a duplicate returns the original seq and output", () => {
    const { state } = fresh();
    const first = applyEntry(state, kv, entry(1, "c", 1, { op: "incr", key: "n", by: 1 }));
    const again = applyEntry(state, kv, entry(2, "c", 1, { op: "incr", key: "n", by: 1 }));
    expect(first).toEqual({ seq: 1, status: "ok", originalSeq: 1, output: { value: 1 } });
    expect(again).toEqual({ seq: 2, status: "duplicate", originalSeq: 1, output: { value: 1 } });
    expect(kv.query(state.machineView(), { op: "get", key: "n" })).toEqual({ value: 1 });
    const other = applyEntry(state, kv, entry(3, "c", 1, { op: "incr", key: "n", by: 2 }));
    expect(other.status).toBe("conflict");
  });

  it("keeps clients apart even when one client id is a prefix of another", () => {
    expect(sessionKey("a", 1)).not.toBe(sessionKey("a/", 1));
    const { state } = fresh();
    applyEntry(state, kv, entry(1, "a", 1, { op: "incr", key: "n", by: 1 }));
    expect(applyEntry(state, kv, entry(2, "a/0000000000000001", 1, { op: "incr", key: "n", by: 1 })).status).toBe("ok");
  });

  it("reads a batch's rows in one getMany and writes them in one writeMany", () => {
    const rows = new MemoryRowStore();
    const calls = { get: 0, getMany: 0, writeMany: 0, lastKey: 0 };
    const counted = spied(rows, (method) => {
      if (method in calls) calls[method as keyof typeof calls]++;
    });
    const state = new DigestedState(counted);
    const batch = Array.from({ length: 20 }, (_, i) => entry(i + 1, `c${i % 4}`, i + 1, { op: "put", key: `k${i % 7}`, value: i }));
    prefetchFor(state, kv, batch);
    const outputs = batch.map((e) => applyEntry(state, kv, e));
    state.save();
    state.endStep();
    // One lastKey per client, the first time it is seen (its bound on request ids).
    expect(calls).toEqual({ get: 0, getMany: 1, writeMany: 1, lastKey: 4 });
    expect(outputs.every((o) => o.status === "ok")).toBe(true);
    // The same entries applied one by one, each written at once, give the same rows and digest.
    const plain = fresh();
    for (const e of batch) {
      applyEntry(plain.state, kv, e);
      plain.state.save();
      plain.state.endStep();
    }
    expect(rows.scan("", null, 1000)).toEqual(plain.rows.scan("", null, 1000));
    expect(state.digest).toBe(plain.state.digest);
    expect(state.digest).toBe(recomputeDigest(rows, 100).digest);
  });

  it("an eviction deletes the session rows it scanned without reading each one again", async () => {
    const { sessionRequestsMax, sessionEvictBatch } = await import("../../shared/limits.js");
    const rows = new MemoryRowStore();
    const calls = { get: 0, scan: 0 };
    const counted = spied(rows, (method) => {
      if (method in calls) calls[method as keyof typeof calls]++;
    });
    const state = new DigestedState(counted);
    for (let r = 1; r < sessionRequestsMax + sessionEvictBatch; r++) applyEntry(state, kv, entry(r, "c", r, { op: "get", key: "k" }));
    state.save();
    state.endStep();
    calls.get = 0;
    calls.scan = 0;
    const evicting = entry(5000, "c", sessionRequestsMax + sessionEvictBatch, { op: "get", key: "k" });
    prefetchFor(state, kv, [evicting]);
    expect(applyEntry(state, kv, evicting).status).toBe("ok");
    expect(calls).toEqual({ get: 0, scan: 1 });
    state.save();
    expect(rows.scan("s/", null, 10_000).length).toBe(sessionRequestsMax);
    expect(state.digest).toBe(recomputeDigest(rows, 100).digest);
  });

  it("skips the session lookup of a request above the client's highest, and still finds retries and lower ids", () => {
    const rows = new MemoryRowStore();
    const looked: string[][] = [];
    const counted = spied(rows, (method, keys) => {
      if (method === "get" || method === "getMany") looked.push(keys);
    });
    let state = new DigestedState(counted);
    const put = (seq: number, client: string, request: number, value: number) => {
      const e = entry(seq, client, request, { op: "put", key: `k${request}`, value });
      prefetchFor(state, kv, [e]);
      const out = applyEntry(state, kv, e);
      state.endStep();
      return out;
    };
    for (let r = 1; r <= 10; r++) expect(put(r, "c", r * 10, r).status).toBe("ok");
    // Requests 20 to 100 were new: no lookup named their session rows.
    expect(looked.flat().filter((k) => k.startsWith("s/") && k !== sessionKey("c", 10))).toEqual([]);
    state.save();
    // A replica restarted (a new DigestedState over the same rows) takes the bound from the rows.
    state = new DigestedState(counted, state.digest);
    looked.length = 0;
    expect(put(11, "c", 50, 5)).toMatchObject({ status: "duplicate", originalSeq: 5 });
    expect(looked.flat()).toContain(sessionKey("c", 50));
    // A lower id never used is looked up (it may have a row) and applied once.
    expect(put(12, "c", 55, 99).status).toBe("ok");
    expect(put(13, "c", 55, 99)).toMatchObject({ status: "duplicate", originalSeq: 12 });
    looked.length = 0;
    expect(put(14, "c", 101, 1).status).toBe("ok");
    expect(looked.flat()).not.toContain(sessionKey("c", 101));
    expect(put(15, "c", 101, 1)).toMatchObject({ status: "duplicate", originalSeq: 14 });
    state.save();
    expect(rows.scan("s/", null, 100).length).toBe(12);
    expect(state.digest).toBe(recomputeDigest(rows, 100).digest);
  });

  it("a stored session key whose tail is no request id leaves its client without a bound (looked up as before)", () => {
    const rows = new MemoryRowStore();
    rows.put("s/1:c/zzz", "[1,\"h\",null]");
    const looked: string[] = [];
    const counted = spied(rows, (method, keys) => {
      if (method === "get" || method === "getMany") looked.push(...keys);
    });
    const state = new DigestedState(counted);
    const e = entry(1, "c", 7, { op: "incr", key: "n", by: 1 });
    prefetchFor(state, kv, [e]);
    expect(applyEntry(state, kv, e).status).toBe("ok");
    expect(looked).toContain(sessionKey("c", 7));
  });

  it("past sessionTopsMax clients, a new client's session rows are looked up and exactly-once still holds", async () => {
    const { sessionTopsMax } = await import("../../shared/limits.js");
    const rows = new MemoryRowStore();
    const looked = new Set<string>();
    const counted = spied(rows, (method, keys) => {
      if (method === "get" || method === "getMany") for (const k of keys) looked.add(k);
    });
    const state = new DigestedState(counted);
    const apply = (seq: number, client: string, request: number) => {
      const e = entry(seq, client, request, { op: "incr", key: "n", by: 1 });
      prefetchFor(state, kv, [e]);
      const out = applyEntry(state, kv, e);
      state.endStep();
      return out;
    };
    for (let c = 0; c < sessionTopsMax; c++) expect(apply(c + 1, `c${c}`, 1).status).toBe("ok");
    looked.clear();
    expect(apply(sessionTopsMax + 1, "late", 1).status).toBe("ok");
    expect(looked.has(sessionKey("late", 1))).toBe(true);
    expect(apply(sessionTopsMax + 2, "late", 1)).toMatchObject({ status: "duplicate", originalSeq: sessionTopsMax + 1 });
    // A client within the bound still skips it.
    looked.clear();
    expect(apply(sessionTopsMax + 3, "c0", 2).status).toBe("ok");
    expect(looked.has(sessionKey("c0", 2))).toBe(false);
    expect(kv.query(state.machineView(), { op: "get", key: "n" })).toEqual({ value: sessionTopsMax + 2 });
  });

  it("bounds the session table per client and expires evicted request ids", async () => {
    const { sessionRequestsMax, sessionEvictBatch } = await import("../../shared/limits.js");
    const { state, rows } = fresh();
    const sessions = () => (state.save(), rows.scan("s/", null, 10_000).length);
    // Up to max + batch - 1 rows are kept; the next request evicts the lowest ids down to max.
    for (let r = 1; r < sessionRequestsMax + sessionEvictBatch; r++) applyEntry(state, kv, entry(r, "c", r, { op: "get", key: "k" }));
    expect(sessions()).toBe(sessionRequestsMax + sessionEvictBatch - 1);
    applyEntry(state, kv, entry(5000, "c", sessionRequestsMax + sessionEvictBatch, { op: "get", key: "k" }));
    expect(sessions()).toBe(sessionRequestsMax);
    expect(applyEntry(state, kv, entry(9998, "c", sessionEvictBatch, { op: "get", key: "k" })).status).toBe("expired");
    expect(applyEntry(state, kv, entry(9997, "c", sessionEvictBatch + 1, { op: "get", key: "k" })).status).toBe("duplicate");
    expect(applyEntry(state, kv, entry(9999, "c", 1, { op: "get", key: "k" })).status).toBe("expired");
    state.save();
    expect(state.digest).toBe(recomputeDigest(rows, 100).digest);
  });
});

describe("a query whose answer is too large", () => {
  it("is answered too_large by the replica, with the machine's message, not thrown (a thrown read was a busy replica: 503)", async () => {
    const store = new MemoryReplicaStorage();
    const meta = newReplicaMeta("g", "r1", "bank", 100);
    store.saveMeta(meta);
    const huge = { ...bank, query: () => { throw new ResultTooLarge("balances: too many"); } };
    const driver = new ReplicaDriver(new ReplicaCore(store, meta, huge, { entries: 100, slack: 10 }), realClock);
    expect(await driver.query({ op: "balances" }, 0, 0)).toEqual({ kind: "too_large", replica: "r1", message: "balances: too many" });
    // Any other failure still throws (the router counts it as a replica that failed).
    const broken = { ...bank, query: () => { throw new Error("bug"); } };
    const other = new ReplicaDriver(new ReplicaCore(store, meta, broken, { entries: 100, slack: 10 }), realClock);
    await expect(other.query({ op: "balances" }, 0, 0)).rejects.toThrow("bug");
  });
});

// Every account `open` takes must be a row a restore takes: zod counts a string's length in code
// points, checkRow counted UTF-16 units, so an account of 65 to 128 emoji was opened, snapshotted,
// and its file refused by every restore ("account: longer than 128 characters", a probe).
describe("bank: the accounts open takes, a restore takes", () => {
  for (const [what, account] of [
    ["ASCII at the bound", "a".repeat(accountCharsMax)],
    ["100 emoji", "😀".repeat(100)],
    ["emoji at the bound", "😀".repeat(accountCharsMax)],
  ] as const) {
    it(`${what}: open is accepted, and checkRow accepts its row`, () => {
      const r = validateCommand(bank, { op: "open", account, balance: 5 });
      expect(r.ok).toBe(true);
      expect(bank.checkRow!(account, 5)).toBeNull();
    });
  }

  it("one past the bound is refused by both", () => {
    const account = "😀".repeat(accountCharsMax + 1);
    expect(validateCommand(bank, { op: "open", account, balance: 5 }).ok).toBe(false);
    expect(bank.checkRow!(account, 5)).not.toBeNull();
  });
});
