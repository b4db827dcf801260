import { scrubPageRows, sessionEvictBatch, sessionOutputFreeCharsCommandOnly, sessionForgetCharsMax, sessionForgetClientsMax, sessionForgetPageRows, sessionForgetRowsMax, sessionIdleBuckets, sessionRequestsMax, sessionTopsMax } from "../limits.js";
import type { MachineState, RowStore, StateMachine } from "../machines/types.js";
import { StoredJson, keptForSession, measuredOutput } from "../machines/output.js";
import { assert } from "./assert.js";
import { commandBytes, commandHash } from "./entry.js";
import { compareCodePoints } from "../text.js";
import { bytesToHex, hexToBytes, sha256Bytes, xorInto, zeroHash } from "./hash.js";
import type { AppliedOutput } from "./types.js";
import type { Entry } from "../api/types.js";

// The replicated state is one ordered table of rows. Key spaces:
//   m/<key>                         the state machine's own rows
//   s/<len>:<client>/<request:16>   the session table: one executed request and its output
//   c/<len>:<client>                per-client session bookkeeping {count, floor, bucket?}
//   d/<bucket:16>/<len>:<client>    the idle index: a client under the time bucket of its last
//                                   command (groups whose sessions expire; see forgetIdle)
// Every row counts in the digest, so two replicas agree on sessions as well as on machine state.
export const machinePrefix = "m/";

/** The machine keys one entry wrote, in the order it wrote them, with their new JSON text (null: deleted). */
export type Changes = Map<string, string | null>;

/**
 * The digest is the XOR of sha256(key NUL value) over every row. XOR lets one write update it in
 * O(1) (remove the old row's hash, add the new one) and is independent of write order, so it
 * names the state itself, and a scrub can recompute it from the rows alone.
 */
export function rowHash(key: string, value: string): Uint8Array {
  return sha256Bytes(key + "\u0000" + value);
}

const sessionSpace = "s/";
const bookSpace = "c/";
const idleSpace = "d/";
/** Every state row is the machine's ("m/"), a client's book ("c/"), a session ("s/") or the idle index ("d/"): putRaw checks. */
export const bookkeepingSpaces = [bookSpace, sessionSpace, idleSpace] as const;

function isStateKey(key: string): boolean {
  return key.startsWith(machinePrefix) || key.startsWith(sessionSpace) || key.startsWith(bookSpace) || key.startsWith(idleSpace);
}

/** The client part of a session key ("s/<len>:<client>/"): the request id follows the last slash. */
function sessionPrefixOf(key: string): string {
  return key.slice(0, key.lastIndexOf("/") + 1);
}

/** Whether prefix is exactly one client's part of the session table ("s/<len>:<client>/"). */
function isClientSessionPrefix(prefix: string): boolean {
  const m = /^s\/(\d+):/.exec(prefix);
  return m !== null && prefix.length === m[0].length + Number(m[1]) + 1 && prefix.endsWith("/");
}

/**
 * What a replica knows about each client's session rows without reading them, derived from the
 * rows and the writes it made (a DigestedState built anew starts empty):
 * - the keys written since the last save, per client, so an eviction's scan merges its client's
 *   and not every unsaved row (about 10,000 between two saves under load);
 * - a bound at or above the client's highest request id with a row. A request above it has no
 *   row, and its lookup is skipped: the common case, a client whose ids increase. Measured under
 *   200,000 puts (128 clients): past about 100,000, the lookups missed SQLite's page cache and
 *   were the largest part of the slowdown; a new request's lookup lands on the client's newest
 *   session leaf, one more hot page per client.
 */
class SessionIndex {
  private readonly unsaved = new Map<string, Set<string>>();
  private readonly tops = new Map<string, number>();

  wrote(key: string): void {
    const prefix = sessionPrefixOf(key);
    let keys = this.unsaved.get(prefix);
    if (keys === undefined) this.unsaved.set(prefix, (keys = new Set()));
    keys.add(key);
    // Deletes (evictions) leave the bound where it is: above every row is all it promises.
    const top = this.tops.get(prefix);
    if (top === undefined) return;
    const request = Number(key.slice(prefix.length));
    // A key whose tail is no request id (none is written so) would leave the bound unsound: untracked.
    if (!Number.isSafeInteger(request)) this.tops.delete(prefix);
    else if (request > top) this.tops.set(prefix, request);
  }

  saved(): void {
    this.unsaved.clear();
  }

  /** The unsaved keys under a client's prefix; null when prefix is not one client's. */
  unsavedUnder(prefix: string): Set<string> | null {
    if (!isClientSessionPrefix(prefix)) return null;
    return this.unsaved.get(prefix) ?? new Set();
  }

  /**
   * The bound for this client's prefix, first taken from its highest stored key and its unsaved
   * ones (null: not tracked, the table of bounds is full).
   */
  topOf(prefix: string, lastStored: () => string | null): number | null {
    const known = this.tops.get(prefix);
    if (known !== undefined) return known;
    if (this.tops.size >= sessionTopsMax) return null;
    let top = 0;
    const last = lastStored();
    // Parsed from the key's tail (ASCII digits), so a client name SQLite stored lossily (a lone
    // surrogate) still gives the right number.
    if (last !== null) top = Number(last.slice(last.lastIndexOf("/") + 1));
    for (const key of this.unsaved.get(prefix) ?? []) top = Math.max(top, Number(key.slice(prefix.length)));
    if (!Number.isSafeInteger(top)) return null; // not a bound: looked up as before
    this.tops.set(prefix, top);
    return top;
  }
}

/**
 * Where a scrub pass stands, as of the stored rows: the last key it read, the XOR of the rows up
 * to it (hex), how many. Stored beside the rows (ReplicaMeta.scrub), so a restart goes on with it.
 */
export interface ScrubCursor {
  after: string;
  acc: string;
  rows: number;
}

export class DigestedState {
  private readonly digestBytes: Uint8Array;
  /**
   * The digest of the machine's rows alone ("m/"), kept write by write beside the whole one once
   * known (null: not yet; machineDigest() works it out the first time). A snapshot's header is it.
   */
  private machineBytes: Uint8Array | null;

  constructor(
    readonly rows: RowStore,
    digest: string = zeroHash,
    /** The pass under way when these rows were stored (scrubCursor then), if any. */
    scrub: ScrubCursor | null = null,
    /** The machine rows' digest as stored with these rows, if known. */
    machineDigest: string | null = null,
  ) {
    this.digestBytes = hexToBytes(digest);
    this.machineBytes = machineDigest === null ? null : hexToBytes(machineDigest);
    if (scrub !== null) this.scrubRun = { after: scrub.after, acc: hexToBytes(scrub.acc), rows: scrub.rows };
    this.storedScrub = scrub;
  }

  /** The digest of the current rows (brings it up to date with the writes since the last read). */
  get digest(): string {
    this.fold();
    return bytesToHex(this.digestBytes);
  }

  /**
   * The digest of the machine's rows: the whole digest without the books' and sessions' rows. Kept
   * up to date write by write once known; the first time, those rows are hashed out of the whole
   * digest (the stored rows: every unsaved one must be stored first). Before, every snapshot
   * hashed them (or the copy), which a long-lived group's sessions of one-shot clients made the
   * larger part of its state.
   */
  machineDigest(): string {
    this.fold();
    if (this.machineBytes === null) {
      assert(this.unsaved.size === 0, "the machine digest is worked out from the stored rows: store the unsaved ones first");
      const bytes = new Uint8Array(this.digestBytes);
      xorInto(bytes, digestOfSpaces(this.rows, bookkeepingSpaces, scrubPageRows));
      this.machineBytes = bytes;
    }
    return bytesToHex(this.machineBytes);
  }

  /** The machine rows' digest if known (to store beside the rows), else null. */
  get knownMachineDigest(): string | null {
    this.fold();
    return this.machineBytes === null ? null : bytesToHex(this.machineBytes);
  }

  /**
   * Keys written since the digest was last brought up to date, each with the value it had then
   * (null: absent). A row written many times between two reads of the digest (a client's session
   * book, once per command of a batch) is hashed twice, not twice per write, and a row written and
   * deleted again not at all: XOR makes the result the same as updating on every write.
   */
  private readonly undigested = new Map<string, string | null>();

  private fold(): void {
    const scrub = this.scrubRun;
    for (const [key, before] of this.undigested) {
      const after = this.unsaved.get(key);
      assert(after !== undefined, `undigested row ${key} is not among the unsaved rows`);
      if (before === after) continue;
      // A row the scrub under way has read already changes its sum too (read later, it is read as it is then).
      const scanned = scrub !== null && scrub.after !== null && compareCodePoints(key, scrub.after) <= 0;
      const machine = this.machineBytes !== null && key.startsWith(machinePrefix) ? this.machineBytes : null;
      if (before !== null) {
        const h = rowHash(key, before);
        xorInto(this.digestBytes, h);
        if (machine) xorInto(machine, h);
        if (scanned) (xorInto(scrub.acc, h), scrub.rows--);
      }
      if (after !== null) {
        const h = rowHash(key, after);
        xorInto(this.digestBytes, h);
        if (machine) xorInto(machine, h);
        if (scanned) (xorInto(scrub.acc, h), scrub.rows++);
      }
    }
    this.undigested.clear();
  }

  /**
   * The scrub under way: the digest recomputed from the stored rows a page at a time, up to a
   * number of rows per call (an audit), while the machine goes on writing (fold keeps the part
   * read in step with later writes). In one pass it held a large group's writes for the whole
   * table: 11.5 s at 2.5 million rows, on every audit (a probe), in the sequencer's own object for
   * its co-located replica, and past the audit call's timeout. Its cursor as of the stored rows
   * (scrubCursor) is stored with them, so a restart goes on with it; a state built anew (an
   * install, a release) has none. (Kept in memory only, a pass over more than one audit's rows
   * never finished in an object evicted between audits: a quiet group's, or any after a deploy.)
   */
  private scrubRun: { after: string | null; acc: Uint8Array; rows: number } | null = null;
  /** scrubCursor: the pass as of the stored rows, taken when they are saved and after each step. */
  private storedScrub: ScrubCursor | null;
  /** The last pass to finish: its rows' digest, and the digest recorded for those rows then. */
  private scrubbed: { recordedDigest: string; actualDigest: string; rows: number } | null = null;

  /**
   * The pass under way as of the stored rows (null: none, the next step starts one): to be stored
   * with them (the rows of a save, or after a step), and given to the state built from them.
   */
  get scrubCursor(): ScrubCursor | null {
    return this.storedScrub;
  }

  private cursorNow(): ScrubCursor | null {
    const run = this.scrubRun;
    return run === null || run.after === null ? null : { after: run.after, acc: bytesToHex(run.acc), rows: run.rows };
  }

  /**
   * Reads up to rowsMax more stored rows into the scrub under way (a new pass if none), after the
   * caller has saved every row. Answers the last finished pass (this one, if it just finished),
   * or null before any has.
   */
  scrubStep(rowsMax: number, pageRows: number, charsMax = Infinity): { recordedDigest: string; actualDigest: string; rows: number } | null {
    assert(this.unsaved.size === 0, "a scrub reads the stored rows: save them first");
    const run = (this.scrubRun ??= { after: null, acc: new Uint8Array(32), rows: 0 });
    // Rows and characters both: 50,000 rows of 60 KB outputs (one-shot clients' sessions) held
    // an audit, and the co-located replica's sequencer with it, for 6 to 8 s (a probe).
    let charsLeft = charsMax;
    for (let left = rowsMax; left > 0 && charsLeft > 0; ) {
      const want = Math.min(pageRows, left);
      const page = this.rows.scan("", run.after, want, charsLeft);
      for (const [k, v] of page) {
        xorInto(run.acc, rowHash(k, v));
        charsLeft -= k.length + v.length;
      }
      run.rows += page.length;
      left -= page.length;
      // Short for want of rows, not of characters: the pass is done.
      if (page.length < want && charsLeft > 0) {
        this.scrubbed = { recordedDigest: this.digest, actualDigest: bytesToHex(run.acc), rows: run.rows };
        this.scrubRun = null;
        break;
      }
      run.after = page[page.length - 1]![0];
    }
    this.storedScrub = this.cursorNow();
    return this.scrubbed;
  }

  /**
   * Rows read during the current step: a machine's get-then-put reads each row once, not again
   * for the digest's old value. Cleared by endStep(), so a read never outlives its step.
   */
  private readonly known = new Map<string, string | null>();
  /**
   * Writes not in the store yet (null: a delete), kept across steps: the log is what makes an
   * applied entry durable, and a replica saves these rows in one go every few hundred entries
   * (ReplicaCore decides), so a row written by many entries reaches storage once and the rows of
   * one save share their pages. Reads see them first.
   */
  private readonly unsaved = new Map<string, string | null>();
  private readonly sessions = new SessionIndex();
  /** The unsaved keys of the idle index, so its scans (forgetIdle) do not go through every unsaved row. */
  private readonly unsavedIdle = new Set<string>();
  /**
   * A bound at or below every bucket in the idle index (null: the index is empty; undefined: not
   * read yet). Derived from the rows alone, so every replica skips or scans alike: each command's
   * expiry check is then a comparison, not a scan.
   */
  private idleFloor: number | null | undefined = undefined;
  /**
   * The last idle-index key forgotten whole: no key at or before it is left (keys are only added
   * at the current bucket, past every idle one), so the next scan starts after it and does not
   * merge the unsaved deletes of the clients forgotten since the last save (derived, like the
   * floor: a state built anew starts without it).
   */
  private idleCursor: string | null = null;

  endStep(): void {
    this.known.clear();
  }

  /** Rows written since the last save. */
  get unsavedRows(): number {
    return this.unsaved.size;
  }

  private unsavedCharCount = 0;
  /** Characters of the unsaved rows (keys and values): what they hold in memory, about. */
  get unsavedChars(): number {
    return this.unsavedCharCount;
  }

  /** Reads the rows among keys that are neither unsaved nor read this step, in one go. */
  prefetch(keys: string[]): void {
    const unknown = keys.filter((k) => !this.known.has(k) && !this.unsaved.has(k));
    if (unknown.length === 0) return;
    const found = this.rows.getMany(unknown);
    for (const k of unknown) this.known.set(k, found.get(k) ?? null);
  }

  /** Writes every unsaved row to the store (the caller records the seq and digest they are at). */
  save(): void {
    if (this.unsaved.size === 0) return;
    this.fold(); // it reads the new values from the unsaved rows
    const puts: [string, string][] = [];
    const deletes: string[] = [];
    for (const [k, v] of this.unsaved) {
      if (v === null) deletes.push(k);
      else puts.push([k, v]);
    }
    this.unsaved.clear();
    this.unsavedCharCount = 0;
    this.sessions.saved();
    this.unsavedIdle.clear();
    this.known.clear(); // it may hold a saved row's older value
    // In key order (SQLite's, for TEXT: the code points'): a save's rows fall into a few hundred
    // leaves once the table is large (a client's machine keys, its session rows), and in order
    // each leaf is sought once, not again after the page cache (2 MB, not configurable in a
    // Durable Object) has let it go.
    puts.sort((a, b) => compareCodePoints(a[0], b[0]));
    deletes.sort(compareCodePoints);
    this.rows.writeMany(puts, deletes);
    this.storedScrub = this.cursorNow(); // folded above: the pass's sum as of these rows
  }

  /**
   * The store's rows merged with the unsaved ones. Fetching `limit` plus the number of unsaved
   * rows in range from the store is enough: at most that many of them are overridden or deleted.
   * The stored rows it returns count as read this step (an eviction deletes the rows it scanned
   * without reading each one again).
   */
  scan(prefix: string, after: string | null, limit: number, bytesMax = Infinity): [string, string][] {
    return this.scanPage(prefix, after, limit, bytesMax).rows;
  }

  /**
   * A scan that also says whether rows may follow. With a byte bound the stored rows may end
   * early (at `last`); unsaved rows past that point are left for the next page, so no row is
   * skipped between pages.
   */
  scanPage(prefix: string, after: string | null, limit: number, bytesMax = Infinity): { rows: [string, string][]; more: boolean } {
    const mine: [string, string | null][] = [];
    const clientKeys = prefix.startsWith(idleSpace) ? this.unsavedIdle : this.sessions.unsavedUnder(prefix);
    if (clientKeys !== null) {
      for (const k of clientKeys) {
        if (!k.startsWith(prefix) || (after !== null && compareCodePoints(k, after) <= 0)) continue;
        const v = this.unsaved.get(k);
        assert(v !== undefined, `indexed session key ${k} is not among the unsaved rows`);
        mine.push([k, v]);
      }
    } else {
      for (const [k, v] of this.unsaved) {
        if (k.startsWith(prefix) && (after === null || compareCodePoints(k, after) > 0)) mine.push([k, v]);
      }
    }
    mine.sort((x, y) => compareCodePoints(x[0], y[0]));
    const out: [string, string][] = [];
    let bytes = 0;
    for (let from = after; ; ) {
      const rest = from === null ? mine : mine.filter(([k]) => compareCodePoints(k, from!) > 0);
      // Only a delete can take a stored row out of the page (an unsaved write of a stored key
      // replaces it, a new key adds one): fetching one more per delete is enough.
      let deletes = 0;
      for (const [, v] of rest) if (v === null) deletes++;
      const want = limit - out.length + deletes;
      const room = bytesMax - bytes;
      const stored = this.rows.scan(prefix, from, want, room);
      for (const [k, v] of stored) this.known.set(k, v);
      const storedLast = stored.length > 0 ? stored[stored.length - 1]![0] : null;
      const storedCut = storedLast !== null && room !== Infinity && stored.length < want && sizeOf(stored) >= room;
      let rows = stored;
      if (rest.length > 0) {
        const merged = new Map<string, string | null>(stored);
        for (const [k, v] of rest) if (!storedCut || compareCodePoints(k, storedLast!) <= 0) merged.set(k, v);
        rows = [...merged].filter((r): r is [string, string] => r[1] !== null).sort((x, y) => compareCodePoints(x[0], y[0]));
      }
      for (const row of rows) {
        if (out.length >= limit || bytes >= bytesMax) return { rows: out, more: true };
        out.push(row);
        bytes += row[0].length + row[1].length;
      }
      if (!storedCut) return { rows: out, more: stored.length >= want };
      if (out.length >= limit || bytes >= bytesMax) return { rows: out, more: true };
      // Cut by the bytes of stored rows that unsaved writes deleted or shrank: the page ended
      // there, short or empty, and a kv list answered it as the whole (no `next`) while a replica
      // that had saved listed the rest (a review). Go on after them.
      from = storedLast;
    }
  }

  getRaw(key: string): string | null {
    const unsaved = this.unsaved.get(key);
    if (unsaved !== undefined) return unsaved;
    if (this.known.has(key)) return this.known.get(key)!;
    const v = this.rows.get(key);
    this.known.set(key, v);
    return v;
  }

  /**
   * Characters of the machine's rows this entry overwrote or deleted (their old values), counted by
   * putRaw and deleteRaw and taken by applyEntry: what a put's `previous` may answer without the
   * session's copy of it adding to what the group stores (keptForSession).
   */
  private replacedCharCount = 0;
  /** The machine keys written since the last take: a key's value from before the entry counts once (a review: a txn's put then delete of one key counted its own value). */
  private readonly replacedKeys = new Set<string>();

  takeReplacedChars(): number {
    const n = this.replacedCharCount;
    this.replacedCharCount = 0;
    this.replacedKeys.clear();
    return n;
  }

  /** Counts a machine row's value from before the entry, the first time the entry replaces it. */
  private replacing(key: string, old: string | null): void {
    if (!key.startsWith(machinePrefix) || this.replacedKeys.has(key)) return;
    this.replacedKeys.add(key);
    if (old !== null) this.replacedCharCount += old.length;
  }

  putRaw(key: string, value: string): void {
    assert(isStateKey(key), `state row ${key} is in no key space`);
    const old = this.getRaw(key);
    if (old === value) return;
    this.replacing(key, old);
    if (!this.undigested.has(key)) this.undigested.set(key, old);
    this.setUnsaved(key, value);
    if (key.startsWith(sessionSpace)) this.sessions.wrote(key);
    else if (key.startsWith(idleSpace)) {
      this.unsavedIdle.add(key);
      // A key at or before the cursor (a timestamp that went back) makes it unsound: scans start over.
      if (this.idleCursor !== null && compareCodePoints(key, this.idleCursor) <= 0) this.idleCursor = null;
      const bucket = idleBucketOf(key);
      if (this.idleFloor === null || (this.idleFloor !== undefined && bucket < this.idleFloor)) this.idleFloor = bucket;
    }
  }

  deleteRaw(key: string): boolean {
    const old = this.getRaw(key);
    if (old === null) return false;
    this.replacing(key, old);
    if (!this.undigested.has(key)) this.undigested.set(key, old);
    this.setUnsaved(key, null);
    if (key.startsWith(sessionSpace)) this.sessions.wrote(key);
    // A delete leaves idleFloor where it is: below every bucket is all it promises.
    else if (key.startsWith(idleSpace)) this.unsavedIdle.add(key);
    return true;
  }

  /**
   * Up to `limit` keys of the idle index whose bucket is below `bucket`, oldest first; none
   * without a scan while the floor says so (a comparison per command, mostly).
   */
  idleBefore(bucket: number, limit: number): string[] {
    if (this.idleFloor === null || (this.idleFloor !== undefined && this.idleFloor >= bucket)) return [];
    const page = this.scan(idleSpace, this.idleCursor, limit);
    const first = page[0];
    // Exact again (nothing before the cursor is left).
    this.idleFloor = first === undefined ? null : idleBucketOf(first[0]);
    return page.filter(([k]) => idleBucketOf(k) < bucket).map(([k]) => k);
  }

  /** An idle-index key forgotten whole (deleted): the next scan starts after it. */
  forgotIdle(key: string): void {
    if (this.idleCursor === null || compareCodePoints(key, this.idleCursor) > 0) this.idleCursor = key;
  }

  /** Records an unsaved write and keeps unsavedChars in step with it. */
  private setUnsaved(key: string, value: string | null): void {
    const before = this.unsaved.get(key);
    if (before === undefined) this.unsavedCharCount += key.length;
    else if (before !== null) this.unsavedCharCount -= before.length;
    if (value !== null) this.unsavedCharCount += value.length;
    this.unsaved.set(key, value);
  }

  /**
   * Whether this session key (sessionKey) may have a row. When its request is above the client's
   * highest, it has none: that is recorded as read this step, so neither a prefetch nor the write
   * that follows looks it up.
   */
  sessionMayExist(key: string): boolean {
    if (this.unsaved.has(key) || this.known.has(key)) return true;
    const prefix = sessionPrefixOf(key);
    const top = this.sessions.topOf(prefix, () => this.rows.lastKey(prefix));
    if (top === null || Number(key.slice(prefix.length)) <= top) return true;
    this.known.set(key, null);
    return false;
  }

  /**
   * The machine's view: its own key space, JSON values. With `changes`, every key the machine
   * writes is recorded with its new value's JSON text (null: deleted): what a watch reports.
   */
  machineView(changes?: Changes, onStored?: () => void): MachineState {
    // Keys the view put while they were absent: deleted again in the same entry (a txn's put then
    // delete), they changed nothing, and a watch is not told of a deletion of a key that never was.
    const absentBefore = changes === undefined ? null : new Set<string>();
    return {
      get: <T>(key: string) => {
        const raw = this.getRaw(machinePrefix + key);
        return raw === null ? null : (JSON.parse(raw) as T);
      },
      getStored: (key: string) => {
        const raw = this.getRaw(machinePrefix + key);
        if (raw === null) return null;
        onStored?.();
        return new StoredJson(raw);
      },
      put: (key, value) => {
        const text = JSON.stringify(value);
        // putRaw reads the old value anyway: this read is served from the same cache.
        if (absentBefore !== null && !changes!.has(key) && this.getRaw(machinePrefix + key) === null) absentBefore.add(key);
        this.putRaw(machinePrefix + key, text);
        changes?.set(key, text);
      },
      delete: (key) => {
        const deleted = this.deleteRaw(machinePrefix + key);
        if (deleted && absentBefore?.has(key)) changes!.delete(key);
        else if (deleted) changes?.set(key, null);
        return deleted;
      },
      scan: <T>(prefix: string, after: string | null, limit: number) =>
        this.scan(machinePrefix + prefix, after === null ? null : machinePrefix + after, limit).map(
          ([k, v]) => [k.slice(machinePrefix.length), JSON.parse(v) as T] as [string, T],
        ),
      page: <T>(prefix: string, after: string | null, limit: number, bytesMax: number) => {
        const p = this.scanPage(machinePrefix + prefix, after === null ? null : machinePrefix + after, limit, bytesMax);
        return { rows: p.rows.map(([k, v]) => [k.slice(machinePrefix.length), JSON.parse(v) as T] as [string, T]), more: p.more };
      },
    };
  }
}

function sizeOf(rows: [string, string][]): number {
  let n = 0;
  for (const [k, v] of rows) n += k.length + v.length;
  return n;
}

/**
 * The digest of rows installed page by page in key order (a state transfer, a restore), so the
 * end of an install need not read them all back: that read held the replica for its whole table,
 * and the sequencer with it when the co-located replica was the one rebuilt. Unknown (null) once
 * a row comes out of order (a page delivered twice); the rows are read back then.
 */
export class InstallDigest {
  private acc: Uint8Array | null = new Uint8Array(32);
  private lastKey: string | null = null;

  /** Rows just stored. */
  add(rows: [string, string][]): void {
    for (const [k, v] of rows) {
      if (this.acc === null) return;
      if (this.lastKey !== null && compareCodePoints(k, this.lastKey) <= 0) {
        this.acc = null;
        return;
      }
      xorInto(this.acc, rowHash(k, v));
      this.lastKey = k;
    }
  }

  get digest(): string | null {
    return this.acc === null ? null : bytesToHex(this.acc);
  }
}

/** The digest and count of rows read page by page (a frozen copy, a restore's staged rows). */
export function digestOfPages(page: (after: string | null) => [string, string][]): { digest: string; rows: number } {
  const acc = new Uint8Array(32);
  let rows = 0;
  for (let after: string | null = null; ; ) {
    const rowsOfPage = page(after);
    if (rowsOfPage.length === 0) break;
    for (const [k, v] of rowsOfPage) xorInto(acc, rowHash(k, v));
    rows += rowsOfPage.length;
    after = rowsOfPage[rowsOfPage.length - 1]![0];
  }
  return { digest: bytesToHex(acc), rows };
}

/** XORs the hashes of the stored rows under prefix into acc, read pageRows at a time; how many. */
function foldRows(rows: RowStore, prefix: string, pageRows: number, acc: Uint8Array): number {
  let count = 0;
  for (let after: string | null = null; ; ) {
    const page = rows.scan(prefix, after, pageRows);
    for (const [k, v] of page) xorInto(acc, rowHash(k, v));
    count += page.length;
    if (page.length < pageRows) return count;
    after = page[page.length - 1]![0];
  }
}

/** The XOR of the hashes of the stored rows under each of prefixes, read pageRows at a time. */
export function digestOfSpaces(rows: RowStore, prefixes: readonly string[], pageRows: number): Uint8Array {
  const acc = new Uint8Array(32);
  for (const prefix of prefixes) foldRows(rows, prefix, pageRows, acc);
  return acc;
}

/** Recomputes the digest from the rows alone (the scrub), in pages. */
export function recomputeDigest(rows: RowStore, pageRows: number): { digest: string; rows: number } {
  const acc = new Uint8Array(32);
  const count = foldRows(rows, "", pageRows, acc);
  return { digest: bytesToHex(acc), rows: count };
}

function clientTag(client: string): string {
  // Length-prefixed so that no client's prefix is another client's prefix.
  return `${client.length}:${client}`;
}

function bookKey(client: string): string {
  return `${bookSpace}${clientTag(client)}`;
}

export function sessionKey(client: string, request: number): string {
  return `s/${clientTag(client)}/${String(request).padStart(16, "0")}`;
}

interface ClientBook {
  count: number;
  /** Highest request id evicted from the session table; lower or equal ids are expired. */
  floor: number;
  /** The time bucket of the client's last executed command (groups whose sessions expire only). */
  bucket?: number;
}

/**
 * Sessions that expire (GroupConfig.sessionIdleMs): a client with no command executed for
 * `idleMs` of log time (the entries' timestamps, the same on every replica) is forgotten, its book,
 * its remembered requests and their outputs deleted; a request it sends later is a new client's.
 * `forgot` hears, per entry, each client whose remembered requests it deleted, and which (the
 * simulator's exactly-once checker).
 */
export interface SessionExpiry {
  idleMs: number;
  forgot?: (client: string, requests: number[]) => void;
}

/** The idle index's key of a client in a time bucket: buckets in numeric order. */
function idleKey(bucket: number, tag: string): string {
  return `${idleSpace}${String(bucket).padStart(16, "0")}/${tag}`;
}

function idleBucketOf(key: string): number {
  return Number(key.slice(idleSpace.length, idleSpace.length + 16));
}

/** The bucket of a log timestamp: idleMs in sessionIdleBuckets parts; null for a time that does not parse. */
function bucketOf(timestamp: string, idleMs: number): number | null {
  const ms = Date.parse(timestamp);
  if (!Number.isFinite(ms) || ms < 0) return null;
  return Math.floor(ms / Math.max(1, Math.floor(idleMs / sessionIdleBuckets)));
}

/**
 * Forgets the clients idle past the window, oldest first, within a bound per entry
 * (sessionForgetRowsMax rows, sessionForgetCharsMax characters: above what one command adds, so
 * the forgetting keeps up with any rate of new clients). A client cut off by the bound keeps its
 * book and the rows left, and the next entry goes on with it.
 */
function forgetIdle(state: DigestedState, nowBucket: number, expiry: SessionExpiry): void {
  let rowsLeft = sessionForgetRowsMax;
  let charsLeft = sessionForgetCharsMax;
  // One scan of the index per entry (a scan per client cost an entry 0.9 ms under one-shot clients, a review).
  for (const key of state.idleBefore(nowBucket - sessionIdleBuckets, sessionForgetClientsMax)) {
    if (rowsLeft <= 0 || charsLeft <= 0) return;
    const tag = key.slice(idleSpace.length + 17);
    const client = tag.slice(tag.indexOf(":") + 1);
    let deleted = 0;
    const requests: number[] = [];
    let done = false;
    let after: string | null = null;
    // Pages by rows, the character bound applied while deleting: a scan bounded by characters
    // counted the rows this entry had just deleted (still stored until the save) and came back
    // empty, so a replica that had not saved took the client for done and one that had went on:
    // their rows differed (a review).
    while (rowsLeft > 0 && charsLeft > 0) {
      const page = state.scan(`${sessionSpace}${tag}/`, after, Math.min(rowsLeft, sessionForgetPageRows));
      if (page.length === 0) {
        done = true;
        break;
      }
      for (const [k, v] of page) {
        state.deleteRaw(k);
        after = k;
        deleted++;
        if (expiry.forgot) requests.push(Number(k.slice(k.lastIndexOf("/") + 1)));
        rowsLeft--;
        charsLeft -= k.length + v.length;
        if (charsLeft <= 0) break;
      }
    }
    // Each entry that deleted any of it says so: a request whose row went runs again if sent.
    if (deleted > 0 || done) expiry.forgot?.(client, requests);
    if (!done) {
      // Cut off by the bound (rows may remain): the book counts what is left. Its floor stays: a
      // request whose row went is forgotten, and runs if sent again, as once the client is gone
      // (raising the floor, as an eviction does, refused a retry held longer than the window, of a
      // command never run, for good: the simulator).
      const raw = state.getRaw(`${bookSpace}${tag}`);
      if (raw !== null && deleted > 0) {
        const book = JSON.parse(raw) as ClientBook;
        state.putRaw(`${bookSpace}${tag}`, JSON.stringify({ ...book, count: Math.max(0, book.count - deleted) }));
      }
      return;
    }
    state.deleteRaw(`${bookSpace}${tag}`);
    state.deleteRaw(key);
    state.forgotIdle(key);
    rowsLeft -= 2;
  }
}

/** Files the client under this bucket in the idle index (once a bucket: the book says where it is). */
function touchIdle(state: DigestedState, book: ClientBook, tag: string, bucket: number): void {
  if (book.bucket === bucket) return;
  if (book.bucket !== undefined) state.deleteRaw(idleKey(book.bucket, tag));
  state.putRaw(idleKey(bucket, tag), "1");
  book.bucket = bucket;
}

/** A session row: [seq, commandHash, output]. */
type SessionRow = [number, string, unknown];

/** The JSON text of an output applyEntry produced, kept so the replica does not serialize it again. */
const outputTexts = new WeakMap<AppliedOutput, string>();

/** The output's JSON text (as stored in its session row). */
export function outputTextOf(applied: AppliedOutput): string {
  return outputTexts.get(applied) ?? JSON.stringify(applied.output ?? null);
}

/**
 * Whether a group's session rows bound an output by its command and the rows it replaced (true),
 * or by its command alone: groups made under that rule (sessionOutputFreeCharsCommandOnly) keep it.
 */
export function countsReplaced(outputFreeChars: number | undefined): boolean {
  return outputFreeChars !== sessionOutputFreeCharsCommandOnly;
}

/**
 * Applies one committed entry: the exactly-once check against the replicated session table, then
 * the machine. Deterministic: a function of the state and the entry only.
 */
export function applyEntry(
  state: DigestedState,
  machine: StateMachine,
  entry: Entry,
  changes?: Changes,
  expiry: SessionExpiry | null = null,
  /** GroupConfig.sessionOutputFreeChars (undefined: the row keeps every output whole). */
  outputFreeChars?: number,
  /** Whether the bound counts the rows the entry replaced (countsReplaced: the group's rule; a replay may try the other). */
  countReplaced = countsReplaced(outputFreeChars),
): AppliedOutput {
  if (entry.kind !== "command") return { seq: entry.seq, status: "ok", originalSeq: entry.seq, output: null };
  assert(entry.client !== null && entry.request !== null, `command entry ${entry.seq} without client/request`);
  const bucket = expiry === null ? null : bucketOf(entry.timestamp, expiry.idleMs);
  // First, so that a client idle past the window sends this command as a new client, whatever
  // the entry's seq (the outcome is the state's and the entry's alone).
  if (bucket !== null) forgetIdle(state, bucket, expiry!);
  const hash = commandHash(entry.command);
  const key = sessionKey(entry.client, entry.request);
  const existing = state.sessionMayExist(key) ? state.getRaw(key) : null;
  if (existing !== null) {
    const [seq, h, output] = JSON.parse(existing) as SessionRow;
    if (h !== hash) return { seq: entry.seq, status: "conflict", originalSeq: seq, output: null };
    return { seq: entry.seq, status: "duplicate", originalSeq: seq, output };
  }
  const bookRow = bookKey(entry.client);
  const bookRaw = state.getRaw(bookRow);
  const book: ClientBook = bookRaw === null ? { count: 0, floor: 0 } : JSON.parse(bookRaw);
  if (entry.request <= book.floor) return { seq: entry.seq, status: "expired", originalSeq: entry.seq, output: null };

  let stored = false;
  state.takeReplacedChars(); // from zero: this entry's own
  const view = state.machineView(changes, () => (stored = true));
  const { output, text: outputText } = measuredOutput(machine.apply(view, entry.command, { seq: entry.seq, timestamp: entry.timestamp }), stored);
  // The answer is the whole output; the row keeps it whole only up to outputFreeChars more than
  // the command and the rows it replaced (a retry answers the marker past it): reads through the
  // log stored what they read. A put's previous value, as large as the row it replaced, is kept.
  const replacedChars = state.takeReplacedChars();
  const broughtChars = commandBytes(entry.command) + (countReplaced ? replacedChars : 0);
  const kept = outputFreeChars === undefined ? outputText : keptForSession(outputText, output, broughtChars, outputFreeChars);
  // JSON.stringify([seq, hash, output]) without a second pass over the output (hash is hex).
  state.putRaw(key, `[${entry.seq},"${hash}",${kept}]`);
  book.count++;
  if (book.count >= sessionRequestsMax + sessionEvictBatch) {
    // Evict the client's lowest request ids down to sessionRequestsMax; they and everything below
    // them are expired from now on.
    for (const [oldestKey] of state.scan(`s/${clientTag(entry.client)}/`, null, book.count - sessionRequestsMax)) {
      const evicted = Number(oldestKey.slice(oldestKey.lastIndexOf("/") + 1));
      state.deleteRaw(oldestKey);
      book.count--;
      book.floor = Math.max(book.floor, evicted);
    }
  }
  if (bucket !== null) touchIdle(state, book, clientTag(entry.client), bucket);
  state.putRaw(bookRow, JSON.stringify(book));
  const applied: AppliedOutput = { seq: entry.seq, status: "ok", originalSeq: entry.seq, output };
  outputTexts.set(applied, outputText);
  return applied;
}

/**
 * Reads, in one go, every row that applying these entries will read first: their session rows,
 * their clients' books, and the machine rows the machine names up front.
 */
export function prefetchFor(state: DigestedState, machine: StateMachine, entries: Entry[]): void {
  const keys: string[] = [];
  for (const e of entries) {
    if (e.kind !== "command" || e.client === null || e.request === null) continue;
    const key = sessionKey(e.client, e.request);
    if (state.sessionMayExist(key)) keys.push(key);
    keys.push(bookKey(e.client));
    if (!machine.keysOf) continue;
    let named: string[];
    try {
      named = machine.keysOf(e.command);
    } catch {
      continue; // a command the machine will refuse anyway
    }
    for (const k of named) keys.push(machinePrefix + k);
  }
  state.prefetch(keys);
}

/**
 * The stored outcome of (client, request) if the session table still has it; else `missing`, and
 * `expired` when the request lies at or below its client's evicted ids (it may have run, its
 * outcome is gone).
 */
export function lookupSession(
  state: DigestedState,
  client: string,
  request: number,
): { kind: "found"; seq: number; commandHash: string; output: unknown } | { kind: "missing"; expired?: true } {
  const raw = state.getRaw(sessionKey(client, request));
  if (raw !== null) {
    const [seq, commandHash, output] = JSON.parse(raw) as SessionRow;
    return { kind: "found", seq, commandHash, output };
  }
  const book = state.getRaw(bookKey(client));
  return book !== null && request <= (JSON.parse(book) as ClientBook).floor ? { kind: "missing", expired: true } : { kind: "missing" };
}
