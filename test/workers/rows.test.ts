// SqlRowStore against the memory store on the same rows, inside workerd's SQLite: the queries
// whose bounds are computed (prefix upper bounds, descending last key) must agree with the model.
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { MemoryRowStore } from "../../shared/protocol/memory.js";
import { SqlRowStore } from "../../workers/sqlite.js";

const keys = ["a", "m/x", "s/1:c/0000000000000002", "s/1:c/0000000000000010", "s/1:d/0000000000000001", "s/2:c\u{10ffff}/1", "s/2:c\u{10ffff}/2", "s/\u{10ffff}", "t", "\u{10ffff}\u{10ffff}"];
const prefixes = ["", "s/", "s/1:c/", "s/1:d/", "s/1:e/", "s/2:c\u{10ffff}", "s/2:c\u{10ffff}/", "s/\u{10ffff}", "\u{10ffff}", "\u{10ffff}\u{10ffff}", "z"];

describe("SqlRowStore", () => {
  it("lastKey and scan agree with the memory store, prefixes ending in U+10FFFF included", async () => {
    const stub = env.REPLICA.get(env.REPLICA.idFromName("rows-test"));
    await runInDurableObject(stub, (_inst, state) => {
      SqlRowStore.create(state.storage.sql);
      const sql = new SqlRowStore(state.storage.sql);
      const memory = new MemoryRowStore();
      for (const k of keys) {
        sql.put(k, "v");
        memory.put(k, "v");
      }
      for (const p of prefixes) {
        expect(sql.lastKey(p), `lastKey(${JSON.stringify(p)})`).toBe(memory.lastKey(p));
        expect(sql.scan(p, null, 100), `scan(${JSON.stringify(p)})`).toEqual(memory.scan(p, null, 100));
      }
    });
  });
});
