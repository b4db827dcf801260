// The sequencer's send loops with a co-located replica (io.directReplica): the remote loops wait for
// its turn so their messages carry the commit of what it just stored, and neither lose a command
// nor wait on it while it is slow (a review of 1d00864 and 74bcb39; each failed before the fix).
import { describe, expect, it } from "vitest";
import type { DriverIO, ReplicaLink } from "../../shared/protocol/io.js";
import { directGroup } from "../support/direct.js";

const config = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "majority" as const, checkpointEvery: 50 };
const put = (key: string) => ({ op: "put", key, value: 1 });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** r1 is the co-located replica (io.directReplica); its appends can be slowed like the workers `slow` fault. */
function colocatedGroup() {
  const g = directGroup(config, { entries: 10_000, slack: 1_000 });
  const io = g.io as DriverIO & { directReplica?: string | null };
  (io as { directReplica?: string }).directReplica = "r1";
  const slow = { ms: 0 };
  const base = io.link;
  io.link = (id: string): ReplicaLink =>
    new Proxy(base(id), {
      get: (target, name) => {
        if (name !== "append") return (target as any)[name];
        return async (...args: unknown[]) => {
          if (id === "r1" && slow.ms > 0) await sleep(slow.ms);
          return (target as any).append(...args);
        };
      },
    });
  return { ...g, slow, d: g.driver as any };
}

describe("leader-as-replica send loops", () => {
  it("a command submitted while the remote loops wait for the direct replica's turn is still ordered", async () => {
    // No slow fault: a lone client submits each command as soon as the previous one is answered.
    // The answer comes while r2 and r3 (after their flush) wait for r1's commit-only turn; the
    // submit's kick finds every loop in `sending`, r1's next round does not flush (remote loops
    // "in flight"), and r2/r3 did not flush again after the wait: the command was never ordered.
    const g = colocatedGroup();
    for (let r = 1; r <= 5; r++) {
      const start = Date.now();
      expect((await g.driver.submit("lone", r, put(`k${r}`))).kind, `request ${r}`).toBe("ok");
      expect(Date.now() - start).toBeLessThan(1_000);
    }
    g.driver.stop();
  }, 30_000);

  it("a slow co-located replica holds back a write by one of its calls at most, also after a pause", async () => {
    const g = colocatedGroup();
    const slowMs = 600;
    expect((await g.driver.submit("c", 1, put("warm"))).kind).toBe("ok");
    g.slow.ms = slowMs;
    const tookMs: number[] = [];
    for (let r = 2; r <= 4; r++) {
      await sleep(2 * slowMs + 300); // r1's loop ends: its last round found nothing (a quick turn: directSlow false)
      // A heartbeat round in which every replica is due (as after a write that reached all three).
      for (const id of ["r1", "r2", "r3"]) g.d.beatDue.add(id);
      g.d.kickAll();
      await sleep(100); // a write arrives while r2 and r3 wait for r1's slow heartbeat turn
      const start = Date.now();
      expect((await g.driver.submit("c", r, put(`k${r}`))).kind).toBe("ok");
      tookMs.push(Date.now() - start);
    }
    // r2 and r3 are a healthy quorum. Before: about 2 x 600 ms each (the write was not flushed after the
    // wait, and r1's empty round cleared directSlow, so its next slow turn was waited out too).
    expect(tookMs.every((ms) => ms < slowMs), `write latencies ${tookMs.join(", ")} ms`).toBe(true);
    g.driver.stop();
  }, 30_000);
});
