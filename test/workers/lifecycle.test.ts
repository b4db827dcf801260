// A group's life: create, delete and recreate under load, and a PUT or DELETE that died midway.
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { directoryClient } from "../../workers/directory.js";
import { SequencerObject } from "../../workers/sequencer.js";
import type { ReplicaObject } from "../../workers/replica.js";
import { replicaDestroyTimeoutMs, routeCacheMs } from "../../shared/limits.js";
import { api, clientToken, command, createGroup, expectError, query, replicaObject } from "./helpers.js";

function directory(group: string) {
  return directoryClient(env.DIRECTORY.get(env.DIRECTORY.idFromName(group)) as never);
}

describe("incarnations", () => {
  it("a deleted group's injected faults do not carry over to one re-created under its name", async () => {
    await createGroup("fault-life");
    expect((await api("POST", "/v1/groups/fault-life/faults", { target: "r2", fault: "slow", ms: 200 })).body.faults).toEqual([{ target: "r2", fault: "slow", ms: 200 }]);
    expect((await api("DELETE", "/v1/groups/fault-life")).status).toBe(204);
    await createGroup("fault-life");
    expect((await api("POST", "/v1/groups/fault-life/faults", { target: "r3", fault: "none" })).body.faults).toEqual([]);
  });

  it("a DELETE naming an incarnation deletes only that life of the group: one created again meanwhile is a 409, left as it is", async () => {
    await createGroup("life-del");
    const first = (await api("GET", "/v1/groups/life-del")).body.incarnation;
    expect(first).toBeGreaterThanOrEqual(1);
    expect((await api("GET", "/v1/groups/life-del/replicas")).status).toBe(200);
    expect((await api("DELETE", "/v1/groups/life-del")).status).toBe(204);
    await createGroup("life-del");
    const second = (await api("GET", "/v1/groups/life-del")).body.incarnation;
    expect(second).toBeGreaterThan(first);
    // A retry of the first life's delete (its answer lost) finds the group made again.
    expectError(await api("DELETE", `/v1/groups/life-del?incarnation=${first}`), 409, "conflict", new RegExp(`created again.*incarnation ${second}`));
    // One that never was a life of it is not said to be an older one (a probe).
    expectError(await api("DELETE", `/v1/groups/life-del?incarnation=${second + 97}`), 409, "conflict", new RegExp(`^group life-del is at incarnation ${second}; incarnation ${second + 97} never existed: the group is left as it is$`));
    expect((await command("life-del", { op: "put", key: "k", value: 1 })).status).toBe(200);
    for (const bad of ["x", "0", "-1", "1.5"]) expectError(await api("DELETE", `/v1/groups/life-del?incarnation=${bad}`), 400, "bad_request", /incarnation/);
    expect((await api("DELETE", `/v1/groups/life-del?incarnation=${second}`)).status).toBe(204);
    expectError(await api("DELETE", `/v1/groups/life-del?incarnation=${second}`), 404, "not_found", /does not exist/);
  });

  it("delete and recreate with 16 writers in flight: the new group serves at once, from seq 1, and its log is readable", async () => {
    await createGroup("stall-g");
    let stop = false;
    let ok = 0;
    const statuses = new Map<number, number>();
    const writers = Array.from({ length: 16 }, async (_, w) => {
      for (let i = 1; !stop && i < 400; i++) {
        const r = await command("stall-g", { op: "put", key: `w${w}`, value: i }, `w${w}`, i);
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        if (r.status === 200) ok++;
      }
    });
    while (ok < 50) await command("stall-g", { op: "get", key: "w0" }, "probe", ok + 1000);
    expect((await api("DELETE", "/v1/groups/stall-g")).status).toBe(204);
    const again = await api("PUT", "/v1/groups/stall-g", { machine: "kv" });
    expect(again.status).toBe(201);
    expect(again.body.commitSeq).toBe(0);
    // The new incarnation takes writes while the old one's late RPCs are refused.
    const okBefore = ok;
    const deadline = Date.now() + 10_000;
    while (ok < okBefore + 50 && Date.now() < deadline) await command("stall-g", { op: "get", key: "w0" }, "probe2", ok + 5000);
    stop = true;
    await Promise.all(writers);
    expect(ok).toBeGreaterThanOrEqual(okBefore + 50);
    const s = (await api("GET", "/v1/groups/stall-g", undefined, clientToken)).body;
    expect(s.commitSeq).toBeGreaterThan(0);
    // The new incarnation's own log from seq 1: none of the old one's entries (its "probe" reads), and the new "probe2" reads.
    const entries: any[] = [];
    for (let from = 1; ; ) {
      const log = await api("GET", `/v1/groups/stall-g/log?from=${from}&limit=1000`);
      expect(log.status).toBe(200);
      entries.push(...log.body.entries);
      if (log.body.entries.length === 0 || entries[entries.length - 1].seq >= log.body.lastSeq) break;
      from = entries[entries.length - 1].seq + 1;
    }
    expect(entries.map((e) => e.seq)).toEqual(entries.map((_, i) => i + 1));
    expect(entries.filter((e) => e.client === "probe")).toEqual([]);
    expect(entries.filter((e) => e.client === "probe2").length).toBeGreaterThan(0);
    expect([...statuses.keys()].every((st) => [200, 404, 503, 504].includes(st)), JSON.stringify([...statuses])).toBe(true);
    const audit = await api("POST", "/v1/groups/stall-g/audit");
    expect(audit.body.verdict).toBe("consistent");
  });

  it("commands waiting when the DELETE lands are a 404 (the group was deleted), not a retry that runs in the group created again", async () => {
    await createGroup("cut-life", { machine: "kv", replicas: 3 });
    expect((await command("cut-life", { op: "incr", key: "n", by: 1 }, "f", 1)).status).toBe(200);
    for (const target of ["r2", "r3"]) await api("POST", "/v1/groups/cut-life/faults", { target, fault: "slow", ms: 4_000 });
    const waiting = [2, 3, 4].map((request) => command("cut-life", { op: "incr", key: "n", by: 1 }, "f", request));
    await new Promise((r) => setTimeout(r, 1_000));
    expect((await api("DELETE", "/v1/groups/cut-life")).status).toBe(204);
    for (const answer of await Promise.all(waiting)) {
      expectError(answer, 404, "not_found", /^group cut-life: the group was deleted while the command was under way/);
    }
  }, 30_000);

  it("a DELETE destroys the replica an add made and never ordered (refused after its provision: one id past lastReplicaNo)", async () => {
    await createGroup("unordered", { machine: "kv", replicas: 3 });
    const inc = (await directory("unordered").get())!.config.incarnation;
    // What an add refused after its provision leaves: r4 made (initialized), named by no config.
    const r4 = replicaObject("unordered", "r4", null);
    expect(await r4.replicaInit({ group: "unordered", incarnation: inc, id: "r4", machine: "kv", checkpointEvery: 100 })).toMatchObject({ appliedSeq: 0 });
    const tables = () => runInDurableObject(r4, (_i: unknown, state) => state.storage.sql.exec("SELECT name FROM sqlite_master WHERE name IN ('state', 'meta')").toArray().length);
    expect(await tables()).toBeGreaterThan(0);
    expect((await api("DELETE", "/v1/groups/unordered")).status).toBe(204);
    expect(await tables()).toBe(0);
  });

  it("a DELETE while an add's init is on its way: the replica the init makes after the DELETE's destroy is destroyed too", async () => {
    await createGroup("late-init", { machine: "kv", replicas: 3 });
    const r4 = replicaObject("late-init", "r4", null);
    // This group's r4 init waits for the test (the prototype's RPC method, as reconfig.test.ts does).
    // A flag polled in r4's own context (a promise resolved from the test's would be cross-object I/O).
    const gate = globalThis as { initGo?: boolean; initWaiting?: boolean };
    await runInDurableObject(r4, (inst: ReplicaObject) => {
      const proto = Object.getPrototypeOf(inst);
      const real = proto.replicaInit;
      proto.replicaInit = function (this: ReplicaObject, init: { group: string; id: string }) {
        if (init.group === "late-init" && init.id === "r4") {
          proto.replicaInit = real;
          gate.initWaiting = true;
          return (async () => {
            while (!gate.initGo) await new Promise((r) => setTimeout(r, 10));
            return real.call(this, init);
          })();
        }
        return real.call(this, init);
      };
    });
    const add = api("POST", "/v1/groups/late-init/replicas", {});
    for (let i = 0; i < 200 && !gate.initWaiting; i++) await new Promise((r) => setTimeout(r, 10));
    expect(gate.initWaiting).toBe(true);
    expect((await api("DELETE", "/v1/groups/late-init")).status).toBe(204);
    gate.initGo = true;
    expect((await add).status).toBe(503);
    const tables = () => runInDurableObject(r4, (_i: unknown, state) => state.storage.sql.exec("SELECT name FROM sqlite_master WHERE name IN ('state', 'meta')").toArray().length);
    for (let i = 0; i < 100 && (await tables()) > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await tables()).toBe(0);
  }, 30_000);

  it("a replica refuses the calls of an older incarnation, and a newer one's init replaces its leftover state", async () => {
    await createGroup("inc");
    expect((await command("inc", { op: "put", key: "k", value: 1 })).status).toBe(200);
    const record = (await directory("inc").get())!;
    const inc = record.config.incarnation;
    const r1 = replicaObject("inc", "r1");
    expect(await r1.call(inc - 1, "query", [{ op: "get", key: "k" }, 0, 0])).toEqual({ kind: "not_found" });
    expect(await r1.appendText(inc - 1, JSON.stringify({ epoch: 9, prevSeq: 0, prevHash: "0".repeat(64), entries: [], commitSeq: 0 }))).toEqual({ ok: false, reason: "not_initialized" });
    expect(await r1.replicaInit({ group: "inc", incarnation: inc - 1, id: "r1", machine: "kv", checkpointEvery: 100 })).toBeNull();
    expect(await r1.call(inc + 1, "query", [{ op: "get", key: "k" }, 0, 0])).toEqual({ kind: "not_found" });
    expect(await r1.call(inc, "query", [{ op: "get", key: "k" }, 1, 2_000])).toMatchObject({ kind: "ok", result: { value: 1 } });
    // An init of a newer incarnation replaces the leftover: it starts empty.
    expect(await r1.replicaInit({ group: "inc", incarnation: inc + 1, id: "r1", machine: "kv", checkpointEvery: 100 })).toMatchObject({ appliedSeq: 0, lastSeq: 0 });
  });
});

describe("one lifecycle operation at a time in a sequencer", () => {
  it("a recovery racing a creation (a late writer's, as after a delete) never wipes the new group's storage", async () => {
    const seq = env.SEQUENCER.get(env.SEQUENCER.idFromName("race"));
    for (let i = 0; i < 3; i++) {
      const made = await directory("race").create({ group: "race", incarnation: 0, machine: "kv", replicas: 3, locations: [null, null, null], outputs: "first", checkpointEvery: 100 }, new Date().toISOString());
      const cfg = made.record.config;
      // The recovery finds no replica state and fails; its cleanup must not run over the init.
      const [init] = await Promise.all([seq.init(cfg), seq.recover(cfg)]);
      expect(init.kind).not.toBe("conflict");
      const page = await seq.readLog(1, 10);
      expect(page).not.toBeNull();
      const a: any = await seq.submit("c", 1, { op: "put", key: "k", value: i });
      expect(a.kind, JSON.stringify(a)).toBe("ok");
      expect(a.seq).toBe(1);
      expect(await seq.destroy("race", cfg.incarnation, 3)).toBe(true);
      expect(await directory("race").setState(cfg.incarnation, "deleted")).toBe(true);
    }
  });

  it("an init of a life its DELETE ended, landing on an object that never heard of that DELETE (restarted since), is refused and makes nothing", async () => {
    // The closed lives are the object's memory: such an init made a deleted life's sequencer and
    // replicas, storage nothing would free (a review). The directory's record says it is over.
    const dir = directory("init-after-delete");
    const made = await dir.create({ group: "init-after-delete", incarnation: 0, machine: "kv", replicas: 3, locations: [null, null, null], outputs: "first", checkpointEvery: 100 }, new Date().toISOString());
    const cfg = made.record.config;
    const seq = env.SEQUENCER.get(env.SEQUENCER.idFromName("init-after-delete"));
    expect(await dir.setState(cfg.incarnation, "deleting")).toBe(true);
    expect(await seq.init(cfg)).toEqual({ kind: "conflict" });
    expect(await dir.setState(cfg.incarnation, "deleted")).toBe(true);
    expect(await seq.init(cfg)).toEqual({ kind: "conflict" });
    expect(await seq.status()).toBeNull();
    const tables = (stub: DurableObjectStub) => runInDurableObject(stub, (_i: unknown, state) => state.storage.sql.exec("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\'").toArray().length);
    expect([await tables(seq as unknown as DurableObjectStub), await tables(replicaObject("init-after-delete", "r2") as unknown as DurableObjectStub)]).toEqual([0, 0]);
  });
});

describe("a PUT or a DELETE that died midway is finished by the next lookup", () => {
  it("a creation recorded but never carried out: the next request completes it and the group serves", async () => {
    // What a PUT killed after its directory write leaves behind: a record in state "creating", no objects.
    const r = await directory("half-made").create({ group: "half-made", incarnation: 0, machine: "kv", replicas: 3, locations: [null, null, null], outputs: "first", checkpointEvery: 100 }, new Date().toISOString());
    expect(r.kind).toBe("created");
    expect((await api("GET", "/v1/groups")).body.groups).not.toContain("half-made");
    const w = await command("half-made", { op: "put", key: "k", value: "v" });
    expect(w.status, JSON.stringify(w.body)).toBe(200);
    expect((await query("half-made", { op: "get", key: "k" })).body.result).toEqual({ value: "v" });
    expect((await directory("half-made").get())!.state).toBe("ready");
    expect((await api("GET", "/v1/groups")).body.groups).toContain("half-made");
    // A PUT of the same config is a 200 now.
    expect((await api("PUT", "/v1/groups/half-made", { machine: "kv" })).status).toBe(200);
  });

  it("a deletion recorded but not finished: the group answers 404, its objects are destroyed, and it can be created again", async () => {
    await createGroup("half-gone");
    expect((await command("half-gone", { op: "put", key: "k", value: 1 })).status).toBe(200);
    const rec = (await directory("half-gone").get())!;
    await directory("half-gone").setState(rec.config.incarnation, "deleting");
    await new Promise((r) => setTimeout(r, routeCacheMs + 100)); // routers may serve from their cache until then
    expectError(await api("GET", "/v1/groups/half-gone", undefined, clientToken), 404, "not_found");
    expect(await directory("half-gone").get()).toBeNull();
    expect((await api("GET", "/v1/groups")).body.groups).not.toContain("half-gone");
    const created = await api("PUT", "/v1/groups/half-gone", { machine: "kv" });
    expect(created.status).toBe(201);
    expect((await query("half-gone", { op: "get", key: "k" })).body.result).toEqual({ value: null });
    expect((await directory("half-gone").get())!.config.incarnation).toBe(rec.config.incarnation + 1);
  });

  it("a delete that cannot reach one of the group's objects is a 503 until it can, never a 500; the fault can be cleared meanwhile", async () => {
    for (const target of ["r2", "sequencer"]) {
      const group = `del-cut-${target}`;
      await createGroup(group);
      expect((await command(group, { op: "put", key: "k", value: 1 })).status).toBe(200);
      await api("POST", `/v1/groups/${group}/faults`, { target, fault: "unreachable" });
      expectError(await api("DELETE", `/v1/groups/${group}`), 503, "unavailable", new RegExp(`${group} is being deleted.*unreachable`));
      // It names the replica that failed, not the sequencer that asked it (a probe).
      if (target === "r2") expectError(await api("DELETE", `/v1/groups/${group}`), 503, "unavailable", new RegExp(`\\(the sequencer ${group} or a replica it destroys: Error: replica r2: `));
      // Half deleted: it serves nothing, and its name cannot be taken yet.
      expectError(await api("GET", `/v1/groups/${group}`, undefined, clientToken), 503, "unavailable", /being deleted/);
      expectError(await api("PUT", `/v1/groups/${group}`, { machine: "kv" }), 503, "unavailable", /being deleted/);
      if (target === "r2") {
        // The sequencer answers why, rather than throwing out of its RPC (workerd logged each try
        // as an uncaught error with its stack: 16 for one DELETE, a probe).
        const seq = env.SEQUENCER.get(env.SEQUENCER.idFromName(group)) as unknown as DurableObjectStub<SequencerObject>;
        const inc = (await directory(group).get())!.config.incarnation;
        expect(await seq.destroy(group, inc, 3)).toMatchObject({ failed: expect.stringMatching(/r2 of del-cut-r2 is unreachable/) });
      }
      expect((await api("POST", `/v1/groups/${group}/faults`, { target, fault: "none" })).status).toBe(200);
      expect((await api("DELETE", `/v1/groups/${group}`)).status).toBe(204);
      expectError(await api("GET", `/v1/groups/${group}`, undefined, clientToken), 404, "not_found");
      expect((await api("PUT", `/v1/groups/${group}`, { machine: "kv" })).status).toBe(201);
      expect((await query(group, { op: "get", key: "k" })).body.result).toEqual({ value: null });
    }
  });

  it("DELETE ?force=1 finishes a delete that cannot reach an object (a location lost for good): what answers is destroyed, the rest left behind, and the name can be taken again", async () => {
    const tables = (stub: DurableObjectStub) => runInDurableObject(stub, async (_inst: unknown, state: DurableObjectState) => state.storage.sql.exec("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").one().n as number);
    const sequencerAt = (name: string) => env.SEQUENCER.get(env.SEQUENCER.idFromName(name));
    for (const target of ["r2", "sequencer"]) {
      const group = `del-force-${target}`;
      await createGroup(group);
      expect((await command(group, { op: "put", key: "k", value: 1 })).status).toBe(200);
      await api("POST", `/v1/groups/${group}/faults`, { target, fault: "unreachable" });
      expectError(await api("DELETE", `/v1/groups/${group}`), 503, "unavailable", /DELETE with \?force=1 finishes it now/);
      expectError(await api("DELETE", `/v1/groups/${group}?force=yes`), 400, "bad_request", /force/);
      expect((await api("DELETE", `/v1/groups/${group}?force=1`)).status).toBe(204);
      expectError(await api("GET", `/v1/groups/${group}`, undefined, clientToken), 404, "not_found");
      // What answered is destroyed: r3 always, and the sequencer's object (with r1) when r2 was the one cut off.
      expect(await tables(replicaObject(group, "r3"))).toBe(0);
      // What did not is left behind, of the old life: r2, or the sequencer's object (and r1 in it).
      if (target === "r2") expect(await tables(sequencerAt(group))).toBe(0);
      expect(await tables(target === "r2" ? replicaObject(group, "r2") : sequencerAt(group))).toBeGreaterThan(0);
      if (target === "sequencer") expect(await tables(replicaObject(group, "r2"))).toBe(0);
      // The name is free (the delete cleared the group's faults: the place answers again), and
      // the new life replaces what was left.
      expect((await api("PUT", `/v1/groups/${group}`, { machine: "kv" })).status).toBe(201);
      expect((await command(group, { op: "put", key: "n", value: 2 })).status).toBe(200);
      expect((await query(group, { op: "get", key: "k" })).body.result).toEqual({ value: null });
      expect((await api("POST", `/v1/groups/${group}/audit`)).body.verdict).toBe("consistent");
    }
  }, 60_000);

  it("a delete whose replica hangs answers 503 within a bound, not for as long as the replica hangs; the delete finishes once it answers", async () => {
    const group = "del-hang";
    await createGroup(group);
    // Slower than any client waits, and than this test's timeout: the destroy call must give up first.
    await api("POST", `/v1/groups/${group}/faults`, { target: "r2", fault: "slow", ms: 60_000 });
    expectError(await api("DELETE", `/v1/groups/${group}`), 503, "unavailable", new RegExp(`${group} is being deleted.*r2.*${replicaDestroyTimeoutMs} ms`));
    expect((await api("POST", `/v1/groups/${group}/faults`, { target: "r2", fault: "none" })).status).toBe(200);
    expect((await api("DELETE", `/v1/groups/${group}`)).status).toBe(204);
    expectError(await api("GET", `/v1/groups/${group}`, undefined, clientToken), 404, "not_found");
  });
});

describe("a sequencer woken after idling", () => {
  it("answers a status with every replica's real position, not seq 0 and no contact", async () => {
    // The woken object is a new SequencerObject over the same storage, as after an eviction: it
    // knows no replica's position until it hears from each. (Before, the first status after two
    // idle minutes showed every replica lagging at seq 0; the next call was right.)
    await createGroup("woken");
    for (let i = 0; i < 3; i++) expect((await command("woken", { op: "put", key: `k${i}`, value: i })).status).toBe(200);
    const stub = env.SEQUENCER.get(env.SEQUENCER.idFromName("woken"));
    const status = await runInDurableObject(stub, async (_inst: SequencerObject, state) => {
      const woken = new SequencerObject(state, env as never);
      // Its constructor loads its state under blockConcurrencyWhile: this call waits its turn.
      await state.blockConcurrencyWhile(async () => undefined);
      try {
        return await woken.status();
      } finally {
        (woken as unknown as { lifecycle: { stop(): void } }).lifecycle.stop();
      }
    });
    expect(status!.replicas.map((r) => [r.id, r.status, r.lastSeq, r.appliedSeq])).toEqual(["r1", "r2", "r3"].map((id) => [id, "healthy", 3, 3]));
    expect(status!.replicas.every((r) => r.lastContact !== null && r.digest !== "0".repeat(64))).toBe(true);
  });
});
