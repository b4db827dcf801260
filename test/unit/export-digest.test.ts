// A snapshot's header digest is the replica's recorded digest of its machine rows
// (DigestedState.machineDigest), kept write by write and stored with the rows: it must equal the
// frozen rows' own digest on a healthy replica, through writes, saves and restarts.
import { describe, expect, it } from "vitest";

import { machineFor } from "../../shared/machines/index.js";
import { ReplicaDriver } from "../../shared/protocol/replica-driver.js";
import { ReplicaCore } from "../../shared/protocol/replica.js";
import { digestOfPages } from "../../shared/protocol/state.js";
import { directGroup, realClock } from "../support/direct.js";

const config = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "first" as const, checkpointEvery: 50 };
const retention = { entries: 10_000, slack: 1_000 };
const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));

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
  return { info, rowsDigest: digestOfPages((after) => (after === null ? rows : [])).digest };
}

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
