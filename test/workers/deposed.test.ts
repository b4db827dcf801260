// A deposed sequencer that is neither the group's current one nor the object named like the group
// (a `~sK` between a move and a failover). Cut off while the group was deleted, it kept its log and
// its send loops (a probe: about 90 s of loops, and the storage of a deleted group left behind);
// once it hears it is no longer in office, it stops and wipes what it holds. One evicted while cut
// off never heard (no call reached it again, a later probe): the DELETE destroys every earlier
// sequencer now, and answers 503 until it can.
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { sequencerTimeoutMs } from "../../shared/limits.js";
import type { SequencerObject } from "../../workers/sequencer.js";
import { api, clientToken, command, createGroup } from "./helpers.js";

const sequencerAt = (name: string) => env.SEQUENCER.get(env.SEQUENCER.idFromName(name));
const holds = (name: string) =>
  runInDurableObject(sequencerAt(name), async (inst: SequencerObject, state) => ({
    serving: (inst as any).lifecycle.driver !== null,
    tables: state.storage.sql.exec("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").one().n as number,
  }));

describe("a deposed sequencer cut off while its group is deleted", () => {
  it("keeps the DELETE at 503 until it is reached, then is destroyed before the 204", async () => {
    await createGroup("wdep", { machine: "kv", replicas: 3 });
    expect((await api("POST", "/v1/groups/wdep/sequencer", { location: "weur" })).status).toBe(202);
    for (let i = 1; i <= 3; i++) expect((await command("wdep", { op: "put", key: `k${i}`, value: i }, "w", i)).status).toBe(200);
    expect((await api("GET", "/v1/groups/wdep", undefined, clientToken)).body.sequencer.name).toBe("wdep~s1");
    await api("POST", "/v1/groups/wdep/faults", { target: "sequencer", fault: "unreachable" });
    const cutAt = Date.now();
    let status = 0;
    while (status !== 200 && Date.now() - cutAt < sequencerTimeoutMs + 20_000) {
      status = (await command("wdep", { op: "put", key: "k4", value: 4 }, "w", 4)).status;
      if (status !== 200) await new Promise((r) => setTimeout(r, 250));
    }
    expect(status).toBe(200);
    expect((await api("GET", "/v1/groups/wdep", undefined, clientToken)).body.sequencer.name).toBe("wdep~s2");
    expect(await holds("wdep~s1")).toMatchObject({ serving: true });
    // The DELETE cannot reach wdep~s1: not a 204 while it holds the group's log.
    const refused = await api("DELETE", "/v1/groups/wdep");
    expect(refused.status).toBe(503);
    expect(refused.body.error.message).toMatch(/being deleted, but not every one of its objects can be reached/);
    expect(await holds("wdep~s1")).toMatchObject({ serving: true });
    // Reached again, it is destroyed by the DELETE itself, before the 204.
    await api("POST", "/v1/groups/wdep/faults", { target: "sequencer", fault: "none" });
    expect((await api("DELETE", "/v1/groups/wdep")).status).toBe(204);
    expect(await holds("wdep~s1")).toEqual({ serving: false, tables: 0 });
  }, 60_000);
});
