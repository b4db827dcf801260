// A lock and lease service with fencing tokens: the classic use of a replicated state machine
// (Chubby, ZooKeeper recipes, etcd's lease + revision). The worked example of docs/MACHINES.md.
//
// Time is the entry's timestamp (the sequencer's clock, the same on every replica), never the
// replica's: a lease whose expiresAt <= the entry's timestamp is free. Every grant takes the next
// value of one counter, so tokens strictly increase across grants of every lock; a resource that
// remembers the highest token it has seen refuses a holder whose lease expired and was granted
// again (Kleppmann's fencing token).
import { z } from "zod";
import { listLimitDefault, listLimitMax, lockCounterRestoreMax, lockNameCharsMax, lockTtlMsMax } from "../limits.js";
import { compareCodePoints } from "../text.js";
import { defineMachine } from "./define.js";
import { isoToMs, msToIso } from "./iso-time.js";
import type { MachineState } from "./types.js";

const name = z.string().min(1).max(lockNameCharsMax);
const ttlMs = z.number().int().min(1).max(lockTtlMsMax);
const token = z.number().int().min(1).refine(Number.isSafeInteger, { message: "must be a safe integer" });

const lockCommand = z.discriminatedUnion("op", [
  z.object({ op: z.literal("acquire"), lock: name, owner: name, ttlMs }).strict(),
  z.object({ op: z.literal("renew"), lock: name, owner: name, token, ttlMs }).strict(),
  z.object({ op: z.literal("release"), lock: name, owner: name, token }).strict(),
]);
export type LockCommand = z.infer<typeof lockCommand>;

const lockQuery = z.discriminatedUnion("op", [
  z.object({ op: z.literal("get"), lock: name }).strict(),
  z
    .object({
      op: z.literal("list"),
      prefix: z.string().max(lockNameCharsMax).optional(),
      after: name.optional(),
      limit: z.number().int().min(1).max(listLimitMax).optional(),
    })
    .strict(),
]);
export type LockQuery = z.infer<typeof lockQuery>;

/** A lease as stored and as queries return it. */
export interface Lease {
  holder: string;
  token: number;
  expiresAt: string;
}
export type AcquireOutput = { ok: true; token: number; expiresAt: string } | { ok: false; holder: string; expiresAt: string };
export type RenewOutput = { ok: true; token: number; expiresAt: string } | { ok: false; reason: "not_holder" | "expired" };
export type ReleaseOutput = { released: boolean };

// Rows: "l/<lock>" holds a Lease; "token" the last token granted. Lock rows share a prefix that
// the counter's key does not start with, so a list never meets the counter.
const lockPrefix = "l/";
const counterKey = "token";
const rowOf = (lock: string) => lockPrefix + lock;

function live(lease: Lease | null, nowMs: number): lease is Lease {
  return lease !== null && isoToMs(lease.expiresAt) > nowMs;
}

function grant(state: MachineState, lock: string, owner: string, expiresAt: string): AcquireOutput {
  const next = (state.get<number>(counterKey) ?? 0) + 1;
  state.put(counterKey, next);
  state.put(rowOf(lock), { holder: owner, token: next, expiresAt } satisfies Lease);
  return { ok: true, token: next, expiresAt };
}

/** A lease as stored, for a restore's rows: the fields grant() writes, an expiry it could write. */
const storedLease = z
  .object({
    holder: name,
    token,
    expiresAt: z.string().refine((s) => isCanonicalIso(s), { message: "must be a UTC timestamp as toISOString writes it" }),
  })
  .strict();

function isCanonicalIso(s: string): boolean {
  try {
    return msToIso(isoToMs(s)) === s;
  } catch {
    return false;
  }
}

const generatedLocks = ["l0", "l1", "l2"];
const generatedOwners = ["a", "b", "c"];

export const lock = defineMachine({
  name: "lock",
  commandSchema: lockCommand,
  querySchema: lockQuery,

  apply(state, c, ctx): AcquireOutput | RenewOutput | ReleaseOutput {
    const nowMs = isoToMs(ctx.timestamp);
    const lease = state.get<Lease>(rowOf(c.lock));
    switch (c.op) {
      case "acquire": {
        const expiresAt = msToIso(nowMs + c.ttlMs);
        if (!live(lease, nowMs)) return grant(state, c.lock, c.owner, expiresAt);
        if (lease.holder !== c.owner) return { ok: false, holder: lease.holder, expiresAt: lease.expiresAt };
        // The holder asking again (a retry whose first answer was lost): the same lease, now
        // running ttlMs from this entry (as a renew: shorter, if ttlMs is); no one else held the
        // lock meanwhile, so it keeps its token.
        state.put(rowOf(c.lock), { ...lease, expiresAt });
        return { ok: true, token: lease.token, expiresAt };
      }
      case "renew": {
        if (lease === null || lease.holder !== c.owner || lease.token !== c.token) return { ok: false, reason: "not_holder" };
        // A lapsed lease is not revived: its holder acquires again and gets a new token.
        if (!live(lease, nowMs)) return { ok: false, reason: "expired" };
        const expiresAt = msToIso(nowMs + c.ttlMs);
        state.put(rowOf(c.lock), { ...lease, expiresAt });
        return { ok: true, token: lease.token, expiresAt };
      }
      case "release": {
        if (lease === null || lease.holder !== c.owner || lease.token !== c.token) return { released: false };
        // A lapsed lease's row goes too (the lock was free already): released says it was live.
        state.delete(rowOf(c.lock));
        return { released: live(lease, nowMs) };
      }
    }
  },

  /**
   * A release deletes its lease's row, a renew rewrites it at the same size (an ISO time's length
   * is fixed): both go while the group's storage is at its quota, so held leases do not all lapse
   * while an operator frees space (a renew was refused like an acquire).
   */
  goesAtQuota: { test: (c) => c.op === "release" || c.op === "renew", commands: "release, renew" },

  keysOf(c) {
    return c.op === "acquire" ? [rowOf(c.lock), counterKey] : [rowOf(c.lock)];
  },

  checkRow(key, value) {
    // Not near 2^53 - 1: a grant past it repeated a token (lockCounterRestoreMax). Leases hold
    // tokens at most the counter (checkState), so they are bounded too.
    if (key === counterKey) {
      return Number.isSafeInteger(value) && (value as number) >= 0 && (value as number) <= lockCounterRestoreMax ? null : `${counterKey}: an integer from 0 to ${lockCounterRestoreMax}`;
    }
    if (!key.startsWith(lockPrefix)) return `key: "${counterKey}" or "${lockPrefix}" and a lock's name`;
    const lockName = name.safeParse(key.slice(lockPrefix.length));
    if (!lockName.success) return `key: the lock's name ${lockName.error.issues[0]!.message}`;
    const lease = storedLease.safeParse(value);
    if (!lease.success) {
      const issue = lease.error.issues[0]!;
      return `the lease of ${JSON.stringify(key)}${issue.path.length > 0 ? "." + issue.path.join(".") : ""}: ${issue.message}`;
    }
    return null;
  },

  // Tokens must keep strictly increasing after a restore: the next grant takes counter + 1, so a
  // lease holding a token above the counter would see a later holder get the same token.
  checkState() {
    let counter = 0;
    let top: { key: string; token: number } | null = null;
    // Tokens strictly increase across all grants, so no two leases hold the same one.
    const holders = new Map<number, string>();
    let twice: string | null = null;
    return {
      row(key, value) {
        if (key === counterKey) {
          counter = value as number;
          return;
        }
        const token = (value as Lease).token;
        if (token > (top?.token ?? 0)) top = { key, token };
        const other = holders.get(token);
        if (other !== undefined && twice === null) twice = `the token ${token} is held by both ${JSON.stringify(other)} and ${JSON.stringify(key)}: each grant has a token of its own`;
        holders.set(token, key);
      },
      end() {
        if (twice !== null) return twice;
        if (top === null || top.token <= counter) return null;
        return `the counter "${counterKey}" (${counter}) is below the token ${top.token} of ${JSON.stringify(top.key)}: the next grant would repeat a token`;
      },
    };
  },

  // A query has no entry and so no timestamp: it returns leases as stored, expired ones included
  // until a command replaces or releases them; the caller compares expiresAt with its own clock.
  query(state, q) {
    if (q.op === "get") return state.get<Lease>(rowOf(q.lock));
    const prefix = lockPrefix + (q.prefix ?? "");
    const after = q.after !== undefined ? rowOf(q.after) : null;
    const limit = q.limit ?? listLimitDefault;
    // One row past the page says exactly whether more follow. (state.page's `more` only says rows
    // may follow, and how sure it is depends on which rows the replica has saved yet: replicas
    // would answer the same read differently. Leases are small: a page is far under pageBytesMax.)
    const rows = state.scan<Lease>(prefix, after !== null && compareCodePoints(after, prefix) >= 0 ? after : null, limit + 1);
    const locks = rows.slice(0, limit).map(([key, lease]) => ({ lock: key.slice(lockPrefix.length), ...lease }));
    const result: { locks: (Lease & { lock: string })[]; next?: string } = { locks };
    if (rows.length > limit) result.next = locks[locks.length - 1]!.lock;
    return result;
  },

  // A few locks and owners, so commands contend; tokens guessed from a small range, so renewals
  // and releases sometimes hold the current grant; leases short and long against the sim's clock.
  generate: {
    command(rng): LockCommand {
      const lock = rng.pick(generatedLocks);
      const owner = rng.pick(generatedOwners);
      const ttlMs = rng.pick([20, 200, 2_000, 20_000]);
      const token = 1 + rng.int(64);
      switch (rng.int(4)) {
        case 0:
        case 1:
          return { op: "acquire", lock, owner, ttlMs };
        case 2:
          return { op: "renew", lock, owner, token, ttlMs };
        default:
          return { op: "release", lock, owner, token };
      }
    },
    query(rng): LockQuery {
      return rng.chance(0.7) ? { op: "get", lock: rng.pick(generatedLocks) } : { op: "list", limit: 1 + rng.int(4) };
    },
  },
});
