// Synchronous hashing: SQLite transactions in Durable Objects are synchronous, so Web Crypto
// (async) cannot be used inside one. node:crypto's createHash is synchronous and native both in
// Node and in workerd (nodejs_compat); it is about ten times faster there than a JS sha256, and
// hashing is on every command's path (entry chain, session, row digests).
import { createHash } from "node:crypto";

export const zeroHash = "0".repeat(64);

export function sha256Hex(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

export function sha256Bytes(text: string): Uint8Array {
  return createHash("sha256").update(text, "utf8").digest();
}

export function bytesToHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

export function hexToBytes(hex: string): Uint8Array {
  return new Uint8Array(Buffer.from(hex, "hex"));
}

/** JSON with object keys sorted, so equal values always give equal text (and equal hashes). */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value)) return "[" + value.map(canonicalJson).join(",") + "]";
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort();
  return "{" + keys.map((k) => JSON.stringify(k) + ":" + canonicalJson(obj[k])).join(",") + "}";
}

/** In-place XOR of b into a (both 32 bytes). */
export function xorInto(a: Uint8Array, b: Uint8Array): void {
  for (let i = 0; i < a.length; i++) a[i]! ^= b[i]!;
}

export function utf8Length(text: string): number {
  return Buffer.byteLength(text, "utf8");
}

/** Compares by Unicode code point, which is the order SQLite's BINARY collation gives UTF-8 text. */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x < y ? -1 : 1;
    if (x > 0xffff) i++;
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}
