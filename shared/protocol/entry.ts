import { canonicalJson, sha256Hex } from "./hash.js";
import type { Entry } from "./types.js";

/**
 * The hash chain: each entry's hash covers its predecessor's hash and every field of its own, so
 * two logs with equal hashes at seq s hold the same entries up to s (a checkpoint's log hash).
 */
export function entryHash(prevHash: string, e: Omit<Entry, "hash">): string {
  return sha256Hex(
    prevHash +
      "\n" +
      canonicalJson([e.seq, e.epoch, e.kind, e.client, e.request, e.command, e.timestamp]),
  );
}

export function commandHash(command: unknown): string {
  return sha256Hex(canonicalJson(command));
}
