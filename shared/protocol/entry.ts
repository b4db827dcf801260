import { canonicalJson, sha256Hex } from "./hash.js";
import type { Entry } from "../api/types.js";

/**
 * Each command's hash is computed once per process: the entry chain covers it, and the
 * exactly-once check compares it. Keyed by the command object, so an entry that arrived by RPC is
 * hashed once when its chain is verified and not again when it is applied.
 */
const commandHashes = new WeakMap<object, { hash: string; bytes: number }>();

/** Room an entry's fields other than its command take in a message or a page. */
const entryOverheadBytes = 200;

/**
 * An entry's timestamp: the clock's, but never before its predecessor's. Machines judge time on
 * entry timestamps (lock's leases), so a later entry stamped earlier (a successor sequencer whose
 * clock is behind its predecessor's, or a clock stepped back) found a lease live again after an
 * earlier entry had found it lapsed. ISO-8601 UTC texts of one width compare as their times do.
 */
export function stampAfter(clock: string, previous: string | null | undefined): string {
  return previous != null && previous > clock ? previous : clock;
}

/**
 * The hash chain: each entry's hash covers its predecessor's hash and every field of its own (the
 * command through its hash), so two logs with equal hashes at seq s hold the same entries up to s
 * (a checkpoint's log hash).
 */
export function entryHash(prevHash: string, e: Omit<Entry, "hash">): string {
  return sha256Hex(
    prevHash + "\n" + JSON.stringify([e.seq, e.epoch, e.kind, e.client, e.request, commandHash(e.command), e.timestamp]),
  );
}

function hashed(command: unknown): { hash: string; bytes: number } {
  if (command === null || typeof command !== "object") {
    const text = canonicalJson(command);
    return { hash: sha256Hex(text), bytes: text.length };
  }
  let h = commandHashes.get(command);
  if (h === undefined) {
    const text = canonicalJson(command);
    h = { hash: sha256Hex(text), bytes: text.length };
    commandHashes.set(command, h);
  }
  return h;
}

/**
 * Gives `copies`, a JSON round trip of `originals` made in this process (the co-located replica's
 * copy of an append), the command hashes already computed for the originals: a round trip keeps
 * the canonical text, so the copy's chain check does not hash every command again.
 */
export function shareCommandHashes(originals: readonly Entry[], copies: readonly Entry[]): void {
  if (originals.length !== copies.length) return;
  for (let i = 0; i < originals.length; i++) {
    const from = originals[i]!.command;
    const to = copies[i]!.command;
    if (from === null || typeof from !== "object" || to === null || typeof to !== "object") continue;
    const h = commandHashes.get(from);
    if (h !== undefined && originals[i]!.seq === copies[i]!.seq) commandHashes.set(to, h);
  }
}

export function commandHash(command: unknown): string {
  return hashed(command).hash;
}

/** The length of a command's canonical JSON (computed with its hash, and kept with it). */
export function commandBytes(command: unknown): number {
  return hashed(command).bytes;
}

/** About the bytes an entry takes serialized (its command's JSON length plus the other fields). */
export function entryBytes(e: Entry): number {
  return hashed(e.command).bytes + entryOverheadBytes;
}

/** The leading entries that fit in bytesMax (always at least one): messages and pages stay bounded. */
export function boundedEntries(entries: Entry[], bytesMax: number): Entry[] {
  if (bytesMax === Infinity) return entries;
  let bytes = 0;
  for (let i = 0; i < entries.length; i++) {
    bytes += entryBytes(entries[i]!);
    if (bytes > bytesMax && i > 0) return entries.slice(0, i);
  }
  return entries;
}

/**
 * Whether a log that starts at its first entry (base 0) holds no-ops alone: read page by page
 * through `read`, at most `limit` entries (a longer log counts as one with entries). A restore is
 * taken only into such a log, and an install over it clears nothing a client was answered for.
 */
export function noopsOnly(baseSeq: number, lastSeq: number, limit: number, read: (fromSeq: number, toSeq: number) => Entry[]): boolean {
  if (baseSeq !== 0 || lastSeq > limit) return false;
  for (let from = 1; from <= lastSeq; ) {
    const page = read(from, lastSeq);
    if (page.length === 0 || page.some((e) => e.kind !== "noop")) return false;
    from += page.length;
  }
  return true;
}

