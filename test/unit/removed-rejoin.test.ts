// A removed replica is destroyed once its removal is committed and recorded; nothing may make it
// again after that. A repair of it begun before the removal asks it its position first, and a
// replica with no state is made again there (a rejoin): answered after the destroy, that made the
// removed replica's storage again, named by no membership and listed for no destroy (a probe).
import { describe, expect, it } from "vitest";
import { machineFor } from "../../shared/machines/index.js";
import { MemoryReplicaStorage } from "../../shared/protocol/memory.js";
import { ReplicaCore, newReplicaMeta } from "../../shared/protocol/replica.js";
import { delayCall, directGroup, overrideCall } from "../support/direct.js";

const config = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "majority" as const, checkpointEvery: 50 };

describe("a replica removed while the sequencer makes it again (a rejoin)", () => {
  it("is not made again by a repair of it begun before the removal, once it is destroyed", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    g.driver.startHeartbeats();
    expect((await g.driver.submit("c", 1, { op: "put", key: "a", value: 1 })).kind).toBe("ok");
    // The destroy wipes r3 (its object answers "no state" from then on); an init makes it again.
    const made: string[] = [];
    g.io.retire = async (id) => {
      g.retired.push(id);
      g.replicas.get(id)!.detach();
    };
    overrideCall(g.io, "r3", "init", () => {
      made.push("r3");
      const store = new MemoryReplicaStorage();
      const meta = newReplicaMeta("g", "r3", "kv", 50, 0);
      store.saveMeta(meta);
      g.replicas.get("r3")!.attach(new ReplicaCore(store, meta, machineFor("kv")));
      return Promise.resolve(g.replicas.get("r3")!.position());
    });
    // The repair's first call to r3 (its position) arrives after the removal and the destroy.
    delayCall(g.io, "r3", "position", 300);
    const repairing = g.driver.repair("r3");
    expect(await g.driver.removeReplica("r3")).toEqual({ ok: true });
    for (let i = 0; i < 50 && g.retired.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(g.retired).toEqual(["r3"]);
    // Before: made again, then rebuilt ("replica r3 rebuilt from r1 at seq 2 (3 rows)").
    expect(await repairing).toBe(false);
    expect(g.events.map((e) => e.kind)).toEqual(["replica-removed"]);
    expect(made, "r3 made again after its destroy").toEqual([]);
    expect(g.replicas.get("r3")!.core, "r3's storage after its destroy").toBeNull();
    g.driver.stop();
  });

  it("a rejoin's init that lands after the destroy is followed by a destroy again", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    g.driver.startHeartbeats();
    expect((await g.driver.submit("c", 1, { op: "put", key: "a", value: 1 })).kind).toBe("ok");
    g.io.retire = async (id) => {
      g.retired.push(id);
      g.replicas.get(id)!.detach();
    };
    // r3 lost its storage; the init of its rejoin takes 300 ms to arrive, after its removal's destroy.
    g.replicas.get("r3")!.detach();
    let inits = 0;
    overrideCall(g.io, "r3", "init", async (_real, rejoin) => {
      inits++;
      await new Promise((r) => setTimeout(r, 300));
      const store = new MemoryReplicaStorage();
      const meta = newReplicaMeta("g", "r3", "kv", 50, 0, rejoin as never);
      store.saveMeta(meta);
      g.replicas.get("r3")!.attach(new ReplicaCore(store, meta, machineFor("kv")));
      return g.replicas.get("r3")!.position();
    });
    expect((await g.driver.submit("c", 2, { op: "put", key: "b", value: 2 })).kind).toBe("ok");
    for (let i = 0; i < 50 && inits === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(inits).toBe(1);
    expect(await g.driver.removeReplica("r3")).toEqual({ ok: true });
    await new Promise((r) => setTimeout(r, 600));
    expect(inits).toBe(1);
    expect(g.retired).toEqual(["r3", "r3"]);
    expect(g.replicas.get("r3")!.core, "r3's storage after its destroy").toBeNull();
    g.driver.stop();
  });
});
