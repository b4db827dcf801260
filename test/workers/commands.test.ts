import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { ReplicaObject } from "../../workers/replica.js";
import { api, clientToken, command, createGroup, expectError, query, replicaObject } from "./helpers.js";
import { encodeBookmark } from "../../shared/api/bookmark.js";

describe("write path", () => {
  it("assigns gapless seqs, answers after execution with output and bookmark, and every replica applies it", async () => {
    await createGroup("w1");
    const outs = [];
    for (let i = 1; i <= 5; i++) outs.push(await command("w1", { op: "incr", key: "n", by: i }));
    expect(outs.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(outs.map((r) => r.body.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(outs.map((r) => r.body.output.value)).toEqual([1, 3, 6, 10, 15]);
    expect(typeof outs[4]!.body.bookmark).toBe("string");

    const log = await api("GET", "/v1/groups/w1/log?from=2&limit=2");
    expect(log.body).toMatchObject({ firstSeq: 1, lastSeq: 5, commitSeq: 5, next: 4 });
    expect((await api("GET", "/v1/groups/w1/log?from=4&limit=2")).body).not.toHaveProperty("next"); // the last page
    expect(log.body.entries.map((e: any) => [e.seq, e.kind, e.client, e.command.by])).toEqual([
      [2, "command", "tester", 2],
      [3, "command", "tester", 3],
    ]);
    expect(log.body.entries[0]).toHaveProperty("hash");
    expect(log.body.entries[0]).toHaveProperty("timestamp");
    expect(log.body.entries[0]).toHaveProperty("epoch", 1);

    // Every replica converges to the same applied position and digest.
    let replicas: any[] = [];
    for (let i = 0; i < 50; i++) {
      replicas = (await api("GET", "/v1/groups/w1/replicas", undefined, clientToken)).body.replicas;
      if (replicas.every((r) => r.appliedSeq === 5)) break;
      await query("w1", { op: "get", key: "n" }, "linearizable");
    }
    expect(replicas.map((r) => r.appliedSeq)).toEqual([5, 5, 5]);
    expect(new Set(replicas.map((r) => r.digest)).size).toBe(1);
  });

  it("batches concurrent submits into few rounds and keeps every one of them", async () => {
    await createGroup("w2");
    const n = 60;
    const results = await Promise.all(Array.from({ length: n }, (_, i) => command("w2", { op: "put", key: `k${i}`, value: i }, `c${i % 7}`, 1000 + i)));
    expect(results.every((r) => r.status === 200)).toBe(true);
    expect(results.map((r) => r.body.seq).sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    const list = await query("w2", { op: "list", limit: 1000 });
    expect(list.body.result.items).toHaveLength(n);
  });

  it("bank: transfers through the log conserve the total", async () => {
    await createGroup("bank1", { machine: "bank" });
    expect((await command("bank1", { op: "open", account: "alice", balance: 100 })).body.output).toEqual({ ok: true });
    expect((await command("bank1", { op: "open", account: "bob", balance: 5 })).body.output).toEqual({ ok: true });
    expect((await command("bank1", { op: "transfer", from: "alice", to: "bob", amount: 40 })).body.output).toEqual({ ok: true });
    expect((await command("bank1", { op: "transfer", from: "bob", to: "alice", amount: 100 })).body.output).toEqual({
      ok: false,
      reason: "insufficient",
    });
    const b = await query("bank1", { op: "balances" });
    expect(b.body.result).toEqual({ accounts: { alice: 60, bob: 45 }, total: 105 });
  });

  it("majority outputs mode answers once a majority agrees", async () => {
    await createGroup("maj", { machine: "kv", outputs: "majority" });
    const r = await command("maj", { op: "put", key: "x", value: "v" });
    expect(r.body).toMatchObject({ seq: 1, output: { previous: null } });
    const g = await command("maj", { op: "get", key: "x" });
    expect(g.body.output).toEqual({ value: "v" });
  });
});

describe("exactly-once", () => {
  it("a retry returns the original seq and output and executes nothing; another command with the pair is 409", async () => {
    await createGroup("dedup");
    const first = await command("dedup", { op: "incr", key: "n", by: 1 }, "alice", 7);
    const retry = await command("dedup", { op: "incr", key: "n", by: 1 }, "alice", 7);
    expect(retry.status).toBe(200);
    expect(retry.body.seq).toBe(first.body.seq);
    expect(retry.body.output).toEqual(first.body.output);
    // The retry says its answer is the earlier attempt's (an extra field); the first does not.
    expect(first.body.replayed).toBeUndefined();
    expect(retry.body.replayed).toBe(true);
    const conflict = await command("dedup", { op: "incr", key: "n", by: 2 }, "alice", 7);
    expectError(conflict, 409, "conflict", /request 7/);
    const other = await command("dedup", { op: "incr", key: "n", by: 1 }, "bob", 7);
    expect(other.body.output).toEqual({ value: 2 });
    const n = await query("dedup", { op: "get", key: "n" });
    expect(n.body.result).toEqual({ value: 2 });
    const log = await api("GET", "/v1/groups/dedup/log");
    expect(log.body.entries).toHaveLength(2);
  });

  it("concurrent retries of the same pair are ordered once", async () => {
    await createGroup("dedup2");
    const rs = await Promise.all(Array.from({ length: 5 }, () => command("dedup2", { op: "incr", key: "n", by: 1 }, "c", 1)));
    expect(new Set(rs.map((r) => r.body.seq))).toEqual(new Set([1]));
    expect(rs.every((r) => r.body.output.value === 1)).toBe(true);
    // One of them ran it; the others waited for its answer and say so.
    expect(rs.filter((r) => r.body.replayed === true)).toHaveLength(4);
  });

  it("a batch item whose (client, request) ran before answers its recorded output, marked replayed; the new ones are not", async () => {
    await createGroup("dedup3");
    await command("dedup3", { op: "incr", key: "n", by: 1 }, "daily", 1);
    const r = await api("POST", "/v1/groups/dedup3/commands", { client: "daily", commands: [{ request: 1, command: { op: "incr", key: "n", by: 1 } }, { request: 2, command: { op: "incr", key: "n", by: 1 } }] }, clientToken);
    expect(r.status).toBe(200);
    expect(r.body.results).toEqual([{ seq: 1, output: { value: 1 }, replayed: true }, { seq: 2, output: { value: 2 } }]);
  });
});

describe("reads", () => {
  it("linearizable, sequential and stale reads answer with the replica and its appliedSeq", async () => {
    await createGroup("reads");
    const w = await command("reads", { op: "put", key: "x", value: 42 });
    for (const consistency of ["linearizable", "sequential", "stale"]) {
      const r = await query("reads", { op: "get", key: "x" }, consistency, consistency === "sequential" ? w.body.bookmark : undefined);
      expect(r.status).toBe(200);
      expect(["r1", "r2", "r3"]).toContain(r.body.replica);
      expect(typeof r.body.seq).toBe("number");
      if (consistency !== "stale") {
        expect(r.body.result).toEqual({ value: 42 });
        expect(r.body.seq).toBeGreaterThanOrEqual(w.body.seq);
      }
    }
    // Default consistency is linearizable.
    expect((await query("reads", { op: "get", key: "x" })).body.result).toEqual({ value: 42 });
  });

  it("read-your-writes: a sequential read with the latest bookmark always sees the write", async () => {
    await createGroup("ryw");
    for (let i = 1; i <= 10; i++) {
      const w = await command("ryw", { op: "put", key: "x", value: i });
      const r = await query("ryw", { op: "get", key: "x" }, "sequential", w.body.bookmark);
      expect(r.body.result).toEqual({ value: i });
    }
  });

  it("a sequential read with a bookmark past the group's log (another group's) is a 400 after the wait, not a 504", async () => {
    const created = await createGroup("future");
    await command("future", { op: "put", key: "x", value: 1 });
    const past = encodeBookmark("future", created.incarnation ?? 0, { epoch: 1, seq: 46655 });
    const r = await query("future", { op: "get", key: "x" }, "sequential", past);
    expectError(r, 400, "bad_request", /^bookmark: names seq 46655, past the end of future's log \(seq \d+\)/);
    // The group's own latest bookmark is served.
    const w = await command("future", { op: "put", key: "x", value: 2 });
    expect((await query("future", { op: "get", key: "x" }, "sequential", w.body.bookmark)).body.result).toEqual({ value: 2 });
    // A linearizable read's index covers every bookmark the group gave: one past it is a 400 at
    // once (it was taken and ignored: a probe); the group's own is served.
    expectError(await query("future", { op: "get", key: "x" }, "linearizable", past), 400, "bad_request", /^bookmark: names seq 46655, past future's commit point \(seq \d+\)/);
    expect((await query("future", { op: "get", key: "x" }, "linearizable", w.body.bookmark)).body.result).toEqual({ value: 2 });
    // The older form names no group (another group's was served as this one's: a probe), and a
    // 400 broke every client upgraded with one kept (an upgrade probe): a sequential read with
    // one is linearizable, whatever its seq (another group's, past this log's end, here).
    for (const older of ["b1.1.1", "b1.1.zzzz"]) {
      for (const consistency of ["sequential", "linearizable", "stale"] as const) {
        const r = await query("future", { op: "get", key: "x" }, consistency, older);
        expect(r.status, `${consistency} ${older}: ${JSON.stringify(r.body)}`).toBe(200);
        if (consistency !== "stale") expect(r.body.result).toEqual({ value: 2 });
        expect(r.body.bookmark).toMatch(/^b3\./);
      }
    }
  });

  it("a bookmark of an earlier life of the group, or of another group, is a 400 at once: it was served without the write it named (a probe)", async () => {
    await createGroup("lives");
    await createGroup("other");
    const written = await command("lives", { op: "put", key: "profile", value: "v1" });
    const elsewhere = await command("other", { op: "put", key: "x", value: 1 });
    expect((await api("DELETE", "/v1/groups/lives")).status).toBe(204);
    await createGroup("lives");
    for (let i = 1; i <= 2; i++) expect((await command("lives", { op: "put", key: `n${i}`, value: i })).status).toBe(200);
    // A stale read too: it waits for no position, but took another group's or life's bookmark in silence (a probe).
    for (const consistency of ["sequential", "linearizable", "stale"]) {
      const old = await query("lives", { op: "get", key: "profile" }, consistency, written.body.bookmark);
      expectError(old, 400, "bad_request", /^bookmark: given by an earlier life of lives \(deleted and created again since\)/);
      expectError(await query("lives", { op: "get", key: "n1" }, consistency, elsewhere.body.bookmark), 400, "bad_request", /^bookmark: given by another group than lives/);
    }
    // The new life's own bookmark is served.
    const mine = await command("lives", { op: "put", key: "profile", value: "v2" });
    expect((await query("lives", { op: "get", key: "profile" }, "sequential", mine.body.bookmark)).body.result).toEqual({ value: "v2" });
  });

  it("two groups whose names share a 32-bit tag refuse each other's bookmarks; a b2 bookmark (that tag) is still read", async () => {
    // tdp4n76xn and texf4jbso collide under b2's FNV-1a tag (ypaetm), found by a probe's search in seconds.
    const a = await createGroup("tdp4n76xn");
    await createGroup("texf4jbso");
    const wa = await command("tdp4n76xn", { op: "put", key: "k", value: "a" });
    const wb = await command("texf4jbso", { op: "put", key: "k", value: "b" });
    expect(wa.body.bookmark).not.toBe(wb.body.bookmark);
    expectError(await query("texf4jbso", { op: "get", key: "k" }, "sequential", wa.body.bookmark), 400, "bad_request", /^bookmark: given by another group than texf4jbso/);
    const b2 = `b2.ypaetm.${(a.incarnation ?? 1).toString(36)}.1.1`;
    const r = await query("tdp4n76xn", { op: "get", key: "k" }, "sequential", b2);
    expect([r.status, r.body.result, r.body.bookmark.slice(0, 3)]).toEqual([200, { value: "a" }, "b3."]);
  });

  it("a list query pages with next", async () => {
    await createGroup("pages");
    for (let i = 0; i < 5; i++) await command("pages", { op: "put", key: `p${i}`, value: i });
    const first = await query("pages", { op: "list", prefix: "p", limit: 2 });
    expect(first.body.result).toEqual({ items: [["p0", 0], ["p1", 1]], next: "p1" });
    const second = await query("pages", { op: "list", prefix: "p", limit: 2, after: first.body.result.next });
    expect(second.body.result.items.map((i: any) => i[0])).toEqual(["p2", "p3"]);
  });
});

// docs/MACHINES.md "query": a query's view refuses put and delete. A machine's query that writes is
// a bug, the same on every replica: a 500, neither a replica to stop asking (noteSlow) nor a 503
// retried for 90 s (a review).
/** Every replica of `group` runs kv with a query that writes (a machine's bug). */
async function writingQuery(group: string) {
  for (const id of ["r1", "r2", "r3"]) {
    await runInDurableObject(replicaObject(group, id), (inst: ReplicaObject) => {
      const core = (inst as any).replica.driver.core;
      const kv = core.machine;
      core.machine = { ...kv, query: (state: any, q: any) => (state.put("written-by-a-read", 1), kv.query(state, q)) };
    });
  }
}

describe("a machine's query that writes (docs/MACHINES.md: refused, the read answers 500)", () => {
  it("answers 500 internal, as the doc says, at every consistency, and the group still serves", async () => {
    await createGroup("qwrites");
    expect((await command("qwrites", { op: "put", key: "a", value: 1 })).status).toBe(200);
    await writingQuery("qwrites");
    for (const consistency of ["linearizable", "sequential", "stale"]) {
      const r = await query("qwrites", { op: "get", key: "a" }, consistency);
      expect(r.status, `${consistency}: ${JSON.stringify(r.body)}`).toBe(500);
      expect(r.body.error.code).toBe("internal");
    }
    expect((await command("qwrites", { op: "put", key: "b", value: 2 })).status).toBe(200);
  });
});
