// A removed replica is destroyed once its removal is committed and recorded; nothing may make it
// again after that. A rejoin (an init of a replica found with no state) begun before the removal
// may land after the destroy: a repair's first question, answered "no state" after the destroy,
// made it again and copied the whole state into it (a probe); an init that answered late, later
// than its timeout, or while the destroy was still under way, left storage named by no
// membership and listed for no destroy (a probe, then a review).
import { describe, expect, it } from "vitest";
import { replicaRpcTimeoutMs } from "../../shared/limits.js";
import { machineFor } from "../../shared/machines/index.js";
import { MemoryReplicaStorage } from "../../shared/protocol/memory.js";
import { ReplicaCore, newReplicaMeta } from "../../shared/protocol/replica.js";
import { delayCall, directGroup, fastClock, overrideCall } from "../support/direct.js";

const config = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "majority" as const, checkpointEvery: 50 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
type Group = ReturnType<typeof directGroup>;

/** A group with one write, whose destroys wipe the replica (then wait `afterMs`, the directory's write). */
async function groupWithDestroys(afterMs = 0, clock?: typeof fastClock): Promise<Group> {
  const g = clock ? directGroup(config, { entries: 10_000, slack: 1_000 }, clock) : directGroup(config, { entries: 10_000, slack: 1_000 });
  g.driver.startHeartbeats();
  expect((await g.driver.submit("c", 1, { op: "put", key: "a", value: 1 })).kind).toBe("ok");
  g.io.retire = async (id) => {
    g.replicas.get(id)!.detach();
    g.retired.push(id);
    if (afterMs > 0) await sleep(afterMs);
  };
  return g;
}

/** r3's inits make its storage, each after `wait()`; answers how many were sent. */
function initsOfR3(g: Group, wait: () => Promise<unknown>): { count: number } {
  const inits = { count: 0 };
  overrideCall(g.io, "r3", "init", async (_real, rejoin) => {
    inits.count++;
    await wait();
    const store = new MemoryReplicaStorage();
    const meta = newReplicaMeta("g", "r3", "kv", 50, 0, rejoin as never);
    store.saveMeta(meta);
    g.replicas.get("r3")!.attach(new ReplicaCore(store, meta, machineFor("kv")));
    return g.replicas.get("r3")!.position();
  });
  return inits;
}

/** r3 lost its storage: the next write sends its rejoin's init, and r3 is removed while that is on its way. */
async function removedWhileRejoining(g: Group, inits: { count: number }, pause: (ms: number) => Promise<unknown> = sleep): Promise<void> {
  g.replicas.get("r3")!.detach();
  expect((await g.driver.submit("c", 2, { op: "put", key: "b", value: 2 })).kind).toBe("ok");
  for (let i = 0; i < 100 && inits.count === 0; i++) await pause(10);
  expect(inits.count).toBe(1);
  expect(await g.driver.removeReplica("r3")).toEqual({ ok: true });
}

describe("a replica removed while the sequencer makes it again (a rejoin)", () => {
  it("is not made again by a repair of it begun before the removal, once it is destroyed", async () => {
    const g = await groupWithDestroys();
    const inits = initsOfR3(g, async () => undefined);
    // The repair's first call to r3 (its position) arrives after the removal and the destroy.
    delayCall(g.io, "r3", "position", 300);
    const repairing = g.driver.repair("r3");
    expect(await g.driver.removeReplica("r3")).toEqual({ ok: true });
    for (let i = 0; i < 50 && g.retired.length === 0; i++) await sleep(10);
    expect(g.retired).toEqual(["r3"]);
    // Before: made again, then rebuilt ("replica r3 rebuilt from r1 at seq 2 (3 rows)").
    expect(await repairing).toBe(false);
    expect(g.events.map((e) => e.kind)).toEqual(["replica-removed"]);
    expect(inits.count, "r3 made again after its destroy").toBe(0);
    expect(g.replicas.get("r3")!.core, "r3's storage after its destroy").toBeNull();
    g.driver.stop();
  });

  it("a rejoin's init that lands after the destroy is followed by a destroy again", async () => {
    const g = await groupWithDestroys();
    const inits = initsOfR3(g, () => sleep(300));
    await removedWhileRejoining(g, inits);
    await sleep(600);
    expect(inits.count).toBe(1);
    expect(g.retired).toEqual(["r3", "r3"]);
    expect(g.replicas.get("r3")!.core, "r3's storage after its destroy").toBeNull();
    g.driver.stop();
  });

  it("a rejoin's init that lands while the destroy is under way (its directory write pending) is destroyed again once that destroy ends (a review)", async () => {
    const g = await groupWithDestroys(400);
    const inits = initsOfR3(g, () => sleep(250));
    await removedWhileRejoining(g, inits);
    await sleep(1_500);
    expect(g.replicas.get("r3")!.core, "r3's storage, made by the init after its destroy").toBeNull();
    g.driver.stop();
  });

  it("a rejoin's init slower than its timeout is destroyed again once it lands (a review: the rejoin had given up, and kept nothing)", async () => {
    const pause = (virtualMs: number) => sleep(virtualMs / 50); // fastClock runs 50 times faster
    const g = await groupWithDestroys(0, fastClock);
    const inits = initsOfR3(g, () => new Promise((r) => fastClock.setTimer(replicaRpcTimeoutMs + 2_000, () => r(undefined))));
    await removedWhileRejoining(g, inits, (ms) => pause(ms * 10));
    await pause(replicaRpcTimeoutMs + 6_000);
    expect(inits.count).toBe(1);
    expect(g.replicas.get("r3")!.core, "r3's storage, made by the late init after its destroy").toBeNull();
    g.driver.stop();
  });
});
