// A removed replica's storage is destroyed once its removal is committed; a destroy that fails (the
// replica unreachable) is tried again at the heartbeats. Tried only there, a group that fell asleep
// meanwhile kept the removed replica's whole state until client work woke it (a probe).
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { ReplicaObject } from "../../workers/replica.js";
import { directoryClient } from "../../workers/directory.js";
import { api, clientToken, command, createGroup, replicaObject, waitFor } from "./helpers.js";

const sequencer = (group: string) => env.SEQUENCER.get(env.SEQUENCER.idFromName(group));
const inObject = <T>(stub: unknown, fn: (o: any) => T): Promise<T> => runInDurableObject(stub as DurableObjectStub, (o: unknown) => fn(o)) as Promise<T>;
const status = async (group: string) => (await api("GET", `/v1/groups/${group}`, undefined, clientToken)).body;
const tablesOf = (group: string, id: string) =>
  runInDurableObject(replicaObject(group, id), (_i: ReplicaObject, state) => state.storage.sql.exec("SELECT name FROM sqlite_master WHERE name IN ('state', 'replica_log', 'effects')").toArray().length);

describe("a removed replica's destroy and the group's sleep", () => {
  it("a destroy that failed keeps an idle group awake and is retried until it succeeds (asleep, nothing retried it)", async () => {
    const g = "retire-sleep";
    await createGroup(g, { machine: "kv", replicas: 4 });
    for (let i = 0; i < 3; i++) expect((await command(g, { op: "put", key: `k${i}`, value: i }, "rs", i + 1)).status).toBe(200);
    const dir = directoryClient(env.DIRECTORY.get(env.DIRECTORY.idFromName(g)) as never);
    const inc = (await dir.get())!.config.incarnation;
    expect(await tablesOf(g, "r4")).toBeGreaterThan(0);
    expect((await api("POST", `/v1/groups/${g}/faults`, { target: "r4", fault: "unreachable" })).status).toBe(200);
    const removed = await api("DELETE", `/v1/groups/${g}/replicas/r4`);
    expect(removed.status, JSON.stringify(removed.body)).toBe(202);
    await waitFor("the directory to list r4 for destruction", async () => (await dir.retiring(inc)).includes("r4"), 50);
    // Idle from here: it may sleep a second after the last client work.
    await inObject(sequencer(g), (o) => void (o.lifecycle.driver.io.sleepAfterMs = 1_000));
    // A few heartbeats' tries (each fails at once): the group stays awake for them.
    await new Promise((r) => setTimeout(r, 6_000));
    expect((await status(g)).sequencer.asleepSince).toBeUndefined();
    // r4 back: the next heartbeat's try destroys it, and the group then falls asleep.
    expect((await api("POST", `/v1/groups/${g}/faults`, { target: "r4", fault: "none" })).status).toBe(200);
    await waitFor("r4's storage destroyed", async () => (await tablesOf(g, "r4")) === 0, 200);
    await waitFor("the directory to drop r4 from its list", async () => (await dir.retiring(inc)).length === 0, 50);
    await waitFor("the group asleep", async () => (await status(g)).sequencer.asleepSince !== undefined, 200);
  }, 30_000);

  it("a repair of a replica removed meanwhile does not make it again once it is destroyed (its storage stayed for good, the whole state copied in)", async () => {
    const g = "retire-rejoin";
    await createGroup(g, { machine: "kv", replicas: 3 });
    for (let i = 0; i < 3; i++) expect((await command(g, { op: "put", key: `k${i}`, value: i }, "rr", i + 1)).status).toBe(200);
    const dir = directoryClient(env.DIRECTORY.get(env.DIRECTORY.idFromName(g)) as never);
    const inc = (await dir.get())!.config.incarnation;
    // The repair's first call to r3 (its position) arrives after the removal has destroyed r3.
    await inObject(sequencer(g), (o) => {
      const io = o.lifecycle.driver.io;
      const link = io.link.bind(io);
      io.link = (id: string) => {
        const l = link(id);
        if (id !== "r3") return l;
        return new Proxy(l, { get: (t: any, name) => (name === "position" ? (...args: unknown[]) => new Promise((r) => setTimeout(r, 1_500)).then(() => t.position(...args)) : t[name]) });
      };
    });
    const repairing = api("POST", `/v1/groups/${g}/replicas/r3/repair`);
    await new Promise((r) => setTimeout(r, 100));
    const removed = await api("DELETE", `/v1/groups/${g}/replicas/r3`);
    expect(removed.status, JSON.stringify(removed.body)).toBe(202);
    await waitFor("r3's storage destroyed", async () => (await tablesOf(g, "r3")) === 0, 50);
    const repaired = await repairing;
    expect(repaired.status, JSON.stringify(repaired.body)).toBe(404); // removed while it was being rebuilt
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await tablesOf(g, "r3"), "r3 made again after its destroy").toBe(0);
    expect(await dir.retiring(inc)).toEqual([]);
  }, 30_000);
});
