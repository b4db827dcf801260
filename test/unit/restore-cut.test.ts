// A server killed while a restore installed left every replica halfway through the install
// (quarantined, rebuilding) and no replica to copy from: a probe's group answered 503 for good,
// through failovers, repairs and cron runs, until it was deleted. A group that holds nothing has
// the empty state at 0, and any group whose log holds every entry from the first can rebuild a
// replica from it and the log when there is nothing to copy.
import { describe, expect, it } from "vitest";
import type { SnapshotInfo } from "../../shared/protocol/replica.js";
import { directGroup } from "../support/direct.js";
import type { DriverIO } from "../../shared/protocol/io.js";
import { MemorySequencerStorage } from "../../shared/protocol/memory.js";
import { recoverSequencer } from "../../shared/protocol/recovery.js";
import { zeroHash } from "../../shared/protocol/hash.js";
import { Cluster } from "../support/cluster.js";
import { clusterIO } from "../support/cluster-io.js";


const config = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "first" as const, checkpointEvery: 50 };
const retention = { entries: 10_000, slack: 1_000 };

describe("every replica halfway through a restore's install, the group holding nothing", () => {
  it("is rebuilt empty by its repairs, and takes commands again", async () => {
    const g = directGroup(config, retention);
    const restore: SnapshotInfo = { seq: 1, digest: "ab".repeat(32), logHash: "cd".repeat(32), entryEpoch: 1, timestamp: null, epoch: 1 };
    for (const id of ["r1", "r2", "r3"]) {
      expect(await g.link(id).beginInstall(restore, `restore:1:1:0:${id}`, 1)).toBe(true);
      expect(await g.link(id).installPage(`restore:1:1:0:${id}`, [["m/a", "1"]])).toBe(true);
    }
    const report = await g.driver.audit();
    expect(report.replicas.every((r) => r.verdict === "behind")).toBe(true);
    for (let i = 0; i < 50 && (await g.driver.submit("c", 1, { op: "put", key: "k", value: 1 })).kind !== "ok"; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await g.driver.submit("c", 1, { op: "put", key: "k", value: 1 })).toMatchObject({ kind: "ok" });
    for (const id of ["r1", "r2", "r3"]) {
      const p = (await g.link(id).position())!;
      expect(p.quarantined).toBe(false);
    }
    expect(g.events.filter((e) => e.kind === "repair").map((e) => e.message)).toEqual(expect.arrayContaining([expect.stringMatching(/rebuilt empty/)]));
    // No row of the restore that was cut off is left: the state is the command's alone.
    const r = await g.link("r2").query({ op: "list" }, 0, 1_000);
    expect(r).toMatchObject({ kind: "ok", result: { items: [["k", 1]] } });
    g.driver.stop();
  }, 20_000);
});

const ioOver = (c: Cluster): DriverIO => clusterIO(c).io;

async function cutRestore(withNoop: boolean) {
  const c = Cluster.of("kv", 3, "first", 1_000);
  let epoch = 1;
  let seq = 1;
  if (withNoop) {
    // A recovery (a failover, a move, or the one after an earlier cut restore): a no-op at 1.
    const st = new MemorySequencerStorage();
    const r = await recoverSequencer(c.config, st, ioOver(c));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    epoch = r.meta.epoch;
    const noop = st.lastEntry()!;
    for (const rep of c.replicas.values()) expect(rep.append({ epoch, prevSeq: 0, prevHash: zeroHash, entries: [noop], commitSeq: 1 }).ok).toBe(true);
    seq = 2;
  }
  // As restoreInto's install says it is a restore's (a repair's install over no-ops raises rejoinSeq).
  const info: SnapshotInfo = { seq, digest: "ab".repeat(32), logHash: "cd".repeat(32), entryEpoch: epoch, timestamp: null, epoch, restore: true };
  for (const [id, rep] of c.replicas) {
    expect(rep.beginInstall(info, `restore:${id}`, epoch)).toBe(true);
    expect(rep.installPage(`restore:${id}`, [["m/a", "1"]])).toBe(true);
  }
  // The sequencer restarts with restoreEpoch === epoch: it recovers at a new epoch (lifecycle.start).
  return recoverSequencer(c.config, new MemorySequencerStorage(), ioOver(c));
}

describe("a restore cut off halfway on every replica, the sequencer restarted (a review)", () => {
  // A replica raised rejoinSeq to its cleared log's end when it began the install: with a no-op in
  // that log (a move, a failover, the recovery after an earlier cut restore), every replica refused
  // fences and no recovery could take office to rebuild them. A log of no-ops alone raises none.
  it("recovers when the log was empty", async () => {
    expect((await cutRestore(false))!.ok).toBe(true);
  });
  it("recovers when the log held a no-op", async () => {
    expect(await cutRestore(true)).toMatchObject({ ok: true });
  }, 20_000);
});

describe("a repair's source whose log differs from the sequencer's at its position (a review)", () => {
  // One that kept a restore cut off midway, left out of the recovery's quorum, holds a state the
  // group never had: copied, the target was taken out of quarantine and served it.
  it("is not copied from: the next source is tried, and with none, the whole log rebuilds the target", async () => {
    const g = directGroup(config, retention);
    for (let i = 1; i <= 5; i++) expect((await g.driver.submit("c", i, { op: "put", key: `k${i}`, value: i })).kind).toBe("ok");
    await new Promise((r) => setTimeout(r, 50));
    // r2's log ends in another entry than the sequencer's at the same seq.
    const r2 = (g.replicas.get("r2") as unknown as { core: { meta: { lastSeq: number; lastHash: string; appliedSeq: number } } }).core;
    expect(r2.meta.appliedSeq).toBe(r2.meta.lastSeq);
    r2.meta.lastHash = "ff".repeat(32);
    const core = (g.driver as unknown as { core: { setQuarantined(id: string, q: boolean): void } }).core;
    core.setQuarantined("r1", true);
    core.setQuarantined("r3", true);
    expect(await g.driver.repair("r3")).toBe(true);
    expect(g.events.filter((e) => e.kind === "repair").map((e) => e.message)).toEqual(["replica r3 rebuilt empty at seq 0: no replica could be copied; the log brings it up to date"]);
    g.driver.stop();
  });
});

describe("a deposed sequencer's repair (a review)", () => {
  // Its sources serve a newer sequencer: it must rebuild nobody. Trying each source in turn, it
  // went on to the next and then to the log, and wiped a target the successor had not fenced.
  it("stops at the first source that serves a newer sequencer, and leaves the target as it was", async () => {
    const g = directGroup(config, retention);
    g.io.onFenced = () => {};
    for (let i = 1; i <= 5; i++) expect((await g.driver.submit("c", i, { op: "put", key: `k${i}`, value: i })).kind).toBe("ok");
    await new Promise((r) => setTimeout(r, 50));
    for (const id of ["r1", "r3"]) (g.replicas.get(id) as unknown as { core: { meta: { epoch: number } } }).core.meta.epoch = 2;
    (g.driver as unknown as { core: { setQuarantined(id: string, q: boolean): void } }).core.setQuarantined("r2", true);
    const before = { ...g.stores.get("r2")!.meta! };
    expect(await g.driver.repair("r2")).toBe(false);
    expect(g.driver.repairFailure("r2")).toMatch(/a newer sequencer is in office/);
    expect(g.stores.get("r2")!.meta!).toMatchObject({ lastSeq: before.lastSeq, appliedSeq: before.appliedSeq });
    expect(g.stores.get("r2")!.meta!.rejoinSeq).toBe(before.rejoinSeq);
    expect(g.events.filter((e) => e.kind === "repair")).toEqual([]);
    g.driver.stop();
  });
});

