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
    // The tables are made by the first write, not here: any name can be looked up (a token that
    // merely looks like a group's is checked against that group's directory before anything else
    // is known), and a lookup must not leave storage behind for every name tried.
    const tablesExist = () => sql.exec<{ n: number }>("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'history'").one().n > 0;
    let made = tablesExist();
    const write = (): typeof sql => {
      if (!made) {
        sql.exec("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)");
        sql.exec("CREATE TABLE IF NOT EXISTS history (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, body TEXT NOT NULL)");
        made = true;
      }
      return sql;
    };
    const store: DirectoryStore = {
      get: (k) => {
        const row = made ? sql.exec<{ v: string }>("SELECT v FROM kv WHERE k = ?", k).toArray()[0] : undefined;
        return row ? JSON.parse(row.v) : null;
      },
      put: (k, v) => void write().exec("INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v", k, JSON.stringify(v)),
      delete: (k) => void (made && sql.exec("DELETE FROM kv WHERE k = ?", k)),
      list: (prefix) =>
        made ? sql.exec<{ k: string; v: string }>("SELECT k, v FROM kv WHERE substr(k, 1, ?) = ? ORDER BY k", prefix.length, prefix).toArray().map((r) => [r.k, JSON.parse(r.v)]) : [],
      append: (kind, body, keepMax) => {
        write().exec("INSERT INTO history (kind, body) VALUES (?, ?)", kind, JSON.stringify(body));
        sql.exec("DELETE FROM history WHERE kind = ? AND id NOT IN (SELECT id FROM history WHERE kind = ? ORDER BY id DESC LIMIT ?)", kind, kind, keepMax);
      },
      recent: (kind, limit) =>
        made ? sql.exec<{ body: string }>("SELECT body FROM history WHERE kind = ? ORDER BY id DESC LIMIT ?", kind, limit).toArray().map((r) => JSON.parse(r.body)) : [],
      clearHistory: () => void (made && sql.exec("DELETE FROM history")),
      transaction: (fn) => {
        try {
          return ctx.storage.transactionSync(fn);
        } catch (err) {
          made = tablesExist(); // a rolled-back first write took its tables with it
          throw err;
        }
      },
    };
    this.core = new DirectoryCore(store);
  }

  /** Every call of the directory's API (DirectoryCore, declared once): synchronous inside the object, one at a time. */
  async call<K extends DirectoryMethod>(method: K, args: Parameters<DirectoryCore[K]>): Promise<ReturnType<DirectoryCore[K]>> {
    const fn = this.core[method] as (...a: unknown[]) => ReturnType<DirectoryCore[K]>;
    return fn.apply(this.core, args);
  }
}

/** The core's public methods (its private ones are not part of keyof). */
export type DirectoryMethod = keyof DirectoryCore;

/** A directory as its callers see it: DirectoryCore's methods, asynchronous. */
export type DirectoryClient = { [K in DirectoryMethod]: (...args: Parameters<DirectoryCore[K]>) => Promise<ReturnType<DirectoryCore[K]>> };

/** The one adapter from the object's stub to its API. */
export function directoryClient(stub: { call(method: DirectoryMethod, args: unknown[]): Promise<unknown> }): DirectoryClient {
  return new Proxy({} as DirectoryClient, {
    get: (_, method) => (...args: unknown[]) => stub.call(method as DirectoryMethod, args),
  });
}
