// The change feed read from a replica's log (ReplicaCore.readEvents and the WatchHub over it),
// the compaction rule that must wait for a joining replica, and a sequencer's refusal to make
// again the state of an incarnation whose DELETE has begun. Each test here was written against a
// deliberate bug that the rest of the suite let through.
import { describe, expect, it } from "vitest";
import { watchPageBytesMax } from "../../shared/limits.js";
import { machineFor } from "../../shared/machines/index.js";
import { SequencerLifecycle } from "../../shared/protocol/lifecycle.js";
import { MemoryReplicaStorage, MemorySequencerStorage } from "../../shared/protocol/memory.js";
import { ReplicaCore, newReplicaMeta } from "../../shared/protocol/replica.js";
import type { GroupConfig } from "../../shared/protocol/types.js";
import { type WatchSink, WatchHub } from "../../shared/protocol/watch.js";
import { Cluster } from "../support/cluster.js";
import { directGroup, fastClock } from "../support/direct.js";

/** A reader that takes everything at once. */
class Sink implements WatchSink {
  texts: string[] = [];
  queuedBytes = 0;
  takenBytes = 0;
  gone = false;
  closed = false;
  write(text: string) {
    this.texts.push(text);
    this.takenBytes += text.length;
  }
  close() {
    this.closed = true;
    this.gone = true;
  }
  drop() {
    this.gone = true;
  }
  ids(): number[] {
    return this.texts.flatMap((t) => [...t.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1])));
  }
}

/** A hub over a real replica core, with a clock that runs its timers when told. */
function hubOver(core: ReplicaCore) {
  const timers: (() => void)[] = [];
  const hub = new WatchHub(
    { appliedSeq: () => core.appliedSeq, readEvents: (from, limit, bytesMax) => core.readEvents(from, limit, bytesMax), silentMs: () => 0 },
    {
      nowMs: () => 0,
      setTimer: (_ms, fn) => {
        timers.push(fn);
        return () => void timers.splice(timers.indexOf(fn), 1);
      },
    },
  );
  /** Runs pending continuations (a pump stopped at watchPumpPagesMax), never keepalives in a loop. */
  const run = () => {
    for (let i = 0; i < 100 && timers.length > 0; i++) hub.pump();
  };
  return { hub, run };
}

/** Every applied entry's seq, walking readEvents page by page from `from`. */
function walk(core: ReplicaCore, from: number, limit: number, bytesMax: number): number[][] {
  const pages: number[][] = [];
  for (let at = from, i = 0; i < 100; i++) {
    const page = core.readEvents(at, limit, bytesMax);
    if (page === "compacted") throw new Error(`compacted at ${at}`);
    if (page.length === 0) break;
    pages.push(page.map((e) => e.seq));
    at = page[page.length - 1]!.seq;
  }
  return pages;
}

describe("a replica's change feed pages", () => {
  // Guards the page's byte bound: an event too large for what is left of a page ends the page
  // (it opens the next one); skipping it and taking the smaller ones after lost it from the
  // stream for good, since the next page starts after the page's last seq.
  it("ends a page at an event too large for the bytes left, and serves it first in the next page: consecutive seqs, none dropped", () => {
    const c = Cluster.of("kv", 3);
    const sizes = [10, 3_000, 10, 10];
    sizes.forEach((n, i) => expect(c.submit("w", i + 1, { op: "put", key: `k${i + 1}`, value: "v".repeat(n) }).kind).toBe("queued"));
    c.settle();
    const r1 = c.replicas.get("r1")!;
    expect(r1.appliedSeq).toBe(4);
    const all = r1.readEvents(0, 10);
    expect(all).not.toBe("compacted");
    const text = (all as { text: string }[]).map((e) => e.text.length);
    // A bound the small event fits, and the small with the large does not.
    const bytesMax = text[0]! + text[1]! - 1;
    expect(text[0]! + text[2]! + text[3]!).toBeLessThan(bytesMax);
    const first = r1.readEvents(0, 10, bytesMax);
    expect(first).not.toBe("compacted");
    expect((first as { seq: number }[]).map((e) => e.seq)).toEqual([1]);
    const pages = walk(r1, 0, 10, bytesMax);
    for (const p of pages) for (let i = 1; i < p.length; i++) expect(p[i]).toBe(p[i - 1]! + 1);
    expect(pages.flat()).toEqual([1, 2, 3, 4]);
  });

  // The same through the watch hub (its pages are watchPageBytesMax): a stream from 0 gets
  // every event, in order, the large ones included.
  it("streams every event to a watcher when a large one does not fit the rest of a page", () => {
    const c = Cluster.of("kv", 3);
    const big = "v".repeat(60 * 1024); // an event carries it twice (command and change): ~120 KiB
    const values = ["s", big, big, big, "s"];
    values.forEach((value, i) => expect(c.submit("w", i + 1, { op: "put", key: `k${i + 1}`, value }).kind).toBe("queued"));
    c.settle();
    const r1 = c.replicas.get("r1")!;
    expect(r1.appliedSeq).toBe(5);
    const texts = (r1.readEvents(0, 10) as { text: string }[]).map((e) => e.text.length);
    expect(texts[0]! + texts[1]! + texts[2]! + texts[3]!).toBeGreaterThan(watchPageBytesMax); // the fourth does not fit the first page
    expect(texts[0]! + texts[1]! + texts[2]! + texts[4]!).toBeLessThan(watchPageBytesMax); // the fifth would
    const { hub, run } = hubOver(r1);
    const s = new Sink();
    expect(hub.open(s, 0, null)).toBe("ok");
    run();
    expect(s.ids()).toEqual([1, 2, 3, 4, 5]);
    hub.closeAll();
  });
});

describe("a replica's change feed behind its compacted log", () => {
  // Guards the 410 boundary: resuming at seq F needs entry F + 1. At F = base - 1 that is the
  // base entry itself, compacted away: the answer must be "compacted" (the client re-reads the
  // state), not a page starting at base + 1 that silently misses the base entry.
  it("answers compacted to a resume at baseSeq - 1, and serves one at baseSeq from baseSeq + 1", () => {
    const c = Cluster.of("kv", 3);
    // r1 compacts its log to 5 entries behind its applied position, past a slack of 2.
    const store = c.replicaStores.get("r1")!;
    const r1 = new ReplicaCore(store, store.meta!, machineFor("kv"), { entries: 5, slack: 2 });
    c.replicas.set("r1", r1);
    for (let r = 1; r <= 20; r++) {
      expect(c.submit("w", r, { op: "put", key: `k${r}`, value: r }).kind).toBe("queued");
      c.settle();
    }
    expect(r1.appliedSeq).toBe(20);
    const base = store.meta!.baseSeq;
    expect(base).toBeGreaterThan(1);
    expect(r1.readEvents(base - 1, 10)).toBe("compacted");
    expect(r1.readEvents(base - 2, 10)).toBe("compacted");
    const served = r1.readEvents(base, 10);
    expect(served).not.toBe("compacted");
    expect((served as { seq: number }[])[0]!.seq).toBe(base + 1);
    // The hub asks the same at open: a watch resuming at base - 1 is refused, at base it streams.
    const { hub, run } = hubOver(r1);
    expect(hub.open(new Sink(), base - 1, null)).toBe("compacted");
    const s = new Sink();
    expect(hub.open(s, base, null)).toBe("ok");
    run();
    expect(s.ids()).toEqual(Array.from({ length: 20 - base }, (_, i) => base + 1 + i));
    hub.closeAll();
  });
});

describe("compaction while a replica joins", () => {
  // Guards the compaction rule: every healthy replica's applied position holds it back, a
  // joining non-voter's too. Counting only the voters compacted the log from under a replica
  // halfway through catching up, which then needed a whole state transfer (a liveness cost:
  // a join under load could restart its catch-up for ever).
  it("does not compact past a joining non-voter's applied position: it goes on catching up by appends", () => {
    const c = Cluster.of("kv", 3);
    const n = 600; // over two messages of appendEntriesMax (256)
    for (let r = 1; r <= n; r++) {
      expect(c.submit("w", r, { op: "put", key: `k${r % 50}`, value: r }).kind).toBe("queued");
      if (r % 16 === 0) c.sequencer.flush(new Date(0).toISOString());
    }
    c.settle();
    expect(c.sequencer.commitSeq).toBe(n);
    // r4 joins (no vote yet) with an empty log.
    const added = c.sequencer.appendConfig({ op: "add", id: "r4", location: null }, new Date(1_000).toISOString());
    expect(added).toHaveProperty("seq", n + 1);
    const store = new MemoryReplicaStorage();
    const meta = newReplicaMeta("g", "r4", "kv", c.config.checkpointEvery);
    store.saveMeta(meta);
    c.replicaStores.set("r4", store);
    const r4 = new ReplicaCore(store, meta, machineFor("kv"));
    c.replicas.set("r4", r4);
    // The voters commit the add.
    for (const id of ["r1", "r2", "r3"]) c.deliver(id, c.messageFor(id)!);
    expect(c.sequencer.commitSeq).toBe(n + 1);
    // r4 gets its first messages until it holds one page of the log: halfway.
    for (let i = 0; i < 5 && r4.appliedSeq === 0; i++) {
      const msg = c.messageFor("r4");
      expect(msg).not.toBeNull();
      c.deliver("r4", msg!);
    }
    const halfway = r4.appliedSeq;
    expect(halfway).toBeGreaterThan(0);
    expect(halfway).toBeLessThan(n - 10);
    // Compaction to 10 entries behind the log's end, slack 1: held at r4's position.
    const target = c.sequencer.compact(10, 1);
    expect(target).not.toBeNull();
    expect(target!).toBeLessThanOrEqual(halfway);
    // Its next message carries the entries after its position (not a state transfer).
    const next = c.sequencer.nextAppend("r4");
    expect(next.kind).toBe("send");
    if (next.kind === "send") {
      expect(next.msg.prevSeq).toBe(halfway);
      c.deliver("r4", next.msg);
    }
    c.settle();
    expect(r4.appliedSeq).toBe(c.sequencer.commitSeq);
  });
});

describe("a sequencer whose incarnation's DELETE has begun", () => {
  const config: GroupConfig = { group: "g", incarnation: 3, machine: "kv", replicas: 3, locations: [], outputs: "first", checkpointEvery: 50 } as never;

  /** A group of incarnation 3 with one entry, its sequencer gone; a lifecycle with no state yet. */
  async function deleted() {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 }, fastClock);
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    g.driver.stop();
    let storage = new MemorySequencerStorage();
    const made = { prepares: 0 };
    const lifecycle = new SequencerLifecycle({
      storage: () => storage,
      prepare: () => void made.prepares++,
      wipe: async () => void (storage = new MemorySequencerStorage()),
      io: () => g.io,
    });
    return { g, lifecycle, made, storage: () => storage };
  }

  // Guards closedThrough: once destroy(N) has begun, a late recover or create of N is refused
  // before it does anything. Admitted, it fenced the deleted group's replicas at a new epoch and
  // made the sequencer's tables again (a zombie of a deleted group); a create threw instead of
  // answering "conflict".
  it("refuses a late recover or create of that incarnation, and touches neither its storage nor its replicas", async () => {
    const { g, lifecycle, made, storage } = await deleted();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const destroying = lifecycle.destroy(3, () => gate); // the replicas' destroy is slow
    const recovering = lifecycle.recover(config);
    const creating = lifecycle.init(config);
    release();
    await destroying;
    const recovered = await recovering;
    const created = await creating.catch((e: unknown) => e);
    // Nothing of the deleted incarnation was made again: no tables, no meta, no replica fenced.
    expect(made.prepares).toBe(0);
    expect(storage().meta).toBeNull();
    expect([...g.calls.keys()].filter((k) => k.endsWith(":fence"))).toEqual([]);
    for (const r of g.replicas.values()) expect(r.core!.position().epoch).toBe(1);
    expect(recovered).toMatchObject({ ok: false, reason: expect.stringMatching(/incarnation 3 of g is over here/) });
    expect(created).toEqual({ kind: "conflict" });
    // And once the destroy is done, the same.
    expect(await lifecycle.recover(config)).toMatchObject({ ok: false, reason: expect.stringMatching(/is over here/) });
    expect(await lifecycle.init(config)).toEqual({ kind: "conflict" });
    expect(lifecycle.closed(3)).toBe(true);
    expect(lifecycle.core).toBeNull();
    expect(made.prepares).toBe(0);
    expect([...g.calls.keys()].filter((k) => k.endsWith(":fence"))).toEqual([]);
  }, 20_000);
});
