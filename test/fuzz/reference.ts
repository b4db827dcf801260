// Oracles for the fuzz harness: a plain reference state for the machines (a sorted map of JSON
// text, no digests, no sessions, no storage layer), and a model of the replicated session table
// (exactly-once: which entries execute, which are duplicates, conflicts, or expired). No Node
// imports: the workerd fuzz test uses them too.
import { sessionEvictBatch, sessionRequestsMax } from "../../shared/limits.js";
import type { MachineState } from "../../shared/machines/types.js";
import { StoredJson } from "../../shared/machines/output.js";
import { canonicalJson } from "../../shared/protocol/hash.js";
import { compareCodePoints } from "../../shared/text.js";
import type { ApplyStatus } from "../../shared/protocol/types.js";

/** The machine's state as a sorted map: what every replica's state must equal. */
export class ReferenceState implements MachineState {
  readonly rows = new Map<string, string>();
  /** Every key a command ever wrote (the list query must never show another). */
  readonly written = new Set<string>();

  get<T>(key: string): T | null {
    const v = this.rows.get(key);
    return v === undefined ? null : (JSON.parse(v) as T);
  }
  getStored(key: string): StoredJson | null {
    const v = this.rows.get(key);
    return v === undefined ? null : new StoredJson(v);
  }
  put(key: string, value: unknown): void {
    this.rows.set(key, JSON.stringify(value));
    this.written.add(key);
  }
  delete(key: string): boolean {
    return this.rows.delete(key);
  }
  private sortedFrom(prefix: string, after: string | null): [string, string][] {
    return [...this.rows]
      .filter(([k]) => k.startsWith(prefix) && (after === null || compareCodePoints(k, after) > 0))
      .sort((a, b) => compareCodePoints(a[0], b[0]));
  }
  scan<T>(prefix: string, after: string | null, limit: number): [string, T][] {
    return this.sortedFrom(prefix, after)
      .slice(0, limit)
      .map(([k, v]) => [k, JSON.parse(v) as T]);
  }
  page<T>(prefix: string, after: string | null, limit: number, bytesMax: number): { rows: [string, T][]; more: boolean } {
    const all = this.sortedFrom(prefix, after);
    const rows: [string, T][] = [];
    let bytes = 0;
    for (const [k, v] of all) {
      if (rows.length >= limit || bytes >= bytesMax) break;
      rows.push([k, JSON.parse(v) as T]);
      bytes += k.length + v.length;
    }
    return { rows, more: rows.length < all.length };
  }
  /** Every row in key order, values as canonical JSON. */
  dump(): [string, string][] {
    return this.sortedFrom("", null).map(([k, v]) => [k, canonicalJson(JSON.parse(v))]);
  }
}

export interface Prediction {
  status: ApplyStatus;
  /** For a duplicate: the first execution's output. */
  output?: unknown;
}

/**
 * The replicated session table, modelled: a (client, request) whose row is alive answers as a
 * duplicate (same command) or conflict; below the client's eviction floor it is expired; else it
 * executes. Rows are evicted lowest request first once a client holds sessionRequestsMax +
 * sessionEvictBatch of them (shared/protocol/state.ts applyEntry).
 */
export class SessionModel {
  private readonly clients = new Map<string, { alive: Map<number, { hash: string; output: unknown }>; floor: number }>();

  private book(client: string) {
    let b = this.clients.get(client);
    if (!b) this.clients.set(client, (b = { alive: new Map(), floor: 0 }));
    return b;
  }

  predict(client: string, request: number, hash: string): Prediction {
    const b = this.book(client);
    const row = b.alive.get(request);
    if (row) return row.hash === hash ? { status: "duplicate", output: row.output } : { status: "conflict" };
    if (request <= b.floor) return { status: "expired" };
    return { status: "ok" };
  }

  executed(client: string, request: number, hash: string, output: unknown): void {
    const b = this.book(client);
    b.alive.set(request, { hash, output });
    if (b.alive.size >= sessionRequestsMax + sessionEvictBatch) {
      const ids = [...b.alive.keys()].sort((x, y) => x - y);
      for (const id of ids.slice(0, b.alive.size - sessionRequestsMax)) {
        b.alive.delete(id);
        b.floor = Math.max(b.floor, id);
      }
    }
  }
}

/** Equal as JSON values (object key order aside). */
export function sameJson(a: unknown, b: unknown): boolean {
  return canonicalJson(a) === canonicalJson(b);
}

/** A value for a failure message: JSON with runs of one character collapsed ("x" x 512 as x⟨×512⟩), cut at max. */
export function show(v: unknown, max = 600): string {
  const s = (typeof v === "string" ? JSON.stringify(v) : v instanceof Uint8Array ? `bytes[${[...v].join(",")}]` : canonicalJson(v)).replace(
    /(.)\1{11,}/gsu,
    (run, c: string) => `${c}⟨×${[...run].length}⟩`,
  );
  return s.length > max ? `${s.slice(0, max)}... (${s.length} chars)` : s;
}
