// A deposed sequencer that is neither the group's current one nor the object named like the group
// (a `~sK` between a move and a failover) is not destroyed by the group's DELETE, which destroys
// only those two. Cut off while the group was deleted, it kept its log and its send loops (a
// probe: about 90 s of loops, and the storage of a deleted group left behind). Once it hears it
// is no longer in office, it stops and wipes what it holds.
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { sequencerTimeoutMs } from "../../shared/limits.js";
import type { SequencerObject } from "../../workers/sequencer.js";
import { api, clientToken, command, createGroup, waitFor } from "./helpers.js";

const sequencerAt = (name: string) => env.SEQUENCER.get(env.SEQUENCER.idFromName(name));
const holds = (name: string) =>
  runInDurableObject(sequencerAt(name), async (inst: SequencerObject, state) => ({
    serving: (inst as any).lifecycle.driver !== null,
    tables: state.storage.sql.exec("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").one().n as number,
  }));

describe("a deposed sequencer cut off while its group is deleted", () => {
  it("stops and wipes its storage once it can hear that it is out of office", async () => {
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
    // The DELETE destroys wdep~s2 and wdep, and clears the group's faults: wdep~s1 is heard again.
    expect((await api("DELETE", "/v1/groups/wdep")).status).toBe(204);
    await waitFor("the deposed sequencer to stop and wipe", async () => {
      const h = await holds("wdep~s1");
      return !h.serving && h.tables === 0;
    }, 250);
  }, 60_000);
});
