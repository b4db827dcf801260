import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { ReplicaObject } from "../../workers/replica.js";
import type { SequencerObject } from "../../workers/sequencer.js";
import { directoryClient } from "../../workers/directory.js";
import { sequencerCallTimeoutMs } from "../../shared/limits.js";
import { refusal } from "../../shared/protocol/sequencer.js";
import { api, clientToken, command, createGroup, expectError, query, replicaStatuses as replicas, waitFor, replicaObject } from "./helpers.js";

/** Writes in the background until stopped; every write must succeed. */
function writeLoad(group: string) {
  let stop = false;
  const failures: string[] = [];
  let done = 0;
  const loop = (async () => {
    for (let i = 1; !stop; i++) {
      const r = await command(group, { op: "incr", key: "n", by: 1 }, `load-${group}`, i);
      if (r.status !== 200) failures.push(`${r.status} ${JSON.stringify(r.body)}`);
      else done++;
    }
  })();
  return {
    async finish() {
      stop = true;
      await loop;
      return { done, failures };
    },
  };
}

describe("reconfiguration", () => {
  it("adds a replica (joining, then voting once caught up) and removes one, under write load", async () => {
    await createGroup("grow");
    for (let i = 0; i < 10; i++) await command("grow", { op: "put", key: `k${i}`, value: i });
    const load = writeLoad("grow");

    const added = await api("POST", "/v1/groups/grow/replicas", { location: "weur" });
    expect(added.status).toBe(202);
    expect(added.body.replica).toMatchObject({ id: "r4", location: "weur" });
    expect(["joining", "healthy"]).toContain(added.body.replica.status);
    await waitFor("r4 to vote", async () => (await replicas("grow")).r4?.status === "healthy");

    const removed = await api("DELETE", "/v1/groups/grow/replicas/r1");
    expect(removed.status).toBe(202);
    expect(removed.body.replica).toMatchObject({ id: "r1", status: "removed" });

    const { done, failures } = await load.finish();
    expect(failures).toEqual([]);
    expect(done).toBeGreaterThan(0);

    const status = (await api("GET", "/v1/groups/grow", undefined, clientToken)).body;
    expect(status.replicas.map((r: any) => r.id)).toEqual(["r2", "r3", "r4"]);
    await query("grow", { op: "get", key: "n" });
    await waitFor("replicas to converge", async () => {
      const s = (await api("GET", "/v1/groups/grow", undefined, clientToken)).body;
      return s.replicas.every((r: any) => r.appliedSeq === s.commitSeq);
    });
    const final = (await api("GET", "/v1/groups/grow", undefined, clientToken)).body;
    expect(new Set(final.replicas.map((r: any) => r.digest)).size).toBe(1);
    expect((await query("grow", { op: "get", key: "n" })).body.result).toEqual({ value: done });
    const audit = (await api("POST", "/v1/groups/grow/audit")).body;
    expect(audit.verdict).toBe("consistent");
    expect(audit.replicas.map((r: any) => r.id)).toEqual(["r2", "r3", "r4"]);

    // Every replica agrees on the membership at each seq: the changes are log entries.
    const log = (await api("GET", "/v1/groups/grow/log?limit=1000")).body;
    expect(log.entries.filter((e: any) => e.kind === "config").map((e: any) => [e.command.op, e.command.id])).toEqual([
      ["add", "r4"],
      ["promote", "r4"],
      ["remove", "r1"],
    ]);
    // The removed replica's storage is destroyed.
    const r1 = replicaObject("grow", "r1");
    // (r1 lived in the group's first sequencer object, co-located: its tables went, the sequencer's stay.)
    expect(await runInDurableObject(r1, (_i: ReplicaObject, state) => state.storage.sql.exec("SELECT name FROM sqlite_master WHERE name IN ('state', 'replica_log', 'effects')").toArray().length)).toBe(0);
    expect((await api("POST", "/v1/groups/grow/commands", { client: "after", request: 1, command: { op: "put", key: "z", value: 1 } }, clientToken)).status).toBe(200);
  });

  it("a removed replica whose destroy failed is destroyed by the next sequencer (a move before the retry left its whole state for good)", async () => {
    await createGroup("leftover", { machine: "kv", replicas: 4 });
    for (let i = 0; i < 5; i++) expect((await command("leftover", { op: "put", key: `k${i}`, value: i }, "lo", i + 1)).status).toBe(200);
    const dir = directoryClient(env.DIRECTORY.get(env.DIRECTORY.idFromName("leftover")) as never);
    const inc = (await dir.get())!.config.incarnation;
    const r4 = replicaObject("leftover", "r4");
    const tables = () => runInDurableObject(r4, (_i: ReplicaObject, state) => state.storage.sql.exec("SELECT name FROM sqlite_master WHERE name IN ('state', 'replica_log', 'effects')").toArray().length);
    expect(await tables()).toBeGreaterThan(0);
    expect((await api("POST", "/v1/groups/leftover/faults", { target: "r4", fault: "unreachable" })).status).toBe(200);
    const removed = await api("DELETE", "/v1/groups/leftover/replicas/r4");
    expect(removed.status, JSON.stringify(removed.body)).toBeLessThan(300);
    // Recorded gone, so its destroy is due (and fails: it cannot be reached).
    await waitFor("the directory to list r4 for destruction", async () => (await dir.retiring(inc)).includes("r4"), 50);
    const moved = await api("POST", "/v1/groups/leftover/sequencer", { location: "weur" });
    expect(moved.status, JSON.stringify(moved.body)).toBe(202);
    await waitFor("the moved sequencer to take writes", async () => (await command("leftover", { op: "put", key: "after", value: 1 }, "lo", 100)).status === 200, 100);
    expect(await tables()).toBeGreaterThan(0);
    expect((await api("POST", "/v1/groups/leftover/faults", { target: "r4", fault: "none" })).status).toBe(200);
    // The new sequencer read the list at its start and retries at its heartbeats.
    await waitFor("r4's storage destroyed", async () => (await tables()) === 0, 200);
    await waitFor("the directory to drop r4 from its list", async () => (await dir.retiring(inc)).length === 0, 50);
    expect((await query("leftover", { op: "get", key: "k4" })).body.result).toEqual({ value: 4 });
  }, 60_000);

  it("replaces a down replica: add a new one, remove the old; the group stays available", async () => {
    await createGroup("swap");
    await command("swap", { op: "put", key: "a", value: 1 });
    // r2 stops answering.
    await runInDurableObject(replicaObject("swap", "r2"), (inst: ReplicaObject) => {
      const driver = (inst as any).replica.driver;
      driver.core = new Proxy(driver.core, {
        get(target, prop) {
          if (prop === "append") {
            return () => {
              throw new Error("injected: down");
            };
          }
          const v = Reflect.get(target, prop, target);
          return typeof v === "function" ? v.bind(target) : v;
        },
      });
    });
    const load = writeLoad("swap");
    expect((await api("POST", "/v1/groups/swap/replicas", {})).status).toBe(202);
    await waitFor("r4 to vote", async () => (await replicas("swap")).r4?.status === "healthy");
    expect((await api("DELETE", "/v1/groups/swap/replicas/r2")).status).toBe(202);
    const { failures, done } = await load.finish();
    expect(failures).toEqual([]);
    expect(Object.keys(await replicas("swap"))).toEqual(["r1", "r3", "r4"]);
    expect((await query("swap", { op: "get", key: "n" })).body.result).toEqual({ value: done });
  });

  it("refuses what it cannot do, with the documented codes", async () => {
    await createGroup("solo", { machine: "kv", replicas: 1 });
    expectError(await api("DELETE", "/v1/groups/solo/replicas/r9"), 404, "not_found");
    expectError(await api("DELETE", "/v1/groups/solo/replicas/r1"), 409, "conflict", /last voting/);
    expectError(await api("DELETE", "/v1/groups/solo/replicas/x1"), 400, "bad_request", /id/);
    expectError(await api("POST", "/v1/groups/solo/replicas", { location: "weur" }, clientToken), 403, "forbidden");
    expectError(await api("POST", "/v1/groups/solo/replicas", { where: 1 }), 400, "bad_request");
    expectError(await api("POST", "/v1/groups/nope/replicas", {}), 404, "not_found");
    // A PUT with the creation settings stays idempotent after the membership changed.
    expect((await api("POST", "/v1/groups/solo/replicas", {})).status).toBe(202);
    expect((await api("PUT", "/v1/groups/solo", { machine: "kv", replicas: 1 })).status).toBe(200);
  });

  it("refuses (503, nothing ordered) a removal that would leave the group without a reachable quorum", async () => {
    await createGroup("strict");
    expect((await command("strict", { op: "put", key: "a", value: 1 })).status).toBe(200);
    await api("POST", "/v1/groups/strict/faults", { target: "r2", fault: "unreachable" });
    await waitFor("r2 to be down", async () => (await replicas("strict")).r2?.status === "down", 200);
    const before = (await api("GET", "/v1/groups/strict/log")).body.lastSeq;
    const refused = await api("DELETE", "/v1/groups/strict/replicas/r3");
    expectError(refused, 503, "unavailable", /would have 1 reachable voter of 2, 2 needed/);
    expect(refused.body.error.reason).toBe("unreachable"); // clients retry it for seconds, not a failover's 90 s
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect((await api("GET", "/v1/groups/strict/log")).body.lastSeq).toBe(before);
    expect(Object.keys(await replicas("strict"))).toEqual(["r1", "r2", "r3"]);
    expect((await command("strict", { op: "put", key: "b", value: 2 })).status).toBe(200);
    // The down one can go: {r1, r3} are both reachable.
    expect((await api("DELETE", "/v1/groups/strict/replicas/r2")).status).toBe(202);
    await api("POST", "/v1/groups/strict/faults", { target: "r2", fault: "none" });
    expect(Object.keys(await replicas("strict"))).toEqual(["r1", "r3"]);
  });

  it("says when a change waits on a majority of voters lost, not the sequencer (no failover mends it): `unreachable`, naming them, where it was retried 90 s", async () => {
    await createGroup("lostmaj");
    expect((await command("lostmaj", { op: "put", key: "a", value: 1 })).status).toBe(200);
    for (const r of ["r2", "r3"]) await api("POST", "/v1/groups/lostmaj/faults", { target: r, fault: "unreachable" });
    try {
      await waitFor("r2 and r3 down", async () => {
        const now = await replicas("lostmaj");
        return now.r2?.status === "down" && now.r3?.status === "down";
      }, 200);
      const refused = await api("POST", "/v1/groups/lostmaj/replicas", {});
      expectError(refused, 503, "unavailable", /The voters r2, r3 do not answer this router either: no failover can mend this/);
      expect(refused.body.error.reason).toBe("unreachable");
      const removal = await api("DELETE", "/v1/groups/lostmaj/replicas/r3");
      expectError(removal, 503, "unavailable", /r2, r3 do not answer/);
      expect(removal.body.error.reason).toBe("unreachable");
      expect(Object.keys(await replicas("lostmaj"))).toEqual(["r1", "r2", "r3"]);
    } finally {
      for (const r of ["r2", "r3"]) await api("POST", "/v1/groups/lostmaj/faults", { target: r, fault: "none" });
    }
    // Back (once the sequencer hears them again): the same add goes through.
    await waitFor("r2 and r3 back", async () => {
      const now = await replicas("lostmaj");
      return now.r2?.status === "healthy" && now.r3?.status === "healthy";
    }, 200);
    expect((await api("POST", "/v1/groups/lostmaj/replicas", {})).status).toBe(202);
  }, 60_000);

  it("a removal ordered by a sequencer lost before it committed is finished by the successor: its event, and the removed replica's storage destroyed", async () => {
    await createGroup("orphan", { machine: "kv", colocate: false });
    expect((await command("orphan", { op: "put", key: "a", value: 1 })).status).toBe(200);
    const lastSeqOf = (id: string) =>
      runInDurableObject(replicaObject("orphan", id, null), (inst: ReplicaObject) => (inst as any).replica.driver.core.position().lastSeq as number);
    const before = await lastSeqOf("r1");
    // r2 slow: the removal reaches r1 and r3 at once, but the new membership {r1, r2} needs r2.
    await api("POST", "/v1/groups/orphan/faults", { target: "r2", fault: "slow", ms: 2_000 });
    const removing = api("DELETE", "/v1/groups/orphan/replicas/r3");
    await waitFor("the removal on r1", async () => (await lastSeqOf("r1")) > before, 20);
    await runInDurableObject(env.SEQUENCER.get(env.SEQUENCER.idFromName("orphan")), async (inst: SequencerObject, state) => {
      const lifecycle = (inst as any).lifecycle;
      lifecycle.driver?.stop();
      lifecycle.driver = null;
      await state.storage.deleteAll();
    });
    await api("POST", "/v1/groups/orphan/faults", { target: "r2", fault: "none" });
    // Its sequencer never saw it commit: "it may still take effect", not a 503 "not ordered".
    expectError(await removing, 504, "timeout", /ordered but not committed in time/);
    // The next request has the successor recover: the removal is in the recovered log.
    expect((await command("orphan", { op: "put", key: "b", value: 2 })).status).toBe(200);
    expect(Object.keys(await replicas("orphan"))).toEqual(["r1", "r2"]);
    await waitFor("the removal's event", async () => {
      const events = (await api("GET", "/v1/groups/orphan/events", undefined, clientToken)).body.events;
      return events.some((e: any) => e.kind === "replica-removed" && e.replica === "r3");
    }, 50);
    const r3 = replicaObject("orphan", "r3", null);
    await waitFor("r3's storage destroyed", async () =>
      (await runInDurableObject(r3, (_i: ReplicaObject, state) => state.storage.sql.exec("SELECT name FROM sqlite_master WHERE name IN ('state', 'replica_log', 'effects')").toArray().length)) === 0, 50);
    expect((await query("orphan", { op: "get", key: "a" })).body.result).toEqual({ value: 1 });
  });

  it("an add whose new replica's init hangs answers 503 after replicaInitTimeoutMs, and the next change goes", async () => {
    await createGroup("init-hangs", { machine: "kv", replicas: 3 });
    const r4 = replicaObject("init-hangs", "r4", null);
    // The prototype's RPC method, for this group's r4 only: its init never answers.
    await runInDurableObject(r4, (inst: ReplicaObject) => {
      const proto = Object.getPrototypeOf(inst);
      const real = proto.replicaInit;
      proto.replicaInit = function (this: ReplicaObject, init: { group: string; id: string }) {
        if (init.group === "init-hangs" && init.id === "r4") {
          proto.replicaInit = real;
          return new Promise(() => {});
        }
        return real.call(this, init);
      };
    });
    expectError(await api("POST", "/v1/groups/init-hangs/replicas", {}), 503, "unavailable", /r4 could not be made .*init of replica r4/);
    // The change slot is free again: the next add provisions r4 anew and is ordered.
    const added = await api("POST", "/v1/groups/init-hangs/replicas", {});
    expect(added.status, JSON.stringify(added.body)).toBe(202);
    expect(added.body.replica.id).toBe("r4");
  }, 30_000);

  it("an add the sequencer did not answer in time is a 504 (it may take effect), not a 503 that says nothing was ordered; the router does not ask twice", async () => {
    await createGroup("add-slow", { machine: "kv", replicas: 3 });
    const sequencer = env.SEQUENCER.get(env.SEQUENCER.idFromName("add-slow"));
    // The change takes longer than the router waits for the sequencer (a slow new replica and a
    // slow commit can add up to that), while its heartbeats go on: no failover.
    await runInDurableObject(sequencer, (inst: SequencerObject) => {
      const driver = (inst as any).driver;
      const real = driver.reconfigureHeld.bind(driver);
      driver.reconfigureHeld = async (change: unknown) => {
        await new Promise((r) => setTimeout(r, sequencerCallTimeoutMs + 2_000));
        return real(change);
      };
    });
    const r = await api("POST", "/v1/groups/add-slow/replicas", {});
    expectError(r, 504, "timeout", /may or may not take effect.*replicas/);
    // It did take effect (a 503 says "certainly not ordered": a retry then made r5 too).
    await waitFor("r4 added", async () => "r4" in (await replicas("add-slow")), 250);
    expect(Object.keys(await replicas("add-slow")).sort()).toEqual(["r1", "r2", "r3", "r4"]);
  }, 60_000);

  it("an add by a sequencer no longer in office is refused before it touches the replica id (a successor's r4 kept)", async () => {
    await createGroup("deposed-add", { machine: "kv", replicas: 3 });
    const sequencer = env.SEQUENCER.get(env.SEQUENCER.idFromName("deposed-add"));
    const inc = await runInDurableObject(sequencer, (inst: SequencerObject) => (inst as any).driver.core.config.incarnation as number);
    // r4 as a successor would have made it; this sequencer then learns it is deposed.
    const r4 = replicaObject("deposed-add", "r4", null);
    expect(await r4.replicaInit({ group: "deposed-add", incarnation: inc, id: "r4", machine: "kv", checkpointEvery: 100 })).toMatchObject({ appliedSeq: 0 });
    await runInDurableObject(sequencer, (inst: SequencerObject) => void ((inst as any).inOffice = async () => false));
    expectError(await api("POST", "/v1/groups/deposed-add/replicas", {}), 503, "unavailable", /not in office/);
    const tables = await runInDurableObject(r4, (_i: unknown, state) => state.storage.sql.exec("SELECT name FROM sqlite_master WHERE name IN ('state', 'meta')").toArray().length);
    expect(tables).toBeGreaterThan(0);
  });

  it("refuses an eighth replica (API.md: 1 to 7) with a 409, and provisions nothing for it", async () => {
    await createGroup("seven", { machine: "kv", replicas: 6 });
    expect((await api("POST", "/v1/groups/seven/replicas", {})).status).toBe(202);
    expectError(await api("POST", "/v1/groups/seven/replicas", {}), 409, "conflict", /7 replicas, the most/);
    expect(Object.keys(await replicas("seven")).sort()).toEqual(["r1", "r2", "r3", "r4", "r5", "r6", "r7"]);
    // Room again once one is removed.
    expect((await api("DELETE", "/v1/groups/seven/replicas/r7")).status).toBe(202);
    expect((await api("POST", "/v1/groups/seven/replicas", {})).status).toBe(202);
  });
});

// A change refused for a quorum its sequencer does not reach, where the router reaches the voters
// (noQuorumSide "sequencer"): the answer must not say "bring the unreachable replicas back". A
// partition between the sequencer and its replicas alone cannot be injected (a fault cuts an object
// off from everyone), so its driver refuses as a cut-off one does (a review).
describe("a change refused by a sequencer cut off from voters that answer the router", () => {
  it("says the sequencer is the one cut off, not that the replicas are unreachable", async () => {
    await createGroup("cutseq");
    expect((await command("cutseq", { op: "put", key: "a", value: 1 })).status).toBe(200);
    await runInDurableObject(env.SEQUENCER.get(env.SEQUENCER.idFromName("cutseq")), (inst: SequencerObject) => {
      const driver = (inst as any).driver;
      driver.reachesQuorum = () => false;
      driver.addReplica = async () => ({ ok: false, ...refusal("no_quorum", "r4", "fewer than 2 of its 3 voters answering a heartbeat within 6000 ms") });
    });
    const refused = await api("POST", "/v1/groups/cutseq/replicas", {});
    expect(refused.status, JSON.stringify(refused.body)).toBe(503);
    expect(refused.body.error.reason).toBeUndefined(); // a failover may mend it: retried as any 503
    expect(refused.body.error.message).toMatch(/the voters answer this router: the sequencer is the one cut off/);
    expect(refused.body.error.message).not.toMatch(/bring the unreachable replicas back/);
  });
});
