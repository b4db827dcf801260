// An install's end whose answer is lost, and its retry's too: the install may have ended (the
// replica holds a verified copy, its quarantine over in its own meta). The next repair must ask
// that end again, not begin another install: a new begin empties a rebuilt replica's log, which
// then refuses every fence until caught up, and with one more replica lost no recovery can take
// office (the simulator, seed 3314, kv --replicas 3 --faults all+ --output-free 30 --watchers 2:
// r1's end and its retry dropped, a new install begun on it, r3's storage lost, no quorum to fence).
import { describe, expect, it } from "vitest";
import { directGroup, fastClock } from "../support/direct.js";

const config = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "first" as const, checkpointEvery: 50 };
const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));

async function until(ok: () => boolean, ms = 3_000) {
  for (let waited = 0; waited < ms && !ok(); waited += 20) await tick();
}

describe("a rebuild whose install's end went unanswered", () => {
  it("asks that end again at the next repair: the replica, rebuilt already, is not emptied by a second install", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 }, fastClock);
    for (let i = 1; i <= 20; i++) expect((await g.driver.submit("c", i, { op: "put", key: `k${i}`, value: i })).kind).toBe("ok");
    await tick();
    // r2's rows go bad behind its digest; the audit finds it diverged and its repair rebuilds it.
    g.replicas.get("r2")!.core!.saveState();
    g.stores.get("r2")!.rows.put("m/k7", JSON.stringify({ corrupted: true }));
    // The install ends on r2, but the answers to its end (the call and its retry) are lost.
    let lost = 0;
    g.hooks.served = (id, method) => {
      if (id === "r2" && method === "endInstall" && lost < 2) {
        lost++;
        throw new Error("the answer was lost");
      }
    };
    g.driver.startHeartbeats();
    expect((await g.driver.audit()).replicas.find((r) => r.id === "r2")!.verdict).toBe("diverged");
    await until(() => lost === 2);
    // Ended on r2 (a verified copy); the sequencer retries the repair after a pause: it must find
    // the end, not begin again.
    await until(() => g.driver.core.quarantinedIds().length === 0 && !g.driver.core.needsRebuild("r2"), 5_000);
    expect(g.driver.core.quarantinedIds()).toEqual([]);
    expect(g.driver.core.needsRebuild("r2")).toBe(false);
    expect(g.calls.get("r2:beginInstall"), "one install, not a second that empties the rebuilt replica").toBe(1);
    expect(g.replicas.get("r2")!.core!.position().installs).toBe(1);
    // It votes and serves again: the next writes reach it.
    for (let i = 21; i <= 25; i++) expect((await g.driver.submit("c", i, { op: "put", key: `k${i}`, value: i })).kind).toBe("ok");
    await until(() => g.replicas.get("r2")!.core!.position().appliedSeq === g.driver.core.lastLogSeq);
    expect(g.replicas.get("r2")!.core!.position().appliedSeq).toBe(g.driver.core.lastLogSeq);
    expect((await g.driver.audit()).verdict).toBe("consistent");
    g.driver.stop();
  }, 30_000);
});
