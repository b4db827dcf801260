// In-memory implementations of the storage interfaces: for unit tests and the simulator.
// Transactions keep an undo journal so a failed step leaves nothing behind, as SQLite would.
import type { RowStore } from "../machines/types.js";
import { boundedEntries, entryBytes } from "./entry.js";
import { compareCodePoints, prefixUpperBound } from "../text.js";
import type { Effect, ReplicaMeta, ReplicaStorage } from "./replica.js";
import type { SequencerMeta, SequencerStorage } from "./sequencer.js";
import type { Checkpoint } from "./types.js";
import type { Entry } from "../api/types.js";

export class MemoryRowStore implements RowStore {
  private readonly map = new Map<string, string>();
  /** Keys in code point order, kept sorted on insert and delete (scans are frequent). */
  private readonly sorted: string[] = [];
  journal: Map<string, string | null> | null = null;

  get size(): number {
    return this.map.size;
  }
  get(key: string): string | null {
    return this.map.get(key) ?? null;
  }
  private touch(key: string): void {
    if (this.journal && !this.journal.has(key)) this.journal.set(key, this.get(key));
  }
  /** First index whose key is >= key (or > key when strict). */
  private lowerBound(key: string, strict: boolean): number {
    let lo = 0;
    let hi = this.sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const c = compareCodePoints(this.sorted[mid]!, key);
      if (c < 0 || (strict && c === 0)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
  private setRaw(key: string, value: string | null): void {
    if (value === null) {
      if (this.map.delete(key)) this.sorted.splice(this.lowerBound(key, false), 1);
    } else {
      if (!this.map.has(key)) this.sorted.splice(this.lowerBound(key, false), 0, key);
      this.map.set(key, value);
    }
  }
  put(key: string, value: string): void {
    this.touch(key);
    this.setRaw(key, value);
  }
  delete(key: string): void {
    this.touch(key);
    this.setRaw(key, null);
  }
  scan(prefix: string, after: string | null, limit: number, bytesMax = Infinity): [string, string][] {
    const fromAfter = after !== null && compareCodePoints(after, prefix) >= 0;
    const out: [string, string][] = [];
    let bytes = 0;
    for (let i = this.lowerBound(fromAfter ? after! : prefix, fromAfter); i < this.sorted.length && out.length < limit && bytes < bytesMax; i++) {
      const k = this.sorted[i]!;
      if (!k.startsWith(prefix)) break;
      const v = this.map.get(k)!;
      out.push([k, v]);
      bytes += k.length + v.length;
    }
    return out;
  }
  lastKey(prefix: string): string | null {
    const upper = prefixUpperBound(prefix);
    const i = (upper === null ? this.sorted.length : this.lowerBound(upper, false)) - 1;
    return i >= 0 && this.sorted[i]!.startsWith(prefix) ? this.sorted[i]! : null;
  }
  getMany(keys: string[]): Map<string, string> {
    const out = new Map<string, string>();
    for (const k of keys) {
      const v = this.map.get(k);
      if (v !== undefined) out.set(k, v);
    }
    return out;
  }
  writeMany(puts: [string, string][], deletes: string[]): void {
    for (const [k, v] of puts) this.put(k, v);
    for (const k of deletes) this.delete(k);
  }
  rollback(): void {
    for (const [k, v] of this.journal ?? []) this.setRaw(k, v);
  }
}

export class MemoryReplicaStorage implements ReplicaStorage {
  readonly rows = new MemoryRowStore();
  log = new Map<number, Entry>();
  meta: ReplicaMeta | null = null;
  cps: Checkpoint[] = [];
  /** No size of its own: a test that needs one (the storage quota) gives it. */
  sizeBytes?: () => number;
  private logJournal: Map<number, Entry | undefined> | null = null;

  transaction<T>(fn: () => T): T {
    const meta = this.meta;
    const cps = [...this.cps];
    this.rows.journal = new Map();
    this.logJournal = new Map();
    this.effectsJournal = new Map();
    try {
      return fn();
    } catch (err) {
      this.rows.rollback();
      for (const [seq, e] of this.logJournal) {
        if (e === undefined) this.log.delete(seq);
        else this.log.set(seq, e);
      }
      for (const [seq, f] of this.effectsJournal) {
        if (f === undefined) this.effects.delete(seq);
        else this.effects.set(seq, f);
      }
      this.meta = meta;
      this.cps = cps;
      throw err;
    } finally {
      this.rows.journal = null;
      this.logJournal = null;
      this.effectsJournal = null;
    }
  }
  private touchLog(seq: number): void {
    if (this.logJournal && !this.logJournal.has(seq)) this.logJournal.set(seq, this.log.get(seq));
  }
  appendEntries(entries: Entry[]): void {
    for (const e of entries) {
      this.touchLog(e.seq);
      this.log.set(e.seq, e);
    }
  }
  truncateFrom(seq: number): void {
    for (const s of [...this.log.keys()]) {
      if (s >= seq) {
        this.touchLog(s);
        this.log.delete(s);
      }
    }
  }
  deleteThrough(seq: number): void {
    for (const s of [...this.log.keys()]) {
      if (s <= seq) {
        this.touchLog(s);
        this.log.delete(s);
      }
    }
    this.dropEffects((s) => s > seq);
  }
  cutFor(toSeq: number, bytesMax: number): number | null {
    const held = [...this.log.keys()].filter((s) => s <= toSeq).sort((a, b) => b - a);
    return cutOf(held.map((s) => {
      const f = this.effects.get(s);
      return [s, entryBytes(this.log.get(s)!) + (f ? f.output.length + f.changes.length : 0)];
    }), bytesMax);
  }
  private readonly frozen = new Map<string, [string, string][]>();
  snapshotRows(name = "snapshot", prefix = ""): number {
    const rows = this.rows.scan(prefix, null, Infinity);
    this.frozen.set(name, rows);
    return rows.length;
  }
  snapshotPage(after: string | null, maxBytes: number, name = "snapshot"): [string, string][] {
    const rows = this.frozen.get(name) ?? [];
    let i = 0;
    if (after !== null) {
      let lo = 0;
      let hi = rows.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (compareCodePoints(rows[mid]![0], after) <= 0) lo = mid + 1;
        else hi = mid;
      }
      i = lo;
    }
    const out: [string, string][] = [];
    let bytes = 0;
    for (; i < rows.length && (out.length === 0 || bytes < maxBytes); i++) {
      out.push(rows[i]!);
      bytes += rows[i]![0].length + rows[i]![1].length;
    }
    return out;
  }
  dropSnapshot(name = "snapshot"): void {
    this.frozen.delete(name);
  }
  effects = new Map<number, Effect>();
  private effectsJournal: Map<number, Effect | undefined> | null = null;
  private touchEffect(seq: number): void {
    if (this.effectsJournal && !this.effectsJournal.has(seq)) this.effectsJournal.set(seq, this.effects.get(seq));
  }
  appendEffects(effects: Effect[]): void {
    for (const f of effects) {
      this.touchEffect(f.seq);
      this.effects.set(f.seq, f);
    }
  }
  readEffects(fromSeq: number, toSeq: number): Effect[] {
    const out: Effect[] = [];
    for (let s = fromSeq; s <= toSeq; s++) {
      const f = this.effects.get(s);
      if (f) out.push(f);
    }
    return out;
  }
  private dropEffects(keep: (seq: number) => boolean): void {
    for (const s of [...this.effects.keys()]) {
      if (keep(s)) continue;
      this.touchEffect(s);
      this.effects.delete(s);
    }
  }
  clearAll(): void {
    for (const [k] of this.rows.scan("", null, Infinity)) this.rows.delete(k);
    this.truncateFrom(0);
    this.dropEffects(() => false);
    this.cps = [];
  }
  entryHash(seq: number): string | null {
    return this.log.get(seq)?.hash ?? null;
  }
  readEntries(fromSeq: number, toSeq: number, bytesMax = Infinity): Entry[] {
    const out: Entry[] = [];
    for (let s = fromSeq; s <= toSeq; s++) {
      const e = this.log.get(s);
      if (e) out.push(e);
    }
    return boundedEntries(out, bytesMax);
  }
  saveMeta(meta: ReplicaMeta): void {
    this.meta = { ...meta };
  }
  addCheckpoint(cp: Checkpoint, keepMax: number): void {
    this.cps.push(cp);
    if (this.cps.length > keepMax) this.cps.splice(0, this.cps.length - keepMax);
  }
  checkpoints(): Checkpoint[] {
    return [...this.cps];
  }
}

export class MemorySequencerStorage implements SequencerStorage {
  log: Entry[] = [];
  meta: SequencerMeta | null = null;

  transaction<T>(fn: () => T): T {
    // Appends push onto this array; compaction replaces it: either is undone from these two.
    const log = this.log;
    const logLength = log.length;
    try {
      return fn();
    } catch (err) {
      this.log = log;
      this.log.length = logLength;
      throw err;
    }
  }
  appendEntries(entries: Entry[]): void {
    this.log.push(...entries);
  }
  readEntries(fromSeq: number, toSeq: number, bytesMax = Infinity): Entry[] {
    const first = this.log[0]?.seq ?? 1;
    return boundedEntries(this.log.slice(Math.max(0, fromSeq - first), Math.max(0, toSeq - first + 1)), bytesMax);
  }
  lastEntry(): Entry | null {
    return this.log[this.log.length - 1] ?? null;
  }
  deleteThrough(seq: number): void {
    this.log = this.log.filter((e) => e.seq > seq);
  }
  cutFor(toSeq: number, bytesMax: number): number | null {
    return cutOf(this.log.filter((e) => e.seq <= toSeq).reverse().map((e) => [e.seq, entryBytes(e)]), bytesMax);
  }
  recentRequests(limit: number): { client: string; request: number; seq: number }[] {
    const out: { client: string; request: number; seq: number }[] = [];
    for (let i = this.log.length - 1; i >= 0 && out.length < limit; i--) {
      const e = this.log[i]!;
      if (e.kind === "command") out.push({ client: e.client!, request: e.request!, seq: e.seq });
    }
    return out;
  }
  saveMeta(meta: SequencerMeta): void {
    this.meta = structuredClone(meta);
  }
}

/** The first seq, newest first, at which the sizes pass bytesMax (see SequencerStorage.cutFor). */
function cutOf(newestFirst: [seq: number, bytes: number][], bytesMax: number): number | null {
  let total = 0;
  for (const [seq, bytes] of newestFirst) {
    total += bytes;
    if (total > bytesMax) return seq;
  }
  return null;
}
