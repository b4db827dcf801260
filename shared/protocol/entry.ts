import { canonicalJson, sha256Hex } from "./hash.js";
import type { Entry } from "./types.js";

/**
 * Each command's hash is computed once per process: the entry chain covers it, and the
 * exactly-once check compares it. Keyed by the command object, so an entry that arrived by RPC is
 * hashed once when its chain is verified and not again when it is applied.
 */
const commandHashes = new WeakMap<object, string>();

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

export function commandHash(command: unknown): string {
  if (command === null || typeof command !== "object") return sha256Hex(canonicalJson(command));
  let h = commandHashes.get(command);
  if (h === undefined) {
    h = sha256Hex(canonicalJson(command));
    commandHashes.set(command, h);
  }
  return h;
}
