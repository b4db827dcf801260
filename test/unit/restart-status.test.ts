// A restarted sequencer knows no replica's position until it hears from each: a status asked at
// once (an object evicted after idling, then woken by GET /v1/groups/{g}) showed every replica
// lagging at seq 0 with no contact. hearUnheard asks them first, bounded in time.
import { describe, expect, it } from "vitest";
import { heartbeatMs, statusContactWaitMs } from "../../shared/limits.js";
import { SequencerDriver } from "../../shared/protocol/driver.js";
import { SequencerCore } from "../../shared/protocol/sequencer.js";
import { directGroup } from "../support/direct.js";

const config = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "first" as const, checkpointEvery: 50 };
const put = (key: string) => ({ op: "put", key, value: 1 });

/** The group's sequencer as after a restart: a new core and driver over the same storage. */
function restarted(g: ReturnType<typeof directGroup>): SequencerDriver {
  g.driver.stop();
  const io = (g.driver as unknown as { io: ConstructorParameters<typeof SequencerDriver>[1] }).io;
  return new SequencerDriver(new SequencerCore(g.seqStore, g.seqStore.meta!), io);
}

describe("status right after a sequencer restart", () => {
  it("is asked of every replica first: positions, digests and contact are real, not zeros", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    for (let r = 1; r <= 5; r++) expect((await g.driver.submit("c", r, put(`k${r}`))).kind).toBe("ok");
    await new Promise((r) => setTimeout(r, 20));
    const before = g.driver.core.replicaStatuses();
    expect(before.every((s) => s.status === "healthy" && s.lastSeq === 5)).toBe(true);

    const driver = restarted(g);
    const cold = driver.core.replicaStatuses();
    expect(cold.map((s) => [s.status, s.lastSeq, s.lastContact])).toEqual(cold.map(() => ["lagging", 0, null]));
    await driver.hearUnheard(statusContactWaitMs);
    const warm = driver.core.replicaStatuses();
    expect(warm.map((s) => [s.id, s.status, s.lastSeq, s.appliedSeq, s.digest])).toEqual(before.map((s) => [s.id, "healthy", 5, 5, s.digest]));
    expect(warm.every((s) => s.lastContact !== null)).toBe(true);
    driver.stop();
  });

  it("does not wait for a replica that fails to answer: it counts a miss and shows no contact", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("c", 1, put("k"))).kind).toBe("ok");
    const driver = restarted(g);
    g.down.add("r2");
    // A wait far past the test's timeout: had it waited for r2 (whose calls fail at once) instead
    // of counting the miss, the test would time out.
    await driver.hearUnheard(3_600_000);
    const byId = Object.fromEntries(driver.core.replicaStatuses().map((s) => [s.id, s]));
    expect(byId.r1).toMatchObject({ status: "healthy", lastSeq: 1 });
    expect(byId.r3).toMatchObject({ status: "healthy", lastSeq: 1 });
    expect(byId.r2).toMatchObject({ lastSeq: 0, lastContact: null });
    driver.stop();
  });
});

describe("a damaged replica across a sequencer restart", () => {
  it("is said damaged from its own append answer (its rows failed their scrub), not only from this sequencer's audits (a review: healthy after every restart)", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("c", 1, put("k"))).kind).toBe("ok");
    // What its failed scrub saved (ReplicaMeta.scrubFailed), as the audit before the restart found it.
    const core = g.replicas.get("r2")!.core! as unknown as { meta: { scrubFailed?: boolean } };
    core.meta = { ...core.meta, scrubFailed: true };
    const driver = restarted(g);
    expect(driver.core.replicaStatuses().some((s) => s.damaged)).toBe(false); // nothing heard yet
    await driver.hearUnheard(statusContactWaitMs);
    expect(driver.core.replicaStatuses().map((s) => [s.id, s.damaged ?? false])).toEqual([["r1", false], ["r2", true], ["r3", false]]);
    // Heartbeats' answers say it too (only a step's did: the status flapped back to healthy within a second, a review).
    driver.startHeartbeats();
    await new Promise((r) => setTimeout(r, heartbeatMs * 4));
    expect(driver.core.replicaStatuses().map((s) => [s.id, s.damaged ?? false])).toEqual([["r1", false], ["r2", true], ["r3", false]]);
    // A scrub that passes (or a rebuild) clears it: so does the next answer.
    core.meta = { ...core.meta, scrubFailed: false };
    expect((await driver.submit("c", 2, put("k2"))).kind).toBe("ok");
    await new Promise((r) => setTimeout(r, 20));
    expect(driver.core.replicaStatuses().some((s) => s.damaged)).toBe(false);
    driver.stop();
  });
});

describe("replica sizes across a sequencer restart", () => {
  it("are kept in the sequencer's meta: a restarted one shows its last audit's figures, not unknown until the next audit", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    for (let r = 1; r <= 3; r++) expect((await g.driver.submit("c", r, put(`k${r}`))).kind).toBe("ok");
    // A scrub pass finishes within an audit or two: then the audit carries each replica's rows
    // (once all three have applied the last put: three keys, the client's book, three sessions).
    for (let i = 0; i < 5 && g.driver.core.replicaStatuses().some((s) => s.stateRows !== 7); i++) await g.driver.audit();
    const sized = g.driver.core.replicaStatuses().map((s) => [s.id, s.stateRows]);
    expect(sized).toEqual([["r1", 7], ["r2", 7], ["r3", 7]]);
    let writes = 0;
    const save = g.seqStore.saveMeta.bind(g.seqStore);
    g.seqStore.saveMeta = (meta) => ((writes += 1), save(meta));
    await g.driver.audit();
    expect(writes).toBe(0); // the same figures: nothing written

    const driver = restarted(g);
    expect(driver.core.replicaStatuses().map((s) => [s.id, s.stateRows])).toEqual(sized);
    driver.stop();
  });
});
