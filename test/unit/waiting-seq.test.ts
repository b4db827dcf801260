// A command's waiter moves from its request's key to its seq when the command is ordered (flush).
// Its deadline dropped it only from the first: with the seq's outcome never decided (every answer
// carrying its output lost), the waiter stayed for good, the group never fell asleep (quiet()
// needs no waiter) and the map grew (a review).
import { describe, expect, it } from "vitest";
import type { DriverIO } from "../../shared/protocol/io.js";
import { directGroup, fastClock } from "../support/direct.js";

const config = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "first" as const, checkpointEvery: 50 };
const pause = (virtualMs: number) => new Promise((r) => setTimeout(r, virtualMs / 50));

describe("a waiter past its deadline", () => {
  it("whose command's outputs were all lost is dropped: the group falls asleep", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 }, fastClock);
    Object.assign(g.io as DriverIO, { sleepAfterMs: 3_000, onSleep: () => {} });
    g.driver.startHeartbeats();
    // Lose the answer of every append in which the replica applied something (the one carrying outputs), for a while.
    const applied = new Map<string, number>();
    let losing = true;
    g.hooks.served = (id, method) => {
      if (method !== "append") return;
      const now = g.replicas.get(id)!.core!.appliedSeq;
      const before = applied.get(id) ?? 0;
      applied.set(id, now);
      if (losing && now > before) throw new Error("answer lost");
    };
    const answer = await g.driver.submit("c", 1, { op: "put", key: "a", value: 1 });
    expect(answer.kind).toBe("timeout"); // it ran, its outputs were lost: fine, the client retries
    losing = false;
    // Every replica applied it.
    for (const id of ["r1", "r2", "r3"]) expect(g.replicas.get(id)!.core!.appliedSeq).toBe(1);
    // A retry is answered from the session tables.
    const retry = await g.driver.submit("c", 1, { op: "put", key: "a", value: 1 });
    expect(retry.kind).toBe("ok");
    const waitingSeq = (g.driver as unknown as { waitingSeq: Map<number, unknown[]> }).waitingSeq;
    // Nobody waits any more, yet:
    await pause(20_000);
    expect(waitingSeq.size, "a waiter whose client was answered long ago is still held").toBe(0);
    expect(g.driver.asleepSinceMs, "the group should have fallen asleep 3 s after the last client work").not.toBeNull();
    g.driver.stop();
  }, 30_000);
});

describe("a waiter past its deadline, outputs majority", () => {
  it("with one replica down and one answer lost (its seq never decided) is dropped: the group falls asleep", async () => {
    const g = directGroup({ ...config, outputs: "majority" as const }, { entries: 10_000, slack: 1_000 }, fastClock);
    Object.assign(g.io as DriverIO, { sleepAfterMs: 3_000, onSleep: () => {} });
    g.driver.startHeartbeats();
    expect((await g.driver.submit("c", 1, { op: "put", key: "a", value: 1 })).kind).toBe("ok");
    g.down.add("r3");
    // r2's one answer that carries the output of seq 2 is lost (a timeout, a dropped message).
    let lost = false;
    g.hooks.served = (id, method) => {
      if (id === "r2" && method === "append" && !lost && g.replicas.get("r2")!.core!.appliedSeq >= 2) {
        lost = true;
        throw new Error("answer lost");
      }
    };
    const answer = await g.driver.submit("c", 2, { op: "put", key: "b", value: 2 });
    expect(answer.kind).toBe("timeout");
    const waitingSeq = (g.driver as unknown as { waitingSeq: Map<number, unknown[]> }).waitingSeq;
    await pause(20_000);
    expect(waitingSeq.size, "waiter of a client answered long ago").toBe(0);
    expect(g.driver.asleepSinceMs, "never sleeps").not.toBeNull();
    g.driver.stop();
  }, 30_000);
});
