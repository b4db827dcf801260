// A rejoin's init (a replica that answered it has no state) is bounded like every replica call:
// unbounded, one that never answered (a message lost, an object that hangs) held the replica's
// send loop for good, kickAll and the heartbeats skipped it, and it got no append again even once
// it answered (a review).
import { describe, expect, it } from "vitest";
import { machineFor } from "../../shared/machines/index.js";
import { MemoryReplicaStorage } from "../../shared/protocol/memory.js";
import { ReplicaCore, newReplicaMeta } from "../../shared/protocol/replica.js";
import { directGroup, fastClock, overrideCall } from "../support/direct.js";

const config = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "first" as const, checkpointEvery: 50 };
const pause = (virtualMs: number) => new Promise((r) => setTimeout(r, virtualMs / 50));

describe("a rejoin whose init never answers", () => {
  it("times out: the replica gets appends again once it answers, and with another voter down the two that answer are a quorum", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 }, fastClock);
    g.driver.startHeartbeats();
    expect((await g.driver.submit("c", 1, { op: "put", key: "a", value: 1 })).kind).toBe("ok");
    // r3 lost its storage (answers not_initialized); the first init sent to it is lost on the way.
    g.replicas.get("r3")!.detach();
    let inits = 0;
    overrideCall(g.io, "r3", "init", () => {
      inits++;
      if (inits === 1) return new Promise(() => {}); // lost: never answered
      const store = new MemoryReplicaStorage();
      const meta = newReplicaMeta("g", "r3", "kv", 50, 0);
      store.saveMeta(meta);
      g.replicas.get("r3")!.attach(new ReplicaCore(store, meta, machineFor("kv")));
      return Promise.resolve(g.replicas.get("r3")!.position());
    });
    expect((await g.driver.submit("c", 2, { op: "put", key: "b", value: 2 })).kind).toBe("ok");
    await pause(2_000);
    expect(inits).toBe(1);
    // r3 is reachable again (as if made by an operator's repair, or its object came back).
    const store = new MemoryReplicaStorage();
    const meta = newReplicaMeta("g", "r3", "kv", 50, 0);
    store.saveMeta(meta);
    g.replicas.get("r3")!.attach(new ReplicaCore(store, meta, machineFor("kv")));
    const before = g.calls.get("r3:append") ?? 0;
    await pause(10_000); // many heartbeats
    expect(g.calls.get("r3:append") ?? 0, "r3 got no append in 10 s of heartbeats").toBeGreaterThan(before);
    // Then r2 goes down: r1 and r3 are a quorum, and both answer.
    g.down.add("r2");
    const a = await g.driver.submit("c", 3, { op: "put", key: "c", value: 3 });
    expect(a.kind, "a write with two of three voters answering").toBe("ok");
    g.driver.stop();
  }, 30_000);
});
