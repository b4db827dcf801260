// Protocol rules a mutation probe of shared/protocol found no test for (2026-12-05), those that
// fit no other file's helpers: each test fails with its mutant (named in the test) and passes on
// the code. The others are in failover.test.ts and log-matching.test.ts.
import { describe, expect, it } from "vitest";
import { downAfterMisses, sequencerTimeoutMs, watchKeepaliveMs, watchSilenceMs } from "../../shared/limits.js";
import { zeroHash } from "../../shared/protocol/hash.js";
import { WatchHub } from "../../shared/protocol/watch.js";
import { Cluster } from "../support/cluster.js";
import { manualClock } from "../support/manual-clock.js";
import { replicaWorld } from "../support/replica-world.js";

describe("rules a mutation probe found unguarded", () => {
  it("a voter with exactly downAfterMisses misses is down and not counted reachable (tracker.ts: <= instead of <)", () => {
    const c = Cluster.of("kv");
    for (const id of ["r2", "r3"]) for (let i = 0; i < downAfterMisses; i++) c.sequencer.onAppendFailure(id);
    expect(c.sequencer.replicaStatuses().filter((r) => r.status === "down").map((r) => r.id)).toEqual(["r2", "r3"]);
    expect(c.submit("a", 1, { op: "put", key: "x", value: 1 }).kind).toBe("unavailable");
  });

  it("a deposed sequencer's append (stale epoch) is not hearing the sequencer, nor its sleep notice (replica-driver.ts)", () => {
    const w = replicaWorld();
    const d = w.start();
    expect(d.fence(2, "x")?.accepted).toBe(true);
    w.advance(sequencerTimeoutMs + 1_000);
    expect(d.append({ epoch: 1, prevSeq: 0, prevHash: zeroHash, entries: [], commitSeq: 0, sleep: true })).toMatchObject({ ok: false, reason: "stale_epoch" });
    expect(d.vote()).toMatchObject({ gone: true, heardAgoMs: sequencerTimeoutMs + 1_000 });
  });

  it("with a wake hook, a silent replica's watches still end (watch.ts without the wokeAtMs check kept them open)", () => {
    const { clock, advance } = manualClock(0);
    let wakes = 0;
    const hub = new WatchHub({ appliedSeq: () => 0, readEvents: () => [], silentMs: () => clock.nowMs(), wake: () => void wakes++ }, clock);
    const sink = { texts: [] as string[], closed: false, dropped: false, queuedBytes: 0, takenBytes: 0, gone: false,
      write(t: string) { this.texts.push(t); }, close() { this.closed = true; this.gone = true; }, drop() { this.dropped = true; this.gone = true; } };
    expect(hub.open(sink, null, null)).toBe("ok");
    while (clock.nowMs() < watchSilenceMs + 3 * watchKeepaliveMs) advance(watchKeepaliveMs / 2);
    expect(wakes).toBeGreaterThan(0);
    expect(sink.closed).toBe(true);
  });
});
