import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { SequencerObject } from "../../workers/sequencer.js";
import { directoryClient } from "../../workers/directory.js";
import { membersOf } from "../../shared/protocol/types.js";
import { api, apiEventKinds, clientToken, command, createGroup, query, replicaStatuses, waitFor } from "./helpers.js";

function sequencer(group: string) {
  return env.SEQUENCER.get(env.SEQUENCER.idFromName(group));
}

/**
 * The sequencer's object loses its storage and its memory (ctx.storage.deleteAll()): the replica
 * co-located in it (r1) goes with it.
 */
async function wipeSequencer(group: string) {
  await runInDurableObject(sequencer(group), async (inst: SequencerObject, state) => {
    const lifecycle = (inst as any).lifecycle;
    lifecycle.driver?.stop();
    lifecycle.driver = null;
    (inst as any).replica.driver.detach();
    await state.storage.deleteAll();
  });
}

describe("sequencer failover after storage loss", () => {
  it("starts a new epoch from a replica majority: nothing acknowledged is lost, reordered or executed twice", async () => {
    await createGroup("lost");
    const acked = [];
    for (let i = 1; i <= 20; i++) acked.push((await command("lost", { op: "incr", key: "n", by: 1 }, "c", i)).body);
    await wipeSequencer("lost");

    // The next request finds the sequencer empty; the router has it recover, then serves it.
    const next = await command("lost", { op: "incr", key: "n", by: 1 }, "c", 21);
    expect(next.status).toBe(200);
    expect(next.body.output).toEqual({ value: 21 });
    expect(next.body.seq).toBe(22); // 20 commands, the new epoch's no-op at 21, then this one.

    const status = (await api("GET", "/v1/groups/lost", undefined, clientToken)).body;
    expect(status.epoch).toBe(2);
    expect(status.commitSeq).toBe(22);

    const log = (await api("GET", "/v1/groups/lost/log?limit=100")).body;
    expect(log.entries.map((e: any) => [e.seq, e.kind, e.request])).toEqual([
      ...acked.map((a, i) => [a.seq, "command", i + 1]),
      [21, "noop", null],
      [22, "command", 21],
    ]);
    expect(log.entries[20].epoch).toBe(2);

    // A retry of an old request is answered with its original seq and output, not executed again.
    const retry = await command("lost", { op: "incr", key: "n", by: 1 }, "c", 5);
    expect(retry.body).toMatchObject({ seq: acked[4].seq, output: acked[4].output });
    expect((await query("lost", { op: "get", key: "n" })).body.result).toEqual({ value: 21 });

    // The co-located replica lost its storage with the object: made again (a rejoin), quarantined,
    // rebuilt by a state transfer; then the audit finds every replica agreeing.
    const events = (await api("GET", "/v1/groups/lost/events", undefined, clientToken)).body.events;
    expect(events.filter((e: any) => e.kind === "quarantine" && e.action === "rejoin").map((e: any) => e.replica)).toEqual(["r1"]);
    for (const e of events) expect(apiEventKinds).toContain(e.kind);
    await waitFor("r1 rebuilt", async () => {
      await api("POST", "/v1/groups/lost/audit");
      return (await replicaStatuses("lost")).r1.status === "healthy";
    }, 100);
    const audit = (await api("POST", "/v1/groups/lost/audit")).body;
    expect(audit.verdict).toBe("consistent");
    expect(audit.replicas.map((r: any) => r.verdict)).toEqual(["agrees", "agrees", "agrees"]);
  });

  it("a PUT of an existing group whose sequencer lost its storage recovers instead of starting again at seq 1", async () => {
    await createGroup("lost-put");
    await command("lost-put", { op: "put", key: "k", value: "v" }, "c", 1);
    await wipeSequencer("lost-put");
    const again = await api("PUT", "/v1/groups/lost-put", { machine: "kv" });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ epoch: 2, lastSeq: 2 });
    expect(again.body.commitSeq).toBeGreaterThanOrEqual(1);
    expect((await query("lost-put", { op: "get", key: "k" })).body.result).toEqual({ value: "v" });
  });
});

describe("moving a sequencer", () => {
  it("while the sequencer cannot be reached, a replica that does not answer the router shows what the last audit saw of it, not seq 0", async () => {
    await createGroup("view-cut");
    for (let i = 1; i <= 5; i++) expect((await command("view-cut", { op: "put", key: `k${i}`, value: i }, "v", i)).status).toBe(200);
    const audit = (await api("POST", "/v1/groups/view-cut/audit")).body;
    const seen = audit.replicas.find((r: any) => r.id === "r3");
    expect(seen.appliedSeq).toBeGreaterThan(0);
    await api("POST", "/v1/groups/view-cut/faults", { target: "r3", fault: "unreachable" });
    await api("POST", "/v1/groups/view-cut/faults", { target: "sequencer", fault: "unreachable" });
    const status = (await api("GET", "/v1/groups/view-cut", undefined, clientToken)).body;
    expect(status.sequencer).toMatchObject({ reachable: false });
    expect(status.replicas.find((r: any) => r.id === "r3")).toMatchObject({ status: "down", appliedSeq: seen.appliedSeq, lastContact: null, audited: audit.at });
    // A replica on the directory's quarantine list shows quarantined, though it may never have heard it.
    const directory = directoryClient(env.DIRECTORY.get(env.DIRECTORY.idFromName("view-cut")) as never);
    const incarnation = (await directory.get())!.config.incarnation;
    expect(await directory.setQuarantined(incarnation, "view-cut", ["r2"])).toBe(true);
    const listed = (await api("GET", "/v1/groups/view-cut", undefined, clientToken)).body.replicas.find((r: any) => r.id === "r2");
    expect(listed.status).toBe("quarantined");
    // A member still joining (no vote yet) shows joining, not healthy, though it answers.
    const record = (await directory.get())!;
    const members = membersOf(record.config).map((m) => (m.id === "r2" ? { ...m, voter: false } : m));
    expect(await directory.setQuarantined(incarnation, "view-cut", [])).toBe(true);
    expect(await directory.update(incarnation, { ...record.config, members, quarantined: [] })).toBe(true);
    const joining = (await api("GET", "/v1/groups/view-cut", undefined, clientToken)).body.replicas.find((r: any) => r.id === "r2");
    expect(joining.status).toBe("joining");
    await api("POST", "/v1/groups/view-cut/faults", { target: "sequencer", fault: "none" });
    await api("POST", "/v1/groups/view-cut/faults", { target: "r3", fault: "none" });
  });

  it("after a move, a replica the new sequencer cannot reach shows what the last audit saw of it, not seq 0 and no contact", async () => {
    await createGroup("mover-cut");
    for (let i = 1; i <= 5; i++) expect((await command("mover-cut", { op: "put", key: `k${i}`, value: i }, "m", i)).status).toBe(200);
    const audit = (await api("POST", "/v1/groups/mover-cut/audit")).body;
    const seen = audit.replicas.find((r: any) => r.id === "r3");
    expect(seen).toMatchObject({ verdict: "agrees", appliedSeq: expect.any(Number) });
    await api("POST", "/v1/groups/mover-cut/faults", { target: "r3", fault: "unreachable" });
    expect((await api("POST", "/v1/groups/mover-cut/sequencer", { location: "weur" })).status).toBe(202);
    const r3 = (await api("GET", "/v1/groups/mover-cut", undefined, clientToken)).body.replicas.find((r: any) => r.id === "r3");
    expect(r3).toMatchObject({ appliedSeq: seen.appliedSeq, lastContact: null, audited: audit.at });
    expect(["suspect", "down"]).toContain(r3.status);
    if (audit.seq === seen.appliedSeq) expect(r3.digest).toBe(seen.digest);
    // An audit that cannot reach it does not send it back to 0: the latest one that did counts.
    expect((await api("POST", "/v1/groups/mover-cut/audit")).body.replicas.find((r: any) => r.id === "r3").verdict).toBe("unreachable");
    const after = (await api("GET", "/v1/groups/mover-cut", undefined, clientToken)).body.replicas.find((r: any) => r.id === "r3");
    expect(after).toMatchObject({ appliedSeq: seen.appliedSeq, lastContact: null, audited: audit.at });
    expect(r3.lastSeq).toBeGreaterThanOrEqual(seen.appliedSeq);
    await api("POST", "/v1/groups/mover-cut/faults", { target: "r3", fault: "none" });
  });

  it("hands over to a new Durable Object at a new epoch; nothing acknowledged is lost and writes go on", async () => {
    await createGroup("mover");
    const acked: any[] = [];
    for (let i = 1; i <= 10; i++) acked.push((await command("mover", { op: "incr", key: "n", by: 1 }, "m", i)).body);
    const moved = await api("POST", "/v1/groups/mover/sequencer", { location: "weur" });
    expect(moved.status).toBe(202);
    expect(moved.body.sequencer).toMatchObject({ name: "mover~s1", location: "weur", epoch: 2 });
    for (let i = 11; i <= 15; i++) {
      const r = await command("mover", { op: "incr", key: "n", by: 1 }, "m", i);
      expect(r.status).toBe(200);
      acked.push(r.body);
    }
    expect(acked.map((a) => a.output.value)).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
    const status = (await api("GET", "/v1/groups/mover", undefined, clientToken)).body;
    expect(status.epoch).toBe(2);
    const log = (await api("GET", "/v1/groups/mover/log?limit=100")).body;
    expect(log.entries.filter((e: any) => e.kind === "command").map((e: any) => e.request)).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
    // The old sequencer holds nothing any more; the replica co-located in its object (r1) stays
    // there and serves, reached by RPC now.
    const old = env.SEQUENCER.get(env.SEQUENCER.idFromName("mover"));
    const tenants = () =>
      runInDurableObject(old, (_i: SequencerObject, state) => {
        const has = (name: string) => state.storage.sql.exec("SELECT name FROM sqlite_master WHERE name = ?", name).toArray().length;
        const meta = (k: string) => (has("meta") ? state.storage.sql.exec("SELECT k FROM meta WHERE k = ?", k).toArray().length : 0);
        return { sequencer: meta("sequencer"), log: has("log"), replica: meta("replica"), replicaLog: has("replica_log") };
      });
    expect(await tenants()).toEqual({ sequencer: 0, log: 0, replica: 1, replicaLog: 1 });
    const r1 = status.replicas.find((r: any) => r.id === "r1");
    expect(r1).toMatchObject({ status: "healthy", appliedSeq: expect.any(Number) });
    expect(r1.colocated).toBeUndefined(); // no longer with the sequencer: reached by RPC
    // A retry of a command from before the move is answered, not executed again.
    const retry = await command("mover", { op: "incr", key: "n", by: 1 }, "m", 3);
    expect(retry.body).toMatchObject({ seq: acked[2].seq, output: { value: 3 } });
    expect((await api("POST", "/v1/groups/mover/audit")).body.verdict).toBe("consistent");
    // Moving again works too; the creation settings still match for an idempotent PUT.
    expect((await api("POST", "/v1/groups/mover/sequencer", {})).body.sequencer).toMatchObject({ name: "mover~s2", epoch: 3 });
    // Each move is in the group's history as a "move" event (API.md's Event kinds).
    const moves = (await api("GET", "/v1/groups/mover/events", undefined, clientToken)).body.events.filter((e: any) => e.kind === "move");
    expect(moves).toMatchObject([
      { kind: "move", epoch: 3, from: "mover~s1", to: "mover~s2", location: null },
      { kind: "move", epoch: 2, from: "mover", to: "mover~s1", location: "weur", message: "sequencer mover moved to mover~s1 (weur) at epoch 2" },
    ]);
    expect((await api("PUT", "/v1/groups/mover", { machine: "kv" })).status).toBe(200);
    expect((await api("DELETE", "/v1/groups/mover")).status).toBe(204);
    expect((await api("GET", "/v1/groups/mover", undefined, clientToken)).status).toBe(404);
    // The delete reached the replica in the first sequencer's object too.
    expect(await tenants()).toEqual({ sequencer: 0, log: 0, replica: 0, replicaLog: 0 });
  });

  it("a move whose router stopped right after naming the new sequencer still leaves its move event, kept at that sequencer's recovery", async () => {
    await createGroup("halfmove", { machine: "kv" });
    expect((await command("halfmove", { op: "put", key: "a", value: 1 }, "h", 1)).status).toBe(200);
    // What a router killed between the directory's compare-and-set and the recovery call leaves:
    // the old sequencer handed over, the directory names halfmove~s1, which has never run.
    await (env.SEQUENCER.get(env.SEQUENCER.idFromName("halfmove")) as unknown as { handOver(): Promise<unknown> }).handOver();
    const directory = directoryClient(env.DIRECTORY.get(env.DIRECTORY.idFromName("halfmove")) as never);
    const rec = (await directory.get())!;
    const moved = { ...rec.config, sequencer: { name: "halfmove~s1", location: null, no: 1 } };
    expect(await directory.replaceSequencer(rec.config.incarnation, 0, moved, { kind: "move", from: "halfmove", to: "halfmove~s1", location: null, atMs: Date.now() })).not.toBeNull();
    // The next request finds the new sequencer and has it recover.
    await waitFor("a write through the new sequencer", async () => (await command("halfmove", { op: "put", key: "b", value: 2 }, "h", 2)).status === 200, 100);
    // The recovery's event is kept in the background (waitUntil), the move's with it.
    const moves = async () => (await api("GET", "/v1/groups/halfmove/events", undefined, clientToken)).body.events.filter((e: any) => e.kind === "move");
    await waitFor("the move event", async () => (await moves()).length > 0, 100);
    expect(await moves()).toMatchObject([{ from: "halfmove", to: "halfmove~s1", epoch: 2, message: "sequencer halfmove moved to halfmove~s1 at epoch 2" }]);
  });
});
