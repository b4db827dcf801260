import { sha256Bytes } from "../shared/protocol/hash.js";

export type Scope = "admin" | "client";

// Tokens are compared in constant time: both sides are sha256 digests (so neither the secret's
// length nor the first differing byte shows in the timing) compared without an early exit.

export interface Tokens {
  admin: Uint8Array | null;
  clients: Uint8Array[];
}

let cached: { admin: string | undefined; clients: string | undefined; tokens: Tokens } | null = null;

/** The configured tokens, hashed once per isolate (not per request). */
export function tokensFrom(env: { ADMIN_TOKEN?: string; CLIENT_TOKENS?: string }): Tokens {
  if (cached && cached.admin === env.ADMIN_TOKEN && cached.clients === env.CLIENT_TOKENS) return cached.tokens;
  const admin = env.ADMIN_TOKEN?.trim() || null;
  const clients = (env.CLIENT_TOKENS ?? "")
    .split(",")
    .map((t) => t.trim())
    .filter((t) => t.length > 0);
  const tokens = { admin: admin === null ? null : sha256Bytes(admin), clients: clients.map((t) => sha256Bytes(t)) };
  cached = { admin: env.ADMIN_TOKEN, clients: env.CLIENT_TOKENS, tokens };
  return tokens;
}

function equalDigests(x: Uint8Array, y: Uint8Array): boolean {
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= x[i]! ^ y[i]!;
  return diff === 0;
}

/** The scope a presented token grants, or null. Every candidate is compared (no early exit). */
export function scopeOf(tokens: Tokens, presented: string): Scope | null {
  const p = sha256Bytes(presented);
  let admin = false;
  let client = false;
  if (tokens.admin !== null) admin = equalDigests(tokens.admin, p);
  for (const t of tokens.clients) client = equalDigests(t, p) || client;
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
