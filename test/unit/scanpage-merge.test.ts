// DigestedState.scanPage (the stored rows merged with the unsaved ones) against a naive merge: a
// page is exactly the first rows of the merged order within limit and bytes, "more" when any follow.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { MemoryRowStore } from "../../shared/protocol/memory.js";
import { DigestedState } from "../../shared/protocol/state.js";
import { compareCodePoints } from "../../shared/text.js";

const spaces = ["m/", "s/2:c1/", "d/"];
const keyArb = fc.tuple(fc.constantFrom(...spaces), fc.integer({ min: 0, max: 30 })).map(([p, n]) => (p === "s/2:c1/" ? p + String(n).padStart(16, "0") : p === "d/" ? `${p}${String(n).padStart(16, "0")}/2:c${n % 3}` : `${p}k${String(n).padStart(2, "0")}`));
const valArb = fc.integer({ min: 1, max: 40 }).map((n) => "v".repeat(n));
const opArb = fc.tuple(keyArb, fc.option(valArb, { nil: null }));

function reference(model: Map<string, string>, prefix: string, after: string | null, limit: number, bytesMax: number) {
  const all = [...model].filter(([k]) => k.startsWith(prefix) && (after === null || compareCodePoints(k, after) > 0)).sort((a, b) => compareCodePoints(a[0], b[0]));
  const out: [string, string][] = [];
  let bytes = 0;
  for (const r of all) {
    if (out.length >= limit || bytes >= bytesMax) break;
    out.push(r);
    bytes += r[0].length + r[1].length;
  }
  return { rows: out, all };
}

describe("scanPage vs a naive merge", () => {
  for (const withBytes of [false, true]) {
    it(`matches (bytesMax ${withBytes ? "finite" : "Infinity"})`, () => {
      fc.assert(
        fc.property(
          fc.array(opArb, { maxLength: 40 }),
          fc.array(opArb, { maxLength: 40 }),
          fc.constantFrom(...spaces),
          fc.option(keyArb, { nil: null }),
          fc.integer({ min: 1, max: 10 }),
          fc.integer({ min: 1, max: 200 }),
          (storedOps, unsavedOps, prefix, after, limit, b) => {
            const bytesMax = withBytes ? b : Infinity;
            const rows = new MemoryRowStore();
            const state = new DigestedState(rows);
            const model = new Map<string, string>();
            const apply = ([k, v]: [string, string | null]) => {
              if (v === null) (state.deleteRaw(k), model.delete(k));
              else (state.putRaw(k, v), model.set(k, v));
            };
            storedOps.forEach(apply);
            state.save();
            state.endStep();
            unsavedOps.forEach(apply);
            const got = state.scanPage(prefix, after, limit, bytesMax);
            const ref = reference(model, prefix, after, limit, bytesMax);
            // No row skipped and no row invented: a prefix of the reference's order.
            expect(got.rows).toEqual(ref.all.slice(0, got.rows.length));
            expect(got.rows).toEqual(ref.rows);
            if (ref.all.length > got.rows.length) expect(got.more).toBe(true);
          },
        ),
        { numRuns: 3000 },
      );
    });
  }
});

describe("a kv list over unsaved deletes of large rows", () => {
  it("answers the same before and after the save (it came back empty, with no next, while the deleted rows' bytes filled the page)", async () => {
    const { kv } = await import("../../shared/machines/kv.js");
    const state = new DigestedState(new MemoryRowStore());
    const view = state.machineView();
    const big = "x".repeat(62_000);
    for (let i = 0; i < 70; i++) view.put(`a${String(i).padStart(2, "0")}`, big);
    view.put("b", 1);
    state.save();
    state.endStep();
    for (let i = 0; i < 70; i++) view.delete(`a${String(i).padStart(2, "0")}`);
    const before = kv.query!(state.machineView(), { op: "list", limit: 10 } as never);
    state.save();
    state.endStep();
    const after = kv.query!(state.machineView(), { op: "list", limit: 10 } as never);
    expect(before).toEqual(after);
    expect(after).toMatchObject({ items: [["b", 1]] });
  });
});
