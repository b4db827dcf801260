// Compaction by bytes: each object's retained log (the sequencer's; a replica's with its effects
// rows) is kept to a share of the group's storage quota, besides the 10,000 entries. A probe's
// 16 MiB group of 60 KB puts was held at its quota by its retained log alone, no data left, and
// only about 10,000 deletes brought it back.
import { describe, expect, it } from "vitest";
import { compactionSlackShare, logRetentionBytesOf } from "../../shared/limits.js";
import { entryBytes } from "../../shared/protocol/entry.js";
import type { MemoryReplicaStorage, MemorySequencerStorage } from "../../shared/protocol/memory.js";
import { directGroup } from "../support/direct.js";

const base = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "first" as const, checkpointEvery: 50 };
const big = "x".repeat(60_000);

function sequencerLogBytes(store: MemorySequencerStorage): number {
  return store.log.reduce((sum, e) => sum + entryBytes(e), 0);
}
/** A replica's entries and effects rows behind its applied position. */
function replicaLogBytes(store: MemoryReplicaStorage): number {
  let sum = 0;
  for (const e of store.log.values()) sum += entryBytes(e);
  for (const f of store.effects.values()) sum += f.output.length + f.changes.length;
  return sum;
}

async function fill(g: ReturnType<typeof directGroup>, puts: number): Promise<void> {
  for (let i = 1; i <= puts; i++) expect((await g.driver.submit("c", i, { op: "put", key: `k${i}`, value: big })).kind).toBe("ok");
  // Every replica applied the last put (appends answer before the commit reaches the others).
  for (let i = 0; i < 200 && [...g.stores.values()].some((s) => (s.meta?.appliedSeq ?? 0) < puts); i++) await new Promise((r) => setTimeout(r, 5));
}

describe("the retained log, by bytes", () => {
  it("a 16 MiB group of 60 KB puts keeps about 1 MiB of log per object (a sixteenth of its quota), not 10,000 entries; every value is still there", async () => {
    const g = directGroup({ ...base, storageQuotaMiB: 16 }, { entries: 10_000, slack: 1_000 });
    const budget = logRetentionBytesOf(16);
    expect(budget).toBe(1024 * 1024);
    await fill(g, 120); // 7.2 MB of values
    const most = budget * (1 + compactionSlackShare) + entryBytes(g.seqStore.log[0]!) + 2 * big.length;
    expect(sequencerLogBytes(g.seqStore)).toBeLessThanOrEqual(most);
    expect(g.seqStore.log.length).toBeLessThan(30);
    expect(g.seqStore.meta!.baseSeq).toBeGreaterThan(90);
    for (const [id, store] of g.stores) {
      expect(replicaLogBytes(store), id).toBeLessThanOrEqual(most);
      // The effects rows (a put's new value) count: fewer entries than the sequencer keeps.
      expect(store.log.size, id).toBeLessThan(20);
      expect(store.meta!.baseSeq, id).toBeGreaterThan(100);
      expect(store.meta!.appliedSeq, id).toBe(120);
      for (const i of [1, 60, 120]) expect(g.replicas.get(id)!.core!.query({ op: "get", key: `k${i}` }), `${id} k${i}`).toEqual({ value: big });
    }
    // Writes and answers go on after compaction; a retry of a compacted request is answered from
    // the sessions, not ordered again.
    expect(await g.driver.submit("c", 1, { op: "put", key: "k1", value: big })).toMatchObject({ kind: "ok", seq: 1 });
    g.driver.stop();
  });

  it("a rebuild under 60 KB puts ends within the log: no cut by bytes while it runs, one transfer, then caught up from the log (a review: each install ended behind the log, a transfer after another)", async () => {
    const g = directGroup({ ...base, storageQuotaMiB: 16 }, { entries: 10_000, slack: 1_000 });
    for (let i = 1; i <= 150; i++) expect((await g.driver.submit("load", i, { op: "put", key: `k${i}`, value: big })).kind).toBe("ok");
    // An operator's (or an audit's) repair of r2: quarantined, rebuilt from r1 or r3.
    (g.driver as unknown as { quarantine(id: string): void }).quarantine("r2");
    const first = g.driver.repair("r2");
    g.slow.set("r2", 30); // each call to r2 (a page of 512 KB) takes 30 ms more
    let stop = false;
    let n = 0;
    // Four writers of 60 KB puts, each about one every 20 ms (a few MB/s: far below what a group takes).
    const writer = Promise.all([0, 1, 2, 3].map(async (w) => {
      for (let k = 1; !stop; k++) {
        n++;
        const a = await g.driver.submit(`w${w}`, k, { op: "put", key: `w${w}-${k % 50}`, value: big });
        if (a.kind !== "ok") throw new Error(JSON.stringify(a));
        await new Promise((r) => setTimeout(r, 20));
      }
    }));
    // Writes go on for 3 s, then stop; r2 is then given 2 s to catch up.
    await new Promise((r) => setTimeout(r, 3_000));
    stop = true;
    await writer;
    await first;
    for (let i = 0; i < 100 && g.replicas.get("r2")!.core!.appliedSeq < g.driver.core.commitSeq; i++) {
      await new Promise((r) => setTimeout(r, 20));
      g.driver.kickAll();
    }
    const rebuilt = g.events.filter((e) => e.kind === "repair" && /rebuilt/.test(e.message)).map((e) => e.message);
    // One transfer should do: r2 was caught up from the log after it, as with the entries window.
    expect(n).toBeGreaterThan(40);
    expect(rebuilt.length, "rebuilt again and again: each install ended behind the compacted log").toBe(1);
    expect(g.replicas.get("r2")!.core!.appliedSeq).toBe(g.driver.core.commitSeq);
    // Compacted by bytes again once it ended.
    expect(g.driver.core.commitSeq - g.driver.core.baseSeq).toBeLessThan(60);
    g.driver.stop();
  }, 60_000);

  it("a group of the default quota (4 GiB) keeps every one of those entries: the bytes budget is 256 MiB", async () => {
    const g = directGroup({ ...base }, { entries: 10_000, slack: 1_000 });
    await fill(g, 40);
    expect(g.seqStore.meta!.baseSeq ?? 0).toBe(0);
    expect(g.seqStore.log.length).toBe(40);
    for (const [id, store] of g.stores) expect(store.log.size, id).toBe(40);
    g.driver.stop();
  });
});
