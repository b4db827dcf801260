// The request bodies every bench load sends (bench.ts, compare.ts, profile.ts): the same puts, so
// figures from the three tools describe the same work. Client c's i-th request.

/** 100 bytes serialized, with its quotes. */
export const value100 = "v".repeat(98);
/** Puts per request in the batched loads (one smr batch, one etcd txn). */
export const batchPuts = 100;

/** One put of a distinct key per request. */
export function putBody(c: number, i: number): string {
  return JSON.stringify({ client: `c${c}`, request: i + 1, command: { op: "put", key: `k-${c}-${i}`, value: value100 } });
}

/** batchPuts puts of distinct keys in one request (API.md "Batches"). */
export function batchBody(c: number, i: number): string {
  return JSON.stringify({
    client: `b${c}`,
    commands: Array.from({ length: batchPuts }, (_, j) => ({ request: i * batchPuts + j + 1, command: { op: "put", key: `k-${c}-${i * batchPuts + j}`, value: value100 } })),
  });
}

/** The puts that write keys r0 .. r{keys-1} before a read load (32 clients). */
export function fillBody(keys: number): (c: number, i: number) => string {
  return (c, i) => JSON.stringify({ client: `fill${c}`, request: i + 1, command: { op: "put", key: `r${(i * 32 + c) % keys}`, value: value100 } });
}

/** A read of one of keys r0 .. r{keys-1}. */
export function readBody(keys: number, consistency: "sequential" | "linearizable", bookmark?: string): (c: number, i: number) => string {
  return (c, i) => JSON.stringify({ query: { op: "get", key: `r${(c * 7919 + i) % keys}` }, consistency, ...(bookmark ? { bookmark } : {}) });
}
