import { z } from "zod";
import { keyBytesMax, listLimitDefault, listLimitMax, pageBytesMax, valueBytesMax } from "../limits.js";
import { compareCodePoints, utf8Length } from "../text.js";
import type { MachineState, StateMachine } from "./types.js";

const key = z
  .string()
  .min(1)
  .refine((k) => utf8Length(k) <= keyBytesMax, { message: `must be at most ${keyBytesMax} bytes` });

/** Any JSON value; size is checked separately so it can answer 413 rather than 400. */
const value = z.json();

const kvCommand = z.discriminatedUnion("op", [
  z.object({ op: z.literal("put"), key, value }).strict(),
  z.object({ op: z.literal("get"), key }).strict(),
  z.object({ op: z.literal("delete"), key }).strict(),
  z.object({ op: z.literal("cas"), key, expected: value.nullable(), value }).strict(),
  z.object({ op: z.literal("incr"), key, by: z.number().int().refine(Number.isSafeInteger) }).strict(),
]);
export type KvCommand = z.infer<typeof kvCommand>;

const kvQuery = z.discriminatedUnion("op", [
  z.object({ op: z.literal("get"), key }).strict(),
  z
    .object({
      op: z.literal("list"),
      prefix: z.string().optional(),
      after: z.string().optional(),
      limit: z.number().int().min(1).max(listLimitMax).optional(),
    })
    .strict(),
]);
export type KvQuery = z.infer<typeof kvQuery>;

const tooBig = (v: unknown) => utf8Length(JSON.stringify(v)) > valueBytesMax;

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export const kv: StateMachine<KvCommand, KvQuery> = {
  name: "kv",
  commandSchema: kvCommand,
  querySchema: kvQuery,

  apply(state: MachineState, c: KvCommand): unknown {
    switch (c.op) {
      case "put": {
        const previous = state.get<unknown>(c.key);
        state.put(c.key, c.value);
        return { previous };
      }
      case "get":
        return { value: state.get<unknown>(c.key) };
      case "delete":
        return { deleted: state.delete(c.key) };
      case "cas": {
        const current = state.get<unknown>(c.key);
        if (!sameJson(current, c.expected)) return { ok: false, value: current };
        state.put(c.key, c.value);
        return { ok: true, value: c.value };
      }
      case "incr": {
        const current = state.get<unknown>(c.key) ?? 0;
        if (typeof current !== "number" || !Number.isSafeInteger(current)) return { error: "not_integer" };
        const next = current + c.by;
        if (!Number.isSafeInteger(next)) return { error: "overflow" };
        state.put(c.key, next);
        return { value: next };
      }
    }
  },

  keysOf(c: KvCommand): string[] {
    return [c.key];
  },

  oversized(c: KvCommand): string | null {
    if ((c.op === "put" || c.op === "cas") && tooBig(c.value)) return "value";
    if (c.op === "cas" && tooBig(c.expected)) return "expected";
    return null;
  },

  query(state: MachineState, q: KvQuery): unknown {
    if (q.op === "get") return { value: state.get<unknown>(q.key) };
    const limit = q.limit ?? listLimitDefault;
    const prefix = q.prefix ?? "";
    // Code point order, as everywhere (SQLite's, the memory store's): not JS's UTF-16 order.
    const after = q.after !== undefined && compareCodePoints(q.after, prefix) >= 0 ? q.after : null;
    const page = state.page<unknown>(prefix, after, limit, pageBytesMax);
    const result: { items: [string, unknown][]; next?: string } = { items: page.rows };
    if (page.more && page.rows.length > 0) result.next = page.rows[page.rows.length - 1]![0];
    return result;
  },

  // The simulator's mix (test/sim/clients.ts): a few keys, so commands contend.
  generate: {
    command(rng): KvCommand {
      const key = `k${rng.int(6)}`;
      switch (rng.int(6)) {
        case 0:
        case 1:
          return { op: "put", key, value: rng.int(1000) };
        case 2:
          return { op: "get", key };
        case 3:
          return { op: "cas", key, expected: rng.chance(0.5) ? null : rng.int(1000), value: rng.int(1000) };
        case 4:
          return { op: "incr", key: `n${key}`, by: 1 + rng.int(3) };
        default:
          return { op: "delete", key };
      }
    },
    query(rng): KvQuery {
      return rng.chance(0.8) ? { op: "get", key: `k${rng.int(6)}` } : { op: "list", limit: 1 + rng.int(8) };
    },
  },
};
