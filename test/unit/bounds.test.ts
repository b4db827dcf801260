import { describe, expect, it } from "vitest";
import { checkJson } from "../../shared/api/input.js";
import { appendBytesMax, appendEntriesMax, pendingBytesMax, pendingSubmitsMax, tailBytesMax } from "../../shared/limits.js";
import { entryBytes } from "../../shared/protocol/entry.js";
import { unappliedBytesMax } from "../../shared/protocol/replica.js";
import { Cluster } from "../support/cluster.js";
import { directGroup } from "../support/direct.js";

describe("append messages are bounded in bytes as well as entries", () => {
  it("a backlog of large commands goes out in messages of at most appendBytesMax (at least one entry each), all delivered", () => {
    const c = Cluster.of("kv", 3);
    const value = "x".repeat(200 * 1024);
    const n = 60; // 12 MB of commands: three times the bound
    for (let r = 1; r <= n; r++) expect(c.submit("big", r, { op: "put", key: `k${r}`, value }).kind).toBe("queued");
    c.sequencer.flush(new Date(0).toISOString());
    const msg = c.messageFor("r1")!;
    expect(msg.entries.length).toBeGreaterThan(0);
    expect(msg.entries.length).toBeLessThan(n);
    expect(msg.entries.length).toBeLessThanOrEqual(appendEntriesMax);
    expect(msg.entries.reduce((s, e) => s + entryBytes(e), 0)).toBeLessThanOrEqual(appendBytesMax);
    c.deliver("r1", msg);
    c.settle();
    for (const r of c.replicas.values()) expect(r.appliedSeq).toBe(n);
  });
});

describe("what the sequencer holds in memory is bounded in bytes as well as entries", () => {
  const value = "x".repeat(60 * 1024);

  it("refuses a submit once the queued commands hold pendingBytesMax, long before pendingSubmitsMax of them; a flush makes room", () => {
    const c = Cluster.of("kv", 3);
    let queued = 0;
    let refused: { kind: string; reason?: string } | null = null;
    for (let r = 1; r <= pendingSubmitsMax && refused === null; r++) {
      const d = c.submit("big", r, { op: "put", key: `k${r}`, value });
      if (d.kind === "queued") queued++;
      else refused = d as { kind: string; reason?: string };
    }
    expect(refused).toMatchObject({ kind: "unavailable", reason: expect.stringMatching(/queue is full/) });
    expect(queued).toBeLessThan(pendingSubmitsMax / 10);
    expect(queued * value.length).toBeLessThanOrEqual(pendingBytesMax);
    expect(queued * value.length).toBeGreaterThan(pendingBytesMax - 2 * value.length);
    c.sequencer.flush(new Date(0).toISOString());
    expect(c.submit("big", queued + 2, { op: "put", key: "after", value }).kind).toBe("queued");
  });

  it("refuses the rest of a batch once one of its commands is refused, so no later command runs without an earlier one", async () => {
    const config = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "first" as const, checkpointEvery: 50 };
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("warm", 1, { op: "put", key: "w", value: 1 })).kind).toBe("ok"); // every replica heard from
    const early = await g.driver.submit("big", 1_000_000, { op: "incr", key: "n", by: 1 });
    expect(early).toMatchObject({ kind: "ok", seq: 2 });
    const count = Math.ceil(pendingBytesMax / value.length) + 4;
    const items = Array.from({ length: count }, (_, i) => ({ request: i + 1, command: { op: "put", key: `k${i + 1}`, value } }));
    items.push({ request: count + 1, command: { op: "put", key: "small", value: "1" } as never });
    // A command ordered before, repeated after the refusal: answered as known, not 503 ("certainly not ordered").
    items.push({ request: 1_000_000, command: { op: "incr", key: "n", by: 1 } as never });
    const answers = await Promise.all(g.driver.submitBatch("big", items));
    const firstRefused = answers.findIndex((a) => a.kind !== "ok");
    expect(firstRefused).toBeGreaterThan(0);
    expect(answers[firstRefused]).toMatchObject({ kind: "unavailable", message: expect.stringMatching(/queue is full/) });
    for (const a of answers.slice(0, firstRefused)) expect(a.kind).toBe("ok");
    for (const a of answers.slice(firstRefused, -1)) expect(a.kind).toBe("unavailable");
    expect(answers[answers.length - 1]).toMatchObject({ kind: "ok", seq: 2, output: { value: 1 } });
    const read = await g.driver.submit("reader", 1, { op: "get", key: "small" });
    expect(read).toMatchObject({ kind: "ok", output: { value: null } });
    g.driver.stop?.();
  });

  it("keeps at most tailBytesMax of recent entries for appends, and still serves older ones from its log", () => {
    const c = Cluster.of("kv", 3);
    const n = Math.ceil((2 * tailBytesMax) / value.length);
    for (let r = 1; r <= n; r++) {
      c.submit("big", r, { op: "put", key: `k${r}`, value });
      if (r % 16 === 0) c.sequencer.flush(new Date(0).toISOString());
    }
    c.sequencer.flush(new Date(0).toISOString());
    expect(c.sequencer.tailBytes).toBeLessThanOrEqual(tailBytesMax);
    expect(c.sequencer.tailBytes).toBeGreaterThan(tailBytesMax / 2);
    expect(c.sequencer.readEntries(1, 1)[0]!.command).toEqual({ op: "put", key: "k1", value });
    c.settle();
    for (const r of c.replicas.values()) expect(r.appliedSeq).toBe(n);
    // A compaction drops the tail's compacted entries, and their bytes with them.
    const kept = (from: number) => c.sequencer.readEntries(from, n).reduce((sum, e) => sum + entryBytes(e), 0);
    expect(c.sequencer.compact(10, 1)).toBe(n - 10);
    expect(c.sequencer.tailBytes).toBe(kept(n - 9));
  });
});

describe("a replica's appended, unapplied entries held in memory are bounded in bytes", () => {
  it("holds at most unappliedBytesMax of them while no commit comes, and applies every one from its log once it does", () => {
    const c = Cluster.of("kv", 3);
    const value = "x".repeat(60 * 1024);
    const n = Math.ceil((1.8 * unappliedBytesMax) / value.length); // under pendingBytesMax, over the bound
    for (let r = 1; r <= n; r++) expect(c.submit("big", r, { op: "put", key: `k${r}`, value }).kind).toBe("queued");
    c.sequencer.flush(new Date(0).toISOString());
    const r1 = c.replicas.get("r1")!;
    // Only r1 hears: nothing commits, every message leaves its entries unapplied.
    for (let msg = c.messageFor("r1"); msg && msg.entries.length > 0; msg = c.messageFor("r1")) {
      c.deliver("r1", msg);
      expect(r1.unappliedBytes).toBeLessThanOrEqual(unappliedBytesMax);
    }
    expect(r1.appliedSeq).toBe(0);
    expect(r1.position().lastSeq).toBe(n);
    c.settle();
    for (const r of c.replicas.values()) expect(r.appliedSeq).toBe(n);
    expect(r1.query({ op: "get", key: "k1" })).toEqual({ value });
    expect(r1.unappliedBytes).toBe(0);
  });
});

describe("the edge's JSON check", () => {
  it("names the path of the first lone surrogate, in values and in object keys, and the depth limit", () => {
    expect(checkJson({ a: [1, "ok", { b: "\ud800" }] }, "body")).toBe("body.a.2.b: not well-formed Unicode (a lone surrogate)");
    expect(checkJson({ a: { "\udc00x": 1 } }, "body")).toMatch(/^body\.a\.\(a key\): not well-formed/);
    expect(checkJson({ ok: "\ud83d\ude00", also: "\u0000" }, "body")).toBeNull();
    expect(checkJson(JSON.parse("[".repeat(101) + "]".repeat(101)), "v")).toMatch(/nested deeper than 100/);
    expect(checkJson(JSON.parse("[".repeat(100_000) + "]".repeat(100_000)), "v")).toMatch(/nested deeper/); // no stack overflow
    expect(checkJson(JSON.parse("[".repeat(100) + "]".repeat(100)), "v")).toBeNull();
  });
});
