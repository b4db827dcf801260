// An install's end whose answer is lost, and its retry's too: the install may have ended (the
// replica holds a verified copy, its quarantine over in its own meta). The next repair must ask
// that end again, not begin another install: a new begin empties a rebuilt replica's log, which
// then refuses every fence until caught up, and with one more replica lost no recovery can take
// office (the simulator, seed 3314, kv --replicas 3 --faults all+ --output-free 30 --watchers 2:
// r1's end and its retry dropped, a new install begun on it, r3's storage lost, no quorum to fence).
import { describe, expect, it } from "vitest";
import { directGroup, fastClock, overrideCall } from "../support/direct.js";

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

// The end asked again answers for that install only: the replica may have been judged diverged
// since (a quarantine stamped with the count that install reached), and a failed answer leaves the
// repair's sources as they were; a replica answers a past transfer's end only while no other
// install is under way (a review).
/**
 * r2 diverged and repaired; the answers to its install's end and to the retry are lost; its next
 * repairs are held (their first ask, r2's position, lost) while `hold.on`. `badPage`: the install's
 * first page reaches r2 short of a row (its end then fails its digest).
 */
async function lostEnd(badPage = false) {
  const g = directGroup(config, { entries: 10_000, slack: 1_000 }, fastClock);
  for (let i = 1; i <= 20; i++) expect((await g.driver.submit("c", i, { op: "put", key: `k${i}`, value: i })).kind).toBe("ok");
  await tick();
  g.replicas.get("r2")!.core!.saveState();
  g.stores.get("r2")!.rows.put("m/k7", JSON.stringify({ corrupted: true }));
  if (badPage) {
    let pages = 0;
    overrideCall(g.io, "r2", "installPage", (real, id, rows) => real(id, ++pages === 1 ? (rows as unknown[]).slice(1) : rows));
  }
  let lost = 0;
  const hold = { on: false };
  g.hooks.served = (id, method) => {
    if (id === "r2" && method === "endInstall" && lost < 2) {
      if (++lost === 2) hold.on = true;
      throw new Error("the answer was lost");
    }
    if (id === "r2" && method === "position" && hold.on) throw new Error("the answer was lost");
  };
  const logs: string[] = [];
  g.io.log = (_level, message) => void logs.push(message);
  g.driver.startHeartbeats();
  expect((await g.driver.audit()).replicas.find((r) => r.id === "r2")!.verdict).toBe("diverged");
  await until(() => lost === 2 && !g.driver.core.isRepairing("r2"));
  expect(g.calls.get("r2:beginInstall")).toBe(1);
  return { g, hold, logs };
}

describe("an install's end asked again at the next repair", () => {
  it("is not taken for a rebuild of a replica judged diverged after that install ended (its quarantine stamped with that install's count)", async () => {
    const { g, hold } = await lostEnd();
    expect(g.replicas.get("r2")!.core!.position().installs, "the install ended on r2").toBe(1);
    // r2's rows go bad again after its install; the audit judges it diverged at install 1, and the
    // tell of that quarantine does not reach r2 (it serves on its own word meanwhile).
    overrideCall(g.io, "r2", "setQuarantined", () => Promise.reject(new Error("r2 is cut off")));
    g.replicas.get("r2")!.core!.saveState();
    g.stores.get("r2")!.rows.put("m/k3", JSON.stringify({ corrupted: "again" }));
    expect((await g.driver.audit()).replicas.find((r) => r.id === "r2")!.verdict).toBe("diverged");
    expect(g.driver.core.quarantineStamp("r2")).toBe(1);
    hold.on = false;
    await until(() => !g.driver.core.needsRebuild("r2") && !g.driver.core.isRepairing("r2"), 8_000);
    expect(g.calls.get("r2:beginInstall"), "rebuilt by a second install: the first one's end says nothing of the damage found after it").toBe(2);
    expect((await g.driver.audit()).verdict).toBe("consistent");
    g.driver.stop();
  }, 30_000);

  it("whose install failed leaves the repair its other sources: one refusing its snapshot does not fail the repair", async () => {
    const { g, hold, logs } = await lostEnd(true);
    expect(g.replicas.get("r2")!.core!.position().installs ?? 0, "the install failed its digest on r2").toBe(0);
    // r1, the first source, cannot serve a snapshot for the next repair; r3 can.
    let refused = 0;
    overrideCall(g.io, "r1", "beginSnapshot", (real) => (refused++ === 0 ? Promise.resolve(null) : real()));
    const failedBefore = logs.filter((m) => /repair of g\/r2 failed/.test(m)).length;
    hold.on = false;
    await until(() => refused > 0 && !g.driver.core.isRepairing("r2"), 8_000);
    expect(logs.filter((m) => /repair of g\/r2 failed/.test(m)).slice(failedBefore), "r1's refusal left r3 its chance").toEqual([]);
    expect(g.driver.core.needsRebuild("r2")).toBe(false);
    g.driver.stop();
  }, 30_000);
});

describe("an install's end asked again", () => {
  it("is not answered ok once another install has begun on the replica", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 }, fastClock);
    for (let i = 1; i <= 10; i++) expect((await g.driver.submit("c", i, { op: "put", key: `k${i}`, value: i })).kind).toBe("ok");
    await tick();
    const src = g.link("r1");
    const dst = g.link("r2");
    const info = (await src.beginSnapshot())!;
    const rows: [string, string][] = [];
    for (let after: string | null = null; ; ) {
      const page: [string, string][] = (await src.snapshotPage(info.seq, after, 1 << 20))!;
      if (page.length === 0) break;
      rows.push(...page);
      after = page[page.length - 1]![0];
    }
    await src.endSnapshot();
    expect(await dst.beginInstall(info, "t1", 1)).toBe(true);
    expect(await dst.installPage("t1", rows)).toBe(true);
    expect((await dst.endInstall("t1"))?.ok).toBe(true);
    expect((await dst.endInstall("t1"))?.ok, "asked again, its outcome").toBe(true);
    // Another transfer begins (its rows not all there yet): r2 holds none of t1's state now.
    expect(await dst.beginInstall(info, "t2", 1)).toBe(true);
    expect((await dst.endInstall("t1"))?.ok, "t1's end while t2 is under way").toBe(false);
    g.driver.stop();
  }, 30_000);
});
