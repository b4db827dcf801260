import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { sessionOutputFreeCharsCommandOnly, stateSaveBytesMax, stateSaveEntriesMax, valueBytesMax } from "../../shared/limits.js";
import { MemoryRowStore } from "../../shared/protocol/memory.js";
import { DigestedState, recomputeDigest, rowHash } from "../../shared/protocol/state.js";
import { savePhaseOf } from "../../shared/protocol/replica.js";
import { bytesToHex, xorInto } from "../../shared/protocol/hash.js";
import { Cluster } from "../support/cluster.js";

const put = (key: string, value: unknown) => ({ op: "put", key, value });

/** Commands 1..n of client "a", each a put of its own key, applied by every replica. */
function applied(n: number): Cluster {
  const c = Cluster.of("kv", 3, "first", 1_000_000);
  for (let r = 1; r <= n; r++) {
    c.submit("a", r, put(`k${r}`, r));
    if (r % 100 === 0) c.settle();
  }
  c.settle();
  return c;
}

describe("applied rows are stored in batches; the log covers the rest", () => {
  it("keeps entries' rows in memory and stores them once per stateSaveEntriesMax entries, each replica at its own phase", () => {
    const c = applied(10);
    const store = c.replicaStores.get("r1")!;
    expect(store.rows.get("m/k1")).toBeNull(); // applied, answered, not stored yet
    expect(store.meta!.appliedSeq).toBe(10);
    expect(store.meta!.stateSeq).toBe(0);
    // Reads see the unsaved rows.
    expect(c.replicas.get("r1")!.query({ op: "get", key: "k10" })).toEqual({ value: 10 });

    const more = applied(stateSaveEntriesMax + 5);
    const stateSeqs = ["r1", "r2", "r3"].map((id) => {
      const m = more.replicaStores.get(id)!.meta!;
      expect(m.stateSeq).toBeGreaterThan(0);
      expect(m.appliedSeq - m.stateSeq!).toBeLessThan(stateSaveEntriesMax);
      // The last save came where its phase put it: no multiple of the period (shifted) passed since.
      const slot = (seq: number) => Math.floor((seq + savePhaseOf(id)) / stateSaveEntriesMax);
      expect(slot(m.appliedSeq)).toBe(slot(m.stateSeq!));
      return m.stateSeq;
    });
    // Each replica saved at a seq of its own, so no step of the group waits on every replica's save.
    expect(new Set(stateSeqs).size).toBe(3);
    expect(more.replicaStores.get("r1")!.rows.get("m/k1")).toBe("1");
  });

  it("stores the rows early once the unsaved ones hold stateSaveBytesMax characters, so large values do not pile up in memory", () => {
    const c = Cluster.of("kv", 3, "first", 1_000_000);
    const big = "x".repeat(valueBytesMax - 100);
    const n = Math.ceil((3 * stateSaveBytesMax) / big.length);
    expect(n).toBeLessThan(stateSaveEntriesMax / 8); // well before the entry-count save
    for (let r = 1; r <= n; r++) {
      c.submit("a", r, put(`k${r}`, big));
      if (r % 16 === 0) c.settle();
    }
    c.settle();
    for (const id of ["r1", "r2", "r3"]) {
      const m = c.replicaStores.get(id)!.meta!;
      expect(m.stateSeq).toBeGreaterThan(0);
      // What is left unsaved is under the bound (plus at most one step's rows).
      expect(c.replicas.get(id)!.unsavedChars).toBeLessThan(stateSaveBytesMax + 16 * (big.length + 64));
      expect(c.replicaStores.get(id)!.rows.get("m/k1")).toBe(JSON.stringify(big));
    }
    // A restart re-applies the rest and agrees.
    const before = c.replicas.get("r2")!.position();
    c.restartReplica("r2");
    expect(c.replicas.get("r2")!.position()).toEqual(before);
  });

  it("counts a row written many times once: unsavedChars follows its latest value", () => {
    const state = new DigestedState(new MemoryRowStore());
    const big = "y".repeat(10_000);
    for (let i = 0; i < 100; i++) state.putRaw("m/k", JSON.stringify(big + i));
    expect(state.unsavedChars).toBe("m/k".length + JSON.stringify(big + 99).length);
    state.deleteRaw("m/k");
    expect(state.unsavedChars).toBe("m/k".length);
    state.save();
    expect(state.unsavedChars).toBe(0);
  });

  it("also stores them once the entries applied since the last save hold stateSaveBytesMax: large commands that write little bound the replay too", () => {
    const c = Cluster.of("kv", 3, "first", 1_000_000);
    const big = "x".repeat(valueBytesMax - 100);
    // A txn whose compare fails: a 64 KiB command that writes only its session row.
    const txn = (r: number) => ({ op: "txn", compare: [{ key: `absent${r}`, value: big }], success: [], failure: [] });
    const n = Math.ceil((2.5 * stateSaveBytesMax) / big.length);
    for (let r = 1; r <= n; r++) {
      c.submit("a", r, txn(r));
      if (r % 16 === 0) c.settle();
    }
    c.settle();
    for (const id of ["r1", "r2", "r3"]) {
      const m = c.replicaStores.get(id)!.meta!;
      expect(m.appliedSeq).toBe(n);
      expect(m.stateSeq).toBeGreaterThan(0);
      expect((m.appliedSeq - m.stateSeq!) * big.length).toBeLessThan(stateSaveBytesMax + 16 * big.length);
    }
  });

  it("a restart re-applies the entries after the stored state from the log and lands on the same digest", () => {
    const c = applied(stateSaveEntriesMax + 125);
    const before = c.replicas.get("r2")!.position();
    const meta = c.replicaStores.get("r2")!.meta!;
    expect(meta.stateSeq).toBeLessThan(meta.appliedSeq); // something to re-apply
    c.restartReplica("r2");
    const r2 = c.replicas.get("r2")!;
    expect(r2.position()).toEqual(before);
    expect(r2.quarantined).toBe(false);
    expect(r2.query({ op: "get", key: `k${stateSaveEntriesMax + 125}` })).toEqual({ value: stateSaveEntriesMax + 125 });
    // It goes on applying where it was, and its stored rows (after an audit stores them) match its digest.
    c.submit("a", stateSaveEntriesMax + 126, put("after", 1));
    c.settle();
    const info = r2.auditInfo();
    expect(info.scrub.actualDigest).toBe(info.scrub.recordedDigest);
    expect(info.digest).toBe(c.replicas.get("r1")!.position().digest);
  });

  it("a replica whose log no longer re-applies to its recorded digest quarantines itself and withholds its outputs", () => {
    const c = applied(20);
    const store = c.replicaStores.get("r3")!;
    const e = store.log.get(7)!;
    store.log.set(7, { ...e, command: put("k7", "tampered") });
    c.restartReplica("r3");
    expect(c.replicas.get("r3")!.quarantined).toBe(true);
    // It says why (its host logs it: every replica of a group did so in silence, an upgrade probe).
    expect(c.replicas.get("r3")!.loadProblem).toMatch(/^replaying entries \d+ to 20 over its stored rows landed on digest [0-9a-f]{12}, not the recorded [0-9a-f]{12}$/);
    // It still stores and applies the log, but its outputs answer nobody.
    c.submit("a", 21, put("k21", 21));
    c.sequencer.flush("t");
    c.deliver("r1", c.messageFor("r1")!);
    const toR3 = c.messageFor("r3")!;
    expect(toR3.commitSeq).toBe(21);
    const resp = c.deliver("r3", toR3)!;
    expect(resp.ok && resp.appliedSeq).toBe(21);
    expect(resp.ok && resp.outputs).toEqual([]);
  });

  it("entries a build of the other session-row rule applied are replayed under it when the group's own misses the digest (a rolling-deploy review)", () => {
    // Applied counting the rows replaced (as every build since 2026-12-06 11:06 did, whatever the
    // setting), then restarted as a group of the command-only rule (4096): the put over a large
    // value kept its previous whole, which the command-only bound turns into the marker.
    const c = Cluster.of("kv", 3);
    const rule = (id: string, chars: number) => c.replicaStores.get(id)!.saveMeta({ ...c.replicaStores.get(id)!.meta!, sessionOutputFreeChars: chars });
    for (const id of ["r1", "r2", "r3"]) rule(id, 1024), c.restartReplica(id);
    c.submit("a", 1, put("big", "v".repeat(6_000))); // past the command and 4096, unsaved (a larger output's effects row makes a save)
    c.submit("a", 2, put("big", "small"));
    c.settle();
    const recorded = c.replicaStores.get("r2")!.meta!;
    expect(recorded.stateSeq).toBeLessThan(recorded.appliedSeq);
    rule("r2", sessionOutputFreeCharsCommandOnly);
    c.restartReplica("r2");
    const r2 = c.replicas.get("r2")!;
    expect([r2.quarantined, r2.loadProblem]).toEqual([false, null]);
    expect(r2.loadNote).toBe("entries 1 to 2 were applied by a build that counted the rows replaced too in a session row's bound: replayed so, they land on the recorded digest");
    expect(r2.position().digest).toBe(c.replicas.get("r1")!.position().digest);
    // Its rows are stored at once: entries applied from now on follow the group's rule, and a
    // replay of both kinds would land on no digest (a review: the next restart quarantined it).
    expect(c.replicaStores.get("r2")!.meta!.stateSeq).toBe(2);
    c.submit("a", 3, put("big", "w".repeat(6_000)));
    c.submit("a", 4, put("big", "small2"));
    c.settle();
    c.restartReplica("r2");
    expect([c.replicas.get("r2")!.quarantined, c.replicas.get("r2")!.loadProblem]).toEqual([false, null]);
    // The same entries with a damaged log still quarantine it: the other rule is no pass for damage.
    rule("r3", sessionOutputFreeCharsCommandOnly);
    const store = c.replicaStores.get("r3")!;
    store.log.set(2, { ...store.log.get(2)!, command: put("big", "tampered") });
    c.restartReplica("r3");
    expect([c.replicas.get("r3")!.quarantined, c.replicas.get("r3")!.loadNote]).toEqual([true, null]);
  });

  it("a stored row the re-applied entries cannot even read quarantines the replica instead of breaking it", () => {
    const c = applied(stateSaveEntriesMax + 125);
    const store = c.replicaStores.get("r2")!;
    expect(store.rows.get("c/1:a")).not.toBeNull(); // the client's book, stored by the last save
    store.rows.put("c/1:a", "{not json");
    c.restartReplica("r2");
    expect(c.replicas.get("r2")!.quarantined).toBe(true);
    expect(c.replicas.get("r2")!.loadProblem).toMatch(/^replaying entries \d+ to \d+ failed: SyntaxError/);
    expect(c.replicas.get("r1")!.loadProblem).toBeNull();
  });

  it("an audit stores the rows first, so the scrub reads what the replica has applied", () => {
    const c = applied(12);
    const info = c.replicas.get("r1")!.auditInfo();
    expect(info.scrub.rows).toBeGreaterThan(12);
    expect(info.scrub.actualDigest).toBe(info.scrub.recordedDigest);
    expect(c.replicaStores.get("r1")!.meta!.stateSeq).toBe(12);
  });
});

describe("a save writes its rows in the store's key order", () => {
  it("hands the store its puts and deletes sorted by code point, as SQLite orders TEXT keys", () => {
    const store = new MemoryRowStore();
    for (const k of ["m/old-b", "m/old-a", "m/old-c"]) store.put(k, "1");
    const writes: { puts: string[]; deletes: string[] }[] = [];
    const spy = Object.assign(Object.create(store) as MemoryRowStore, {
      writeMany(puts: [string, string][], deletes: string[]) {
        writes.push({ puts: puts.map(([k]) => k), deletes: [...deletes] });
        store.writeMany(puts, deletes);
      },
    });
    const state = new DigestedState(spy);
    // Written out of order; U+FFFF sorts before U+1F600 by code point (and in UTF-8 bytes), not in UTF-16 units.
    for (const k of ["m/z", "m/\u{1F600}", "m/a", "m/\uFFFF", "m/m"]) state.putRaw(k, "v");
    for (const k of ["m/old-c", "m/old-a"]) state.deleteRaw(k);
    state.save();
    expect(writes).toEqual([{ puts: ["m/a", "m/m", "m/z", "m/\uFFFF", "m/\u{1F600}"], deletes: ["m/old-a", "m/old-c"] }]);
    expect(store.get("m/old-b")).toBe("1");
    expect(store.get("m/old-a")).toBeNull();
  });
});

describe("scans over stored and unsaved rows", () => {
  it("merge both in key order, with unsaved writes and deletes taking precedence", () => {
    const rows = new MemoryRowStore();
    for (const k of ["m/a", "m/b", "m/c", "m/d", "m/e"]) rows.put(k, `"${k}-stored"`);
    const state = new DigestedState(rows, recomputeDigest(rows, 100).digest);
    const view = state.machineView();
    view.delete("b");
    view.put("c", "new");
    view.put("bb", "added");
    view.delete("e");
    expect(view.scan("", null, 3)).toEqual([
      ["a", "m/a-stored"],
      ["bb", "added"],
      ["c", "new"],
    ]);
    expect(view.scan("", "c", 10)).toEqual([["d", "m/d-stored"]]);
    expect(rows.get("m/b")).not.toBeNull(); // nothing stored until save()
    state.save();
    expect(view.scan("", null, 10).map(([k]) => k)).toEqual(["a", "bb", "c", "d"]);
    expect(state.digest).toBe(recomputeDigest(rows, 100).digest);
  });
});

describe("the digest is brought up to date when it is read", () => {
  it("equals the XOR of every current row's hash after any mix of writes, deletes, rewrites, saves and reads", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({ op: fc.constant("put" as const), key: fc.integer({ min: 0, max: 5 }), value: fc.integer({ min: 0, max: 3 }) }),
            fc.record({ op: fc.constant("delete" as const), key: fc.integer({ min: 0, max: 5 }) }),
            fc.record({ op: fc.constantFrom("digest" as const, "save" as const, "step" as const) }),
          ),
          { maxLength: 60 },
        ),
        (ops) => {
          const rows = new MemoryRowStore();
          rows.put("m/k0", "seed");
          const state = new DigestedState(rows, recomputeDigest(rows, 100).digest);
          const model = new Map<string, string>([["m/k0", "seed"]]);
          const expected = () => {
            const acc = new Uint8Array(32);
            for (const [k, v] of model) xorInto(acc, rowHash(k, v));
            return bytesToHex(acc);
          };
          for (const o of ops) {
            if (o.op === "put") {
              state.putRaw(`m/k${o.key}`, String(o.value));
              model.set(`m/k${o.key}`, String(o.value));
            } else if (o.op === "delete") {
              expect(state.deleteRaw(`m/k${o.key}`)).toBe(model.delete(`m/k${o.key}`));
            } else if (o.op === "save") state.save();
            else if (o.op === "step") state.endStep();
            else expect(state.digest).toBe(expected());
          }
          expect(state.digest).toBe(expected());
          state.save();
          expect(recomputeDigest(rows, 100).digest).toBe(expected());
        },
      ),
      { numRuns: 500 },
    );
  });
});
