// A linearizability checker for kv histories: Wing & Gong's search with Lowe's memoization
// (the algorithm of Porcupine and Knossos), after partitioning the history by the keys operations
// share (a history is linearizable iff each partition's sub-history is: operations of different
// partitions touch disjoint keys). A single-key operation is its key's partition; a txn joins
// the partitions of every key it names.
// Reads of unknown outcome are left out (they change nothing and constrain nothing).

/** States the search may remember before it gives up (an error, not a verdict). */
const searchStatesMax = Number(process.env.SIM_LIN_STATES ?? 4_000_000);

export interface Operation {
  client: number;
  call: number;
  /** null: the outcome is unknown; the operation may have taken effect at any time after its call. */
  return: number | null;
  input: KvInput;
  output?: unknown;
  /** "client/request", where the simulator knows it. */
  id?: string;
}

export type KvOne =
  | { op: "put"; key: string; value: unknown }
  | { op: "get"; key: string }
  | { op: "delete"; key: string }
  | { op: "cas"; key: string; expected: unknown; value: unknown }
  | { op: "incr"; key: string; by: number };
export type KvTxnInput = { op: "txn"; compare?: { key: string; value: unknown }[]; success?: KvOne[]; failure?: KvOne[] };
export type KvInput = KvOne | KvTxnInput;

/** The keys an operation touches. */
export function keysOf(input: KvInput): string[] {
  if (input.op !== "txn") return [input.key];
  return [...(input.compare ?? []), ...(input.success ?? []), ...(input.failure ?? [])].map((x) => x.key);
}

export interface History {
  model: "kv";
  operations: Operation[];
}

export type CheckResult =
  | { linearizable: true; keys: number; operations: number }
  | { linearizable: false; key: string; operations: Operation[] };

/**
 * The kv model over a partition's keys: the state is the JSON text of its [key, value text] pairs
 * in key order (absent keys left out), so equal states are equal strings for the memo.
 */
function step(state: string, input: KvInput, output: unknown, known: boolean): string | null {
  const values = new Map<string, string>(JSON.parse(state) as [string, string][]);
  const one = (c: KvOne, out: unknown): boolean => {
    const next = stepOne(values.get(c.key) ?? "null", c, out, known);
    if (next === null) return false;
    if (next === "null") values.delete(c.key);
    else values.set(c.key, next);
    return true;
  };
  if (input.op !== "txn") {
    if (!one(input, output)) return null;
  } else {
    const out = output as { succeeded?: boolean; results?: unknown[] } | undefined;
    const succeeded = (input.compare ?? []).every((c) => (values.get(c.key) ?? "null") === JSON.stringify(c.value ?? null));
    if (known && out?.succeeded !== succeeded) return null;
    const run = (succeeded ? input.success : input.failure) ?? [];
    if (known && out?.results?.length !== run.length) return null;
    for (let i = 0; i < run.length; i++) if (!one(run[i]!, out?.results?.[i])) return null;
  }
  return JSON.stringify([...values].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)));
}

/** One single-key command on that key's value text ("null": absent). */
function stepOne(state: string, input: KvOne, output: unknown, known: boolean): string | null {
  const out = output as Record<string, unknown> | undefined;
  const value = (v: unknown) => JSON.stringify(v ?? null);
  switch (input.op) {
    case "put":
      if (known && value(out?.previous) !== state) return null;
      return value(input.value);
    case "get":
      if (known && value(out?.value) !== state) return null;
      return state;
    case "delete":
      if (known && out?.deleted !== (state !== "null")) return null;
      return "null";
    case "cas": {
      const matches = state === value(input.expected);
      if (known) {
        if (out?.ok !== matches) return null;
        if (value(out?.value) !== (matches ? value(input.value) : state)) return null;
      }
      return matches ? value(input.value) : state;
    }
    case "incr": {
      const current = JSON.parse(state) as unknown;
      const numeric = current === null || (typeof current === "number" && Number.isSafeInteger(current));
      if (!numeric) {
        if (known && out?.error !== "not_integer") return null;
        return state;
      }
      const next = ((current as number | null) ?? 0) + input.by;
      if (known && out?.value !== next) return null;
      return JSON.stringify(next);
    }
  }
}

interface Node {
  op: number;
  isCall: boolean;
  time: number;
  match: Node | null;
  prev: Node | null;
  next: Node | null;
}

/** True if the operation changes no state whatever it finds (a get, or a txn of gets only). */
function readOnly(input: KvInput): boolean {
  if (input.op !== "txn") return input.op === "get";
  return [...(input.success ?? []), ...(input.failure ?? [])].every((c) => c.op === "get");
}

/** Checks one key's operations. Returns true if some linearization exists. */
export function checkPartition(all: Operation[], initial = "[]"): boolean {
  // A read of unknown outcome constrains nothing and changes nothing: leaving it out gives the
  // same verdict, and each one left in doubles the subsets the search may remember.
  const ops = all.filter((o) => o.return !== null || !readOnly(o.input));
  const events: Node[] = [];
  ops.forEach((o, i) => {
    const call: Node = { op: i, isCall: true, time: o.call, match: null, prev: null, next: null };
    const ret: Node = { op: i, isCall: false, time: o.return ?? Infinity, match: null, prev: null, next: null };
    call.match = ret;
    events.push(call, ret);
  });
  // Calls before returns at equal times: touching intervals count as concurrent (the permissive choice).
  events.sort((a, b) => a.time - b.time || (a.isCall === b.isCall ? 0 : a.isCall ? -1 : 1));
  const head: Node = { op: -1, isCall: false, time: -Infinity, match: null, prev: null, next: null };
  let prev = head;
  for (const e of events) {
    prev.next = e;
    e.prev = prev;
    prev = e;
  }
  const lift = (n: Node) => {
    n.prev!.next = n.next;
    if (n.next) n.next.prev = n.prev;
    const m = n.match!;
    m.prev!.next = m.next;
    if (m.next) m.next.prev = m.prev;
  };
  const unlift = (n: Node) => {
    const m = n.match!;
    m.prev!.next = m;
    if (m.next) m.next.prev = m;
    n.prev!.next = n;
    if (n.next) n.next.prev = n;
  };

  let linearized = 0n;
  let state = initial;
  const cache = new Set<string>();
  const stack: { node: Node; state: string }[] = [];
  let entry = head.next;
  while (entry !== null) {
    if (entry.isCall) {
      const o = ops[entry.op]!;
      const next = step(state, o.input, o.output, o.return !== null);
      if (next !== null) {
        const lin = linearized | (1n << BigInt(entry.op));
        const key = lin.toString(36) + "|" + next;
        if (!cache.has(key)) {
          // A bound on the search's memory: a long history with many concurrent operations of
          // unknown outcome can outgrow any memo (JS Sets stop at 2^24 entries anyway).
          if (cache.size >= searchStatesMax) throw new Error(`linearizability search gave up after ${searchStatesMax} states`);
          cache.add(key);
          stack.push({ node: entry, state });
          state = next;
          linearized = lin;
          lift(entry);
          entry = head.next;
          continue;
        }
      }
      entry = entry.next;
    } else {
      // Every completed operation is linearized once only unknown-outcome returns (at infinity) remain.
      if (entry.time === Infinity) return true;
      const top = stack.pop();
      if (!top) return false;
      state = top.state;
      linearized &= ~(1n << BigInt(top.node.op));
      unlift(top.node);
      entry = top.node.next;
    }
  }
  return true;
}

export function checkHistory(history: History): CheckResult {
  // Union-find over keys: operations that share a key (through a txn) share a partition.
  const parent = new Map<string, string>();
  const find = (k: string): string => {
    let r = k;
    while (parent.get(r) !== undefined && parent.get(r) !== r) r = parent.get(r)!;
    parent.set(k, r);
    return r;
  };
  for (const o of history.operations) {
    const [first, ...rest] = keysOf(o.input);
    if (first === undefined) continue;
    if (!parent.has(first)) parent.set(first, first);
    for (const k of rest) {
      if (!parent.has(k)) parent.set(k, k);
      parent.set(find(k), find(first));
    }
  }
  const byKey = new Map<string, Operation[]>();
  for (const o of history.operations) {
    const first = keysOf(o.input)[0];
    const root = first === undefined ? "" : find(first);
    const list = byKey.get(root) ?? [];
    list.push(o);
    byKey.set(root, list);
  }
  // Smallest partitions first, so a failure is reported with the fewest operations.
  const keys = [...byKey.keys()].sort((a, b) => byKey.get(a)!.length - byKey.get(b)!.length || (a < b ? -1 : 1));
  for (const key of keys) {
    const ops = byKey.get(key)!;
    if (!checkPartition(ops)) return { linearizable: false, key, operations: ops };
  }
  return { linearizable: true, keys: byKey.size, operations: history.operations.length };
}

/** Validates the JSON shape before checking (the CLI reads files written by anyone). */
export function parseHistory(text: string): History {
  const h = JSON.parse(text) as History;
  if (h?.model !== "kv" || !Array.isArray(h.operations)) throw new Error('expected {"model":"kv","operations":[...]}');
  h.operations.forEach((o, i) => {
    if (typeof o.call !== "number" || (o.return !== null && typeof o.return !== "number")) {
      throw new Error(`operations[${i}]: call must be a number and return a number or null`);
    }
    if (o.return !== null && o.return < o.call) throw new Error(`operations[${i}]: returns before its call`);
    const one = (x: any) => x && typeof x.key === "string" && ["put", "get", "delete", "cas", "incr"].includes(x.op);
    const txn = (x: any) => x?.op === "txn" && [x.compare ?? [], x.success ?? [], x.failure ?? []].every((l: any) => Array.isArray(l) && l.every((c: any) => typeof c?.key === "string")) && [...(x.success ?? []), ...(x.failure ?? [])].every(one);
    if (!one(o.input) && !txn(o.input)) {
      throw new Error(`operations[${i}].input: a kv put, get, delete, cas or incr with a key, or a txn of them`);
    }
    if (o.return !== null && !("output" in o)) throw new Error(`operations[${i}]: a completed operation needs an output`);
  });
  return h;
}
