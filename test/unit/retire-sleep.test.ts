// A removed replica's destroy that fails is tried again at the heartbeats. quiet() meant it to keep
// an idle group awake, but each heartbeat emptied retireAgain before its try, whose failure came
// after the heartbeat had put the group to sleep: asleep, nothing tried it again, and the removed
// replica kept its whole state until client work woke the group (a probe). Now it keeps the group
// awake for retireAwakeMs at most (one that never answers must not keep it awake for good), and
// asleep it is tried at each audit (the cron's, once a day) and at the wake.
import { describe, expect, it } from "vitest";
import { heartbeatMs, retireAwakeMs } from "../../shared/limits.js";
import type { DriverIO } from "../../shared/protocol/io.js";
import { directGroup, fastClock } from "../support/direct.js";

const config = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "majority" as const, checkpointEvery: 50 };
/** Real milliseconds for virtual ones under fastClock (50 times faster). */
const pause = (virtualMs: number) => new Promise((r) => setTimeout(r, virtualMs / 50));
const sleepAfterMs = 3_000;

async function until(what: string, ok: () => boolean, virtualMs = 30_000): Promise<void> {
  const endMs = fastClock.nowMs() + virtualMs;
  while (!ok()) {
    if (fastClock.nowMs() > endMs) throw new Error(`not ${what} within ${virtualMs} ms`);
    await pause(100);
  }
}

/** A group that sleeps after sleepAfterMs, whose removed replicas' destroys fail while `unreachable` names them. */
async function groupWithFailingDestroys() {
  const g = directGroup(config, { entries: 10_000, slack: 1_000 }, fastClock);
  const unreachable = new Set<string>();
  const tries: string[] = [];
  Object.assign(g.io as DriverIO, {
    sleepAfterMs,
    retire: async (id: string) => {
      tries.push(id);
      if (unreachable.has(id)) throw new Error(`injected: ${id} is unreachable`);
      g.retired.push(id);
    },
  });
  g.driver.startHeartbeats();
  expect((await g.driver.submit("c", 1, { op: "put", key: "a", value: 1 })).kind).toBe("ok");
  return { ...g, unreachable, tries };
}

describe("a removed replica whose destroy fails, and the group's sleep", () => {
  it("keeps the idle group awake, tried at each heartbeat, and lets it sleep once destroyed", async () => {
    const g = await groupWithFailingDestroys();
    g.unreachable.add("r3");
    expect(await g.driver.removeReplica("r3")).toEqual({ ok: true });
    await pause(4 * sleepAfterMs);
    expect(g.driver.asleepSinceMs, "asleep with r3's destroy owed").toBeNull();
    expect(g.tries.length).toBeGreaterThan((4 * sleepAfterMs) / heartbeatMs / 2);
    g.unreachable.delete("r3");
    await until("r3 destroyed", () => g.retired.includes("r3"));
    await until("asleep once it is", () => g.driver.asleepSinceMs !== null);
    expect(g.retired).toEqual(["r3"]);
    g.driver.stop();
  }, 30_000);

  it("not for good: past retireAwakeMs it sleeps; asleep the destroy is tried at each audit and at the wake", async () => {
    const g = await groupWithFailingDestroys();
    g.unreachable.add("r3");
    const removedMs = fastClock.nowMs();
    expect(await g.driver.removeReplica("r3")).toEqual({ ok: true });
    await until("asleep", () => g.driver.asleepSinceMs !== null, retireAwakeMs + 4 * sleepAfterMs);
    expect(g.driver.asleepSinceMs! - removedMs).toBeGreaterThanOrEqual(retireAwakeMs);
    await pause(2 * heartbeatMs); // a try begun at the last heartbeat has failed
    const tried = g.tries.length;
    await pause(10 * heartbeatMs);
    expect(g.tries.length, "tried while asleep with no call").toBe(tried);
    // The cron's audit of an asleep group tries it again, and leaves the group asleep.
    expect((await g.driver.audit()).verdict).toBe("consistent");
    expect(g.tries.length).toBe(tried + 1);
    expect(g.driver.asleepSinceMs).not.toBeNull();
    // Client work wakes the group: its heartbeats try it again, and it is destroyed once it answers.
    g.unreachable.delete("r3");
    expect((await g.driver.submit("c", 2, { op: "put", key: "b", value: 2 })).kind).toBe("ok");
    await until("r3 destroyed", () => g.retired.includes("r3"));
    expect(g.retired).toEqual(["r3"]);
    g.driver.stop();
  }, 30_000);

  it("asleep, an audit destroys one that answers again", async () => {
    const g = await groupWithFailingDestroys();
    g.unreachable.add("r3");
    expect(await g.driver.removeReplica("r3")).toEqual({ ok: true });
    await until("asleep", () => g.driver.asleepSinceMs !== null, retireAwakeMs + 4 * sleepAfterMs);
    g.unreachable.delete("r3");
    await pause(4 * heartbeatMs);
    expect(g.retired).toEqual([]);
    expect((await g.driver.audit()).verdict).toBe("consistent");
    await until("r3 destroyed", () => g.retired.includes("r3"), 2 * heartbeatMs);
    expect(g.driver.asleepSinceMs).not.toBeNull();
    g.driver.stop();
  }, 30_000);
});

describe("a start's leftover destroy and the group's sleep", () => {
  it("keeps the idle group awake while the list is read, then while its destroy is owed (a review: asleep while the read was on its way, nothing was owed)", async () => {
    const g = directGroup({ ...config, lastReplicaNo: 4 }, { entries: 10_000, slack: 1_000 }, fastClock);
    const tries: number[] = [];
    let asleepAt: number | null = null;
    Object.assign(g.io as DriverIO, {
      sleepAfterMs: 1_000,
      // The directory's list takes 4 s to come (a slow directory); r4's object does not answer.
      leftovers: () => new Promise<string[]>((r) => fastClock.setTimer(4_000, () => r(["r4"]))),
      retire: async () => {
        tries.push(fastClock.nowMs());
        throw new Error("injected: r4 is unreachable");
      },
      onSleep: (since: number | null) => void (asleepAt = since === null ? null : fastClock.nowMs()),
    });
    g.driver.holdChanges();
    g.driver.startHeartbeats();
    const startMs = fastClock.nowMs();
    g.driver.settleStart(null, [], 0);
    await pause(retireAwakeMs / 2);
    expect(tries.length, "r4's destroy tried").toBeGreaterThan(0);
    expect(asleepAt, "asleep with r4's destroy owed since its start").toBeNull();
    expect(tries.length, "tried at the heartbeats").toBeGreaterThan((retireAwakeMs / 2 - 5_000) / heartbeatMs / 2);
    expect(fastClock.nowMs() - startMs).toBeLessThan(retireAwakeMs);
    g.driver.stop();
  }, 30_000);
});
