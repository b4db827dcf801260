import { z } from "zod";
import { keyBytesMax, listLimitDefault, listLimitMax, pageBytesMax, txnCommandsMax, txnComparesMax, valueBytesMax } from "../limits.js";
import { compareCodePoints, utf8Length } from "../text.js";
import type { StoredJson } from "./output.js";
import type { MachineState, StateMachine } from "./types.js";

// Keys are bounded in UTF-8 bytes, which JSON Schema cannot say: the refinement checks them (its
// message is the one a 400 gives), and `max` only documents a sound bound in characters (a key of
// more than keyBytesMax characters has more than keyBytesMax bytes; it never fails where the
// refinement passes), with the exact limit in the description.
const keyBytes = `at most ${keyBytesMax} bytes in UTF-8 (so at most ${keyBytesMax} characters, fewer if some take several bytes)`;
const key = z
  .string()
  .min(1)
  .refine((k) => utf8Length(k) <= keyBytesMax, { message: `must be at most ${keyBytesMax} bytes` })
  .max(keyBytesMax)
  .describe(`a key: ${keyBytes}; a longer one is a 400`);

/** Any JSON value; size is checked separately (oversized) so it can answer 413 rather than 400. */
const value = z.json().describe(`any JSON value, at most ${valueBytesMax} bytes serialized (its JSON text in UTF-8); a larger one is a 413 \`too_large\``);
/** A list's prefix or start: at most a key's length (a longer prefix matches nothing), may be empty. */
const keyPart = z
  .string()
  .refine((k) => utf8Length(k) <= keyBytesMax, { message: `must be at most ${keyBytesMax} bytes` })
  .max(keyBytesMax)
  .describe(`${keyBytes}; a longer one is a 400`);

const kvOne = [
  z.object({ op: z.literal("put"), key, value }).strict(),
  z.object({ op: z.literal("get"), key }).strict(),
  z.object({ op: z.literal("delete"), key }).strict(),
  z.object({ op: z.literal("cas"), key, expected: value.nullable(), value }).strict(),
  z.object({ op: z.literal("incr"), key, by: z.number().int().refine(Number.isSafeInteger) }).strict(),
] as const;
/** A command a txn may run: any single-key command (no nested txn). */
const kvSubCommand = z.discriminatedUnion("op", [...kvOne]);
export type KvSubCommand = z.infer<typeof kvSubCommand>;

/** etcd's Txn: if every compare holds (null: the key is absent), `success` runs, else `failure`, in one entry. */
const kvTxn = z
  .object({
    op: z.literal("txn"),
    compare: z.array(z.object({ key, value: value.nullable() }).strict()).max(txnComparesMax).optional(),
    success: z.array(kvSubCommand).max(txnCommandsMax).optional(),
    failure: z.array(kvSubCommand).max(txnCommandsMax).optional(),
  })
  .strict();
export type KvTxn = z.infer<typeof kvTxn>;

const kvCommand = z.discriminatedUnion("op", [...kvOne, kvTxn]);
export type KvCommand = z.infer<typeof kvCommand>;

const kvQuery = z.discriminatedUnion("op", [
  z.object({ op: z.literal("get"), key }).strict(),
  z
    .object({
      op: z.literal("list"),
      prefix: keyPart.optional(),
      after: keyPart.optional(),
      limit: z.number().int().min(1).max(listLimitMax).optional(),
    })
    .strict(),
]);
export type KvQuery = z.infer<typeof kvQuery>;

/** What rows take as stored ("m/" + key, the value's JSON): the measure the byte bound uses. */
function storedBytes(rows: [string, unknown][]): number {
  let n = 0;
  for (const [k, v] of rows) n += 2 + k.length + JSON.stringify(v).length;
  return n;
}

const tooBig = (v: unknown) => utf8Length(JSON.stringify(v)) > valueBytesMax;

/**
 * Equal as JSON values: objects by their members whatever their order, arrays element by element.
 * (Comparing JSON.stringify text made {"a":1,"b":2} differ from {"b":2,"a":1}, so a cas or a txn
 * compare failed on an equal value sent with its keys in another order.) Depth is bounded at the
 * edge (jsonDepthMax), so the recursion is too.
 */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((x, i) => sameJson(x, b[i]));
  }
  const [ao, bo] = [a as Record<string, unknown>, b as Record<string, unknown>];
  const keys = Object.keys(ao);
  if (keys.length !== Object.keys(bo).length) return false;
  return keys.every((k) => Object.hasOwn(bo, k) && sameJson(ao[k], bo[k]));
}

/**
 * sameJson(the stored value, v), parsing the stored text only if it is as long as v's: equal JSON
 * values have texts of equal length (the same members, in some order), so a compare against a
 * large stored value costs at most what the command itself carries.
 */
function sameStored(stored: StoredJson | null, v: unknown): boolean {
  if (stored === null) return v === null;
  if (stored.text.length !== (JSON.stringify(v) ?? "").length) return false;
  return sameJson(JSON.parse(stored.text), v);
}

/** Characters of the longest safe integer's JSON text ("-9007199254740991"). */
const safeIntegerCharsMax = 17;

// Values an output answers as they are stored (put's previous, get's value, a failed cas's
// current) are read unparsed: see shared/machines/output.ts.
function applyOne(state: MachineState, c: KvSubCommand): unknown {
  switch (c.op) {
    case "put": {
      const previous = state.getStored(c.key);
      state.put(c.key, c.value);
      return { previous };
    }
    case "get":
      return { value: state.getStored(c.key) };
    case "delete":
      return { deleted: state.delete(c.key) };
    case "cas": {
      const current = state.getStored(c.key);
      if (!sameStored(current, c.expected)) return { ok: false, value: current };
      state.put(c.key, c.value);
      return { ok: true, value: c.value };
    }
    case "incr": {
      const stored = state.getStored(c.key);
      if (stored !== null && stored.text.length > safeIntegerCharsMax) return { error: "not_integer" };
      // A stored null counts as absent (0), as get() made it.
      const current = (stored === null ? null : (JSON.parse(stored.text) as unknown)) ?? 0;
      if (typeof current !== "number" || !Number.isSafeInteger(current)) return { error: "not_integer" };
      const next = current + c.by;
      if (!Number.isSafeInteger(next)) return { error: "overflow" };
      state.put(c.key, next);
      return { value: next };
    }
  }
}

/** Compares first, then one branch, each command seeing the ones before it: atomic, since an entry applies whole. */
function applyTxn(state: MachineState, c: KvTxn): unknown {
  const succeeded = (c.compare ?? []).every((cmp) => sameStored(state.getStored(cmp.key), cmp.value));
  const run = (succeeded ? c.success : c.failure) ?? [];
  return { succeeded, results: run.map((sub) => applyOne(state, sub)) };
}

function oversizedOne(c: KvSubCommand): string | null {
  if ((c.op === "put" || c.op === "cas") && tooBig(c.value)) return "value";
  if (c.op === "cas" && tooBig(c.expected)) return "expected";
  return null;
}

export const kv: StateMachine<KvCommand, KvQuery> = {
  name: "kv",
  commandSchema: kvCommand,
  querySchema: kvQuery,

  apply(state: MachineState, c: KvCommand): unknown {
    return c.op === "txn" ? applyTxn(state, c) : applyOne(state, c);
  },

  keysOf(c: KvCommand): string[] {
    if (c.op !== "txn") return [c.key];
    return [...(c.compare ?? []), ...(c.success ?? []), ...(c.failure ?? [])].map((x) => x.key);
  },

  goesAtQuota: {
    test(c: KvCommand): boolean {
      if (c.op !== "txn") return c.op === "delete";
      // Deletes only, and nothing else the entry would store: a txn's compares carry values (up to
      // 64 KiB each), and an empty txn frees nothing (a review: both went at the quota).
      const ops = [...(c.success ?? []), ...(c.failure ?? [])];
      return (c.compare ?? []).length === 0 && ops.length > 0 && ops.every((x) => x.op === "delete");
    },
    commands: "delete, or a txn of deletes only",
  },

  oversized(c: KvCommand): string | null {
    if (c.op !== "txn") return oversizedOne(c);
    for (const [i, cmp] of (c.compare ?? []).entries()) if (tooBig(cmp.value)) return `compare.${i}.value`;
    for (const branch of ["success", "failure"] as const) {
      for (const [i, sub] of (c[branch] ?? []).entries()) {
        const field = oversizedOne(sub);
        if (field !== null) return `${branch}.${i}.${field}`;
      }
    }
    return null;
  },

  // The limits a put enforces, so a restored row is one a put could have written: a longer key
  // could be neither read nor deleted (every command refuses it).
  checkRow(k: string, v: unknown): string | null {
    if (utf8Length(k) > keyBytesMax) return `key: longer than ${keyBytesMax} bytes`;
    if (tooBig(v)) return `value: larger than ${valueBytesMax} bytes serialized`;
    return null;
  },

  query(state: MachineState, q: KvQuery): unknown {
    if (q.op === "get") return { value: state.get<unknown>(q.key) };
    const limit = q.limit ?? listLimitDefault;
    const prefix = q.prefix ?? "";
    // Code point order, as everywhere (SQLite's, the memory store's): not JS's UTF-16 order.
    const after = q.after !== undefined && compareCodePoints(q.after, prefix) >= 0 ? q.after : null;
    // One row more than asked for says whether another page follows. (`page.more` only says rows
    // *may* follow, and depends on which rows a replica has saved: two replicas at the same
    // position answered `next` differently.) A page cut by its byte bound has a next page too.
    const page = state.page<unknown>(prefix, after, limit + 1, pageBytesMax);
    const items = page.rows.slice(0, limit);
    const result: { items: [string, unknown][]; next?: string } = { items };
    const cutByBytes = page.rows.length <= limit && page.more && storedBytes(items) >= pageBytesMax;
    if ((page.rows.length > limit || cutByBytes) && items.length > 0) result.next = items[items.length - 1]![0];
    return result;
  },

  // The simulator's mix (test/sim/clients.ts): a few keys, so commands contend.
  generate: {
    command(rng): KvCommand {
      const key = `k${rng.int(6)}`;
      switch (rng.int(7)) {
        case 6:
          return {
            op: "txn",
            compare: [{ key, value: rng.chance(0.3) ? null : rng.int(1000) }],
            success: [{ op: "put", key, value: rng.int(1000) }, { op: "incr", key: `n${key}`, by: 1 }],
            failure: [{ op: "get", key }, { op: "delete", key: `k${rng.int(6)}` }],
          };
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
