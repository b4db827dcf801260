// The storage quota's measure: what a group's sequencer knows of its members' sizes (a probe of
// small quotas found writes let in past the quota after a restart or a restore, and a group held
// refusing by one down replica's old figure).
import { describe, expect, it } from "vitest";
import { digestOfPages } from "../../shared/protocol/state.js";
import { SequencerCore } from "../../shared/protocol/sequencer.js";
import { directGroup } from "../support/direct.js";

const mebibyte = 1024 * 1024;
const config = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "first" as const, checkpointEvery: 50, storageQuotaMiB: 16 };
const retention = { entries: 10_000, slack: 1_000 };
const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));

/** A group whose replicas report the sizes in `bytes` (settable per replica). */
function sized() {
  const g = directGroup(config, retention);
  const bytes = new Map([["r1", 1 * mebibyte], ["r2", 1 * mebibyte], ["r3", 1 * mebibyte]]);
  for (const [id, s] of g.stores) s.sizeBytes = () => bytes.get(id)!;
  return { g, bytes };
}

describe("the quota's measure", () => {
  it("a full group restarted (evicted, redeployed) refuses writes before any append answers: a member's size is stored when it crosses the quota", async () => {
    const { g, bytes } = sized();
    expect((await g.driver.submit("c", 1, { op: "put", key: "a", value: 1 })).kind).toBe("ok");
    for (const id of ["r1", "r2", "r3"]) bytes.set(id, 16 * mebibyte);
    expect((await g.driver.submit("c", 2, { op: "put", key: "b", value: 2 })).kind).toBe("ok"); // measured full by its answers
    for (let i = 0; i < 100 && g.driver.core.storageRefusal() === null; i++) await tick(5);
    expect(g.driver.core.storageRefusal()).not.toBeNull();
    g.driver.stop();
    const restarted = new SequencerCore(g.seqStore, g.seqStore.meta!);
    expect(restarted.storageRefusal()).toMatch(/at or over the group's quota of 16 MiB/);
  });

  it("one replica counted down does not hold the group refusing with its old figure; the others' figures still count", async () => {
    const { g, bytes } = sized();
    for (const id of ["r1", "r2", "r3"]) bytes.set(id, 16 * mebibyte);
    expect((await g.driver.submit("c", 1, { op: "put", key: "a", value: 1 })).kind).toBe("ok");
    for (let i = 0; i < 100 && g.driver.core.storageRefusal() === null; i++) await tick(5);
    expect(g.driver.core.storageRefusal()).not.toBeNull();
    g.down.add("r3");
    // Deletes (ordered at the quota) free r1 and r2; each append to r3 fails.
    bytes.set("r1", 8 * mebibyte);
    bytes.set("r2", 8 * mebibyte);
    for (let i = 0; i < 100 && g.driver.core.replicaStatuses().find((s) => s.id === "r3")!.status !== "down"; i++) {
      await g.driver.submit("c", 100 + i, { op: "delete", key: `x${i}` });
      await tick(20);
    }
    expect(g.driver.core.replicaStatuses().find((s) => s.id === "r3")!.status).toBe("down");
    expect(g.driver.core.storageRefusal()).toBeNull();
    expect((await g.driver.submit("c", 1_000, { op: "put", key: "b", value: 2 })).kind).toBe("ok");
    // r1 full again: refused, r3 or not.
    bytes.set("r1", 16 * mebibyte);
    await g.driver.submit("c", 1_001, { op: "delete", key: "y" });
    for (let i = 0; i < 100 && g.driver.core.storageRefusal() === null; i++) await tick(5);
    expect(g.driver.core.storageRefusal()).toMatch(/replica r1 holds 16.0 MiB/);
    g.driver.stop();
  });

  it("a restore's install reports the restored state's size at once (it kept the empty group's, and a 16 MiB group restored with 54 MB took writes)", async () => {
    const { g, bytes } = sized();
    const rows: [string, string][] = [["m/a", JSON.stringify(1)]];
    const { digest } = digestOfPages((after) => (after === null ? rows : []));
    // The replicas hold 40 MiB once they installed it.
    for (const [id, s] of g.stores) s.sizeBytes = () => (s.rows.get("m/a") === null ? bytes.get(id)! : 40 * mebibyte);
    expect(await g.driver.restore(digest, async (after) => (after === null ? rows : []))).toMatchObject({ ok: true });
    expect(g.driver.core.storageRefusal()).toMatch(/at or over the group's quota of 16 MiB/);
    expect(g.driver.core.replicaStatuses().map((s) => s.storageBytes)).toContain(40 * mebibyte);
    g.driver.stop();
  });
});
