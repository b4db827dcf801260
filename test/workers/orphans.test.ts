// Frozen copies and staged restores are tracked in the memory of the object that made them: one
// left when that object's life ended (a download never read to its end, a restore whose upload
// stopped, then an eviction or a deploy) is an orphan, dropped when the object loads again.
import { SELF, env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { ReplicaHost } from "../../workers/replica-host.js";
import { SequencerObject } from "../../workers/sequencer.js";
import { adminToken, command, createGroup, replicaObject } from "./helpers.js";

function tables(storage: DurableObjectStorage): string[] {
  return storage.sql
    .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'")
    .toArray()
    .map((r) => r.name);
}

describe("a snapshot download left open when its replica's object ends", () => {
  it("leaves no frozen copy once the replica loads again", async () => {
    const group = "orphan-export";
    await createGroup(group, { machine: "kv", replicas: 3 });
    for (let i = 0; i < 5; i++) expect((await command(group, { op: "put", key: `k${i}`, value: i })).status).toBe(200);
    const res = await SELF.fetch(`http://smr.test/v1/groups/${group}/snapshot`, { headers: { authorization: `Bearer ${adminToken}` } });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    await reader.read(); // the header: the copy is frozen, and stays while the download is open
    const id = res.headers.get("x-smr-replica")!;
    await runInDurableObject(replicaObject(group, id), async (_inst, state) => {
      expect(tables(state.storage).filter((t) => t.startsWith("frozen_"))).toEqual(["frozen_export_1"]);
      // The object's next life: a new host over the same storage, loaded as the constructor does.
      const next = new ReplicaHost({ storage: state.storage, logTable: "log", erase: async () => undefined });
      next.load();
      expect(tables(state.storage).filter((t) => t === "snapshot" || t.startsWith("frozen_"))).toEqual([]);
      expect(next.core?.appliedSeq).toBe(5);
    });
    await reader.cancel();
  });
});

describe("a restore whose upload stops when its sequencer's object ends", () => {
  it("leaves no staged rows once the sequencer loads again", async () => {
    const group = "orphan-stage";
    await createGroup(group, { machine: "kv", replicas: 3 });
    // More rows than one page (snapshotPageRows), then the upload stalls: the first page is staged.
    const rows = Array.from({ length: 1_500 }, (_, i) => `["k${String(i).padStart(5, "0")}",${i}]\n`).join("");
    const header = JSON.stringify({ group, machine: "kv", seq: 1, rows: 1_500, digest: "0".repeat(64) }) + "\n";
    let stalled!: () => void;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode(header + rows));
        stalled = () => c.close();
      },
    });
    const upload = SELF.fetch(`http://smr.test/v1/groups/${group}/restore`, { method: "POST", headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/x-ndjson" }, body });
    const sequencer = env.SEQUENCER.get(env.SEQUENCER.idFromName(group));
    const staged = () => runInDurableObject(sequencer, (_inst, state) => (tables(state.storage).includes("restore_rows") ? state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM restore_rows").one().n : 0));
    for (let i = 0; i < 200 && (await staged()) === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await staged()).toBe(1_000);
    await runInDurableObject(sequencer, async (_inst, state) => {
      // The object's next life, over the same storage (its constructor loads under blockConcurrencyWhile).
      new SequencerObject(state, env);
      await new Promise((r) => setTimeout(r, 0));
      expect(tables(state.storage)).not.toContain("restore_rows");
    });
    stalled();
    // The first life's upload is refused at its end (the digest is wrong anyway): no 500.
    expect([400, 503]).toContain((await upload).status);
  });
});
