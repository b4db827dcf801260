import { SELF, env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { GroupRecord } from "../../shared/control/directory.js";
import { directoryStub } from "../../workers/env.js";
import type { SequencerObject } from "../../workers/sequencer.js";
import { adminToken, api, clientToken, command, createGroup, expectError, query } from "./helpers.js";

/**
 * Sequencer moves in a row: the named sequencer can be without state (handed over again) right
 * after withSequencer had it recover. Here its recovery answers "ok" and it still serves nothing,
 * as after such a hand-over. Every route must answer a 503 (retry) for the group that exists: a
 * probe had status, audit and log answer 200 with the body null, /replicas a 500, and adding or
 * removing a replica a 404 "no such group".
 */
/** Runs fn while the group's sequencer serves nothing (no driver, as after a hand-over) and its recovery is `recover`. */
async function withoutState(group: string, recover: () => Promise<unknown>, fn: () => Promise<void>): Promise<void> {
  const stub = env.SEQUENCER.get(env.SEQUENCER.idFromName(group));
  let saved: unknown;
  await runInDurableObject(stub, (inst: SequencerObject) => {
    const lifecycle = (inst as any).lifecycle;
    saved = lifecycle.driver;
    lifecycle.driver = null;
    lifecycle.recover = recover;
  });
  try {
    await fn();
  } finally {
    await runInDurableObject(stub, (inst: SequencerObject) => {
      const lifecycle = (inst as any).lifecycle;
      delete lifecycle.recover;
      lifecycle.driver = saved;
    });
  }
}

describe("a sequencer between a hand-over and its successor's recovery", () => {
  it("answers 503 on every route, never a 200 null, a 500 or a 404", async () => {
    await createGroup("handed", { machine: "kv" });
    await withoutState("handed", async () => ({ ok: true, epoch: 1 }), async () => {
      expectError(await api("POST", "/v1/groups/handed/audit", {}), 503, "unavailable");
      expectError(await api("GET", "/v1/groups/handed/log?from=1"), 503, "unavailable");
      expectError(await api("POST", "/v1/groups/handed/replicas", {}), 503, "unavailable");
      expectError(await api("DELETE", "/v1/groups/handed/replicas/r3"), 503, "unavailable");
      // The status and the replicas come from the replicas themselves meanwhile.
      const status = await api("GET", "/v1/groups/handed", undefined, clientToken);
      expect(status.status).toBe(200);
      expect(status.body?.replicas?.map((r: any) => r.id)).toEqual(["r1", "r2", "r3"]);
      const replicas = await api("GET", "/v1/groups/handed/replicas", undefined, clientToken);
      expect(replicas.status).toBe(200);
      expect(replicas.body.replicas.map((r: any) => r.id)).toEqual(["r1", "r2", "r3"]);
    });
    expect((await api("POST", "/v1/groups/handed/audit", {})).body.verdict).toBe("consistent");
  });
});

/**
 * A restore through a router whose cached record (routeCacheMs) is from before a move: its pages,
 * end and abort went to the old sequencer (found by that record) while withSequencer had begun the
 * restore on the new one, which then refused every command and restore as "a restore is loading"
 * for snapshotIdleMs (a review).
 */
describe("a restore through a router that has not heard of a move", () => {
  it("loads the file into the new sequencer, and the group takes commands after it", async () => {
    await createGroup("rst-src", { machine: "kv" });
    expect((await command("rst-src", { op: "put", key: "a", value: 1 })).status).toBe(200);
    const file = await (await SELF.fetch("http://smr.test/v1/groups/rst-src/snapshot", { headers: { authorization: `Bearer ${adminToken}` } })).text();
    await createGroup("rst-dst", { machine: "kv" });
    expect((await api("GET", "/v1/groups/rst-dst/events")).status).toBe(200); // this router caches the record
    // Another router moves the sequencer: this one's cache is not told.
    const directory = directoryStub(env as never, "rst-dst");
    const record = (await directory.get()) as GroupRecord;
    await env.SEQUENCER.get(env.SEQUENCER.idFromName("rst-dst")).handOver();
    const moved = { ...record.config, sequencer: { name: "rst-dst~s1", location: null, no: 1, movedAt: new Date().toISOString() } };
    expect(await directory.replaceSequencer(record.config.incarnation, 0, moved)).not.toBeNull();
    const restored = await SELF.fetch("http://smr.test/v1/groups/rst-dst/restore", { method: "POST", headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/x-ndjson" }, body: file });
    expect(restored.status, await restored.clone().text()).toBe(200);
    expect(((await restored.json()) as any).sequencer.name).toBe("rst-dst~s1");
    expect((await command("rst-dst", { op: "put", key: "b", value: 2 })).status).toBe(200);
    expect((await query("rst-dst", { op: "list" })).body.result).toEqual({ items: [["a", 1], ["b", 2]] });
  });
});

describe("a sequencer without state whose recovery hangs", () => {
  it("answers 503 once sequencerCallTimeoutMs has passed, not never", async () => {
    await createGroup("hangs", { machine: "kv" });
    await withoutState("hangs", () => new Promise(() => {}), async () => {
      expectError(await api("POST", "/v1/groups/hangs/audit", {}), 503, "unavailable", /recovery of the sequencer of hangs timed out/);
    });
  }, 60_000);
});
