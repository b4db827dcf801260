// Idle groups sleep (docs/PROTOCOL.md, "Idle groups sleep"): after SLEEP_AFTER_SECONDS without
// client work the sequencer tells its replicas and stops its heartbeats; the status says so, and a
// write wakes it. A sleeping group whose sequencer is unreachable still fails over.
import { describe, expect, it } from "vitest";
import { SELF, env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { sequencerTimeoutMs } from "../../shared/limits.js";
import { adminToken, api, clientToken, command, createGroup, query, replicaObject, waitFor } from "./helpers.js";

/** The group's first sequencer object. */
const sequencer = (group: string) => env.SEQUENCER.get(env.SEQUENCER.idFromName(group));
/** Runs fn in the object with its instance untyped (its private fields are what a test reads). */
const inObject = <T>(stub: unknown, fn: (o: any) => T): Promise<T> => runInDurableObject(stub as DurableObjectStub, (o: unknown) => fn(o)) as Promise<T>;

/** Sets the running driver's sleepAfterMs (the var is read at its start: 300 s in the tests). */
async function sleepAfter(group: string, ms: number): Promise<void> {
  await inObject(sequencer(group), (o) => void (o.lifecycle.driver.io.sleepAfterMs = ms));
}

/** Append messages the sequencer has sent (heartbeats included), and what its replica r2 recorded. */
async function appendsSent(group: string): Promise<number> {
  return inObject(sequencer(group), (o) => [...o.lifecycle.driver.counts.appends.values()].reduce((a: number, b: number) => a + b, 0));
}
async function asleepAt(group: string, id: string): Promise<number | undefined> {
  return inObject(replicaObject(group, id), (o) => o.replica.driver.core.config.asleepSinceMs);
}

/** What the registry holds for the cron: since when the group sleeps (null: awake). */
async function registryAsleep(group: string): Promise<number | null | undefined> {
  const registry = env.REGISTRY.get(env.REGISTRY.idFromName("registry"));
  return inObject(registry, (o) => o.ctx.storage.sql.exec("SELECT asleep_since_ms FROM names WHERE name = ?", group).toArray()[0]?.asleep_since_ms);
}

/** When the registry's kept figures of the group were asked (null: none kept). */
async function keptAt(group: string): Promise<number | null> {
  const registry = env.REGISTRY.get(env.REGISTRY.idFromName("registry"));
  return inObject(registry, (o) => o.ctx.storage.sql.exec("SELECT kept_ms FROM names WHERE name = ?", group).toArray()[0]?.kept_ms ?? null);
}

const status = async (group: string) => (await api("GET", `/v1/groups/${group}`, undefined, clientToken)).body;

describe("idle groups sleep (workerd)", () => {
  it("an awake sequencer sets an alarm for when its sleep is due, and its alarm runs (a probe: evicted before its sleep under wrangler dev, nothing started it again)", async () => {
    await createGroup("zz-alarm", { machine: "kv", replicas: 3 });
    const beforeMs = Date.now();
    expect((await command("zz-alarm", { op: "put", key: "a", value: 1 }, "w", 1)).status).toBe(200);
    await waitFor("an alarm set", async () => (await inObject(sequencer("zz-alarm"), (o) => o.ctx.storage.getAlarm())) !== null, 10);
    const atMs = (await inObject(sequencer("zz-alarm"), (o) => o.ctx.storage.getAlarm())) as number;
    // 300 s in the tests (the var), from the last client work, plus a heartbeat.
    expect(atMs - beforeMs).toBeGreaterThanOrEqual(300_000);
    expect(atMs - beforeMs).toBeLessThan(300_000 + 10_000);
    expect(await runDurableObjectAlarm(sequencer("zz-alarm"))).toBe(true);
    expect((await command("zz-alarm", { op: "put", key: "b", value: 2 }, "w", 2)).status).toBe(200);
    // A sequencer that handed over (its object keeps serving r1) is not started again by it.
    await createGroup("zz-alarm-moved", { machine: "kv", replicas: 3 });
    expect((await command("zz-alarm-moved", { op: "put", key: "a", value: 1 }, "w", 1)).status).toBe(200);
    await waitFor("an alarm set", async () => (await inObject(sequencer("zz-alarm-moved"), (o) => o.ctx.storage.getAlarm())) !== null, 10);
    expect((await api("POST", "/v1/groups/zz-alarm-moved/sequencer", {})).status).toBe(202);
    expect(await inObject(sequencer("zz-alarm-moved"), (o) => o.ctx.storage.getAlarm())).toBeNull();
  });


  it("stops the heartbeats of an idle group, says so, and wakes for a write", async () => {
    await createGroup("zzz", { machine: "kv", replicas: 3 });
    expect((await command("zzz", { op: "put", key: "a", value: 1 }, "w", 1)).status).toBe(200);
    expect((await status("zzz")).sequencer.asleepSince).toBeUndefined();
    await sleepAfter("zzz", 1_000);
    await waitFor("the group asleep", async () => (await status("zzz")).sequencer.asleepSince !== undefined, 200);
    const since = Date.parse((await status("zzz")).sequencer.asleepSince);
    expect(Date.now() - since).toBeLessThan(10_000);
    expect(await asleepAt("zzz", "r2")).toBeDefined();
    await waitFor("the registry told", async () => (await registryAsleep("zzz")) === since, 100);
    const sent = await appendsSent("zzz");
    await new Promise((r) => setTimeout(r, 2_500));
    expect(await appendsSent("zzz")).toBe(sent); // not one heartbeat in 2.5 s
    // A sequential read is served by a replica alone, and leaves the group asleep; a linearizable
    // one asks the sequencer (ReadIndex), which wakes it.
    expect((await query("zzz", { op: "get", key: "a" }, "sequential")).body.result).toEqual({ value: 1 });
    expect((await status("zzz")).sequencer.asleepSince).toBeDefined();
    expect((await query("zzz", { op: "get", key: "a" }, "linearizable")).body.result).toEqual({ value: 1 });
    expect((await status("zzz")).sequencer.asleepSince).toBeUndefined();
    await waitFor("the group asleep again", async () => (await status("zzz")).sequencer.asleepSince !== undefined, 200);

    expect((await command("zzz", { op: "put", key: "b", value: 2 }, "w", 2)).status).toBe(200);
    expect((await status("zzz")).sequencer.asleepSince).toBeUndefined();
    expect(await asleepAt("zzz", "r2")).toBeUndefined();
    await waitFor("the registry told it woke", async () => (await registryAsleep("zzz")) === null, 100);
    const woke = await appendsSent("zzz");
    await new Promise((r) => setTimeout(r, 2_500));
    expect(await appendsSent("zzz")).toBeGreaterThan(woke); // heartbeats again
  }, 30_000);

  it("tells the registry it is awake again once the registry answers (a lost 'awake' would leave a busy group audited once a day)", async () => {
    await createGroup("zzr", { machine: "kv", replicas: 3 });
    expect((await command("zzr", { op: "put", key: "a", value: 1 }, "w", 1)).status).toBe(200);
    await sleepAfter("zzr", 1_000);
    await waitFor("the registry told it sleeps", async () => typeof (await registryAsleep("zzr")) === "number", 100);
    expect((await api("POST", "/v1/groups/zzr/faults", { target: "registry", fault: "unreachable" })).status).toBe(200);
    try {
      expect((await command("zzr", { op: "put", key: "b", value: 2 }, "w", 2)).status).toBe(200); // wakes it; the note fails
      await sleepAfter("zzr", 600_000); // and it stays awake (a second sleep would be noted next)
      await new Promise((r) => setTimeout(r, 1_500));
      expect(typeof (await registryAsleep("zzr"))).toBe("number"); // not told yet
    } finally {
      await api("POST", "/v1/groups/zzr/faults", { target: "registry", fault: "none" });
    }
    // Written again (pauses doubling from 1 s) without any other call to the group.
    await waitFor("the registry told it is awake", async () => (await registryAsleep("zzr")) === null, 200);
  }, 30_000);

  it("a scrape takes an asleep group's figures from the registry as a recent scrape saw them, without starting its objects (a scrape every minute kept every asleep group's directory and sequencer in memory)", async () => {
    await createGroup("zz-kept", { machine: "kv", replicas: 3 });
    expect((await command("zz-kept", { op: "put", key: "a", value: 1 }, "w", 1)).status).toBe(200);
    await sleepAfter("zz-kept", 1_000);
    await waitFor("the group asleep", async () => (await status("zz-kept")).sequencer.asleepSince !== undefined, 200);
    await waitFor("the registry told", async () => (await registryAsleep("zz-kept")) !== null && (await registryAsleep("zz-kept")) !== undefined, 100);
    const scrape = async (query = "") => (await SELF.fetch(`http://smr.test/v1/metrics${query}`, { headers: { authorization: `Bearer ${adminToken}` } })).text();
    const line = (text: string, name: string) => text.split("\n").find((l) => l.startsWith(`${name}{group="zz-kept"`));
    const first = await scrape();
    expect(line(first, "smr_group_up")).toBe('smr_group_up{group="zz-kept"} 1');
    expect(line(first, "smr_group_asleep")).toBe('smr_group_asleep{group="zz-kept"} 1');
    await waitFor("its figures kept", async () => (await keptAt("zz-kept")) !== null, 100);
    // Its sequencer out of reach: a scrape that asked it would say smr_group_up 0.
    expect((await api("POST", "/v1/groups/zz-kept/faults", { target: "sequencer", fault: "unreachable" })).status).toBe(200);
    const second = await scrape();
    expect(line(second, "smr_group_up")).toBe('smr_group_up{group="zz-kept"} 1');
    expect(line(second, "smr_group_asleep")).toBe('smr_group_asleep{group="zz-kept"} 1');
    expect(line(second, "smr_commands_total")).toBe(line(first, "smr_commands_total"));
    expect(line(second, "smr_sequencer_answer_seconds")).toBeUndefined(); // of the call that asked it, not of this scrape
    expect(second).toMatch(/^# kept: \d+ asleep groups as a scrape within 300 s saw them/m);
    // ?group= asks it.
    expect(await scrape("?group=zz-kept")).toContain('smr_group_up{group="zz-kept"} 0');
    expect((await api("POST", "/v1/groups/zz-kept/faults", { target: "sequencer", fault: "none" })).status).toBe(200);
    // Awake again: the kept figures are dropped, and the next scrape asks.
    expect((await command("zz-kept", { op: "put", key: "b", value: 2 }, "w", 2)).status).toBe(200);
    await waitFor("the registry told it woke", async () => (await registryAsleep("zz-kept")) === null, 100);
    expect(await keptAt("zz-kept")).toBeNull();
    const third = await scrape();
    expect(line(third, "smr_group_asleep")).toBe('smr_group_asleep{group="zz-kept"} 0');
    expect(line(third, "smr_commands_total")).not.toBe(line(first, "smr_commands_total"));
  });

  it("fails a sleeping group's unreachable sequencer over, a sequencer timeout after the first vote", async () => {
    await createGroup("zzf", { machine: "kv", replicas: 3 });
    expect((await command("zzf", { op: "put", key: "a", value: 1 }, "w", 1)).status).toBe(200);
    await sleepAfter("zzf", 1_000);
    await waitFor("the group asleep", async () => (await status("zzf")).sequencer.asleepSince !== undefined, 200);
    await waitFor("the registry told", async () => typeof (await registryAsleep("zzf")) === "number", 100);
    expect((await api("POST", "/v1/groups/zzf/faults", { target: "sequencer", fault: "unreachable" })).status).toBe(200);
    const cutAt = Date.now();
    // The replicas heard nothing for a while, but asleep: the first PreVote wakes them (and asks
    // the sequencer to wake), so it finds no quorum that lost it.
    const first = await command("zzf", { op: "put", key: "b", value: 2 }, "w", 2);
    expect([503, 504]).toContain(first.status);
    let answer = first;
    while (answer.status !== 200 && Date.now() - cutAt < sequencerTimeoutMs + 20_000) {
      await new Promise((r) => setTimeout(r, 250));
      answer = await command("zzf", { op: "put", key: "b", value: 2 }, "w", 2);
      expect([200, 503, 504]).toContain(answer.status);
    }
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(Date.now() - cutAt).toBeGreaterThanOrEqual(sequencerTimeoutMs - 500);
    await api("POST", "/v1/groups/zzf/faults", { target: "sequencer", fault: "none" });
    const s = await status("zzf");
    expect(s.sequencer.name).toBe("zzf~s1");
    expect(s.epoch).toBeGreaterThan(1);
    // The successor starts awake and says so: the cron takes the group every lap again.
    await waitFor("the registry told the successor is awake", async () => (await registryAsleep("zzf")) === null, 100);
    for (const [key, value] of [["a", 1], ["b", 2]] as const) expect((await query("zzf", { op: "get", key })).body.result).toEqual({ value });
  }, 60_000);
});
