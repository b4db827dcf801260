import { describe, expect, it } from "vitest";
import { checkJson } from "../../shared/api/input.js";
import { appendBytesMax, appendEntriesMax } from "../../shared/limits.js";
import { entryBytes } from "../../shared/protocol/entry.js";
import { Cluster } from "../support/cluster.js";

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
