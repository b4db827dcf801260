// Sessions that expire (GroupConfig.sessionIdleMs, `sessionIdleSeconds` in the PUT body): a
// client idle past the group's window is forgotten on every replica.
import { SELF, env, runInDurableObject } from "cloudflare:test";
import type { ReplicaObject } from "../../workers/replica.js";
import { describe, expect, it } from "vitest";
import { directoryClient } from "../../workers/directory.js";
import { adminToken, api, command, createGroup, expectError, replicaObject, replicaStatuses, waitFor } from "./helpers.js";

describe("sessions that expire", () => {
  it("a new group has the default window (a day: 7 days of one-shot clients' rows filled the default quota, a probe), shown in its status; the PUT body may set another", async () => {
    await createGroup("sess-default");
    expect((await api("GET", "/v1/groups/sess-default")).body.sessionIdleSeconds).toBe(24 * 3600);
    await createGroup("sess-day", { machine: "kv", sessionIdleSeconds: 3_600 });
    expect((await api("GET", "/v1/groups/sess-day")).body.sessionIdleSeconds).toBe(3_600);
    const bad = await api("PUT", "/v1/groups/sess-bad", { machine: "kv", sessionIdleSeconds: 0 });
    expectError(bad, 400, "bad_request", /sessionIdleSeconds/);
    // A PUT again: the same window, or none named, finds the group; another is a 409 (it answered
    // 200 and changed nothing: an upgrade probe).
    expect((await api("PUT", "/v1/groups/sess-day", { machine: "kv", sessionIdleSeconds: 3_600 })).status).toBe(200);
    expect((await api("PUT", "/v1/groups/sess-day", { machine: "kv" })).status).toBe(200);
    expectError(await api("PUT", "/v1/groups/sess-day", { machine: "kv", sessionIdleSeconds: 60 }), 409, "conflict", /^group sess-day exists with another config: sessionIdleSeconds 3600, not 60 \(a group's session window is set when it is created\)/);
    expect((await api("GET", "/v1/groups/sess-day")).body.sessionIdleSeconds).toBe(3_600);
  });

  it("forgets a client idle past the window: its retry then finds nothing remembered (409, never run twice), while an active client's retry is answered", async () => {
    await createGroup("sess-short", { machine: "kv", sessionIdleSeconds: 1 });
    expect((await command("sess-short", { op: "incr", key: "n", by: 1 }, "idle", 1)).body.output).toEqual({ value: 1 });
    // Remembered within the window.
    const again = await command("sess-short", { op: "incr", key: "n", by: 1 }, "idle", 1);
    expect(again.status).toBe(200);
    expect(again.body.output).toEqual({ value: 1 });
    await new Promise((r) => setTimeout(r, 1_400));
    // Another client's command, past the window, forgets the idle one on every replica.
    expect((await command("sess-short", { op: "incr", key: "n", by: 10 }, "active", 1)).body.output).toEqual({ value: 11 });
    expect((await command("sess-short", { op: "incr", key: "n", by: 10 }, "active", 1)).body.output).toEqual({ value: 11 });
    // The sequencer knows idle/1 was ordered; its output is gone: a conflict, not a second run.
    expectError(await command("sess-short", { op: "incr", key: "n", by: 1 }, "idle", 1), 409, "conflict", /may have run already/);
    const n = await command("sess-short", { op: "get", key: "n" }, "active", 2);
    expect(n.body.output).toEqual({ value: 11 });
    // Every replica forgot alike (equal digests at the same position).
    await waitFor("every replica at the last seq", async () => Object.values(await replicaStatuses("sess-short")).every((r: any) => r.appliedSeq === n.body.seq), 50);
    const replicas = Object.values(await replicaStatuses("sess-short"));
    expect(new Set(replicas.map((r: any) => r.digest)).size).toBe(1);
  });
});

describe("how big a replica is", () => {
  it("each replica's state rows and storage bytes, from the last audit, in its status and the metrics: one-shot clients' sessions go once the window has passed", async () => {
    await createGroup("sess-size", { machine: "kv", sessionIdleSeconds: 1 });
    for (let c = 0; c < 30; c++) expect((await command("sess-size", { op: "put", key: `k${c % 3}`, value: "v".repeat(200) }, `once-${c}`, 1)).status).toBe(200);
    const rowsOf = async (seq: number) => {
      // Every replica at the last seq first: one a commit behind counts its rows there.
      await waitFor(`every replica at seq ${seq}`, async () => Object.values(await replicaStatuses("sess-size")).every((r: any) => r.appliedSeq === seq), 50);
      expect((await api("POST", "/v1/groups/sess-size/audit")).body.verdict).toBe("consistent");
      return Object.values(await replicaStatuses("sess-size")) as any[];
    };
    const before = await rowsOf(30);
    // Three machine rows, and per client a book, a session row and an index row.
    expect(before.map((r) => r.stateRows)).toEqual([93, 93, 93]);
    for (const r of before) expect(r.storageBytes).toBeGreaterThan(0);
    const scrape = await (await SELF.fetch("http://smr.test/v1/metrics?group=sess-size", { headers: { authorization: `Bearer ${adminToken}` } })).text();
    expect(scrape).toMatch(/^smr_replica_state_rows\{group="sess-size",replica="r2"\} 93$/m);
    expect(scrape).toMatch(/^smr_replica_storage_bytes\{group="sess-size",replica="r2"\} \d+$/m);
    await new Promise((r) => setTimeout(r, 1_400));
    // The next command forgets at most 64 rows; a few more finish the thirty.
    for (let r = 1; r <= 3; r++) expect((await command("sess-size", { op: "get", key: "k0" }, "later", r)).status).toBe(200);
    const after = await rowsOf(33);
    // The three machine rows and the later client's book, index row and three sessions.
    expect(after.map((r) => r.stateRows)).toEqual([8, 8, 8]);
  });
});

describe("a replica's session window", () => {
  it("is part of its identity: an init asking for another window is refused (it would forget other clients than its group's)", async () => {
    await createGroup("sess-ident", { machine: "kv", sessionIdleSeconds: 60 });
    const record = await directoryClient(env.DIRECTORY.get(env.DIRECTORY.idFromName("sess-ident")) as never).get();
    const r2 = replicaObject("sess-ident", "r2");
    const init = { group: "sess-ident", incarnation: record!.config.incarnation, id: "r2", machine: "kv" as const, checkpointEvery: 100, sessionOutputFreeChars: record!.config.sessionOutputFreeChars };
    // Inside the object (an RPC's rejection is also reported as uncaught by workerd here).
    const initWith = (sessionIdleMs?: number) =>
      runInDurableObject(r2, (inst: ReplicaObject) =>
        (inst as unknown as { replica: { init(c: unknown): Promise<unknown> } }).replica.init({ ...init, ...(sessionIdleMs === undefined ? {} : { sessionIdleMs }) }).then(
          (p) => ({ ok: p }),
          (err: Error) => ({ refused: err.message }),
        ),
      );
    expect(await initWith(60_000)).toMatchObject({ ok: { appliedSeq: expect.any(Number) } });
    expect(await initWith()).toEqual({ refused: expect.stringMatching(/session window 60000 ms, asked for none/) });
    expect(await initWith(1_000)).toEqual({ refused: expect.stringMatching(/session window 60000 ms, asked for 1000/) });
    // So is what its session rows keep of an output (a replica keeping more would diverge).
    expect(record!.config.sessionOutputFreeChars).toBe(1024);
    const keepingAll = await runInDurableObject(r2, (inst: ReplicaObject) =>
      (inst as unknown as { replica: { init(c: unknown): Promise<unknown> } }).replica.init({ ...init, sessionIdleMs: 60_000, sessionOutputFreeChars: undefined }).then(
        (p) => ({ ok: p }),
        (err: Error) => ({ refused: err.message }),
      ),
    );
    expect(keepingAll).toEqual({ refused: expect.stringMatching(/keeps outputs up to 1024 characters past their command, asked for any/) });
  });
});
