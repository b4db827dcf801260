// The watch hub over a fake replica: catch-up and live are one path, a slow reader's queue stays
// bounded and it catches up from the log when it drains, a watcher behind the retained log is
// ended, watchers per replica are bounded, keep-alives flow while idle.
import { describe, expect, it } from "vitest";
import { watchIdGapEntries, watchKeepaliveMs, watchPageBytesMax, watchPressureCheckMs, watchPageEntries, watchPumpPagesMax, watchQueueBytesMax, watchQueuesBytesMax, watchReserveBytes, watchSilenceMs, watchStallMs, watchersPerReplicaMax } from "../../shared/limits.js";
import type { WatchText } from "../../shared/protocol/replica.js";
import { type WatchSink, WatchHub } from "../../shared/protocol/watch.js";
import { ReplicaDriver } from "../../shared/protocol/replica-driver.js";
import { ReplicaCore, newReplicaMeta } from "../../shared/protocol/replica.js";
import { MemoryReplicaStorage } from "../../shared/protocol/memory.js";
import { machineFor } from "../../shared/machines/index.js";
import { zeroHash } from "../../shared/protocol/hash.js";
import { entryBytes } from "../../shared/protocol/entry.js";
import { directGroup } from "../support/direct.js";

class FakeSink implements WatchSink {
  texts: string[] = [];
  queuedBytes = 0;
  takenBytes = 0;
  gone = false;
  closed = false;
  dropped = false;
  /** A reader that takes nothing until drain(). */
  constructor(private readonly holds = false) {}
  write(text: string) {
    this.texts.push(text);
    if (this.holds) this.queuedBytes += text.length;
  }
  close() {
    this.closed = true;
    this.gone = true;
  }
  drop() {
    this.dropped = true;
    this.gone = true;
    this.queuedBytes = 0;
  }
  /** The reader takes everything queued (or only some of it). */
  take(bytes = this.queuedBytes) {
    const n = Math.min(bytes, this.queuedBytes);
    this.takenBytes += n;
    this.queuedBytes -= n;
  }
  ids(): number[] {
    return this.texts.filter((t) => t.startsWith("id:")).flatMap((t) => [...t.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1])));
  }
}

function world() {
  let now = 0;
  const timers: { at: number; fn: () => void }[] = [];
  const log: { seq: number; key: string; size: number }[] = [];
  let base = 0;
  /** Since when the replica has heard nothing from its sequencer (null: in contact). */
  let silentSinceMs: number | null = null;
  const clock = {
    nowMs: () => now,
    setTimer: (ms: number, fn: () => void) => {
      const t = { at: now + ms, fn };
      timers.push(t);
      return () => timers.splice(timers.indexOf(t), 1);
    },
  };
  const counts = { reads: 0 };
  const source = {
    appliedSeq: () => log.length,
    readEvents: (from: number, limit: number, bytesMax: number): WatchText[] | "compacted" => {
      counts.reads++;
      if (from < base) return "compacted";
      const page: WatchText[] = [];
      let chars = 0;
      for (const e of log.slice(from, Math.min(log.length, from + limit))) {
        const text = `id: ${e.seq}\n${"x".repeat(e.size)}\n\n`;
        chars += text.length;
        if (page.length > 0 && chars > bytesMax) break;
        page.push({ seq: e.seq, text, keys: e.key === "" ? [] : [e.key] }); // "": an entry that changes nothing (a read)
      }
      return page;
    },
    silentMs: () => (silentSinceMs === null ? 0 : now - silentSinceMs),
  };
  const hub = new WatchHub(source, clock);
  return {
    hub,
    counts,
    /** Entries applied without a pump (a replica's log before watchers came). */
    fill(n: number, key: string) {
      for (let i = 0; i < n; i++) log.push({ seq: log.length + 1, key, size: 10 });
    },
    apply(key: string, size = 10) {
      log.push({ seq: log.length + 1, key, size });
      hub.pump();
    },
    compactTo(seq: number) {
      base = seq;
    },
    /** The replica stops hearing from its sequencer (cut off from it), or hears again. */
    cutOff() {
      silentSinceMs = now;
    },
    hear() {
      silentSinceMs = null;
    },
    advance(ms: number) {
      now += ms;
      for (const t of timers.filter((x) => x.at <= now)) {
        timers.splice(timers.indexOf(t), 1);
        t.fn();
      }
    },
  };
}

describe("watch hub", () => {
  it("sends the log after `from`, then each applied entry, in order, filtered by prefix", () => {
    const w = world();
    for (let i = 0; i < 5; i++) w.apply(i % 2 ? "a/x" : "b/y");
    const all = new FakeSink();
    const only = new FakeSink();
    const fromNow = new FakeSink();
    expect(w.hub.open(all, 2, null)).toBe("ok");
    expect(w.hub.open(only, 0, "a/")).toBe("ok");
    expect(w.hub.open(fromNow, null, null)).toBe("ok");
    w.apply("a/z");
    expect(all.ids()).toEqual([3, 4, 5, 6]);
    expect(only.ids()).toEqual([2, 4, 6]);
    expect(fromNow.ids()).toEqual([6]);
  });

  it("takes an empty prefix as every key's changes, not as no filter: entries that change nothing (reads, failed compares) are not sent (an etcd probe)", () => {
    const w = world();
    w.apply("a");
    w.apply(""); // a read
    w.apply("b");
    const everyKey = new FakeSink();
    const all = new FakeSink();
    expect(w.hub.open(everyKey, 0, "")).toBe("ok");
    expect(w.hub.open(all, 0, null)).toBe("ok");
    w.apply("");
    w.apply("c");
    expect(everyKey.ids()).toEqual([1, 3, 5]);
    expect(all.ids()).toEqual([1, 2, 3, 4, 5]);
  });

  it("keeps a slow reader's queue bounded; once it drains it catches up from the log with nothing skipped", () => {
    const w = world();
    const slow = new FakeSink(true);
    w.hub.open(slow, 0, null);
    const size = 64 * 1024;
    for (let i = 0; i < 40; i++) w.apply("k", size);
    expect(slow.queuedBytes).toBeLessThan(watchQueueBytesMax + size + 100);
    const sentBefore = slow.ids().length;
    expect(sentBefore).toBeLessThan(40);
    while (slow.ids().length < 40) {
      slow.queuedBytes = 0; // the reader took everything
      w.hub.pump();
    }
    expect(slow.ids()).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
  });

  it("bounds the queues of all watchers together: past watchQueuesBytesMax every watcher waits, stalled readers are dropped after watchStallMs", () => {
    const w = world();
    const stalled = Array.from({ length: Math.ceil((1.5 * watchQueuesBytesMax) / watchQueueBytesMax) }, () => new FakeSink(true));
    for (const s of stalled) expect(w.hub.open(s, 0, null)).toBe("ok");
    const live = new FakeSink();
    expect(w.hub.open(live, 0, null)).toBe("ok");
    const size = 64 * 1024;
    const n = Math.ceil((2 * watchQueueBytesMax) / size);
    const total = () => stalled.reduce((sum, s) => sum + s.queuedBytes, 0);
    for (let i = 0; i < n; i++) {
      w.apply("k", size);
      expect(total()).toBeLessThanOrEqual(watchQueuesBytesMax + size + 100);
    }
    expect(stalled.some((s) => s.dropped)).toBe(false); // not stalled long enough yet
    expect(live.ids().length).toBeLessThan(n); // the shared bound holds everyone back
    w.advance(watchStallMs + watchKeepaliveMs);
    const dropped = stalled.filter((s) => s.dropped);
    expect(dropped.length).toBeGreaterThan(0);
    expect(live.ids()).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    // A dropped reader resumes with Last-Event-ID: its events so far were an unbroken prefix.
    for (const s of dropped) expect(s.ids()).toEqual(Array.from({ length: s.ids().length }, (_, i) => i + 1));
  });

  it("holds a live reader back at most watchStallMs past the shared bound, round after round of readers that never read (a probe: 40 of them froze every watch of the replica for 30 s, and for as long as they were reopened)", () => {
    const w = world();
    const live = new FakeSink();
    expect(w.hub.open(live, null, null)).toBe("ok");
    const size = 64 * 1024;
    let written = 0;
    for (let round = 0; round < 4; round++) {
      const stallers = Array.from({ length: Math.ceil((1.25 * watchQueuesBytesMax) / watchQueueBytesMax) }, () => new FakeSink(true));
      for (const s of stallers) expect(w.hub.open(s, null, null)).toBe("ok");
      for (let i = 0; i < Math.ceil((1.5 * watchQueueBytesMax) / size); i++) (w.apply("k", size), written++);
      expect(live.ids().length, "the shared bound holds the live reader back").toBeLessThan(written);
      for (let ms = 0; ms < watchStallMs + watchPressureCheckMs; ms += 250) w.advance(250); // timers at their times
      expect(live.ids(), `round ${round}: the live reader still waits`).toEqual(Array.from({ length: written }, (_, i) => i + 1));
      expect(stallers.every((s) => s.dropped), "the readers that never read are dropped").toBe(true);
    }
    expect(watchStallMs + watchPressureCheckMs).toBeLessThanOrEqual(10_000);
  });

  it("past the shared bound, still feeds a reader that keeps up, while readers that hold their queues full take a little now and then (a review: they never count as stalled, and held every live watch back)", () => {
    const w = world();
    const live = new FakeSink(true);
    expect(w.hub.open(live, null, null)).toBe("ok");
    const tricklers = Array.from({ length: Math.ceil((1.25 * watchQueuesBytesMax) / watchQueueBytesMax) }, () => new FakeSink(true));
    for (const s of tricklers) expect(w.hub.open(s, null, null)).toBe("ok");
    const size = 1_000;
    let written = 0;
    for (let i = 0; i < Math.ceil((1.5 * watchQueueBytesMax) / size); i++) (w.apply("k", size), written++);
    live.take();
    w.hub.pump();
    const all = () => tricklers.reduce((sum, s) => sum + s.queuedBytes, 0) + live.queuedBytes;
    for (let ms = 0; ms < 60_000; ms += 250) {
      if (ms % 4_000 === 0) for (const s of tricklers) s.take(1_020); // a little every 4 s: never stalled
      if (ms % 1_000 === 0) (w.apply("k", size), written++);
      live.take();
      w.advance(250);
      w.hub.pump(); // a drain pumps
      expect(all()).toBeLessThanOrEqual(watchQueuesBytesMax + watchReserveBytes + watchPageBytesMax + 1_000);
    }
    live.take();
    w.hub.pump();
    live.take();
    expect(live.ids().at(-1), "the live reader is held back").toBe(written);
    expect(tricklers.some((s) => s.dropped), "readers that read are not dropped").toBe(false);
  });

  it("ends no stream with bytes still queued (they would be out of the shared bound's reach): a quarantine's end, or a reader behind the retained log", () => {
    // Stalled readers fill the shared bound; the replica is quarantined (its streams end), more
    // stalled readers come, and again: closed streams kept their queues until read, outside the
    // hub's list and so outside watchQueuesBytesMax, 32 MiB more per round.
    const w = world();
    const size = 64 * 1024;
    const all: FakeSink[] = [];
    const held = () => all.filter((s) => !s.dropped).reduce((sum, s) => sum + s.queuedBytes, 0);
    for (let round = 0; round < 3; round++) {
      const stalled = Array.from({ length: Math.ceil(watchQueuesBytesMax / watchQueueBytesMax) + 1 }, () => new FakeSink(true));
      for (const s of stalled) expect(w.hub.open(s, null, null)).toBe("ok");
      all.push(...stalled);
      for (let i = 0; i < Math.ceil((2 * watchQueueBytesMax) / size); i++) w.apply("k", size);
      w.hub.closeAll();
      expect(held()).toBeLessThanOrEqual(watchQueuesBytesMax + size + 100);
    }
    // A reader with nothing queued gets a clean end.
    const idle = new FakeSink();
    w.hub.open(idle, null, null);
    w.hub.closeAll();
    expect(idle.closed && !idle.dropped).toBe(true);
    // One that fell behind the retained log with bytes queued (it took only part of them).
    const behind = new FakeSink(true);
    w.hub.open(behind, null, null);
    for (let i = 0; i < Math.ceil((2 * watchQueueBytesMax) / size); i++) w.apply("k", size);
    behind.take(size); // below the bound again: the next pump reads on from the log...
    w.compactTo(Number.MAX_SAFE_INTEGER); // ...which no longer holds its position
    w.hub.pump();
    expect(behind.dropped).toBe(true);
    expect(behind.queuedBytes).toBe(0);
  });

  it("never drops readers that keep reading, however many catch up at once: each gets every event in turn", () => {
    const w = world();
    const size = 64 * 1024;
    const n = Math.ceil((2 * watchQueueBytesMax) / size);
    for (let i = 0; i < n; i++) w.apply("k", size);
    const readers = Array.from({ length: Math.ceil((2 * watchQueuesBytesMax) / watchQueueBytesMax) }, () => new FakeSink(true));
    for (const s of readers) expect(w.hub.open(s, 0, null)).toBe("ok");
    for (let round = 0; round < 200 && readers.some((s) => s.ids().length < n); round++) {
      expect(readers.reduce((sum, s) => sum + s.queuedBytes, 0)).toBeLessThanOrEqual(watchQueuesBytesMax + watchReserveBytes + watchQueueBytesMax);
      for (const s of readers) s.take();
      w.advance(watchStallMs / 4);
      w.hub.pump(); // a drain pumps
    }
    for (const s of readers) {
      expect(s.dropped).toBe(false);
      expect(s.ids()).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    }
  });

  it("under the shared bound, a slow reader that takes only part of its queue is not dropped, and every reader gets its turn", () => {
    const w = world();
    const size = 64 * 1024;
    const n = Math.ceil((2 * watchQueueBytesMax) / size);
    for (let i = 0; i < n; i++) w.apply("k", size);
    const readers = Array.from({ length: Math.ceil((1.25 * watchQueuesBytesMax) / watchQueueBytesMax) }, () => new FakeSink(true));
    for (const s of readers) expect(w.hub.open(s, 0, null)).toBe("ok");
    expect(readers.some((s) => s.ids().length === 0)).toBe(true); // the bound held the last ones back
    // Each round every reader takes a quarter of what it holds: slow, but reading.
    for (let round = 0; round < 3; round++) {
      for (const s of readers) s.take(Math.ceil(s.queuedBytes / 4));
      w.advance(watchStallMs);
      w.hub.pump();
    }
    expect(readers.filter((s) => s.dropped)).toEqual([]);
    expect(readers.every((s) => s.ids().length > 0)).toBe(true); // the ones held back were served next
  });

  it("ends a watcher that fell behind the retained log, refuses a compacted start, and bounds watchers", () => {
    const w = world();
    for (let i = 0; i < 3; i++) w.apply("k");
    w.compactTo(2);
    expect(w.hub.open(new FakeSink(), 1, null)).toBe("compacted");
    const behind = new FakeSink(true);
    behind.queuedBytes = watchQueueBytesMax; // stalled
    expect(w.hub.open(behind, 2, null)).toBe("ok");
    w.compactTo(3);
    behind.queuedBytes = 0;
    w.hub.pump();
    expect(behind.closed).toBe(true);
    const many = Array.from({ length: watchersPerReplicaMax }, () => new FakeSink());
    for (const s of many) expect(w.hub.open(s, null, null)).toBe("ok");
    expect(w.hub.open(new FakeSink(), null, null)).toBe("busy");
    many[0]!.gone = true; // a reader went away: its place frees
    expect(w.hub.open(new FakeSink(), null, null)).toBe("ok");
    w.hub.closeAll();
    expect(many.every((s) => s.closed || s.gone)).toBe(true);
    expect(w.hub.count).toBe(0);
  });

  it("a full replica asks its idle watchers whether their readers are still there: the places of those who left free for the retry", () => {
    // A reader that went away is noticed only when a write to its stream fails, and the failure
    // arrives later (as a stream's rejected write does). 700 of 1,000 left (a network blip) and
    // are reconnecting: without a write, their places stayed taken until the next keepalive.
    const w = world();
    w.apply("k");
    w.advance(1); // the opening events are not recent writes
    const left: FakeSink[] = [];
    class LeftSink extends FakeSink {
      override write(text: string) {
        super.write(text);
        left.push(this);
      }
    }
    const sinks = Array.from({ length: watchersPerReplicaMax }, (_, i) => (i < 700 ? new LeftSink() : new FakeSink()));
    for (const s of sinks) expect(w.hub.open(s, null, null)).toBe("ok");
    const stalled = sinks[999]!;
    stalled.queuedBytes = 100; // its pending write fails alike if its reader left: no probe
    sinks.pop();
    w.advance(watchKeepaliveMs / 2 - 1); // no keepalive yet
    expect(w.hub.open(new FakeSink(), null, null)).toBe("busy");
    for (const s of left) s.gone = true; // their writes failed meanwhile
    expect(w.hub.open(new FakeSink(), null, null)).toBe("ok");
    // The readers still there got a keepalive, not more: the next refusal does not ask again at once.
    const stayed = sinks.slice(700);
    expect(stayed.every((s) => s.texts.join("") === ": keepalive\n\n")).toBe(true);
    for (let i = 0; i < 699; i++) expect(w.hub.open(new FakeSink(), null, null)).toBe("ok");
    expect(w.hub.open(new FakeSink(), null, null)).toBe("busy");
    expect(stayed.every((s) => s.texts.length === 1)).toBe(true);
    expect(stalled.texts).toEqual([]);
  });

  it("sends a keepalive comment to a watcher sent nothing for watchKeepaliveMs", () => {
    const w = world();
    const s = new FakeSink();
    w.hub.open(s, null, null);
    w.advance(watchKeepaliveMs / 2);
    expect(s.texts).toEqual([]);
    w.advance(watchKeepaliveMs / 2);
    expect(s.texts).toEqual([": keepalive\n\n"]);
    w.apply("k");
    w.advance(watchKeepaliveMs / 2);
    expect(s.texts.length).toBe(2);
  });

  it("tells a prefix watcher where it stands past the entries its filter passes over, so a reconnect need not go back behind the retained log", () => {
    const w = world();
    const s = new FakeSink();
    w.hub.open(s, null, "rare/");
    w.apply("rare/1");
    for (let i = 0; i < watchIdGapEntries - 1; i++) w.apply("busy");
    expect(s.ids()).toEqual([1]); // 999 passed over: not yet
    w.apply("busy");
    expect(s.ids()).toEqual([1, 1 + watchIdGapEntries]); // an `id:` block with no event
    expect(s.texts[s.texts.length - 1]).toBe(`id: ${1 + watchIdGapEntries}\n\n`);
    for (let i = 0; i < 5; i++) w.apply("busy");
    w.advance(watchKeepaliveMs);
    expect(s.texts[s.texts.length - 1]).toBe(`: keepalive\nid: ${6 + watchIdGapEntries}\n\n`);
    w.advance(watchKeepaliveMs);
    expect(s.texts[s.texts.length - 1]).toBe(": keepalive\n\n"); // nothing passed since
    w.compactTo(100);
    const resumed = new FakeSink();
    expect(w.hub.open(resumed, s.ids().at(-1)!, "rare/")).toBe("ok");
  });

  it("reads at most watchPumpPagesMax pages per event: a prefix watcher resuming far back goes on in later events, skipping nothing", () => {
    const w = world();
    w.fill(5_000, "busy");
    w.fill(1, "rare/1");
    const s = new FakeSink();
    w.hub.open(s, 0, "rare/");
    expect(w.counts.reads).toBeLessThanOrEqual(watchPumpPagesMax + 1); // + the compaction check at open
    expect(Math.max(0, ...s.ids())).toBeLessThanOrEqual(watchPumpPagesMax * watchPageEntries); // `id:` blocks of where it stands
    let events = 0;
    while (!s.ids().includes(5_001) && events < 100) {
      const before = w.counts.reads;
      w.advance(0);
      expect(w.counts.reads - before).toBeLessThanOrEqual(watchPumpPagesMax);
      events++;
    }
    expect(s.ids().at(-1)).toBe(5_001);
    expect(s.texts.filter((t) => t.includes("x")).length).toBe(1); // the one matching event, once
    expect(events).toBeGreaterThan(1);
  });

  it("ends the streams of a replica that has heard nothing from its sequencer for watchSilenceMs, where they would carry only keepalives", () => {
    const w = world();
    const old = new FakeSink();
    w.hub.open(old, null, "a/");
    w.apply("a/1");
    w.apply("b/2"); // passed over by the prefix: the last words tell where the stream stands
    w.cutOff();
    w.advance(watchSilenceMs - watchKeepaliveMs / 2);
    expect(old.closed).toBe(false); // not silent long enough yet
    const recent = new FakeSink();
    w.hub.open(recent, null, null, true); // a watch opened at the silent replica (none other could serve)
    w.advance(watchKeepaliveMs / 2);
    expect(old.closed).toBe(true);
    expect(old.texts.at(-1)).toMatch(/^: this replica has heard nothing from its sequencer for 10 s: reconnect with Last-Event-ID to follow one in contact\nid: 2\n\n$/);
    expect(recent.closed).toBe(false); // open for less than watchSilenceMs: it waits its own turn
    expect(w.hub.count).toBe(1);
    w.advance(watchSilenceMs);
    expect(recent.closed).toBe(true);
    // Opened in the router's fallback: its client is told to wait 5 to 10 s before it looks again.
    expect(recent.texts.at(-1)).toMatch(/\nretry: (\d+)\n\n$/);
    const retryMs = Number(/retry: (\d+)/.exec(recent.texts.at(-1)!)![1]);
    expect(retryMs).toBeGreaterThanOrEqual(watchSilenceMs / 2);
    expect(retryMs).toBeLessThan(watchSilenceMs);
    // A reader that is behind is dropped, not closed: its queue no longer holds memory out of the bound's reach.
    const behind = new FakeSink(true);
    w.hub.open(behind, 0, null);
    w.advance(watchSilenceMs + watchKeepaliveMs / 2);
    expect(behind.dropped).toBe(true);
    // In contact again: nothing ends.
    w.hear();
    const later = new FakeSink();
    w.hub.open(later, null, null);
    w.advance(3 * watchSilenceMs);
    expect(later.closed).toBe(false);
  });
});

describe("a replica's watch source", () => {
  it("reads pages of at most watchPageBytesMax from the replica's log (it read the log's 4 MiB pages)", async () => {
    const config = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "first" as const, checkpointEvery: 50 };
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    const value = "v".repeat(60 * 1024);
    for (let r = 1; r <= 20; r++) expect((await g.driver.submit("big", r, { op: "put", key: `k${r}`, value })).kind).toBe("ok");
    g.driver.stop?.();
    const replica = [...g.replicas.values()].find((d) => (d.core?.appliedSeq ?? 0) >= 20)!;
    const s = new FakeSink(true);
    expect(replica.watches.open(s, 0, null)).toBe("ok");
    // The first page: events of 120 KiB (the command and its change) up to the bound, at least one.
    expect(s.texts[0]!.length).toBeLessThanOrEqual(watchPageBytesMax + 130 * 1024);
    expect(s.texts.length).toBeGreaterThan(1);
    replica.watches.closeAll();
  });

  it("counts how long the sequencer it hears has been cut off, as its appends say (a replica on its side of a partition hears it)", () => {
    let now = 1_000_000;
    const storage = new MemoryReplicaStorage();
    storage.saveMeta(newReplicaMeta("g", "r1", "kv", 50));
    const d = new ReplicaDriver(new ReplicaCore(storage, storage.meta!, machineFor("kv")), { nowMs: () => now, setTimer: () => () => {} });
    const beat = (cutOffMs?: number) => d.append({ epoch: 1, prevSeq: 0, prevHash: zeroHash, entries: [], commitSeq: 0, ...(cutOffMs === undefined ? {} : { cutOffMs }) });
    expect(beat().ok).toBe(true);
    now += 2_000;
    expect(d.silentMs()).toBe(2_000);
    expect(beat(7_000).ok).toBe(true); // heard now, from a sequencer without a quorum for 7 s
    now += 3_000;
    expect(d.silentMs()).toBe(10_000);
    expect(beat().ok).toBe(true); // it has a quorum again
    expect(d.silentMs()).toBe(0);
  });
});

/** A replica's log and effects rows, the bytes a watch's hold keeps. */
function heldBytes(store: MemoryReplicaStorage): number {
  let sum = 0;
  for (const e of store.log.values()) sum += entryBytes(e);
  for (const f of store.effects.values()) sum += f.output.length + f.changes.length;
  return sum;
}

describe("a live watch and compaction by bytes", () => {
  const quota16 = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "first" as const, checkpointEvery: 50, storageQuotaMiB: 16 };
  /** A 16 MiB group whose replicas' sizes are their logs plus 1 MiB, and a watch on r2 after seq 1 into `sink`. */
  async function watched(sink: WatchSink, prefix: string | null) {
    const g = directGroup(quota16, { entries: 10_000, slack: 1_000 });
    for (const [, s] of g.stores) s.sizeBytes = () => 1024 * 1024 + heldBytes(s);
    expect((await g.driver.submit("c", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    for (let i = 0; i < 100 && (g.replicas.get("r2")!.core?.appliedSeq ?? 0) < 1; i++) await new Promise((r) => setTimeout(r, 5));
    expect(g.replicas.get("r2")!.watches.open(sink, null, prefix)).toBe("ok");
    return g;
  }

  it("a reader that stopped reading holds its replica's log to two budgets, not the entries window: overwrites of one key are never refused (a review: 156 refused, 3,120 deletes no help)", async () => {
    const stalled = new FakeSink(true);
    const g = await watched(stalled, null);
    const value = "v".repeat(60 * 1024);
    for (let r = 2; r <= 150; r++) expect((await g.driver.submit("c", r, { op: "put", key: "k", value })).kind, `put ${r}`).toBe("ok");
    expect(stalled.gone).toBe(false); // not dropped: one queue is under the shared bound
    expect(heldBytes(g.stores.get("r2")!)).toBeLessThan(2.5 * 1024 * 1024);
    g.replicas.get("r2")!.watches.closeAll();
    g.driver.stop();
  });

  it("a prefix watch with no match is told where it stands every 64 KiB passed over, not only every 1,000 entries: it holds no more than that, and its reconnect from there resumes (a review: 410, or writes refused)", async () => {
    for (const [size, n] of [[60 * 1024, 150], [4 * 1024, 600]] as const) {
      const prompt = new FakeSink(false);
      const g = await watched(prompt, "other/");
      const value = "v".repeat(size);
      for (let r = 2; r <= n + 1; r++) expect((await g.driver.submit("c", r, { op: "put", key: `k${r % 50}`, value })).kind, `put ${r}`).toBe("ok");
      const r2 = g.replicas.get("r2")!;
      for (let i = 0; i < 100 && (r2.core?.appliedSeq ?? 0) < n + 1; i++) await new Promise((r) => setTimeout(r, 5));
      expect(heldBytes(g.stores.get("r2")!), `${size}`).toBeLessThan(1.5 * 1024 * 1024);
      const ids = prompt.texts.join("").match(/^id: \d+$/gm)?.map((l) => Number(l.slice(4))) ?? [];
      prompt.close(); // the connection blips: the client resumes where its stream told it it stood
      expect(r2.watches.open(new FakeSink(false), Math.max(1, ...ids), "other/"), `${size}`).toBe("ok");
      r2.watches.closeAll();
      g.driver.stop();
    }
  });

  it("at the quota a watch holds nothing: the log it held is measured and cut at the next step (a review: a thousand small commands later)", async () => {
    const stalled = new FakeSink(true);
    const g = await watched(stalled, null);
    const value = "v".repeat(60 * 1024);
    for (let r = 2; r <= 40; r++) expect((await g.driver.submit("c", r, { op: "put", key: `k${r}`, value })).kind).toBe("ok");
    const r2 = g.stores.get("r2")!;
    const held = heldBytes(r2);
    expect(held).toBeGreaterThan(1.5 * 1024 * 1024); // held for the watch, past the 1 MiB budget
    // The group reaches its quota (the other data): its appends say so, and r2 cuts at once.
    for (const [id, s] of g.stores) s.sizeBytes = () => (id === "r1" ? 16 * 1024 * 1024 : 1024 * 1024 + heldBytes(s));
    for (let i = 0; i < 5; i++) await g.driver.submit("d", i + 1, { op: "delete", key: `k${i + 2}` });
    expect(heldBytes(r2)).toBeLessThan(1.3 * 1024 * 1024);
    g.replicas.get("r2")!.watches.closeAll();
    g.driver.stop();
  });

  it("a slow reader's watch is not compacted past by a burst of large writes (up to two budgets): it reads every event once it drains (a review: one batch of 100 ended every live watch of a small group)", async () => {
    const config = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "first" as const, checkpointEvery: 50, storageQuotaMiB: 16 };
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    const value = "v".repeat(60 * 1024);
    expect((await g.driver.submit("big", 1, { op: "put", key: "k1", value })).kind).toBe("ok");
    for (let i = 0; i < 100 && (g.replicas.get("r2")!.core?.appliedSeq ?? 0) < 1; i++) await new Promise((r) => setTimeout(r, 5));
    const replica = g.replicas.get("r2")!;
    const s = new FakeSink(true); // takes nothing until told
    expect(replica.watches.open(s, 0, null)).toBe("ok");
    for (let r = 2; r <= 24; r++) expect((await g.driver.submit("big", r, { op: "put", key: `k${r}`, value })).kind).toBe("ok");
    for (let i = 0; i < 100 && (replica.core?.appliedSeq ?? 0) < 24; i++) await new Promise((r) => setTimeout(r, 5));
    // 24 entries and their copies, 2.9 MB: the cut passes what the reader queued (its 1 MiB),
    // and what is left after that is within the two budgets a watch holds.
    for (let i = 0; i < 200 && !s.gone; i++) {
      s.take();
      replica.watches.pump();
    }
    expect(s.closed || s.dropped).toBe(false);
    const ids = s.texts.join("").match(/^id: \d+$/gm)!.map((l) => Number(l.slice(4)));
    expect(Math.max(...ids)).toBe(24);
    // The other replicas, with no watch, kept about the budget.
    expect(g.stores.get("r3")!.log.size).toBeLessThan(14);
    replica.watches.closeAll();
    g.driver.stop();
  });
});
