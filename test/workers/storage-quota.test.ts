// A group's storage quota inside workerd (SQLite's own size, ctx.storage.sql.databaseSize): at
// it, commands that write are a 503 that says why, deletes and reads go on (see the unit tests
// for the way back once space is freed).
import { describe, expect, it } from "vitest";
import { SELF, runInDurableObject } from "cloudflare:test";
import { adminToken, api, clientToken, command, createGroup, expectError, query, replicaObject } from "./helpers.js";

describe("the storage quota (workerd)", () => {
  it("a group of 16 MiB (the least): 60 KB values fill it; then a put is a 503 naming the replica and the quota, a delete and a read go", async () => {
    const created = await createGroup("quota-small", { machine: "kv", storageQuotaMiB: 16 });
    expect(created.storageQuotaMiB).toBe(16);
    const big = "x".repeat(60_000);
    let refused: Awaited<ReturnType<typeof command>> | null = null;
    // Refused three times in a row: a refusal measured before the sequencer compacted its log
    // (after the last commit) may be followed by a put that fits again.
    for (let i = 1, inRow = 0; i <= 600 && inRow < 3; i++) {
      const r = await command("quota-small", { op: "put", key: `k${i}`, value: big });
      refused = r.status === 200 ? null : r;
      inRow = r.status === 200 ? 0 : inRow + 1;
    }
    expect(refused, "never refused").not.toBeNull();
    expectError(refused!, 503, "unavailable", /storage of replica r\d holds [\d.]+ MiB, at or over the group's quota of 16 MiB/);
    // Marked, so a client does not retry it (no retry mends it), and a longer Retry-After.
    expect(refused!.body.error.reason).toBe("storage_quota");
    expect(refused!.headers.get("retry-after")).toBe("10");
    const batch = await api("POST", "/v1/groups/quota-small/commands", { client: "b", commands: [{ request: 1, command: { op: "put", key: "x", value: 1 } }, { request: 2, command: { op: "delete", key: "k2" } }] }, clientToken);
    // The delete after the refused put is refused with it (order kept), for the same reason.
    expect(batch.body.results.map((r: { error?: { reason?: string } }) => r.error?.reason)).toEqual(["storage_quota", "storage_quota"]);
    expect(batch.headers.get("retry-after")).toBe("10");
    expect((await query("quota-small", { op: "get", key: "k1" })).body.result).toEqual({ value: big });
    expect((await command("quota-small", { op: "delete", key: "k1" })).body.output).toEqual({ deleted: true });
    const status = (await api("GET", "/v1/groups/quota-small")).body;
    expect(status.storageQuotaMiB).toBe(16);
    expect(Math.max(...status.replicas.map((r: { storageBytes?: number }) => r.storageBytes ?? 0))).toBeGreaterThanOrEqual(16 * 1024 * 1024);
    // Another quota for the group is a 409 (it answered 200 and changed nothing); none asked, a 200.
    expectError(await api("PUT", "/v1/groups/quota-small", { machine: "kv", storageQuotaMiB: 64 }), 409, "conflict", /storageQuotaMiB 16, not 64/);
    expect((await api("PUT", "/v1/groups/quota-small", { machine: "kv", storageQuotaMiB: 16 })).status).toBe(200);
    expect((await api("PUT", "/v1/groups/quota-small", { machine: "kv" })).status).toBe(200);
    // Out of range: a 400 naming the field.
    expectError(await api("PUT", "/v1/groups/quota-bad", { machine: "kv", storageQuotaMiB: 15 }), 400, "bad_request", /storageQuotaMiB/);
    expectError(await api("PUT", "/v1/groups/quota-bad", { machine: "kv", storageQuotaMiB: 4609 }), 400, "bad_request", /storageQuotaMiB/);
    // A group made without one has the default.
    expect((await createGroup("quota-default")).storageQuotaMiB).toBe(4096);
  });

  it("POST .../quota sets a group's quota from now on: raised, a group at its quota takes writes at once; kept across a move of its sequencer (a probe: a bank group over 64 MiB had no way out)", async () => {
    await createGroup("quota-raise", { machine: "kv", storageQuotaMiB: 16 });
    const big = "x".repeat(60_000);
    for (let i = 1, inRow = 0; i <= 600 && inRow < 3; i++) inRow = (await command("quota-raise", { op: "put", key: `k${i}`, value: big })).status === 200 ? 0 : inRow + 1;
    expectError(await command("quota-raise", { op: "put", key: "more", value: big }), 503, "unavailable", /quota of 16 MiB/);
    // Only an admin, a body that names a quota in range, a group that exists.
    expectError(await api("POST", "/v1/groups/quota-raise/quota", { storageQuotaMiB: 64 }, clientToken), 403, "forbidden", /admin/);
    expectError(await api("POST", "/v1/groups/quota-raise/quota", { storageQuotaMiB: 4609 }), 400, "bad_request", /storageQuotaMiB/);
    expectError(await api("POST", "/v1/groups/quota-raise/quota", { storageQuotaMiB: 64, other: 1 }), 400, "bad_request", /other/);
    expectError(await api("POST", "/v1/groups/quota-raise/quota", {}), 400, "bad_request", /storageQuotaMiB/);
    expectError(await api("POST", "/v1/groups/quota-none/quota", { storageQuotaMiB: 64 }), 404, "not_found", /quota-none/);
    const raised = await api("POST", "/v1/groups/quota-raise/quota", { storageQuotaMiB: 64 });
    expect(raised.status).toBe(200);
    expect(raised.body).toMatchObject({ group: "quota-raise", storageQuotaMiB: 64 });
    expect((await command("quota-raise", { op: "put", key: "more", value: big })).status).toBe(200);
    // The PUT compares the quota in force now.
    expect((await api("PUT", "/v1/groups/quota-raise", { machine: "kv", storageQuotaMiB: 64 })).status).toBe(200);
    // A successor starts from the directory's config: the new quota stays.
    expect((await api("POST", "/v1/groups/quota-raise/sequencer", {})).status).toBe(202);
    expect((await api("GET", "/v1/groups/quota-raise")).body).toMatchObject({ epoch: 2, storageQuotaMiB: 64 });
    expect((await command("quota-raise", { op: "put", key: "after-move", value: big })).status).toBe(200);
  }, 60_000);

  it("a quota whose call may have reached the sequencer is a 504 that says how to learn its outcome: it has no client and request to repeat (a probe: it said to retry with them)", async () => {
    await createGroup("quota-unsure", { machine: "kv", storageQuotaMiB: 16 });
    expect((await api("POST", "/v1/groups/quota-unsure/faults", { target: "sequencer", fault: "unreachable" })).status).toBe(200);
    const unsure = await api("POST", "/v1/groups/quota-unsure/quota", { storageQuotaMiB: 64 });
    expectError(unsure, 504, "timeout", /the setting may or may not have taken effect: send it again \(setting it twice changes nothing/);
    expect(unsure.body.error.message).not.toMatch(/client and request/);
    expect((await api("POST", "/v1/groups/quota-unsure/faults", { target: "sequencer", fault: "none" })).status).toBe(200);
    expect((await api("POST", "/v1/groups/quota-unsure/quota", { storageQuotaMiB: 64 })).body).toMatchObject({ storageQuotaMiB: 64 });
  });

  it("at the quota, deletes free space at once, without an audit: every step stores the rows, so the next answer measures it (saved in batches, it showed thousands of entries later)", async () => {
    // 32 MiB: a 60 KB value takes about four times its size on the co-located replica (the state,
    // its log, the watch's copy, the sequencer's log), so deleting every key brings it under.
    await createGroup("quota-free", { machine: "kv", storageQuotaMiB: 32 });
    const big = "x".repeat(60_000);
    let n = 0;
    while (n < 1_000 && (await command("quota-free", { op: "put", key: `k${n + 1}`, value: big })).status === 200) n++;
    expect(n).toBeLessThan(1_000);
    for (let i = 1; i <= n; i++) expect((await command("quota-free", { op: "delete", key: `k${i}` })).status).toBe(200);
    const again = await command("quota-free", { op: "put", key: "after", value: "small" });
    expect(again.status, JSON.stringify(again.body)).toBe(200);
  });

  it("a frozen copy (a transfer's source, a download's) is left out of a replica's size: it refused writes while it lasted (a review)", async () => {
    await createGroup("quota-frozen", { machine: "kv", storageQuotaMiB: 64 });
    for (let i = 0; i < 20; i++) expect((await command("quota-frozen", { op: "put", key: `k${i}`, value: "y".repeat(60_000) })).status).toBe(200);
    const sizes = await runInDurableObject(replicaObject("quota-frozen", "r2"), (inst: unknown) => {
      const host = (inst as { replica: { store: { sizeBytes(): number; snapshotRows(name?: string): number; dropSnapshot(name?: string): void }; driver: { core: { saveState(): void } } } }).replica;
      const store = host.store;
      const sql = (inst as { ctx: DurableObjectState }).ctx.storage.sql;
      host.driver.core.saveState(); // the rows stored, as a copy's maker does first
      const before = store.sizeBytes();
      store.snapshotRows("quota_test");
      const during = { reported: store.sizeBytes(), database: sql.databaseSize };
      store.dropSnapshot("quota_test");
      return { before, during, after: store.sizeBytes() };
    });
    // The copy took about the state's 1.2 MB in the file, and none of it in the size reported.
    expect(sizes.during.database - sizes.before).toBeGreaterThan(1_000_000);
    expect(Math.abs(sizes.during.reported - sizes.before)).toBeLessThan(64 * 1024);
    expect(Math.abs(sizes.after - sizes.before)).toBeLessThan(64 * 1024);
  });

  it("reads through the log keep no copy of what they read in the session table: a client's txns of gets no longer hold a group at its quota (a probe: two 7 KB batches, 28 MiB, every writer refused for the session window)", async () => {
    await createGroup("quota-reads", { machine: "kv", storageQuotaMiB: 16 });
    const big = "x".repeat(60_000);
    expect((await command("quota-reads", { op: "put", key: "v", value: big })).status).toBe(200);
    const gets = { op: "txn", success: Array.from({ length: 7 }, () => ({ op: "get", key: "v" })) };
    for (const first of [1, 33]) {
      const body = { client: "reader", commands: Array.from({ length: 32 }, (_, i) => ({ request: first + i, command: gets })) };
      const r = await api("POST", "/v1/groups/quota-reads/commands", body, clientToken);
      expect(r.status).toBe(200);
      // The first answer is whole.
      expect(r.body.results[0].output.results).toHaveLength(7);
      expect(r.body.results[0].output.results[6]).toEqual({ value: big });
    }
    const victim = await command("quota-reads", { op: "put", key: "k", value: 1 });
    expect(victim.status, JSON.stringify(victim.body)).toBe(200);
    // A retry answers the session row's marker: the command ran at its seq, its output was not kept.
    const retry = await api("POST", "/v1/groups/quota-reads/commands", { client: "reader", request: 1, command: gets }, clientToken);
    expect(retry.status).toBe(200);
    expect(retry.body.output).toMatchObject({ error: "output_not_kept", succeeded: true });
    expect(retry.body.output.chars).toBeGreaterThan(420_000);
    const status = (await api("GET", "/v1/groups/quota-reads")).body;
    expect(Math.max(...status.replicas.map((r: { storageBytes?: number }) => r.storageBytes ?? 0))).toBeLessThan(12 * 1024 * 1024);
  });

  it("a 16 MiB group of 60 KB puts fills with its data, not its log: most of the quota is values, and 20 deletes let writes in again (a probe: its 10,000 retained entries held it at the quota with no data left)", async () => {
    await createGroup("quota-log", { machine: "kv", storageQuotaMiB: 16 });
    const big = "x".repeat(60_000);
    let n = 0;
    while (n < 1_000 && (await command("quota-log", { op: "put", key: `k${n + 1}`, value: big })).status === 200) n++;
    // The log is kept to a sixteenth of the quota per object (two logs and the watch's copies in
    // the co-located one): over half of the quota holds values.
    expect(n * big.length).toBeGreaterThan(8 * 1024 * 1024);
    // Each delete frees its value's 60 KB (about 1.2 MB for 20), not the log's: the log keeps to its budget.
    for (let i = 1; i <= 20; i++) expect((await command("quota-log", { op: "delete", key: `k${i}` })).status).toBe(200);
    const again = await command("quota-log", { op: "put", key: "after", value: big });
    expect(again.status, JSON.stringify(again.body)).toBe(200);
    expect((await query("quota-log", { op: "get", key: `k${n}` })).body.result).toEqual({ value: big });
  });

  it("a restore's staged rows are left out of the co-located replica's size: a 16 MiB group restored with 9 MB took no writes until an audit (a review: the install measured it with the stage still there, 28.4 MiB)", async () => {
    await createGroup("quota-restore-src");
    const big = "x".repeat(60_000);
    for (let i = 0; i < 150; i++) expect((await command("quota-restore-src", { op: "put", key: `k${i}`, value: big })).status).toBe(200);
    const file = await (await SELF.fetch("http://smr.test/v1/groups/quota-restore-src/snapshot", { headers: { authorization: `Bearer ${adminToken}` } })).text();
    await createGroup("quota-restore", { machine: "kv", storageQuotaMiB: 16 });
    const restored = await SELF.fetch("http://smr.test/v1/groups/quota-restore/restore", { method: "POST", headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/x-ndjson" }, body: file });
    expect(restored.status, await restored.clone().text()).toBe(200);
    const sizes = (await api("GET", "/v1/groups/quota-restore")).body.replicas.map((r: { id: string; storageBytes?: number }) => [r.id, r.storageBytes]);
    // Each replica holds the 9 MB of state; the co-located one (r1) no more than the others and a few MB.
    const [r1, ...others] = sizes.map(([, bytes]: [string, number]) => bytes);
    expect(r1, JSON.stringify(sizes)).toBeLessThan(Math.max(...others) + 2 * 1024 * 1024);
    const put = await command("quota-restore", { op: "put", key: "after", value: "small" });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
  });

  it("staged rows dropped with the sequencer's tables (a fencing's wipe) are no longer left out of the co-located replica's size (they were for good: a review)", async () => {
    await createGroup("quota-wipe");
    expect((await command("quota-wipe", { op: "put", key: "a", value: 1 })).status).toBe(200);
    const seen = await runInDurableObject(replicaObject("quota-wipe", "r1"), async (inst: unknown) => {
      const o = inst as { stage: { begin(): void; add(rows: [string, string][]): void; bytes: number }; lifecycle: { host: { wipe(): Promise<void> } }; replica: { store: { sizeBytes(): number } }; ctx: DurableObjectState };
      o.stage.begin();
      o.stage.add(Array.from({ length: 400 }, (_, i) => [`k${String(i).padStart(4, "0")}`, JSON.stringify("y".repeat(10_000))] as [string, string]));
      const staged = o.stage.bytes;
      await o.lifecycle.host.wipe();
      return { staged, after: o.stage.bytes, reported: o.replica.store.sizeBytes(), database: o.ctx.storage.sql.databaseSize };
    });
    expect(seen.staged).toBeGreaterThan(3_000_000);
    expect(seen.after).toBe(0);
    expect(seen.reported).toBe(seen.database);
  });
});
