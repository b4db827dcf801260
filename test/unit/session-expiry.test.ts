// Sessions that expire (GroupConfig.sessionIdleMs; shared/protocol/state.ts, forgetIdle): a client
// with no command executed for the window, by the entries' timestamps, is forgotten on every
// replica alike, within a bound per entry.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { kv } from "../../shared/machines/kv.js";
import { MemoryRowStore } from "../../shared/protocol/memory.js";
import { DigestedState, type SessionExpiry, applyEntry, prefetchFor, recomputeDigest } from "../../shared/protocol/state.js";
import { sessionForgetRowsMax, sessionIdleBuckets } from "../../shared/limits.js";
import { entryHash } from "../../shared/protocol/entry.js";
import { zeroHash } from "../../shared/protocol/hash.js";
import type { Entry } from "../../shared/api/types.js";

const idleMs = 8_000; // buckets of 1 s
const bucketMs = idleMs / sessionIdleBuckets;
const t0 = Date.parse("2026-12-05T00:00:00.000Z");

let seq = 0;
function entry(client: string, request: number, command: unknown, atMs: number): Entry {
  const body = { seq: ++seq, epoch: 1, kind: "command" as const, client, request, command, timestamp: new Date(atMs).toISOString() };
  return { ...body, hash: entryHash(zeroHash, body) };
}

function fresh() {
  const rows = new MemoryRowStore();
  return { rows, state: new DigestedState(rows) };
}

/** Every stored key of a client: its book, its session rows, its index row. */
function clientKeys(rows: MemoryRowStore, client: string): string[] {
  const tag = `${client.length}:${client}`;
  return rows
    .scan("", null, 1_000_000)
    .map(([k]) => k)
    .filter((k) => k === `c/${tag}` || k.startsWith(`s/${tag}/`) || k.endsWith(`/${tag}`));
}

function put(state: DigestedState, client: string, request: number, atMs: number, expiry: SessionExpiry | null, value: unknown = request) {
  const e = entry(client, request, { op: "put", key: `${client}/${request}`, value }, atMs);
  prefetchFor(state, kv, [e]);
  const out = applyEntry(state, kv, e, undefined, expiry);
  state.endStep();
  return out;
}

describe("sessions that expire", () => {
  it("forget a client idle for the window: its book, sessions and index row go, and a retry then executes again", () => {
    const { rows, state } = fresh();
    const forgotten: string[] = [];
    const expiry: SessionExpiry = { idleMs, forgot: (c, requests) => forgotten.push(`${c}:${requests.join(",")}`) };
    for (let r = 1; r <= 3; r++) expect(put(state, "a", r, t0, expiry).status).toBe("ok");
    state.save();
    expect(clientKeys(rows, "a")).toHaveLength(5); // book, three sessions, one index row
    // Idle for less than the window: remembered, a retry is a duplicate.
    expect(put(state, "b", 1, t0 + idleMs - bucketMs, expiry).status).toBe("ok");
    expect(put(state, "a", 1, t0 + idleMs - bucketMs, expiry).status).toBe("duplicate");
    expect(forgotten).toEqual([]);
    // Past it (a bucket more, as the index counts whole buckets): another client's command forgets it.
    expect(put(state, "b", 2, t0 + idleMs + 2 * bucketMs, expiry).status).toBe("ok");
    expect(forgotten).toEqual(["a:1,2,3"]);
    state.save();
    expect(clientKeys(rows, "a")).toEqual([]);
    expect(put(state, "a", 1, t0 + idleMs + 2 * bucketMs, expiry).status).toBe("ok");
    state.save();
    expect(state.digest).toBe(recomputeDigest(rows, 100).digest);
  });

  it("forget a client whose command comes first after the window before applying it: it is a new client", () => {
    const { state } = fresh();
    const expiry: SessionExpiry = { idleMs };
    expect(put(state, "a", 5, t0, expiry).status).toBe("ok");
    expect(put(state, "a", 5, t0 + 2 * idleMs, expiry).status).toBe("ok");
  });

  it("a client that keeps sending is never forgotten, and moves bucket once a bucket", () => {
    const { rows, state } = fresh();
    const expiry: SessionExpiry = { idleMs };
    for (let i = 0; i < 40; i++) put(state, "a", i + 1, t0 + i * (bucketMs / 2), expiry);
    state.save();
    const index = rows.scan("d/", null, 100);
    expect(index).toHaveLength(1);
    expect(put(state, "a", 1, t0 + 40 * (bucketMs / 2), expiry).status).toBe("duplicate");
  });

  it("delete at most sessionForgetRowsMax rows per entry; a client cut off keeps a book that counts what is left", () => {
    const { rows, state } = fresh();
    const expiry: SessionExpiry = { idleMs };
    const many = 150;
    for (let r = 1; r <= many; r++) put(state, "a", r, t0, expiry);
    state.save();
    const later = t0 + 2 * idleMs;
    put(state, "b", 1, later, expiry);
    state.save();
    const left = rows.scan("s/1:a/", null, 1_000).length;
    expect(left).toBe(many - sessionForgetRowsMax);
    const book = JSON.parse(rows.get("c/1:a")!);
    expect(book.count).toBe(left);
    // The floor stays: a request whose row went runs again if sent (as once the client is gone),
    // never refused as expired (a retry stuck longer than the window, of a command never run,
    // was refused for good: the simulator).
    expect(book.floor).toBe(0);
    // Its next command (past the window still) goes on forgetting it first.
    expect(put(state, "a", 1, later, expiry).status).toBe("ok");
    state.save();
    expect(rows.scan("s/1:a/", null, 1_000).length).toBe(many - 2 * sessionForgetRowsMax + 1);
    // That command brought it back before the rest went: it keeps what is left, and is no longer idle.
    expect(put(state, "a", many, later, expiry).status).toBe("duplicate");
    put(state, "b", 2, later + bucketMs, expiry);
    state.save();
    expect(rows.scan("s/1:a/", null, 1_000).length).toBe(many - 2 * sessionForgetRowsMax + 1);
    expect(JSON.parse(rows.get("c/1:a")!).count).toBe(many - 2 * sessionForgetRowsMax + 1);
    expect(state.digest).toBe(recomputeDigest(rows, 100).digest);
  });

  it("bound the characters an entry deletes too: idle clients with large outputs go over several entries", () => {
    const { rows, state } = fresh();
    const expiry: SessionExpiry = { idleMs };
    const big = "x".repeat(60_000);
    put(state, "w", 1, t0, expiry, big);
    // 40 one-shot readers of a 60 KB value: 2.4 MB of outputs in their sessions.
    for (let c = 0; c < 40; c++) {
      const e = entry(`r${c}`, 1, { op: "get", key: "w/1" }, t0);
      prefetchFor(state, kv, [e]);
      applyEntry(state, kv, e, undefined, expiry);
      state.endStep();
    }
    state.save();
    const later = t0 + 2 * idleMs;
    put(state, "b", 1, later, expiry);
    state.save();
    const readersLeft = rows.scan("c/", null, 100).filter(([k]) => /^c\/\d+:r\d+$/.test(k)).length;
    expect(readersLeft).toBeGreaterThan(20); // about 17 of 60 KB fit in 1 Mi characters
    expect(readersLeft).toBeLessThan(40);
    for (let r = 2; r < 10; r++) put(state, "b", r, later, expiry);
    state.save();
    expect(rows.scan("c/", null, 100).map(([k]) => k)).toEqual(["c/1:b"]);
    expect(state.digest).toBe(recomputeDigest(rows, 100).digest);
  });

  it("are the same on every replica whatever their saves and restarts: equal rows and digests", () => {
    const expiry: SessionExpiry = { idleMs };
    const log: Entry[] = [];
    seq = 0;
    for (let i = 0; i < 600; i++) {
      // One-shot clients, a few long-lived ones, time going forward in uneven steps.
      const client = i % 5 === 0 ? `long${i % 3}` : `once${i}`;
      log.push(entry(client, i + 1, { op: "put", key: `k${i % 17}`, value: i }, t0 + i * 97));
    }
    const once = fresh();
    for (const e of log) (prefetchFor(once.state, kv, [e]), applyEntry(once.state, kv, e, undefined, expiry), once.state.endStep());
    once.state.save();
    // Another replica saves every 7 entries and is built anew from its rows every 50 (a restart).
    const rows = new MemoryRowStore();
    let state = new DigestedState(rows);
    log.forEach((e, i) => {
      prefetchFor(state, kv, [e]);
      applyEntry(state, kv, e, undefined, expiry);
      state.endStep();
      if (i % 7 === 6) state.save();
      if (i % 50 === 49) {
        state.save();
        state = new DigestedState(rows, state.digest);
      }
    });
    state.save();
    expect(rows.scan("", null, 1_000_000)).toEqual(once.rows.scan("", null, 1_000_000));
    expect(state.digest).toBe(once.state.digest);
    // The window forgot the one-shot clients (600 entries over 58 s, a window of 8 s).
    expect(once.rows.scan("c/", null, 10_000).length).toBeLessThan(120);
  });

  it("leave a group without a window as it was: no bucket in the book, no index row", () => {
    const { rows, state } = fresh();
    put(state, "a", 1, t0, null);
    put(state, "b", 1, t0 + 100 * idleMs, null);
    state.save();
    expect(rows.get("c/1:a")).toBe('{"count":1,"floor":0}');
    expect(rows.scan("d/", null, 10)).toEqual([]);
  });

  it("keep the idle index out of the machine's digest (what a snapshot's header carries)", () => {
    const { rows, state } = fresh();
    const expiry: SessionExpiry = { idleMs };
    put(state, "a", 1, t0, expiry);
    state.save();
    const machineOnly = new MemoryRowStore();
    machineOnly.writeMany(rows.scan("m/", null, 100), []);
    expect(state.machineDigest()).toBe(recomputeDigest(machineOnly, 100).digest);
  });
});

describe("sessions that expire, over several entries and saves (a review)", () => {
  it("forgetting a client with large outputs over several entries gives the same rows whether the replica saved between them or not", () => {
    const expiry: SessionExpiry = { idleMs };
    const log: Entry[] = [];
    seq = 0;
    // Twelve outputs of 300 KB: more than one entry's 1 Mi characters.
    log.push(entry("w", 1, { op: "put", key: "big", value: "x".repeat(300_000) }, t0));
    for (let r = 1; r <= 12; r++) log.push(entry("reader", r, { op: "get", key: "big" }, t0));
    for (let r = 1; r <= 6; r++) log.push(entry("b", r, { op: "put", key: "k", value: r }, t0 + 3 * idleMs));
    const run = (saveEvery: boolean) => {
      const { rows, state } = fresh();
      log.forEach((e, i) => {
        prefetchFor(state, kv, [e]);
        applyEntry(state, kv, e, undefined, expiry);
        state.endStep();
        if (saveEvery || i === 12) state.save();
      });
      state.save();
      return { rows: rows.scan("", null, 1e6).map(([k]) => k), digest: state.digest };
    };
    const saving = run(true);
    const notSaving = run(false);
    expect(notSaving.rows).toEqual(saving.rows);
    expect(notSaving.digest).toBe(saving.digest);
    expect(saving.rows.filter((k) => k.includes("6:reader"))).toEqual([]);
  });

  it("reads the idle index once per entry, from where the last forgotten client was: stored index rows read stay about one per client", () => {
    class Counting extends MemoryRowStore {
      indexRows = 0;
      override scan(p: string, a: string | null, l: number, b?: number) {
        const r = super.scan(p, a, l, b);
        if (p.startsWith("d/")) this.indexRows += r.length;
        return r;
      }
    }
    const rows = new Counting();
    const state = new DigestedState(rows);
    const expiry: SessionExpiry = { idleMs };
    const n = 6_000;
    // One-shot clients, 100 a second of log time, saved every 1,000 entries: each entry forgets one.
    for (let i = 0; i < n; i++) {
      put(state, `once${i}`, 1, t0 + i * 10, expiry);
      if (i % 1_000 === 999) state.save();
    }
    state.save();
    expect(rows.scan("c/", null, 10_000).length).toBeLessThan(1_000);
    // A scan per forgotten client, each merging every delete since the save, read 14 million.
    expect(rows.indexRows).toBeLessThan(2 * n);
  });
});

describe("sessions that expire, as a property (a review)", () => {
  const stepArb = fc.record({
    client: fc.integer({ min: 0, max: 25 }),
    reqs: fc.integer({ min: 1, max: 90 }),
    dt: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 3000 }), fc.integer({ min: -40_000, max: 40_000 })),
    big: fc.boolean(),
  });
  const bigValue = "y".repeat(60_000);

  it("every schedule of saves and restarts gives the same digest and outcome at every entry (bursts past the bounds, 60 KB outputs, timestamps that go back)", () => {
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 1, maxLength: 60 }), fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 10 }), (steps, sched) => {
        const log: Entry[] = [];
        let t = t0;
        let seq = 0;
        const nextReq = new Map<number, number>();
        for (const s of steps) {
          t = Math.max(0, t + s.dt);
          // One command per step, or a burst of one client's requests at the same time.
          const n = s.reqs > 80 ? s.reqs : 1;
          for (let i = 0; i < n; i++) {
            const r = (nextReq.get(s.client) ?? 0) + 1;
            nextReq.set(s.client, r);
            const body = { seq: ++seq, epoch: 1, kind: "command" as const, client: `c${s.client}`, request: r, command: { op: "put", key: `k${s.client}`, value: s.big && i === 0 ? bigValue : r }, timestamp: new Date(t).toISOString() };
            log.push({ ...body, hash: entryHash(zeroHash, body) });
          }
        }
        const expiry: SessionExpiry = { idleMs };
        // Reference: never saves.
        const ref = new DigestedState(new MemoryRowStore());
        const refDigests = log.map((e) => {
          prefetchFor(ref, kv, [e]);
          const out = applyEntry(ref, kv, e, undefined, expiry);
          ref.endStep();
          return [ref.digest, out.status];
        });
        for (const mode of [1, 2, 3]) {
          const rows = new MemoryRowStore();
          let st = new DigestedState(rows);
          log.forEach((e, i) => {
            const act = sched[(i * mode) % sched.length]!;
            prefetchFor(st, kv, [e]);
            const out = applyEntry(st, kv, e, undefined, expiry);
            st.endStep();
            expect([st.digest, out.status], `mode ${mode} seq ${e.seq}`).toEqual(refDigests[i]);
            if (act >= 1 + mode % 2) st.save();
            if (act === 4) {
              st.save();
              st = new DigestedState(rows, st.digest); // a restart: derived floor and cursor start over
            }
          });
          st.save();
          expect(st.digest).toBe(recomputeDigest(rows, 100).digest);
        }
      }),
      { numRuns: 150 },
    );
  });
});
