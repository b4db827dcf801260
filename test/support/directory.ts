// The directory's core over maps, as the Durable Object's SQLite keeps it: for unit tests of the
// directory and of what the drivers record there.
import { DirectoryCore, type DirectoryStore } from "../../shared/control/directory.js";

/**
 * A DirectoryCore over maps; its history kept in order and bounded per kind, as the object's is.
 * `firstIncarnation`: the incarnation its first creation gets (the simulator's groups are 0).
 */
export function memoryDirectory(firstIncarnation = 1): DirectoryCore {
  const kv = new Map<string, unknown>([["incarnation", firstIncarnation - 1]]);
  const history: { kind: string; body: unknown }[] = [];
  const store: DirectoryStore = {
    get: (k) => structuredClone(kv.get(k) ?? null),
    put: (k, v) => void kv.set(k, structuredClone(v)),
    delete: (k) => void kv.delete(k),
    list: (prefix) => [...kv].filter(([k]) => k.startsWith(prefix)).sort(([a], [b]) => (a < b ? -1 : 1)),
    append: (kind, body, keepMax) => {
      history.push({ kind, body: structuredClone(body) });
      const mine = history.filter((h) => h.kind === kind);
      for (const old of mine.slice(0, Math.max(0, mine.length - keepMax))) history.splice(history.indexOf(old), 1);
    },
    recent: (kind, limit) => history.filter((h) => h.kind === kind).reverse().slice(0, limit).map((h) => structuredClone(h.body)),
    clearHistory: () => void history.splice(0),
    transaction: (fn) => fn(),
  };
  return new DirectoryCore(store);
}
