import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { SequencerObject } from "../../workers/sequencer.js";
import { api, clientToken, createGroup, expectError } from "./helpers.js";

/**
 * Sequencer moves in a row: the named sequencer can be without state (handed over again) right
 * after withSequencer had it recover. Here its recovery answers "ok" and it still serves nothing,
 * as after such a hand-over. Every route must answer a 503 (retry) for the group that exists: a
 * probe had status, audit and log answer 200 with the body null, /replicas a 500, and adding or
 * removing a replica a 404 "no such group".
 */
describe("a sequencer between a hand-over and its successor's recovery", () => {
  it("answers 503 on every route, never a 200 null, a 500 or a 404", async () => {
    await createGroup("handed", { machine: "kv" });
    const stub = env.SEQUENCER.get(env.SEQUENCER.idFromName("handed"));
    let saved: unknown;
    await runInDurableObject(stub, (inst: SequencerObject) => {
      const lifecycle = (inst as any).lifecycle;
      saved = lifecycle.driver;
      lifecycle.driver = null;
      lifecycle.recover = async () => ({ ok: true, epoch: 1 });
    });
    try {
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
    } finally {
      await runInDurableObject(stub, (inst: SequencerObject) => {
        const lifecycle = (inst as any).lifecycle;
        delete lifecycle.recover;
        lifecycle.driver = saved;
      });
    }
    expect((await api("POST", "/v1/groups/handed/audit", {})).body.verdict).toBe("consistent");
  });
});
