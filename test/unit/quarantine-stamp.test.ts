// A quarantine carries the install count of the answer it was decided on (its stamp): a replica
// rebuilt since refuses its tell, and the sequencer then ends the quarantine instead of rebuilding
// the replica again (docs/PROTOCOL.md, "State transfer"). Two paths told a rebuilt replica
// "quarantined" again: a tell that outlived its call's timeout, and a sequencer that restarted
// between an install's end and its answer.
import { describe, expect, it } from "vitest";
import { SequencerDriver } from "../../shared/protocol/driver.js";
import { recoveredQuarantines } from "../../shared/protocol/recovery.js";
import { ReplicaCore, newReplicaMeta } from "../../shared/protocol/replica.js";
import { SequencerCore } from "../../shared/protocol/sequencer.js";
import { MemoryReplicaStorage } from "../../shared/protocol/memory.js";
import { machineFor } from "../../shared/machines/index.js";
import type { FenceReply } from "../../shared/protocol/types.js";
import { delayCall, directGroup, fastClock, realClock } from "../support/direct.js";

const config = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "first" as const, checkpointEvery: 50 };
const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));

/** A group whose r2 was found diverged by an audit and rebuilt once (its install count 1). */
async function rebuiltOnce(clock = realClock) {
  const g = directGroup(config, { entries: 10_000, slack: 1_000 }, clock);
  for (let i = 1; i <= 20; i++) expect((await g.driver.submit("c", i, { op: "put", key: `k${i}`, value: i })).kind).toBe("ok");
  await tick();
  corrupt(g, "m/k7");
  return g;
}

/** A row of r2 changed behind its digest (its state saved first: the audit's scrub reads the stored rows). */
function corrupt(g: ReturnType<typeof directGroup>, key: string) {
  g.replicas.get("r2")!.core!.saveState();
  g.stores.get("r2")!.rows.put(key, JSON.stringify({ corrupted: key }));
}

async function until(ok: () => boolean, ms = 3_000) {
  for (let waited = 0; waited < ms && !ok(); waited += 20) await tick();
}

/** rebuiltOnce, then r2 found diverged and rebuilt by the audit's repair (its install count 1). */
async function auditedAndRebuilt() {
  const g = await rebuiltOnce();
  expect((await g.driver.audit()).replicas.find((r) => r.id === "r2")!.verdict).toBe("diverged");
  await until(() => g.driver.core.quarantinedIds().length === 0 && g.calls.get("r2:beginInstall") === 1);
  expect(g.replicas.get("r2")!.core!.position().installs).toBe(1);
  return g;
}

/** A sequencer restarted from g's stored meta, as a crash between r2's install's end and its answer leaves it (r2 quarantined at count 0). */
function restartedBeforeTheEnd(g: Awaited<ReturnType<typeof rebuiltOnce>>, beforeStart: () => void = () => {}) {
  g.driver.stop();
  g.seqStore.saveMeta({ ...g.seqStore.meta!, quarantined: ["r2"], quarantinedAt: { r2: 0 } });
  beforeStart();
  const restarted = new SequencerDriver(new SequencerCore(g.seqStore, g.seqStore.meta!), g.io, { entries: 10_000, slack: 1_000 });
  restarted.startHeartbeats();
  return restarted;
}

describe("a replica's install count", () => {
  it("refuses a quarantine stamped below it, and takes one at or above it, or unstamped", () => {
    const store = new MemoryReplicaStorage();
    const meta = { ...newReplicaMeta("g", "r1", "kv", 50), installs: 2 };
    store.saveMeta(meta);
    const core = new ReplicaCore(store, meta, machineFor("kv"), { entries: 100, slack: 10 });
    expect(core.position().installs).toBe(2);
    expect(core.setQuarantined(true, 1)).toEqual({ stale: true, installs: 2 });
    expect(core.quarantined).toBe(false);
    expect(core.setQuarantined(true, 2)).toBeUndefined();
    expect(core.quarantined).toBe(true);
    core.setQuarantined(false);
    expect(core.setQuarantined(true)).toBeUndefined();
    expect(core.quarantined).toBe(true);
  });
});

describe("a replica made again after it lost its storage", () => {
  it("counts its installs on from what its sequencer knew, so a tell from before the loss is still refused once it is rebuilt (a review)", () => {
    const meta = newReplicaMeta("g", "r2", "kv", 50, 0, { epoch: 3, throughSeq: 40, installs: 2 });
    expect(meta).toMatchObject({ quarantined: true, rejoinSeq: 40, installs: 2 });
    const store = new MemoryReplicaStorage();
    store.saveMeta(meta);
    const core = new ReplicaCore(store, meta, machineFor("kv"), { entries: 100, slack: 10 });
    expect(core.position().installs).toBe(2);
    expect(newReplicaMeta("g", "r2", "kv", 50, 0, { epoch: 3, throughSeq: 40 }).installs).toBeUndefined();
  });
});

describe("a rebuilt replica", () => {
  it("is not quarantined again by a tell sent before its rebuild that lands after it (the tell outlived its call's timeout)", async () => {
    const g = await rebuiltOnce(fastClock);
    g.driver.startHeartbeats();
    // Each tell to r2 lands 400 ms later (20 s of the group's time): the repair waits for it a
    // call's timeout (3 s, 60 ms here), then rebuilds r2, and the tells arrive after its install.
    delayCall(g.io, "r2", "setQuarantined", 400);
    const audit = await g.driver.audit();
    expect(audit.replicas.find((r) => r.id === "r2")!.verdict).toBe("diverged");
    await until(() => g.calls.get("r2:beginInstall") === 1 && (g.stores.get("r2")!.meta!.installing ?? null) === null && !g.driver.core.quarantinedIds().includes("r2"));
    expect(g.replicas.get("r2")!.core!.position().installs).toBe(1);
    await tick(1_000); // the late tells land
    expect(g.calls.get("r2:setQuarantined")).toBeGreaterThan(0);
    expect(g.replicas.get("r2")!.core!.quarantined).toBe(false);
    expect(g.driver.core.quarantinedIds()).toEqual([]);
    expect(g.calls.get("r2:beginInstall"), "rebuilt once").toBe(1);
    g.driver.stop();
  }, 30_000);

  it("is not rebuilt again by a sequencer that restarted between its install's end and the answer: the quarantine ends", async () => {
    const g = await auditedAndRebuilt();
    const restarted = restartedBeforeTheEnd(g);
    await until(() => restarted.core.quarantinedIds().length === 0);
    await tick(1_500); // a heartbeat, and any repair it would start
    expect(restarted.core.quarantinedIds()).toEqual([]);
    expect(g.replicas.get("r2")!.core!.quarantined).toBe(false);
    expect(g.calls.get("r2:beginInstall"), "not rebuilt again").toBe(1);
    expect(g.events.some((e) => e.kind === "quarantine" && e.fields.action === "rebuilt" && e.fields.replica === "r2")).toBe(true);
    expect(g.seqStore.meta!.quarantinedAt ?? {}).toEqual({});
    expect((await restarted.audit()).verdict).toBe("consistent");
    restarted.stop();
  }, 30_000);

  it("is still quarantined by a quarantine decided after its rebuild", async () => {
    const g = await auditedAndRebuilt();
    await tick(100);
    corrupt(g, "m/k9");
    const again = await g.driver.audit();
    expect(again.replicas.find((r) => r.id === "r2")!.verdict).toBe("diverged");
    expect(g.driver.core.quarantineStamp("r2") ?? g.seqStore.meta!.quarantinedAt?.r2, "stamped with the count of the answer judged").toBe(1);
    await until(() => g.calls.get("r2:beginInstall") === 2 && g.driver.core.quarantinedIds().length === 0);
    expect(g.calls.get("r2:beginInstall"), "rebuilt a second time").toBe(2);
    expect(g.replicas.get("r2")!.core!.position().installs).toBe(2);
    g.driver.stop();
  }, 30_000);
});

describe("a quarantine decided again while one is held", () => {
  it("takes the newer evidence's stamp: a tell of the older one, refused by a replica rebuilt in between, does not end it (a review: corrupt and quarantined by nobody)", async () => {
    const g = await auditedAndRebuilt();
    // A restart between the install's end and its answer, then r2's rows go bad again, and the
    // restarted sequencer's tell (of the old quarantine, stamp 0) is slow.
    const restarted = restartedBeforeTheEnd(g, () => {
      corrupt(g, "m/k9");
      delayCall(g.io, "r2", "setQuarantined", 300);
    });
    expect((await restarted.audit()).replicas.find((r) => r.id === "r2")!.verdict).toBe("diverged");
    expect(restarted.core.quarantineStamp("r2"), "the audit's answer's count").toBe(1);
    expect(g.seqStore.meta!.quarantinedAt).toEqual({ r2: 1 });
    await until(() => g.calls.get("r2:beginInstall") === 2 && restarted.core.quarantinedIds().length === 0, 5_000);
    expect(g.events.some((e) => e.fields.action === "rebuilt"), "no quarantine ended by the old tell").toBe(false);
    expect(g.calls.get("r2:beginInstall"), "rebuilt a second time").toBe(2);
    expect(g.stores.get("r2")!.rows.get("m/k9")).not.toContain("corrupted");
    expect((await restarted.audit()).verdict).toBe("consistent");
    restarted.stop();
  }, 30_000);
});

describe("a recovery's quarantine list", () => {
  const reply = (installs: number | undefined, quarantined = false): FenceReply =>
    ({ accepted: true, epoch: 2, lastSeq: 5, lastEpoch: 1, commitSeq: 5, appliedSeq: 5, baseSeq: 0, baseHash: "", quarantined, rebuilding: false, ...(installs === undefined ? {} : { installs }) }) as FenceReply;
  const members = new Set(["r1", "r2", "r3"]);

  it("drops a listed replica whose fence answer counts more installs than its stamp, and keeps the others", () => {
    const accepted = new Map([
      ["r1", reply(3)],
      ["r2", reply(1)],
    ]);
    const got = recoveredQuarantines(members, accepted, ["r1", "r2", "r3"], { r1: 2, r2: 1, r3: 0 });
    expect(got.quarantined).toEqual(["r2", "r3"]); // r1 rebuilt since; r3 did not answer
    expect(got.quarantinedAt).toEqual({ r2: 1, r3: 0 });
  });

  it("keeps a replica's own flag at its count now, and a listed one without a stamp", () => {
    const accepted = new Map([
      ["r1", reply(4, true)],
      ["r2", reply(5)],
      ["x9", reply(0, true)],
    ]);
    const got = recoveredQuarantines(members, accepted, ["r2"], {});
    expect(got.quarantined).toEqual(["r1", "r2"]);
    expect(got.quarantinedAt).toEqual({ r1: 4 });
  });
});
