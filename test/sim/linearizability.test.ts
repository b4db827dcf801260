import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { checkHistory, type History, type Operation } from "./linearizability.js";
import { Prng } from "./prng.js";

const op = (client: number, call: number, ret: number | null, input: any, output?: unknown): Operation =>
  ret === null ? { client, call, return: null, input } : { client, call, return: ret, input, output };
const kv = (operations: Operation[]): History => ({ model: "kv", operations });

describe("linearizability checker: hand-made histories", () => {
  it("accepts a sequential history and concurrent operations in either order", () => {
    expect(
      checkHistory(
        kv([
          op(0, 0, 1, { op: "put", key: "x", value: 1 }, { previous: null }),
          op(1, 2, 3, { op: "get", key: "x" }, { value: 1 }),
          op(0, 4, 8, { op: "put", key: "x", value: 2 }, { previous: 1 }),
          op(1, 5, 6, { op: "get", key: "x" }, { value: 2 }),
          op(2, 5, 9, { op: "get", key: "x" }, { value: 2 }),
        ]),
      ).linearizable,
    ).toBe(true);
  });

  it("leaves out reads of unknown outcome: forty of them beside a put do not blow up the search", () => {
    const ops = [op(0, 0, 100, { op: "put", key: "x", value: 1 }, { previous: null })];
    for (let i = 0; i < 40; i++) ops.push(op(1 + i, 1, null, i % 2 ? { op: "get", key: "x" } : { op: "txn", compare: [{ key: "x", value: 1 }], success: [{ op: "get", key: "x" }] }));
    ops.push(op(50, 101, 102, { op: "get", key: "x" }, { value: 1 }));
    expect(checkHistory(kv(ops)).linearizable).toBe(true);
    // Still a verdict on the rest: a later read of a value never written is caught.
    ops.push(op(51, 103, 104, { op: "get", key: "x" }, { value: 7 }));
    expect(checkHistory(kv(ops)).linearizable).toBe(false);
  });

  it("rejects a stale read (a read after a completed write sees the old value)", () => {
    const r = checkHistory(
      kv([
        op(0, 0, 1, { op: "put", key: "x", value: 1 }, { previous: null }),
        op(0, 2, 3, { op: "put", key: "x", value: 2 }, { previous: 1 }),
        op(1, 4, 5, { op: "get", key: "x" }, { value: 1 }),
      ]),
    );
    expect(r).toMatchObject({ linearizable: false, key: "x" });
  });

  it("rejects a lost write (an acknowledged put that later reads never saw and a later put did not overwrite)", () => {
    const r = checkHistory(
      kv([
        op(0, 0, 1, { op: "put", key: "x", value: 1 }, { previous: null }),
        op(1, 2, 3, { op: "incr", key: "n", by: 1 }, { value: 1 }),
        op(1, 4, 5, { op: "get", key: "x" }, { value: null }),
      ]),
    );
    expect(r).toMatchObject({ linearizable: false, key: "x" });
    // The failing key's operations only, not the whole history.
    if (!r.linearizable) expect(r.operations).toHaveLength(2);
  });

  it("rejects non-monotonic reads across a failed CAS", () => {
    // The CAS failed because it saw 2, so x was 2 at that point; a later read seeing 1 again is impossible.
    const r = checkHistory(
      kv([
        op(0, 0, 1, { op: "put", key: "x", value: 1 }, { previous: null }),
        op(1, 2, 10, { op: "put", key: "x", value: 2 }, { previous: 1 }),
        op(2, 3, 4, { op: "cas", key: "x", expected: 1, value: 3 }, { ok: false, value: 2 }),
        op(2, 5, 6, { op: "get", key: "x" }, { value: 1 }),
      ]),
    );
    expect(r.linearizable).toBe(false);
  });

  it("accepts an unknown-outcome put that is seen later, and one that is never seen", () => {
    const seen = kv([
      op(0, 0, null, { op: "put", key: "x", value: 7 }),
      op(1, 5, 6, { op: "get", key: "x" }, { value: null }),
      op(1, 10, 11, { op: "get", key: "x" }, { value: 7 }),
    ]);
    expect(checkHistory(seen).linearizable).toBe(true);
    const never = kv([op(0, 0, null, { op: "put", key: "x", value: 7 }), op(1, 5, 6, { op: "get", key: "x" }, { value: null })]);
    expect(checkHistory(never).linearizable).toBe(true);
    // But it cannot take effect before its call.
    const early = kv([op(1, 0, 1, { op: "get", key: "x" }, { value: 7 }), op(0, 5, null, { op: "put", key: "x", value: 7 })]);
    expect(checkHistory(early).linearizable).toBe(false);
    // Nor be undone once seen.
    const undone = kv([
      op(0, 0, null, { op: "put", key: "x", value: 7 }),
      op(1, 5, 6, { op: "get", key: "x" }, { value: 7 }),
      op(1, 7, 8, { op: "get", key: "x" }, { value: null }),
    ]);
    expect(checkHistory(undone).linearizable).toBe(false);
  });

  it("models cas, incr and delete outputs", () => {
    expect(
      checkHistory(
        kv([
          op(0, 0, 1, { op: "cas", key: "x", expected: null, value: 5 }, { ok: true, value: 5 }),
          op(0, 2, 3, { op: "incr", key: "x", by: 2 }, { value: 7 }),
          op(0, 4, 5, { op: "delete", key: "x" }, { deleted: true }),
          op(0, 6, 7, { op: "delete", key: "x" }, { deleted: false }),
          op(0, 8, 9, { op: "put", key: "x", value: "s" }, { previous: null }),
          op(0, 10, 11, { op: "incr", key: "x", by: 1 }, { error: "not_integer" }),
        ]),
      ).linearizable,
    ).toBe(true);
    expect(checkHistory(kv([op(0, 0, 1, { op: "incr", key: "x", by: 2 }, { value: 3 })])).linearizable).toBe(false);
  });
});

/** A linearizable history by construction: ops take effect at a random point inside their interval. */
function randomHistory(seed: number, count: number, keys: number, clients: number): History {
  const rng = new Prng(seed);
  const state = new Map<string, unknown>();
  const ops: Operation[] = [];
  const clientFree = Array.from({ length: clients }, () => 0);
  type Pending = { o: Operation; at: number };
  const pending: Pending[] = [];
  for (let i = 0; i < count; i++) {
    const c = i % clients;
    const call = clientFree[c]! + rng.int(3);
    const at = call + 1 + rng.int(20);
    const ret = at + 1 + rng.int(20);
    clientFree[c] = ret + 1;
    const key = `k${rng.int(keys)}`;
    const kind = rng.int(4);
    const input: any =
      kind === 0
        ? { op: "put", key, value: i }
        : kind === 1
          ? { op: "get", key }
          : kind === 2
            ? { op: "incr", key: `n${key}`, by: 1 }
            : { op: "cas", key, expected: null, value: i };
    pending.push({ o: { client: c, call, return: rng.chance(0.02) ? null : ret, input }, at });
  }
  pending.sort((a, b) => a.at - b.at);
  for (const { o } of pending) {
    const cur = state.get((o.input as any).key) ?? null;
    let output: unknown;
    switch (o.input.op) {
      case "put":
        output = { previous: cur };
        state.set(o.input.key, o.input.value);
        break;
      case "get":
        output = { value: cur };
        break;
      case "incr":
        output = { value: ((cur as number) ?? 0) + 1 };
        state.set(o.input.key, (output as any).value);
        break;
      case "cas": {
        const ok = cur === null;
        if (ok) state.set(o.input.key, o.input.value);
        output = { ok, value: ok ? o.input.value : cur };
        break;
      }
    }
    if (o.return !== null) o.output = output;
    ops.push(o);
  }
  return kv(ops);
}

describe("linearizability checker: scale and CLI", () => {
  it("decides a 10,000-operation history over 100 keys (and finds one corrupted output in it)", () => {
    const h = randomHistory(7, 10_000, 50, 40);
    expect(checkHistory(h)).toMatchObject({ linearizable: true, keys: 100, operations: 10_000 });
    const broken = structuredClone(h);
    const victim = broken.operations.find((o) => o.input.op === "get" && o.return !== null && (o.output as any).value !== null)!;
    victim.output = { value: "never-written" };
    const r = checkHistory(broken);
    expect(r).toMatchObject({ linearizable: false, key: (victim.input as any).key });
  });

  it("npm run check-history prints the verdict and exits 0 or 1", () => {
    const dir = mkdtempSync(join(tmpdir(), "hist-"));
    const good = join(dir, "good.json");
    const bad = join(dir, "bad.json");
    writeFileSync(good, JSON.stringify(randomHistory(3, 200, 5, 4)));
    writeFileSync(
      bad,
      JSON.stringify(
        kv([
          op(0, 0, 1, { op: "put", key: "x", value: 1 }, { previous: null }),
          op(1, 2, 3, { op: "get", key: "x" }, { value: null }),
        ]),
      ),
    );
    const run = (file: string) => {
      try {
        return { code: 0, out: execFileSync("npx", ["tsx", "test/sim/check-history.ts", file], { encoding: "utf8", stdio: "pipe" }) };
      } catch (err: any) {
        return { code: err.status as number, out: String(err.stdout) };
      }
    };
    expect(run(good)).toMatchObject({ code: 0, out: "linearizable\n" });
    const r = run(bad);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^not linearizable\nkey "x": 2 operations/);
  });

  it("checks txns over the keys they join: a read after a committed txn must see its writes", () => {
    const ops = [
      { client: 1, call: 0, return: 1, input: { op: "put", key: "x", value: 1 }, output: { previous: null } },
      {
        client: 2,
        call: 2,
        return: 3,
        input: { op: "txn", compare: [{ key: "x", value: 1 }], success: [{ op: "put", key: "y", value: 2 }, { op: "delete", key: "x" }], failure: [] },
        output: { succeeded: true, results: [{ previous: null }, { deleted: true }] },
      },
      { client: 3, call: 4, return: 5, input: { op: "get", key: "y" }, output: { value: 2 } },
      { client: 1, call: 6, return: 7, input: { op: "get", key: "x" }, output: { value: null } },
      { client: 4, call: 0, return: 9, input: { op: "put", key: "z", value: 3 }, output: { previous: null } },
    ] as any[];
    expect(checkHistory({ model: "kv", operations: ops })).toMatchObject({ linearizable: true, keys: 2 });
    const stale = structuredClone(ops);
    stale[2].output = { value: null };
    expect(checkHistory({ model: "kv", operations: stale })).toMatchObject({ linearizable: false });
    const wrongBranch = structuredClone(ops);
    wrongBranch[1].output = { succeeded: false, results: [] };
    expect(checkHistory({ model: "kv", operations: wrongBranch })).toMatchObject({ linearizable: false });
  });
});
