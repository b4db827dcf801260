// A group's storage quota (limits.ts storageQuotaMiBDefault): a probe filled 231 MB per replica
// with one 54 KB request, and a Durable Object takes no writes past 10 GB, when the group could
// order nothing at all, not even a delete. At the quota, writes are refused and deletes go.
import { describe, expect, it } from "vitest";
import { storageQuotaMiBDefault } from "../../shared/limits.js";
import { directGroup } from "../support/direct.js";
import { createGroupBody, groupConfigFrom } from "../../shared/api/schemas.js";

const mebibyte = 1024 * 1024;

/** Until the sequencer has the replica's size from an answer (an append's reaches it after the commit, at times). */
async function measured(g: ReturnType<typeof directGroup>, id: string, bytes: number): Promise<void> {
  for (let i = 0; i < 100 && g.driver.core.replicaStatuses().find((r) => r.id === id)!.storageBytes !== bytes; i++) await new Promise((r) => setTimeout(r, 5));
  expect(g.driver.core.replicaStatuses().find((r) => r.id === id)!.storageBytes).toBe(bytes);
}
const config = (storageQuotaMiB?: number) => ({ group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "first" as const, checkpointEvery: 50, ...(storageQuotaMiB ? { storageQuotaMiB } : {}) });

describe("the storage quota", () => {
  it("refuses writes (certainly not ordered) once a replica's storage reaches it, takes deletes, and writes again once space is freed", async () => {
    const g = directGroup(config(16), { entries: 100_000, slack: 1_000 });
    let r2Bytes = 1 * mebibyte;
    g.stores.get("r2")!.sizeBytes = () => r2Bytes;
    expect((await g.driver.submit("c", 1, { op: "put", key: "a", value: 1 })).kind).toBe("ok");
    expect((await g.driver.submit("c", 2, { op: "put", key: "b", value: 2 })).kind).toBe("ok");
    r2Bytes = 16 * mebibyte; // measured at its next append
    expect((await g.driver.submit("c", 3, { op: "put", key: "c", value: 3 })).kind).toBe("ok");
    await measured(g, "r2", 16 * mebibyte);
    const refused = await g.driver.submit("c", 4, { op: "put", key: "d", value: 4 });
    expect(refused).toMatchObject({ kind: "unavailable", message: expect.stringMatching(/storage of replica r2 holds 16\.0 MiB, at or over the group's quota of 16 MiB \(storageQuotaMiB\): commands that write are refused; only small ones that grow no state are ordered \(delete, or a txn of deletes only\)/) });
    expect((await g.driver.submit("c", 5, { op: "get", key: "a" })).kind).toBe("unavailable"); // a read through the log stores its output
    expect((await g.driver.submit("c", 6, { op: "txn", success: [{ op: "delete", key: "a" }, { op: "put", key: "x", value: 1 }] })).kind).toBe("unavailable");
    // Nor what stores more than it frees: a txn's compares carry values, an empty txn frees nothing (a review).
    expect((await g.driver.submit("c", 61, { op: "txn", compare: [{ key: "a", value: "x".repeat(60_000) }], success: [{ op: "delete", key: "a" }] })).kind).toBe("unavailable");
    expect((await g.driver.submit("c", 62, { op: "txn" })).kind).toBe("unavailable");
    // Nor a large txn of deletes: its entry stores it (a probe: 138 KB an entry past the quota).
    const manyDeletes = Array.from({ length: 64 }, (_, i) => ({ op: "delete", key: `${"k".repeat(500)}${i}` }));
    expect((await g.driver.submit("c", 63, { op: "txn", success: manyDeletes, failure: manyDeletes })).kind).toBe("unavailable");
    // A retry of an executed command is still answered: nothing new is ordered.
    expect(await g.driver.submit("c", 3, { op: "put", key: "c", value: 3 })).toMatchObject({ kind: "ok", output: { previous: null } });
    // In a batch, a delete after a refused put is refused too (nothing after a refused command is
    // ordered), and says so: it read "only small ones ... are ordered (delete, ...)" (a probe).
    const batch = await Promise.all(g.driver.submitBatch("c", [{ request: 64, command: { op: "put", key: "e", value: 5 } }, { request: 65, command: { op: "delete", key: "b" } }]));
    expect(batch[0]).toMatchObject({ kind: "unavailable", storage: true, message: expect.stringMatching(/^the storage of replica r2 holds/) });
    expect(batch[1]).toMatchObject({ kind: "unavailable", storage: true, message: expect.stringMatching(/^not ordered: request 64 before it in this batch was refused, and a batch orders nothing after a refused command \(the storage of replica r2/) });
    expect(await g.driver.submit("c", 7, { op: "delete", key: "a" })).toMatchObject({ kind: "ok", output: { deleted: true } });
    r2Bytes = 1 * mebibyte; // the delete freed it: its answer says so
    expect(await g.driver.submit("c", 8, { op: "txn", success: [{ op: "delete", key: "b" }] })).toMatchObject({ kind: "ok" });
    await measured(g, "r2", 1 * mebibyte);
    expect((await g.driver.submit("c", 9, { op: "put", key: "d", value: 4 })).kind).toBe("ok");
    g.driver.stop();
  });

  it("at the quota, the replicas store their rows with every step, so a delete's freed space shows at once (saved every 4,096 entries, it showed thousands of entries later)", async () => {
    const g = directGroup(config(16), { entries: 100_000, slack: 1_000 });
    const core = (id: string) => g.replicas.get(id)!.core!;
    expect((await g.driver.submit("c", 1, { op: "put", key: "a", value: 1 })).kind).toBe("ok");
    // Under the quota the rows are not stored yet (a batched save); at it, the delete's step stores them.
    expect(core("r1").config.stateSeq).toBe(0);
    g.stores.get("r2")!.sizeBytes = () => 16 * mebibyte;
    expect((await g.driver.submit("c", 2, { op: "put", key: "b", value: 2 })).kind).toBe("ok");
    await measured(g, "r2", 16 * mebibyte);
    const deleted = await g.driver.submit("c", 3, { op: "delete", key: "a" });
    expect(deleted.kind).toBe("ok");
    for (let i = 0; i < 100 && ["r1", "r2", "r3"].some((id) => core(id).config.stateSeq < (deleted as { seq: number }).seq); i++) await new Promise((r) => setTimeout(r, 5));
    for (const id of ["r1", "r2", "r3"]) expect(core(id).config.stateSeq, id).toBe((deleted as { seq: number }).seq);
    g.driver.stop();
  });

  it("is 4 GiB for a new group (stored at creation, so a later default changes no group), 6 GiB for one whose config names none (made before it was stored)", async () => {
    expect(storageQuotaMiBDefault).toBe(4096);
    expect(groupConfigFrom("g", createGroupBody.parse({ machine: "kv" })).storageQuotaMiB).toBe(4096);
    // A config without one: what such groups had (a review: 4,096 for them would have cut their quota by a third on deploy).
    const g = directGroup(config(), { entries: 100_000, slack: 1_000 });
    g.stores.get("r3")!.sizeBytes = () => 6143 * mebibyte;
    expect((await g.driver.submit("c", 1, { op: "put", key: "a", value: 1 })).kind).toBe("ok");
    expect((await g.driver.submit("c", 2, { op: "put", key: "a", value: 2 })).kind).toBe("ok");
    g.stores.get("r3")!.sizeBytes = () => 6144 * mebibyte;
    await g.driver.submit("c", 3, { op: "delete", key: "zz" });
    await measured(g, "r3", 6144 * mebibyte);
    expect(await g.driver.submit("c", 4, { op: "put", key: "a", value: 3 })).toMatchObject({ kind: "unavailable", message: expect.stringMatching(/r3 holds 6144\.0 MiB, at or over the group's quota of 6144 MiB/) });
    g.driver.stop();
  });

  it("per machine: a lock's renew and release go (held leases do not lapse), a bank group (no command frees space) is told to raise its quota or snapshot and restore, and a raised quota takes its writes", async () => {
    for (const machine of ["lock", "bank"] as const) {
      const g = directGroup({ ...config(16), machine }, { entries: 100_000, slack: 1_000 });
      g.stores.get("r2")!.sizeBytes = () => 16 * mebibyte;
      const first = machine === "lock" ? { op: "acquire", lock: "l", owner: "o", ttlMs: 60_000 } : { op: "open", account: "a", balance: 5 };
      const done = await g.driver.submit("c", 1, first);
      expect(done.kind, machine).toBe("ok");
      await measured(g, "r2", 16 * mebibyte);
      const again = await g.driver.submit("c", 2, first);
      expect(again, machine).toMatchObject({ kind: "unavailable", message: expect.stringMatching(machine === "lock" ? /only small ones that grow no state are ordered \(release, renew\)/ : /no command that frees space: raise the group's quota \(POST \/v1\/groups\/g\/quota, up to 4608 MiB\), or snapshot the group and restore it into a new group \(a restore takes up to 64 MiB\)/) });
      if (machine === "lock") {
        const token = ((done as { output: { token: number } }).output).token;
        // Another's acquire grows the state (a new lease's row): refused; the holder's renew goes.
        expect(await g.driver.submit("c", 3, { op: "acquire", lock: "m", owner: "p", ttlMs: 60_000 })).toMatchObject({ kind: "unavailable", storage: true });
        expect(await g.driver.submit("c", 4, { op: "renew", lock: "l", owner: "o", token, ttlMs: 60_000 })).toMatchObject({ kind: "ok", output: { ok: true, token } });
        expect(await g.driver.submit("c", 5, { op: "release", lock: "l", owner: "o", token })).toMatchObject({ kind: "ok", output: { released: true } });
      } else {
        // The way out for a bank group: a larger quota, in force at once and recorded in the
        // directory (a successor starts from its config). A state over 64 MiB could not be
        // restored into a new group, and such a group had no way out (a probe).
        expect(await g.driver.setQuota(32)).toEqual({ ok: true });
        expect(g.recorded.at(-1)).toMatchObject({ storageQuotaMiB: 32 });
        expect(g.seqStore.meta!.config.storageQuotaMiB, "kept across a restart of this sequencer").toBe(32);
        expect(await g.driver.submit("c", 3, { op: "open", account: "b", balance: 5 })).toMatchObject({ kind: "ok" });
        // Lowered under what a replica holds, writes are refused again.
        expect(await g.driver.setQuota(16)).toEqual({ ok: true });
        expect(await g.driver.submit("c", 4, { op: "open", account: "c", balance: 5 })).toMatchObject({ kind: "unavailable", storage: true });
      }
      g.driver.stop();
    }
  });
});
