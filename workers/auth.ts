import { sha256 } from "@noble/hashes/sha2.js";
import { utf8ToBytes } from "@noble/hashes/utils.js";

export type Scope = "admin" | "client";

/**
 * Constant-time comparison: both sides are hashed first so the comparison time depends on
 * neither the secret's length nor the position of the first differing byte.
 */
export function constantTimeEqual(a: string, b: string): boolean {
  const x = sha256(utf8ToBytes(a));
  const y = sha256(utf8ToBytes(b));
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= x[i]! ^ y[i]!;
  return diff === 0;
}

export interface Tokens {
  admin: string | null;
  clients: string[];
}

export function tokensFrom(env: { ADMIN_TOKEN?: string; CLIENT_TOKENS?: string }): Tokens {
  const admin = env.ADMIN_TOKEN?.trim() || null;
  const clients = (env.CLIENT_TOKENS ?? "")
    .split(",")
    .map((t) => t.trim())
    .filter((t) => t.length > 0);
  return { admin, clients };
}

/** The scope a presented token grants, or null. Every candidate is compared (no early exit). */
export function scopeOf(tokens: Tokens, presented: string): Scope | null {
  let admin = false;
  let client = false;
  if (tokens.admin !== null) admin = constantTimeEqual(tokens.admin, presented);
  for (const t of tokens.clients) client = constantTimeEqual(t, presented) || client;
  return admin ? "admin" : client ? "client" : null;
}

/** Per-token token bucket, per isolate: a cheap first line against one runaway client. */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; atMs: number }>();
  constructor(
    private readonly perSec: number,
    private readonly burst: number,
  ) {}

  /** 0 if allowed, else the seconds to wait. */
  take(key: string, nowMs: number): number {
    if (this.perSec <= 0) return 0;
    const b = this.buckets.get(key) ?? { tokens: this.burst, atMs: nowMs };
    b.tokens = Math.min(this.burst, b.tokens + ((nowMs - b.atMs) / 1000) * this.perSec);
    b.atMs = nowMs;
    this.buckets.set(key, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / this.perSec));
  }
}
