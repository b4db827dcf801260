// A restore installs its state at (epoch, 1) before the sequencer takes it; one that fails must
// never let an entry of that epoch take position 1 while a replica may still hold the restore
// there: a recovery compares logs by (last epoch, last seq), ties, and may keep the restore and
// drop the entry (docs/PROTOCOL.md, "Snapshot and restore").
import { describe, expect, it } from "vitest";
import { SequencerLifecycle } from "../../shared/protocol/lifecycle.js";
import { MemorySequencerStorage } from "../../shared/protocol/memory.js";
import { SequencerDriver } from "../../shared/protocol/driver.js";
import { SequencerCore, type SequencerMeta } from "../../shared/protocol/sequencer.js";
import { recoverSequencer } from "../../shared/protocol/recovery.js";
import { digestOfPages } from "../../shared/protocol/state.js";
import type { DriverIO } from "../../shared/protocol/io.js";
import type { SnapshotInfo } from "../../shared/protocol/replica.js";
import { directGroup, realClock } from "../support/direct.js";
import { readWaitersMax, snapshotIdleMs } from "../../shared/limits.js";
import { ReplicaDriver } from "../../shared/protocol/replica-driver.js";
import { ReplicaCore } from "../../shared/protocol/replica.js";
import { machineFor } from "../../shared/machines/index.js";

const config = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "first" as const, checkpointEvery: 50 };
const retention = { entries: 10_000, slack: 1_000 };
const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));

/** The rows of a replica's export (stored keys), its header, and the rows' own digest. */
async function exportOf(g: ReturnType<typeof directGroup>, id: string) {
  const link = g.link(id);
  const info = (await link.beginExport())!;
  const rows: [string, string][] = [];
  for (let after: string | null = null; ; ) {
    const page: [string, string][] = (await link.exportPage(info.id, after, 1 << 20))!;
    if (page.length === 0) break;
    rows.push(...page);
    after = page[page.length - 1]![0];
  }
  await link.endExport(info.id);
  return { info, rows, rowsDigest: digestOfPages((after) => (after === null ? rows : [])).digest };
}

/** A snapshot's rows (another group's export) and their digest. */
async function snapshotRows(): Promise<{ rows: [string, string][]; digest: string }> {
  const src = directGroup(config, retention);
  for (const [n, key] of ["a", "b", "c"].entries()) expect((await src.driver.submit("s", n + 1, { op: "put", key, value: n })).kind).toBe("ok");
  await tick();
  const { rows, rowsDigest } = await exportOf(src, "r1");
  return { rows, digest: rowsDigest };
}

/** A driver over `storage` (a sequencer started from what a recovery saved), on the group's links. */
function driverFrom(g: ReturnType<typeof directGroup>, storage: MemorySequencerStorage, io: DriverIO = g.io): SequencerDriver {
  return new SequencerDriver(new SequencerCore(storage, storage.meta!), io, retention);
}

async function putUntilOk(driver: SequencerDriver, request: number): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const r = await driver.submit("w", request, { op: "put", key: "acked", value: request });
    if (r.kind === "ok") return r.seq;
    await tick();
  }
  throw new Error("the put never succeeded");
}

/**
 * A group whose restore only r1 installed, and r1 missed its undo: the restore fails, and the
 * sequencer stops for a new epoch. The other replicas are down.
 */
/** A recovery over the replicas that answer, which starts from the restore at 1; then `cut` goes away, and the recovered sequencer's driver. */
async function recoveredThenCut(g: ReturnType<typeof directGroup>, cfg: typeof config, cut: string): Promise<SequencerDriver> {
  const storage = new MemorySequencerStorage();
  expect(await recoverSequencer(cfg, storage, g.io)).toMatchObject({ ok: true, meta: { baseSeq: 1, commitSeq: 1 } });
  g.down.add(cut);
  return driverFrom(g, storage);
}

async function loneHolder(cfg: typeof config) {
  const { rows, digest } = await snapshotRows();
  const g = directGroup(cfg, retention);
  g.io.onFenced = () => {};
  for (let n = 2; n <= cfg.replicas; n++) g.down.add(`r${n}`);
  const r1 = g.replicas.get("r1")!;
  const install = r1.beginInstall.bind(r1);
  r1.beginInstall = (info, transferId, epoch) => (info.undo ? false : install(info, transferId, epoch));
  expect(await g.driver.restore(digest, async (after) => (after === null ? rows : []))).toMatchObject({ ok: false, code: "unknown", reason: expect.stringMatching(/could not be undone on r1/) });
  return { g, r1 };
}

/** The replica's answer to a get of b once it serves (within 5 s). */
async function whenServed(replica: ReplicaDriver) {
  let answer = await replica.query({ op: "get", key: "b" }, 0, 0);
  for (let i = 0; i < 100 && answer.kind !== "ok"; i++) (await tick(50), (answer = await replica.query({ op: "get", key: "b" }, 0, 0)));
  return answer;
}

describe("a restore that fails", () => {
  it("undone everywhere it may have installed: the group goes on in its epoch, nothing restored", async () => {
    const { rows, digest } = await snapshotRows();
    const g = directGroup(config, retention);
    g.down.add("r2");
    g.down.add("r3");
    const r = await g.driver.restore(digest, async (after) => (after === null ? rows : []));
    expect(r).toMatchObject({ ok: false, reason: expect.stringMatching(/only 1 of the 3 voters .* nothing was restored, retry$/) });
    expect(r).not.toHaveProperty("code"); // certainly not restored: the route's 503
    g.down.clear();
    expect(g.driver.isStopped).toBe(false);
    expect(await putUntilOk(g.driver, 1)).toBe(1);
    expect(g.driver.core.epoch).toBe(1);
    expect(g.seqStore.meta!.restoreEpoch).toBeUndefined();
  });

  it("one that installed it and lost the answer, then missed the undo: the group takes a new epoch, and an acknowledged put survives a later recovery", async () => {
    const { rows, digest } = await snapshotRows();
    const g = directGroup(config, retention);
    let recoveries = 0;
    g.io.onFenced = () => void recoveries++;
    // r2 installs, but its answer to the end is lost and it is gone before the undo; r3 is away.
    g.down.add("r3");
    g.hooks.served = (id, method) => {
      if (id !== "r2" || method !== "endInstall") return;
      g.down.add("r2");
      throw new Error("the answer was lost");
    };
    const r = await g.driver.restore(digest, async (after) => (after === null ? rows : []));
    g.hooks.served = undefined;
    g.down.delete("r3");
    // The group goes on: with a new sequencer if the old one asked to recover (as its lifecycle would).
    let storage = g.seqStore;
    let driver = g.driver;
    if (driver.isStopped) {
      storage = new MemorySequencerStorage();
      const rec = await recoverSequencer(config, storage, g.io);
      expect(rec, JSON.stringify(rec)).toMatchObject({ ok: true });
      driver = driverFrom(g, storage);
    }
    const seq = await putUntilOk(driver, 1);
    driver.stop();
    // The sequencer's storage is lost with r1 away and r2 back: r2 may still hold the restore at
    // (1, 1); r3 holds the acknowledged put.
    g.down.add("r1");
    g.down.delete("r2");
    const again = new MemorySequencerStorage();
    expect(await recoverSequencer(config, again, g.io)).toMatchObject({ ok: true });
    const after = driverFrom(g, again);
    after.kickAll();
    const commit = again.lastEntry()!.seq;
    expect(commit).toBeGreaterThan(seq);
    for (let i = 0; i < 100 && g.replicas.get("r3")!.core!.appliedSeq < commit; i++) await tick();
    expect(await g.replicas.get("r3")!.query({ op: "get", key: "acked" }, commit, 2_000)).toMatchObject({ kind: "ok", result: { value: 1 } });
    after.stop();
    // How: the failed restore's sequencer ordered nothing more in epoch 1 and asked to recover;
    // the put went at a new epoch.
    // Its outcome unknown (the route's 504): the recovery may keep it. It was a 503, "certainly
    // not", and a probe's group came back restored 0.1 s after one.
    expect(r).toMatchObject({ ok: false, code: "unknown", reason: expect.stringMatching(/could not be undone on r2, so the group recovers/) });
    expect(recoveries).toBe(1);
    expect(storage.meta!.epoch).toBeGreaterThan(1);
  });

  it("a sequencer that restarts with a restore under way recovers at a new epoch before it orders anything", async () => {
    const g = directGroup(config, retention);
    g.seqStore.saveMeta({ ...g.seqStore.meta!, restoreEpoch: 1 });
    let store = g.seqStore;
    const restarted = new SequencerLifecycle({
      storage: () => store,
      prepare: () => {},
      wipe: async () => void (store = new MemorySequencerStorage()),
      io: () => g.io,
    });
    restarted.start(store.meta);
    // (It waits out an old sequencer's read lease first: readLeaseMs.)
    for (let i = 0; i < 300 && !restarted.core; i++) await tick();
    expect(restarted.core!.epoch).toBeGreaterThan(1);
    expect(store.meta!.restoreEpoch).toBeUndefined();
    expect((await restarted.driver!.submit("w", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    restarted.stop();
  }, 15_000);

  it("orders nothing while the mark is on: commands and membership changes wait", async () => {
    const g = directGroup(config, retention);
    g.driver.core.markRestore();
    expect(await g.driver.submit("w", 1, { op: "put", key: "k", value: 1 })).toMatchObject({ kind: "unavailable", message: expect.stringMatching(/a restore is loading/) });
    expect(g.driver.core.changeRefusal({ op: "remove", id: "r3" })).toMatchObject({ refused: "restoring" });
    g.driver.core.unmarkRestore();
    expect((await g.driver.submit("w", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
  });

  it("a replica it left halfway, having cleared an empty log, stands in the recovery's quorum while the holder is away", async () => {
    // A review: r3 began installing (then away: its pages and its undo failed), r2 kept the restore
    // and is away; r1 alone could not be fenced with r3 "installing", and the group stayed down.
    const { rows, digest } = await snapshotRows();
    const g = directGroup(config, retention);
    g.io.onFenced = () => {};
    g.hooks.served = (id, method) => {
      if (id === "r3" && method === "beginInstall") g.down.add("r3");
      if (id === "r2" && method === "endInstall") {
        g.down.add("r2");
        throw new Error("the answer was lost");
      }
    };
    const r = await g.driver.restore(digest, async (after) => (after === null ? rows : []));
    g.hooks.served = undefined;
    expect(r).toMatchObject({ ok: false, code: "unknown", reason: expect.stringMatching(/could not be undone on r2,/) });
    expect(g.driver.isStopped).toBe(true);
    g.down.delete("r3");
    const rec = await recoverSequencer(config, new MemorySequencerStorage(), g.io);
    expect(rec, JSON.stringify(rec)).toMatchObject({ ok: true });
  }, 15_000);

  it("one at a time: a second restore is refused while the first installs, and nothing is ordered meanwhile", async () => {
    // A review: two restores shared the mark; the second's confirmed undo cleared it while the
    // first installed, a put took (1, 1), and the first's undo emptied every replica holding it.
    const { rows, digest } = await snapshotRows();
    const g = directGroup(config, retention);
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const first = g.driver.restore(digest, async (after) => {
      await gate;
      return after === null ? rows : [];
    });
    await tick();
    const second = await g.driver.restore("f".repeat(64), async (after) => (after === null ? rows : []));
    expect(second).toMatchObject({ ok: false, reason: expect.stringMatching(/another restore of this group is under way/) });
    expect(await g.driver.submit("w", 1, { op: "put", key: "k", value: 1 })).toMatchObject({ kind: "unavailable" });
    open();
    expect(await first).toEqual({ ok: true });
    expect(await putUntilOk(g.driver, 2)).toBe(2);
  });

  // A storage error while the mark is saved (a review: every command was refused until a restart),
  // or while the restore is adopted (the mark cleared in memory and not on disk): a new epoch.
  for (const [when, failing] of [
    ["marks", (meta: SequencerMeta) => meta.restoreEpoch !== undefined && meta.baseSeq === undefined],
    ["adopts", (meta: SequencerMeta) => meta.baseSeq === 1],
  ] as const) {
    it(`a storage error while it ${when} the restore: the sequencer takes a new epoch`, async () => {
      const { rows, digest } = await snapshotRows();
      const g = directGroup(config, retention);
      let recoveries = 0;
      g.io.onFenced = () => void recoveries++;
      const save = g.seqStore.saveMeta.bind(g.seqStore);
      g.seqStore.saveMeta = (meta) => {
        if (failing(meta)) throw new Error("disk full");
        save(meta);
      };
      // Its outcome unknown (the route's 504): the recovery may keep it. It was thrown, a 500 (a review).
      expect(await g.driver.restore(digest, async (after) => (after === null ? rows : []))).toMatchObject({ ok: false, code: "unknown", reason: expect.stringMatching(/disk full/) });
      expect(g.driver.isStopped).toBe(true);
      expect(recoveries).toBe(1);
    });
  }
});

describe("a restore's rows before the sequencer adopts it (a review)", () => {
  // A replica that installed a restore served it at once; if no quorum installed, the undo took
  // it back: a reader had seen rows never restored, the replica's appliedSeq fell, and the
  // bookmark it gave named another entry afterwards (a sequential read then went backwards).
  it("are not served while a quorum may still fail to install, nor after the undo", async () => {
    const { rows, digest } = await snapshotRows();
    const g = directGroup(config, retention);
    // r2 and r3 answer after the calls' bound: no quorum installs, and the restore is undone.
    g.slow.set("r2", 3_500);
    g.slow.set("r3", 3_500);
    const restoring = g.driver.restore(digest, async (after) => (after === null ? rows : []));
    const r1 = g.replicas.get("r1")!;
    const answers: string[] = [];
    let done = false;
    void restoring.finally(() => (done = true));
    while (!done) {
      await tick(10);
      const a = await r1.query({ op: "get", key: "a" }, 0, 0);
      answers.push(a.kind === "ok" ? `ok@${a.seq}:${JSON.stringify(a.result)}` : a.kind);
    }
    expect(await restoring).toMatchObject({ ok: false });
    expect(g.stores.get("r1")!.meta!.lastSeq).toBe(0); // it did install, then was undone
    expect(answers).toContain("quarantined"); // withheld while the restore was not adopted
    expect(answers.filter((a) => a.startsWith("ok") && a !== "ok@0:{\"value\":null}")).toEqual([]);
  }, 30_000);

  it("are served as soon as the restore's answer says it was adopted", async () => {
    const { rows, digest } = await snapshotRows();
    const g = directGroup(config, retention);
    expect(await g.driver.restore(digest, async (after) => (after === null ? rows : []))).toEqual({ ok: true });
    for (const id of ["r1", "r2", "r3"]) expect(await g.replicas.get(id)!.query({ op: "get", key: "b" }, 1, 0)).toMatchObject({ kind: "ok", seq: 1, result: { value: 1 } });
    expect((await putUntilOk(g.driver, 1))).toBe(2);
  });

  it("and a second restore says the group holds one, not that it has entries (a retry whose first answer was lost)", async () => {
    const { rows, digest } = await snapshotRows();
    const g = directGroup(config, retention);
    expect(await g.driver.restore(digest, async (after) => (after === null ? rows : []))).toEqual({ ok: true });
    expect(await g.driver.restore(digest, async (after) => (after === null ? rows : []))).toEqual({ ok: false, code: "conflict", reason: "the group holds a restored state already (at seq 1)" });
    expect(await putUntilOk(g.driver, 1)).toBe(2);
    expect(await g.driver.restore(digest, async (after) => (after === null ? rows : []))).toMatchObject({ reason: "the group has entries (last seq 2)" });
    g.driver.stop();
  });

  it("are served after a heartbeat if the restore's own message to a replica was lost", async () => {
    const { rows, digest } = await snapshotRows();
    const g = directGroup(config, retention);
    const r1 = g.replicas.get("r1")!;
    const append = r1.append.bind(r1);
    let dropped = 0;
    r1.append = ((req: Parameters<typeof append>[0]) => {
      if (req.entries.length === 0 && req.prevSeq === 1 && dropped++ === 0) throw new Error("the message was lost");
      return append(req);
    }) as typeof append;
    expect(await g.driver.restore(digest, async (after) => (after === null ? rows : []))).toEqual({ ok: true });
    expect(dropped).toBe(1);
    expect(await r1.query({ op: "get", key: "b" }, 1, 0)).toMatchObject({ kind: "quarantined" });
    g.driver.startHeartbeats();
    await tick(1_300);
    expect(await r1.query({ op: "get", key: "b" }, 1, 0)).toMatchObject({ kind: "ok", seq: 1, result: { value: 1 } });
    g.driver.stop();
  });

  it("stay withheld on a lone holder whose log a recovery takes as best, until that recovery's no-op commits", async () => {
    // A review: the recovered sequencer counts its base (the restore) as committed at once; its
    // first heartbeat said "commit 1" from seq 1, and r1 served the restore while no quorum held
    // it. A later recovery without r1 dropped it: the reader's bookmark then named other state.
    const { g, r1 } = await loneHolder(config);
    g.down.delete("r2");
    const driver = await recoveredThenCut(g, config, "r2"); // gone right after the fence: r1 alone holds the restore
    driver.kickAll();
    await tick(200);
    expect(await r1.query({ op: "get", key: "b" }, 0, 0)).toMatchObject({ kind: "quarantined" });
    // r2 back: it is rebuilt from r1, the recovery's no-op commits, and r1 serves.
    g.down.delete("r2");
    driver.startHeartbeats();
    expect(await whenServed(r1)).toMatchObject({ kind: "ok", result: { value: 1 } });
    expect(driver.core.commitSeq).toBeGreaterThanOrEqual(2);
    driver.stop();
  }, 30_000);
});

describe("a replica rebuilt from a holder of a restore not adopted (a review)", () => {
  // The target's install cleared what the source withheld: it served the restore before the
  // recovery's no-op committed, and a later recovery without either dropped it.
  it("withholds it too, until the recovery's no-op commits", async () => {
    const five = { ...config, replicas: 5 };
    const { g } = await loneHolder(five);
    g.driver.stop();
    for (const id of ["r2", "r3"]) g.down.delete(id);
    const driver = await recoveredThenCut(g, five, "r3"); // r1 and r2 alone: no quorum of five for the no-op
    driver.startHeartbeats();
    driver.kickAll();
    const r2 = g.replicas.get("r2")!;
    for (let i = 0; i < 60 && (g.stores.get("r2")!.meta!.lastSeq < 1 || g.stores.get("r2")!.meta!.installing); i++) await tick(50);
    expect(g.stores.get("r2")!.meta!).toMatchObject({ appliedSeq: 1, unadoptedSeq: 1 }); // rebuilt from r1, withheld (the no-op stored, not committed)
    expect(await r2.query({ op: "get", key: "b" }, 0, 0)).toMatchObject({ kind: "quarantined" });
    // A quorum back: the no-op commits, and both serve.
    g.down.delete("r3");
    expect(await whenServed(r2)).toMatchObject({ kind: "ok", result: { value: 1 } });
    expect(driver.core.commitSeq).toBeGreaterThanOrEqual(2);
    driver.stop();
  }, 30_000);
});

describe("a restore while a repair installs (a review)", () => {
  it("waits its turn: the repair's install on a replica that had just installed the restore would empty it", async () => {
    const { rows, digest } = await snapshotRows();
    const g = directGroup(config, retention);
    (g.driver as unknown as { core: { setQuarantined(id: string, q: boolean): void } }).core.setQuarantined("r2", true);
    g.slow.set("r2", 300);
    const repairing = g.driver.repair("r2");
    await tick(50);
    expect(g.driver.repairsUnderway).toBe(true);
    expect(await g.driver.restore(digest, async (after) => (after === null ? rows : []))).toEqual({ ok: false, reason: "a replica is being rebuilt by a state transfer; retry when it is done" });
    expect(await repairing).toBe(true);
    g.slow.clear();
    expect(await g.driver.restore(digest, async (after) => (after === null ? rows : []))).toEqual({ ok: true });
    g.driver.stop();
  });
});

describe("a restore with a slow member", () => {
  it("ends once a quorum of voters has installed and the other has had as long again; that one is rebuilt by a state transfer", async () => {
    const { rows, digest } = await snapshotRows();
    const g = directGroup(config, retention);
    // Three calls (begin, a page, end) of 2.5 s each, under the calls' timeout (replicaRpcTimeoutMs):
    // 7.5 s, where the quorum takes milliseconds.
    g.slow.set("r3", 2_500);
    expect(await g.driver.restore(digest, async (after) => (after === null ? rows : []))).toEqual({ ok: true });
    // Left behind after the grace (restoreLaggardGraceMinMs): it had not reached its end.
    expect(g.calls.get("r3:endInstall")).toBeUndefined();
    expect(g.events.at(-1)!.message).toMatch(/state restored at seq 1 .*; r3 will be rebuilt from it \(r3: slower than a quorum of voters/);
    expect(g.driver.core.replicaStatuses().find((s) => s.id === "r3")!.status).toMatch(/^(rebuilding|repairing)$/);
    // Writes go on at once; r3, fast again, is rebuilt (the repair begun at once) and catches up.
    expect(await putUntilOk(g.driver, 1)).toBe(2);
    g.slow.clear();
    const r3 = () => g.stores.get("r3")!.meta!;
    for (let i = 0; i < 500 && (r3().appliedSeq < 2 || r3().quarantined); i++) await tick();
    expect(g.stores.get("r3")!.meta).toMatchObject({ appliedSeq: 2, quarantined: false, digest: g.stores.get("r1")!.meta!.digest });
  }, 20_000);
});

describe("a failed restore's undo that arrives late (a review)", () => {
  // r2 missed the first attempt; its undo timed out at the sequencer but was still on its way. r2
  // held nothing, so the mark was cleared, and a retry was adopted on r1 and r2 (r3 away) and
  // acknowledged. The late undo then reached r2, which took it (it held the restore's base),
  // kept no rejoinSeq, and a recovery from r2 and r3 came back without the restore.
  it("is refused by a replica holding the adopted retry, which a recovery then keeps", async () => {
    const { rows, digest } = await snapshotRows();
    const g = directGroup(config, retention);
    g.io.onFenced = () => {};
    const real = g.io.link;
    let late: (() => Promise<boolean>) | null = null;
    let first = true;
    g.io.link = (id) => {
      const link = real(id);
      if (id !== "r2") return link;
      return new Proxy(link, {
        get: (t, name) => {
          if (name !== "beginInstall") return (t as never)[name];
          return async (info: SnapshotInfo, transferId: string, epoch: number) => {
            if (first && !info.undo) throw new Error("r2 timed out");
            if (first) {
              late = () => link.beginInstall(info, transferId, epoch);
              throw new Error("r2 timed out (the call is still on its way)");
            }
            return link.beginInstall(info, transferId, epoch);
          };
        },
      });
    };
    g.down.add("r3");
    expect(await g.driver.restore(digest, async (after) => (after === null ? rows : []))).toMatchObject({ ok: false, reason: expect.stringMatching(/nothing was restored, retry$/) });
    first = false;
    expect(await g.driver.restore(digest, async (after) => (after === null ? rows : []))).toEqual({ ok: true });
    g.driver.stop();
    expect(await late!()).toBe(false);
    g.down.add("r1");
    g.down.delete("r3");
    const rec = await recoverSequencer(config, new MemorySequencerStorage(), g.io);
    expect(rec).toMatchObject({ ok: true, meta: { baseSeq: 1 } });
  }, 20_000);
});

describe("a restore into a group whose log holds no-ops alone", () => {
  /** A group whose sequencer recovered once (a move or a failover before any write): its log is one no-op. */
  async function recovered() {
    const g = directGroup(config, retention);
    const storage = new MemorySequencerStorage();
    expect(await recoverSequencer(config, storage, g.io)).toMatchObject({ ok: true });
    const driver = driverFrom(g, storage);
    driver.kickAll();
    for (let i = 0; i < 100 && driver.core.commitSeq < 1; i++) await tick();
    expect(storage.lastEntry()).toMatchObject({ seq: 1, kind: "noop" });
    return { g, storage, driver };
  }

  it("goes after them: every replica holds the rows at the next position, and writes follow", async () => {
    const { rows, digest } = await snapshotRows();
    const { g, storage, driver } = await recovered();
    expect(await driver.restore(digest, async (after) => (after === null ? rows : []))).toEqual({ ok: true });
    expect(storage.meta).toMatchObject({ baseSeq: 2, commitSeq: 2 });
    expect(storage.log.length).toBe(0); // the no-op went with the base
    expect(await putUntilOk(driver, 1)).toBe(3);
    for (const [id, replica] of g.replicas) {
      expect(await replica.query({ op: "get", key: "b" }, 3, 2_000), id).toMatchObject({ kind: "ok", result: { value: 1 } });
    }
    driver.stop();
  });

  it("undone, every replica is back at the no-op, and a later entry follows it", async () => {
    const { rows, digest } = await snapshotRows();
    const { g, driver } = await recovered();
    g.down.add("r2");
    g.down.add("r3");
    expect(await driver.restore(digest, async (after) => (after === null ? rows : []))).toMatchObject({ ok: false, reason: expect.stringMatching(/nothing was restored/) });
    expect(g.replicas.get("r1")!.core!.position()).toMatchObject({ lastSeq: 1, appliedSeq: 1 });
    g.down.clear();
    expect(await putUntilOk(driver, 1)).toBe(2);
    driver.stop();
  });

  it("is refused (conflict) once a client's entry is in the log", async () => {
    const { rows, digest } = await snapshotRows();
    const { driver } = await recovered();
    expect(await putUntilOk(driver, 1)).toBe(2);
    expect(await driver.restore(digest, async (after) => (after === null ? rows : []))).toEqual({ ok: false, code: "conflict", reason: "the group has entries (last seq 2)" });
    driver.stop();
  });

  it("leaves the epoch settled (a refusal is a 503, not a 504), in this sequencer and after its restart, with a member away at the recovery (a review)", async () => {
    const rows: [string, string][] = [];
    const digest = digestOfPages(() => rows).digest;
    const g = directGroup(config, retention);
    g.down.add("r3");
    const storage = new MemorySequencerStorage();
    expect(await recoverSequencer(config, storage, g.io)).toMatchObject({ ok: true });
    expect(storage.meta!.fencedAll).toBeUndefined();
    g.down.delete("r3");
    const driver = new SequencerDriver(new SequencerCore(storage, storage.meta!), g.io, retention);
    driver.kickAll();
    for (let i = 0; i < 100 && driver.core.commitSeq < 1; i++) await tick();
    expect(await driver.restore(digest, async () => [])).toEqual({ ok: true });
    expect(storage.meta).toMatchObject({ epoch: 2, baseSeq: 2, commitSeq: 2 });
    expect(driver.core.epochSettled).toBe(true);
    driver.stop();
    const restarted = new SequencerCore(storage, storage.meta!);
    expect(restarted.epochSettled).toBe(true);
  });
});

describe("a restore that holds the sequencer for seconds", () => {
  it("leaves it heard by the voters that installed the file: not cut off (a 200 said 'no quorum for 14 s')", async () => {
    const { rows, digest } = await snapshotRows();
    let nowMs = 1_000_000;
    // No timer fires: no heartbeat goes out while the install runs, as in a Durable Object busy with it.
    let timersFire = false; // from the read on, the confirmation's timeout may fire
    const g = directGroup(config, retention, { nowMs: () => nowMs, setTimer: (ms, fn) => (timersFire ? realClock.setTimer(ms, fn) : () => {}) });
    const pages = async (after: string | null) => {
      if (after === null) nowMs += 4_000; // each replica's first page takes 4 s
      return after === null ? rows : [];
    };
    expect(await g.driver.restore(digest, pages)).toEqual({ ok: true });
    expect(nowMs).toBeGreaterThanOrEqual(1_012_000);
    expect(g.driver.cutOffMs()).toBeNull();
    // The install counts for the cut-off report only, not for the read lease: with every replica
    // gone now, a linearizable read's index must not be given on the strength of the install (a
    // review made it an acknowledgement first, which the lease relies on).
    timersFire = true;
    for (const id of ["r1", "r2", "r3"]) g.down.add(id);
    const answer = await Promise.race([g.driver.readIndex(), tick(200).then(() => "still confirming")]);
    expect(answer).not.toMatchObject({ kind: "ok" });
    g.driver.stop();
  });
});

describe("a snapshot's wait for the commit point", () => {
  it("starts once the replica has applied it, is refused past readWaitMs, and shares the reads' bound on waiters (and so does a session lookup)", async () => {
    const g = directGroup(config, retention);
    expect((await g.driver.submit("s", 1, { op: "put", key: "a", value: 1 })).kind).toBe("ok");
    await tick();
    const replica = g.replicas.get("r2")!;
    expect((await replica.beginExport(1, 1_000))!.seq).toBeGreaterThanOrEqual(1);
    expect(await replica.beginExport(99, 30)).toBeNull(); // not applied within the wait
    // A replica whose timers never fire: a wait would never end, so an answer means no wait.
    const store = g.stores.get("r3")!;
    const still = new ReplicaDriver(new ReplicaCore(store, store.meta!, machineFor("kv"), retention), { nowMs: () => 0, setTimer: () => () => {} });
    for (let i = 0; i < readWaitersMax; i++) void still.query({ op: "get", key: "a" }, 99, 1_000);
    const answer = await Promise.race([still.beginExport(99, 1_000), tick(500).then(() => "still waiting")]);
    expect(answer).toBeNull();
    // A retry's session lookup too (asked again every resendMs: each ask a waiter and a timer): it abstains at once.
    const session = await Promise.race([still.session("c", 1, 99, 1_000), tick(500).then(() => "still waiting")]);
    expect(session).toEqual({ kind: "timeout" });
    expect((still as unknown as { waiters: unknown[] }).waiters.length).toBe(readWaitersMax);
  });
});

describe("a snapshot download cut off", () => {
  it("has its frozen copy dropped once unread for snapshotIdleMs, with no later download to sweep it", async () => {
    const g = directGroup(config, retention);
    expect((await g.driver.submit("s", 1, { op: "put", key: "a", value: 1 })).kind).toBe("ok");
    await tick();
    const store = g.stores.get("r3")!;
    let nowMs = 0;
    const timers: { atMs: number; fn: () => void }[] = [];
    const clock = { nowMs: () => nowMs, setTimer: (ms: number, fn: () => void) => { const t = { atMs: nowMs + ms, fn }; timers.push(t); return () => { const i = timers.indexOf(t); if (i >= 0) timers.splice(i, 1); }; } };
    const advance = (ms: number) => {
      nowMs += ms;
      for (const t of timers.filter((t) => t.atMs <= nowMs)) {
        timers.splice(timers.indexOf(t), 1);
        t.fn();
      }
    };
    const replica = new ReplicaDriver(new ReplicaCore(store, store.meta!, machineFor("kv"), retention), clock);
    const info = (await replica.beginExport())!;
    const kept = () => store.snapshotPage(null, 1 << 20, info.id).length;
    expect(kept()).toBeGreaterThan(0);
    // Read now and then: kept.
    advance(snapshotIdleMs - 1);
    expect(replica.exportPage(info.id, null, 1 << 20)!.length).toBeGreaterThan(0);
    advance(snapshotIdleMs - 1);
    expect(kept()).toBeGreaterThan(0);
    // Then never read again (its reader cut off): dropped, and no timer left behind.
    advance(snapshotIdleMs + 2);
    expect(kept()).toBe(0);
    expect(replica.exportPage(info.id, null, 1 << 20)).toBeNull();
    advance(snapshotIdleMs + 1);
    expect(timers).toEqual([]);
  });
});

describe("a snapshot download's digest", () => {
  it("is its rows' digest, whether the machine's rows or the clients' books and sessions are more", async () => {
    const g = directGroup(config, retention);
    // One client, one txn of 64 puts: 64 machine rows, 2 of bookkeeping (taken out of the state's digest).
    const puts = Array.from({ length: 64 }, (_, i) => ({ op: "put", key: `k${i}`, value: i }));
    expect((await g.driver.submit("one", 1, { op: "txn", compare: [], success: puts, failure: [] })).kind).toBe("ok");
    // 40 clients, a put each to one key: 1 machine row, 80 of bookkeeping (the copy is hashed).
    const few = directGroup(config, retention);
    for (let c = 0; c < 40; c++) expect((await few.driver.submit(`c${c}`, 1, { op: "put", key: "k", value: c })).kind).toBe("ok");
    await tick();
    for (const [group, rows] of [[g, 64], [few, 1]] as const) {
      const e = await exportOf(group, "r2");
      expect(e.info.rows).toBe(rows);
      expect(e.rows).toHaveLength(rows);
      expect(e.info.digest).toBe(e.rowsDigest);
    }
  });

  it("is the replica's recorded one: a row damaged behind it makes a file its restore refuses, not one that looks whole", async () => {
    const g = directGroup(config, retention);
    const puts = Array.from({ length: 64 }, (_, i) => ({ op: "put", key: `k${i}`, value: i }));
    expect((await g.driver.submit("one", 1, { op: "txn", compare: [], success: puts, failure: [] })).kind).toBe("ok");
    await tick();
    const healthy = await exportOf(g, "r2");
    g.stores.get("r2")!.rows.put("m/k7", JSON.stringify({ damaged: true }));
    const damaged = await exportOf(g, "r2");
    expect(damaged.info.digest).toBe(healthy.info.digest);
    expect(damaged.rowsDigest).not.toBe(damaged.info.digest);
  });
});

// A snapshot's header digest is the replica's recorded digest of its machine rows
// (DigestedState.machineDigest), kept write by write and stored with the rows: it must equal the
// frozen rows' own digest on a healthy replica, through writes, saves and restarts.
describe("a snapshot's header digest", () => {
  it("equals the frozen rows' own digest through writes, deletes, saves and a restart", async () => {
    const g = directGroup(config, retention);
    let request = 0;
    const write = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const op = i % 5 === 4 ? { op: "delete", key: `k${i % 7}` } : i % 3 === 0 ? { op: "incr", key: `n${i % 4}`, by: 1 } : { op: "put", key: `k${i % 7}`, value: { i } };
        expect((await g.driver.submit(`c${i % 9}`, ++request, op)).kind).toBe("ok");
      }
      await tick();
    };
    await write(40);
    const first = await exportOf(g, "r2");
    expect(first.info.digest).toBe(first.rowsDigest);
    await write(60); // known from the first export on: kept write by write
    const second = await exportOf(g, "r2");
    expect(second.info.digest).toBe(second.rowsDigest);
    expect(second.info.digest).not.toBe(first.info.digest);
    // A restart: the stored machine digest, then the entries after the stored rows replayed.
    const store = g.stores.get("r2")!;
    expect(store.meta!.stateMachineDigest?.of).toBe(store.meta!.stateDigest);
    await write(25);
    g.replicas.set("r2", new ReplicaDriver(new ReplicaCore(store, store.meta!, machineFor("kv"), retention), realClock));
    const third = await exportOf(g, "r2");
    expect(third.info.digest).toBe(third.rowsDigest);
    // A replica that never exported works it out the first time.
    const fresh = await exportOf(g, "r3");
    expect(fresh.info.digest).toBe(third.info.digest);
    g.driver.stop();
  });
});
