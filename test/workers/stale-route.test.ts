// A router's cached route may name a life of the group that ended: another router deleted the
// group and created it again within routeCacheMs. A write through it is ordered by the new life
// (the sequencer's object is named like the group in both), so its bookmark must name that life:
// named after the route, a sequential read with it was a 400 "an earlier life" (a review).
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { decodeBookmark } from "../../shared/api/bookmark.js";
import { createGroupBody, groupConfigFrom } from "../../shared/api/schemas.js";
import { directoryStub, registryStub, sequencerStub } from "../../workers/env.js";
import { command, createGroup, query } from "./helpers.js";

/** Another router's delete and creation, through the objects: this router's cached record stays. */
async function recreateElsewhere(group: string): Promise<number> {
  const dir = directoryStub(env as never, group);
  const old = (await dir.get()) as any;
  await dir.setState(old.config.incarnation, "deleting");
  expect(await sequencerStub(env as never, group).destroy(group, old.config.incarnation, old.config.lastReplicaNo ?? old.config.replicas, old.config.colocated)).toBe(true);
  await registryStub(env as never).remove(group, old.config.incarnation);
  await dir.setState(old.config.incarnation, "deleted");
  const created = (await dir.create(groupConfigFrom(group, createGroupBody.parse({ machine: "kv" })), new Date().toISOString())) as any;
  const incarnation = created.record.config.incarnation;
  expect(((await sequencerStub(env as never, group).init(created.record.config)) as any).kind).not.toBe("conflict");
  await registryStub(env as never).add(group, incarnation);
  expect(await dir.setState(incarnation, "ready")).toBe(true);
  return incarnation;
}

describe("a write through a route of a life that ended", () => {
  it("gets a bookmark of the life that ordered it, which a sequential read then serves", async () => {
    await createGroup("stale-route");
    expect((await command("stale-route", { op: "put", key: "a", value: 1 })).status).toBe(200); // the route cached: life 1
    expect(await recreateElsewhere("stale-route")).toBe(2);
    const w = await command("stale-route", { op: "put", key: "k", value: "new life" });
    expect(w.status).toBe(200);
    expect(decodeBookmark(w.body.bookmark)?.life?.incarnation).toBe(2);
    const r = await query("stale-route", { op: "get", key: "k" }, "sequential", w.body.bookmark);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
  });
});
