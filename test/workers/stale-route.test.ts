// A router's cached route may name a life of the group that ended: another router deleted the
// group and created it again within routeCacheMs. The group's first sequencer is named like the
// group in both lives, so a write through that route reached the new life and ran there, validated
// for the old life's machine (a review: a kv put ordered in a bank group). It is refused as
// deleted now, and the route looked up again; the write sent again runs in the new life, and its
// bookmark names that life (named after the route, a read with it was a 400: a review).
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { decodeBookmark } from "../../shared/api/bookmark.js";
import { createGroupBody, groupConfigFrom } from "../../shared/api/schemas.js";
import { directoryStub, registryStub, sequencerStub } from "../../workers/env.js";
import { command, createGroup, expectError, query } from "./helpers.js";

/** Another router's delete and creation, through the objects: this router's cached record stays. */
async function recreateElsewhere(group: string): Promise<number> {
  const dir = directoryStub(env as never, group);
  const old = (await dir.get()) as any;
  await dir.setState(old.config.incarnation, "deleting");
  expect(await sequencerStub(env as never, group).destroy(group, old.config.incarnation, old.config.lastReplicaNo ?? old.config.replicas, old.config.colocated)).toBe(true);
  await registryStub(env as never).remove(group, old.config.incarnation);
  await dir.setState(old.config.incarnation, "deleted");
  const created = (await dir.create(groupConfigFrom(group, createGroupBody.parse({ machine: "bank" })), new Date().toISOString())) as any;
  const incarnation = created.record.config.incarnation;
  expect(((await sequencerStub(env as never, group).init(created.record.config)) as any).kind).not.toBe("conflict");
  await registryStub(env as never).add(group, incarnation);
  expect(await dir.setState(incarnation, "ready")).toBe(true);
  return incarnation;
}

describe("a write through a route of a life that ended", () => {
  it("is refused as deleted, not run in the group created again; sent again, it is checked and run there", async () => {
    await createGroup("stale-route");
    expect((await command("stale-route", { op: "put", key: "a", value: 1 })).status).toBe(200); // the route cached: life 1 (kv)
    expect(await recreateElsewhere("stale-route")).toBe(2); // life 2 (bank)
    const stale = await command("stale-route", { op: "put", key: "k", value: "old life" });
    expectError(stale, 404, "not_found", /deleted and created again since this command was sent; it was not run/);
    // The route was looked up again: a kv put is checked against the bank machine now.
    expectError(await command("stale-route", { op: "put", key: "k", value: "old life" }), 400, "bad_request");
    const w = await command("stale-route", { op: "open", account: "alice", balance: 5 });
    expect(w.status, JSON.stringify(w.body)).toBe(200);
    expect(w.body.seq).toBe(1); // the stale put was not ordered
    expect(decodeBookmark(w.body.bookmark)?.life?.incarnation).toBe(2);
    const r = await query("stale-route", { op: "balances" }, "sequential", w.body.bookmark);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(JSON.stringify(r.body.result)).toContain("alice");
  });
});
