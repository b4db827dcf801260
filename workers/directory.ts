import { DirectoryCore, type DirectoryStore } from "../shared/control/directory.js";
import { DurableObject } from "cloudflare:workers";
import type { Env } from "./env.js";

/**
 * One per group, named like the group: its durable control-plane record (config, membership,
 * incarnation, the sequencer in office, lifecycle state), its event and audit history, and its
 * tokens. Routers find a group here (cached), so no global object is on any group's data path;
 * the registry only lists names. The record outlives a DELETE as a tombstone holding the last
 * incarnation, so a recreated group's incarnation is always higher than every earlier one's.
 */
export class DirectoryObject extends DurableObject<Env> {
  private readonly core: DirectoryCore;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const sql = ctx.storage.sql;
    sql.exec("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)");
    sql.exec("CREATE TABLE IF NOT EXISTS history (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, body TEXT NOT NULL)");
    const store: DirectoryStore = {
      get: (k) => {
        const row = sql.exec<{ v: string }>("SELECT v FROM kv WHERE k = ?", k).toArray()[0];
        return row ? JSON.parse(row.v) : null;
      },
      put: (k, v) => void sql.exec("INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v", k, JSON.stringify(v)),
      delete: (k) => void sql.exec("DELETE FROM kv WHERE k = ?", k),
      list: (prefix) => sql.exec<{ k: string; v: string }>("SELECT k, v FROM kv WHERE substr(k, 1, ?) = ? ORDER BY k", prefix.length, prefix).toArray().map((r) => [r.k, JSON.parse(r.v)]),
      append: (kind, body, keepMax) => {
        sql.exec("INSERT INTO history (kind, body) VALUES (?, ?)", kind, JSON.stringify(body));
        sql.exec("DELETE FROM history WHERE kind = ? AND id NOT IN (SELECT id FROM history WHERE kind = ? ORDER BY id DESC LIMIT ?)", kind, kind, keepMax);
      },
      recent: (kind, limit) =>
        sql.exec<{ body: string }>("SELECT body FROM history WHERE kind = ? ORDER BY id DESC LIMIT ?", kind, limit).toArray().map((r) => JSON.parse(r.body)),
      clearHistory: () => void sql.exec("DELETE FROM history"),
      transaction: (fn) => ctx.storage.transactionSync(fn),
    };
    this.core = new DirectoryCore(store);
  }

  // Every method is the core's, synchronous inside the object (one call at a time).
  async get() {
    return this.core.get();
  }
  async create(...a: Parameters<DirectoryCore["create"]>) {
    return this.core.create(...a);
  }
  async setState(...a: Parameters<DirectoryCore["setState"]>) {
    return this.core.setState(...a);
  }
  async update(...a: Parameters<DirectoryCore["update"]>) {
    return this.core.update(...a);
  }
  async addEvent(...a: Parameters<DirectoryCore["addEvent"]>) {
    return this.core.addEvent(...a);
  }
  async events(...a: Parameters<DirectoryCore["events"]>) {
    return this.core.events(...a);
  }
  async addAudit(...a: Parameters<DirectoryCore["addAudit"]>) {
    return this.core.addAudit(...a);
  }
  async audits(...a: Parameters<DirectoryCore["audits"]>) {
    return this.core.audits(...a);
  }
  async addToken(...a: Parameters<DirectoryCore["addToken"]>) {
    return this.core.addToken(...a);
  }
  async tokens() {
    return this.core.tokens();
  }
  async token(...a: Parameters<DirectoryCore["token"]>) {
    return this.core.token(...a);
  }
  async revokeToken(...a: Parameters<DirectoryCore["revokeToken"]>) {
    return this.core.revokeToken(...a);
  }
}
