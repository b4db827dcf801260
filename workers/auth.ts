import type { TokenRecord } from "../shared/control/directory.js";
import { rateLimitKeysMax, routeCacheMs, tokenLookupsFoundMax, tokenLookupsMissingMax, unknownTokenLookupsAnyGroupBurst, unknownTokenLookupsAnyGroupPerSec, unknownTokenLookupsBurst, unknownTokenLookupsPerSec } from "../shared/limits.js";
import { ApiError } from "../shared/api/errors.js";
import { bounded } from "../shared/bounded.js";
import { sha256Bytes, sha256Hex } from "../shared/protocol/hash.js";
import { type Env, directoryStub } from "./env.js";

/**
 * Who a request speaks for: the admin, a client (CLIENT_TOKENS: every group's client routes), or
 * a group token (one group's client routes; `read` or `write`; `incarnation`: the life of its group
 * it was found in, undefined in an older directory's answer).
 */
export type Scope = { kind: "admin" } | { kind: "client" } | { kind: "group"; group: string; tokenId: string; access: "read" | "write"; incarnation?: number };

/** A directory's answer for a token id. */
type FoundToken = TokenRecord & { incarnation?: number };

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

/** The token of an `Authorization: Bearer <token>` header, or null. */
export function bearerOf(header: string | undefined): string | null {
  // Spaces and tabs only (RFC 9110's whitespace), and a token of visible ASCII: `\s` took a form
  // feed, a vertical tab or an em space around it (a probe).
  return /^Bearer[ \t]+([\x21-\x7e]+)[ \t]*$/i.exec(header ?? "")?.[1] ?? null;
}

/** The scope a configured token grants, or null. Every candidate is compared (no early exit). */
export function scopeOf(tokens: Tokens, presented: string): Scope | null {
  const p = sha256Bytes(presented);
  let admin = false;
  let client = false;
  if (tokens.admin !== null) admin = equalDigests(tokens.admin, p);
  for (const t of tokens.clients) client = equalDigests(t, p) || client;
  return admin ? { kind: "admin" } : client ? { kind: "client" } : null;
}

// ---- group tokens ------------------------------------------------------------------------------
// A group token names its group and id in the clear and carries a secret: g.<group>.<id>.<secret>.
// The group's directory keeps sha256(secret); routers cache what they looked up for routeCacheMs,
// so a revocation takes effect within that time.

const groupTokenPattern = /^g\.([a-z0-9][a-z0-9-]{0,62})\.([0-9a-f]{8})\.([0-9a-f]{32})$/;

export function newGroupToken(group: string): { id: string; secret: string; token: string } {
  const hex = (n: number) => [...crypto.getRandomValues(new Uint8Array(n))].map((b) => b.toString(16).padStart(2, "0")).join("");
  const id = hex(4);
  const secret = hex(16);
  return { id, secret, token: `g.${group}.${id}.${secret}` };
}

export function secretHash(secret: string): string {
  return sha256Hex(secret);
}

/**
 * A router's cached directory lookups of group tokens, each for routeCacheMs. Found tokens and
 * missing ones are bounded apart: anyone can present made-up tokens of the right shape, and
 * with one bound their misses pushed the real tokens out (a directory call per request again).
 */
export class TokenLookups {
  private readonly found = new Map<string, { record: TokenRecord; atMs: number }>();
  private readonly missing = new Map<string, number>();
  constructor(
    private readonly foundMax: number,
    private readonly missingMax: number,
  ) {}

  /** The cached record (null: known missing), or undefined when unknown or older than routeCacheMs. */
  get(key: string, nowMs: number): TokenRecord | null | undefined {
    const hit = this.found.get(key);
    if (hit && nowMs - hit.atMs < routeCacheMs) return hit.record;
    const missAtMs = this.missing.get(key);
    if (missAtMs !== undefined && nowMs - missAtMs < routeCacheMs) return null;
    return undefined;
  }

  set(key: string, record: TokenRecord | null, nowMs: number): void {
    this.delete(key);
    if (record) bounded(this.found, this.foundMax).set(key, { record, atMs: nowMs });
    else bounded(this.missing, this.missingMax).set(key, nowMs);
  }

  /** Found here once, even if no longer fresh (it stays until pushed out). */
  foundBefore(key: string): boolean {
    return this.found.has(key);
  }

  delete(key: string): void {
    this.found.delete(key);
    this.missing.delete(key);
  }

  keys(): string[] {
    return [...this.found.keys(), ...this.missing.keys()];
  }
}

const lookups = new TokenLookups(tokenLookupsFoundMax, tokenLookupsMissingMax);

/**
 * Per-key token bucket, per isolate: a cheap first line against one runaway client. At most
 * `keysMax` buckets (the least recently used goes; a key it forgot starts full again).
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; atMs: number }>();
  constructor(
    private readonly perSec: number,
    private readonly burst: number,
    private readonly keysMax = rateLimitKeysMax,
  ) {}

  /** One taken back (a charge made in advance turned out not to be owed). */
  give(key: string): void {
    const b = this.buckets.get(key);
    if (b) b.tokens = Math.min(this.burst, b.tokens + 1);
  }

  /** 0 if allowed (and counted), else the seconds to wait. */
  take(key: string, nowMs: number): number {
    const wait = this.waitSec(key, nowMs);
    if (wait === 0 && this.perSec > 0) this.buckets.get(key)!.tokens -= 1;
    return wait;
  }

  /** 0 if one more would be allowed now, else the seconds to wait; counts nothing. */
  private waitSec(key: string, nowMs: number): number {
    if (this.perSec <= 0) return 0;
    const b = this.buckets.get(key) ?? { tokens: this.burst, atMs: nowMs };
    b.tokens = Math.min(this.burst, b.tokens + ((nowMs - b.atMs) / 1000) * this.perSec);
    b.atMs = nowMs;
    this.buckets.delete(key);
    bounded(this.buckets, this.keysMax).set(key, b);
    return b.tokens >= 1 ? 0 : Math.max(1, Math.ceil((1 - b.tokens) / this.perSec));
  }
}

/**
 * Directory lookups of group-token ids that turned out unknown, per caller address: every new id
 * costs a call to that group's directory object, so a caller cycling made-up ids of a victim's
 * group loaded its directory at will (tokens of no group's form cost nothing, and are not
 * counted). Past the bucket such a caller's uncached lookups answer 429.
 */
const unknownLookups = new RateLimiter(unknownTokenLookupsPerSec, unknownTokenLookupsBurst);
/** The same per address over every group: a made-up token of a new group name each time was never held up (a probe). */
const unknownLookupsAnyGroup = new RateLimiter(unknownTokenLookupsAnyGroupPerSec, unknownTokenLookupsAnyGroupBurst);

/** Charges an unknown id's lookup to the address's bucket and to its bucket for the group: 0, or the seconds to wait (nothing charged). */
function takeUnknownLookup(block: string, group: string, nowMs: number): number {
  const anyWait = unknownLookupsAnyGroup.take(block, nowMs);
  if (anyWait > 0) return anyWait;
  const wait = unknownLookups.take(`${block} ${group}`, nowMs);
  if (wait > 0) unknownLookupsAnyGroup.give(block);
  return wait;
}

/**
 * The scope of a group token, or null (malformed, unknown, revoked, or its group is gone).
 * `address`: the caller's, whose lookups of unknown ids are limited (unknownLookups).
 */
export async function groupScopeOf(env: Env, presented: string, address?: string): Promise<Scope | null> {
  const m = groupTokenPattern.exec(presented);
  if (!m) return null;
  const [, group, id, secret] = m as unknown as [string, string, string, string];
  const key = `${group}/${id}`;
  let record = lookups.get(key, Date.now());
  if (record === undefined) {
    // Charged before the lookup (concurrent requests all passed a check made before it, a
    // review), and given back when the id exists. An id this router found before is never held
    // up: a caller sharing an address with one cycling made-up ids kept its own token working
    // only while it was cached. The buckets are the address's
    // (an IPv6 address's /64) for that group and for every group.
    const block = address === undefined || lookups.foundBefore(key) ? null : addressBlock(address);
    const wait = block === null ? 0 : takeUnknownLookup(block, group, Date.now());
    if (wait > 0) throw new ApiError("rate_limited", "too many unknown group tokens from this address", wait);
    const forgetsBefore = forgets;
    record = (await directoryStub(env, group).token(id)) as FoundToken | null;
    // A revoke here while the lookup was on its way: its answer may be from before, not cached
    // (cached, a watch's check right after the revoke found the token still good: a review).
    if (forgets === forgetsBefore) lookups.set(key, record, Date.now());
    if (record && block !== null) {
      unknownLookups.give(`${block} ${group}`);
      unknownLookupsAnyGroup.give(block);
    }
  }
  if (!record) return null;
  const ok = equalDigests(sha256Bytes(secret), hexBytes(record.hash));
  const life = (record as FoundToken).incarnation;
  return ok ? { kind: "group", group, tokenId: id, access: record.scope, ...(life === undefined ? {} : { incarnation: life }) } : null;
}

/** An address, or an IPv6 address's /64 (one host often holds a whole /64). */
export function addressBlock(address: string): string {
  if (!address.includes(":")) return address;
  const [head = "", tail] = address.split("::", 2) as [string, string | undefined];
  const h = head === "" ? [] : head.split(":");
  const t = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = tail === undefined ? h : [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill("0"), ...t];
  return `${groups
    .slice(0, 4)
    .map((g) => (parseInt(g, 16) || 0).toString(16))
    .join(":")}::/64`;
}

/**
 * Drops this router's cached lookups of a group's tokens (one, or all of them): a token revoked
 * here, or its group deleted or re-created here (or seen at a new incarnation), is refused at
 * once, not a routeCacheMs later. Other routers still take up to routeCacheMs.
 */
export function forgetTokens(group: string, id?: string): void {
  forgets++;
  forgottenAtMs.delete(group);
  bounded(forgottenAtMs, tokenLookupsFoundMax).set(group, Date.now());
  if (id !== undefined) {
    lookups.delete(`${group}/${id}`);
    return;
  }
  for (const key of lookups.keys()) if (key.startsWith(`${group}/`)) lookups.delete(key);
}

/** When this router last forgot tokens of each group (a revoke or a delete here), and how many times it forgot any. */
const forgottenAtMs = new Map<string, number>();
let forgets = 0;

/**
 * Whether this router forgot any of the group's tokens at or after `sinceMs`: an open watch then
 * checks its token before the next event, not a routeCacheMs later (a probe: 13 entries reached a
 * watch after its token's revoke had answered 204, through the same router).
 */
export function tokensForgottenSince(group: string, sinceMs: number): boolean {
  return (forgottenAtMs.get(group) ?? -Infinity) >= sinceMs;
}

function hexBytes(hex: string): Uint8Array {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

