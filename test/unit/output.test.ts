// A command's output is measured before its stored values are parsed (shared/machines/output.ts):
// its text must be exactly JSON.stringify's of the parsed output, since replicas on this version
// and on an older one store and vote on it, and an oversized one must cost no parse at all.
import fc from "fast-check";
import { describe, expect, it, vi } from "vitest";
import { outputCharsMax, sessionOutputFreeCharsCommandOnly, sessionOutputFreeCharsDefault } from "../../shared/limits.js";
import { kv } from "../../shared/machines/kv.js";
import { StoredJson, materialized, measuredOutput, outputJson } from "../../shared/machines/output.js";
import { MemoryRowStore } from "../../shared/protocol/memory.js";
import { DigestedState, applyEntry, lookupSession } from "../../shared/protocol/state.js";
import type { Entry } from "../../shared/api/types.js";

/** Replaces some JSON values inside v by StoredJson of their JSON.stringify text (as a stored row holds it). */
function storing(v: unknown, pick: () => boolean): unknown {
  if (v !== null && typeof v === "object" && !Array.isArray(v) && pick()) return new StoredJson(JSON.stringify(v));
  if (Array.isArray(v)) return v.map((x) => storing(x, pick));
  if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, storing(x, pick)]));
  return pick() && v !== undefined ? new StoredJson(JSON.stringify(v)) : v;
}

describe("an output's text", () => {
  it("is JSON.stringify's text of the parsed output, for any JSON holding stored values anywhere", () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.array(fc.boolean(), { minLength: 1, maxLength: 64 }), (value, picks) => {
        let i = 0;
        const withStored = { succeeded: true, results: [{ value: storing(value, () => picks[i++ % picks.length]!) }, { deleted: false }] };
        const plain = materialized(withStored);
        const text = JSON.stringify({ succeeded: true, results: [{ value }, { deleted: false }] });
        expect(JSON.stringify(plain)).toBe(text);
        expect(outputJson(withStored)).toBe(text);
      }),
      { numRuns: 500 },
    );
  });

  it("leaves out undefined members and writes null for holes, as JSON.stringify does", () => {
    const sparse: unknown[] = [1];
    sparse[2] = new StoredJson("[3]");
    const v = { a: undefined, b: sparse, "2": new StoredJson('{"x":0.5,"__proto__":1}'), c: () => 1, d: new StoredJson("null") };
    expect(outputJson(v)).toBe(JSON.stringify(materialized(v)));
    expect(outputJson(v)).toBe('{"2":{"x":0.5,"__proto__":1},"b":[1,null,[3]],"d":null}');
    expect(outputJson(undefined)).toBe("null");
    // A member named __proto__ (a command's value echoed) stays a member when the output is copied.
    const echoed = { value: JSON.parse('{"__proto__":1}'), x: new StoredJson("2") };
    expect(JSON.stringify(materialized(echoed))).toBe('{"value":{"__proto__":1},"x":2}');
    expect(outputJson(echoed)).toBe('{"value":{"__proto__":1},"x":2}');
  });

  it("keeps at most 8 of an output's top-level flags in its marker: a map of counters must not make a marker as large as itself", () => {
    const counters = Object.fromEntries(Array.from({ length: 300_000 }, (_, i) => [`k${i}`, i]));
    const r = measuredOutput(counters, false);
    expect(r.output).toEqual({ error: "output_too_large", chars: JSON.stringify(counters).length, limit: outputCharsMax, k0: 0, k1: 1, k2: 2, k3: 3, k4: 4, k5: 5, k6: 6, k7: 7 });
    expect(r.text.length).toBeLessThan(200);
  });

  it("an output over outputCharsMax is replaced by the marker with its exact length", () => {
    const big = new StoredJson(JSON.stringify("x".repeat(outputCharsMax)));
    const r = measuredOutput({ value: big }, true);
    expect(r.output).toEqual({ error: "output_too_large", chars: outputCharsMax + 12, limit: outputCharsMax });
    expect(r.text).toBe(JSON.stringify(r.output));
  });
});

describe("applying a txn of large gets", () => {
  const entry = (seq: number, command: unknown): Entry => ({ seq, epoch: 1, kind: "command", client: "c", request: seq, command, timestamp: "t", hash: "" });

  it("parses no stored value when the output is too large, and answers exactly what parsing would", () => {
    const state = new DigestedState(new MemoryRowStore());
    const value = Array.from({ length: 20_000 }, (_, i) => i % 10); // 40,001 characters
    for (let i = 0; i < 16; i++) applyEntry(state, kv, entry(i + 1, { op: "put", key: `k${i}`, value }));
    const gets = (n: number) => ({ op: "txn", success: Array.from({ length: n }, (_, i) => ({ op: "get", key: `k${i}` })) });
    const plainText = (n: number) => JSON.stringify({ succeeded: true, results: Array.from({ length: n }, () => ({ value })) });

    const parse = vi.spyOn(JSON, "parse");
    const over = applyEntry(state, kv, entry(100, gets(16)));
    const parsedLarge = parse.mock.calls.filter(([text]) => typeof text === "string" && text.length > 10_000).length;
    parse.mockRestore();
    expect(parsedLarge).toBe(0);
    // The txn ran its success branch: the marker keeps `succeeded`, so the client knows which.
    expect(over.output).toEqual({ error: "output_too_large", chars: plainText(16).length, limit: outputCharsMax, succeeded: true });

    const under = applyEntry(state, kv, entry(101, gets(2)));
    expect(under.output).toEqual({ succeeded: true, results: [{ value }, { value }] });
  });

  it("a compare or a cas against a large stored value parses it only when the texts are as long", () => {
    const state = new DigestedState(new MemoryRowStore());
    const value = Array.from({ length: 20_000 }, (_, i) => i % 10);
    applyEntry(state, kv, entry(1, { op: "put", key: "big", value }));
    const parse = vi.spyOn(JSON, "parse");
    const txn = applyEntry(state, kv, entry(2, { op: "txn", compare: [{ key: "big", value: 1 }], success: [], failure: [{ op: "cas", key: "big", expected: 2, value: 3 }, { op: "incr", key: "big", by: 1 }] }));
    const parsedLarge = parse.mock.calls.filter(([text]) => typeof text === "string" && text.length > 10_000).length;
    parse.mockRestore();
    // The failed cas answers the current value: parsed once, for the answer.
    expect(parsedLarge).toBe(1);
    expect(txn.output).toEqual({ succeeded: false, results: [{ ok: false, value }, { error: "not_integer" }] });
    const equal = applyEntry(state, kv, entry(3, { op: "txn", compare: [{ key: "big", value }], success: [{ op: "delete", key: "big" }] }));
    expect(equal.output).toEqual({ succeeded: true, results: [{ deleted: true }] });
  });
});

describe("a session row's copy of an output (GroupConfig.sessionOutputFreeChars)", () => {
  const entry = (seq: number, request: number, command: unknown): Entry => ({ seq, epoch: 1, kind: "command", client: "c", request, command, timestamp: "t", hash: "" });
  const value = "v".repeat(60_000);
  const sevenGets = { op: "txn", success: Array.from({ length: 7 }, () => ({ op: "get", key: "big" })) };

  function filled(): DigestedState {
    const state = new DigestedState(new MemoryRowStore());
    applyEntry(state, kv, entry(1, 1, { op: "put", key: "big", value }), undefined, null, sessionOutputFreeCharsDefault);
    return state;
  }
  const sessionChars = (state: DigestedState) => state.scan("s/", null, 1_000).reduce((n, [k, v]) => n + k.length + v.length, 0);

  it("answers a read through the log whole, keeps its marker, and a retry answers the marker: a small command stores little", () => {
    const state = filled();
    const before = sessionChars(state);
    const first = applyEntry(state, kv, entry(2, 2, sevenGets), undefined, null, sessionOutputFreeCharsDefault);
    expect(first.status).toBe("ok");
    expect((first.output as { results: unknown[] }).results).toHaveLength(7);
    const chars = JSON.stringify(first.output).length;
    const marker = { error: "output_not_kept", chars, limit: JSON.stringify(sevenGets).length + sessionOutputFreeCharsDefault, succeeded: true };
    // The row holds the marker, not 420 K characters of values read (a probe: 14.5 MB a 7 KB batch).
    expect(sessionChars(state) - before).toBeLessThan(1_000);
    expect(lookupSession(state, "c", 2)).toMatchObject({ kind: "found", seq: 2, output: marker });
    const retry = applyEntry(state, kv, entry(3, 2, sevenGets), undefined, null, sessionOutputFreeCharsDefault);
    expect([retry.status, retry.originalSeq, retry.output]).toEqual(["duplicate", 2, marker]);
  });

  it("keeps whole an output no more than sessionOutputFreeChars longer than its command (a put's previous value over a put as large)", () => {
    const state = filled();
    const again = applyEntry(state, kv, entry(2, 2, { op: "put", key: "big", value: value.replace("v", "w") }), undefined, null, sessionOutputFreeCharsDefault);
    expect(lookupSession(state, "c", 2)).toMatchObject({ kind: "found", output: again.output });
    expect((again.output as { previous: string }).previous).toBe(value);
  });

  it("keeps whole a put's previous value however small the put: the output holds no more than the row it replaced", () => {
    const state = filled();
    const small = applyEntry(state, kv, entry(2, 2, { op: "put", key: "big", value: 1 }), undefined, null, sessionOutputFreeCharsDefault);
    expect((small.output as { previous: string }).previous).toBe(value);
    expect(lookupSession(state, "c", 2)).toMatchObject({ kind: "found", output: small.output });
    // A small write beside large reads brings little: the reads are not kept.
    const mixed = { op: "txn", success: [{ op: "put", key: "tiny", value: 2 }, ...sevenGets.success.slice(0, 2)] };
    applyEntry(state, kv, entry(3, 3, { op: "put", key: "big", value }), undefined, null, sessionOutputFreeCharsDefault);
    applyEntry(state, kv, entry(4, 4, mixed), undefined, null, sessionOutputFreeCharsDefault);
    expect(lookupSession(state, "c", 4)).toMatchObject({ kind: "found", output: { error: "output_not_kept", succeeded: true } });
    // What the entry wrote itself and took back is not what the state gave up (a review: a put of
    // 30 KB then its delete let 60 KB of reads be kept).
    const churn = { op: "txn", success: [{ op: "put", key: "tmp", value: "t".repeat(30_000) }, { op: "delete", key: "tmp" }, { op: "get", key: "big" }] };
    applyEntry(state, kv, entry(5, 5, churn), undefined, null, sessionOutputFreeCharsDefault);
    expect(lookupSession(state, "c", 5)).toMatchObject({ kind: "found", output: { error: "output_not_kept", succeeded: true } });
  });

  it("counts the command alone in a group made under that rule (4096, from 10:36 to 10:54 on 2026-12-06): replayed under today's, its digest moved and every replica quarantined itself (an upgrade probe)", () => {
    const state = new DigestedState(new MemoryRowStore());
    applyEntry(state, kv, entry(1, 1, { op: "put", key: "big", value }), undefined, null, sessionOutputFreeCharsCommandOnly);
    const small = applyEntry(state, kv, entry(2, 2, { op: "put", key: "big", value: "small" }), undefined, null, sessionOutputFreeCharsCommandOnly);
    expect((small.output as { previous: string }).previous).toBe(value);
    const limit = JSON.stringify({ op: "put", key: "big", value: "small" }).length + sessionOutputFreeCharsCommandOnly;
    expect(lookupSession(state, "c", 2)).toMatchObject({ kind: "found", output: { error: "output_not_kept", chars: JSON.stringify(small.output).length, limit } });
    // The rule is keyed on that value, so no later default may take it (a review).
    expect(sessionOutputFreeCharsDefault).not.toBe(sessionOutputFreeCharsCommandOnly);
  });

  it("keeps every output whole in a group made before (no setting): its replicas apply as they always did", () => {
    const state = filled();
    const first = applyEntry(state, kv, entry(2, 2, sevenGets));
    expect(lookupSession(state, "c", 2)).toMatchObject({ kind: "found", output: first.output });
  });
});
