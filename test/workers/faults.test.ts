import { createScheduledController, env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../../workers/index.js";
import { cutOffConfirmMs, sequencerTimeoutMs, slowFaultDefaultMs } from "../../shared/limits.js";
import type { ReplicaObject } from "../../workers/replica.js";
import { api, clientToken, command, createGroup, expectError, query, replicaStatuses as statuses, waitFor, replicaObject } from "./helpers.js";

function replica(group: string, id: string) {
  return replicaObject(group, id);
}

/** Makes a replica fail every append and audit, as if it were unreachable, until healed. */
async function breakReplica(group: string, id: string) {
  await runInDurableObject(replica(group, id), (inst: ReplicaObject) => {
    const core = (inst as any).replica.driver.core;
    (inst as any).healthyCore = core;
    (inst as any).replica.driver.core = new Proxy(core, {
      get(target, prop) {
        if (prop === "append" || prop === "auditInfo") {
          return () => {
            throw new Error("injected: replica unreachable");
          };
        }
        const v = Reflect.get(target, prop, target);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
  });
}

async function healReplica(group: string, id: string) {
  await runInDurableObject(replica(group, id), (inst: ReplicaObject) => {
    (inst as any).replica.driver.core = (inst as any).healthyCore;
  });
}

describe("faults", () => {
  it("the faults route: a slow fault without its delay slows by slowFaultDefaultMs (it was 0); a replica the group does not have is a 404", async () => {
    await createGroup("fault-args");
    expect((await api("POST", "/v1/groups/fault-args/faults", { target: "sequencer", fault: "slow" })).body.faults).toEqual([{ target: "sequencer", name: "fault-args", fault: "slow", ms: slowFaultDefaultMs }]);
    expectError(await api("POST", "/v1/groups/fault-args/faults", { target: "r4", fault: "unreachable" }), 404, "not_found", /has no replica r4/);
    expect((await api("POST", "/v1/groups/fault-args/faults", { target: "sequencer", fault: "slow", ms: 10 })).body.faults).toEqual([{ target: "sequencer", name: "fault-args", fault: "slow", ms: 10 }]);
    expect((await api("POST", "/v1/groups/fault-args/faults", { target: "sequencer", fault: "none" })).body.faults).toEqual([]);
    // Corrupting a replica that is cut off: a 503 that says so (it was a 500, a chaos probe).
    await api("POST", "/v1/groups/fault-args/faults", { target: "r2", fault: "unreachable" });
    expectError(await api("POST", "/v1/groups/fault-args/faults", { target: "r2", fault: "corrupt" }), 503, "unavailable", /replica r2 cannot be reached to corrupt it: .*unreachable/);
    await api("POST", "/v1/groups/fault-args/faults", { target: "r2", fault: "none" });
  });

  it("a status that nothing of the group answers is a 503 naming them, not a 200 of made-up zeros (epoch 0, commitSeq 0: a probe)", async () => {
    await createGroup("all-dark");
    expect((await command("all-dark", { op: "put", key: "k", value: 1 })).status).toBe(200);
    const fault = (fault: string) => Promise.all(["sequencer", "r2", "r3"].map((target) => api("POST", "/v1/groups/all-dark/faults", { target, fault })));
    await fault("unreachable");
    try {
      const dark = await api("GET", "/v1/groups/all-dark");
      expectError(dark, 503, "unavailable", /^nothing of group all-dark answers: .*, and none of its replicas \(r1, r2, r3\) within 3000 ms$/);
      expect(dark.headers.get("retry-after")).toBe("1");
      expect(dark.body.error.reason, "retried for seconds by clients").toBe("unreachable");
      // One replica back: its view serves, with the position it gives.
      await api("POST", "/v1/groups/all-dark/faults", { target: "r2", fault: "none" });
      const seen = await api("GET", "/v1/groups/all-dark");
      expect(seen.status).toBe(200);
      expect(seen.body).toMatchObject({ epoch: 1, commitSeq: 1, sequencer: { reachable: false } });
    } finally {
      await fault("none");
    }
  }, 60_000);

  it("the log marks an entry past commitSeq as not committed: a recovery may replace it (a probe read one that became a no-op)", async () => {
    await createGroup("log-tail");
    await command("log-tail", { op: "put", key: "a", value: 1 });
    for (const r of ["r2", "r3"]) await api("POST", "/v1/groups/log-tail/faults", { target: r, fault: "unreachable" });
    const stuck = command("log-tail", { op: "put", key: "orphan", value: 1 });
    let page: any = null;
    await waitFor("an uncommitted entry in the log", async () => {
      page = (await api("GET", "/v1/groups/log-tail/log")).body;
      return page.lastSeq > page.commitSeq;
    }, 20);
    expect(page.entries.map((e: { seq: number; committed?: boolean }) => [e.seq, e.committed])).toEqual([
      [1, undefined],
      [2, false],
    ]);
    for (const r of ["r2", "r3"]) await api("POST", "/v1/groups/log-tail/faults", { target: r, fault: "none" });
    await stuck;
    const healed = (await api("GET", "/v1/groups/log-tail/log")).body;
    expect(healed.commitSeq).toBe(2);
    expect(healed.entries.every((e: { committed?: boolean }) => e.committed === undefined)).toBe(true);
  });

  it("keeps committing with one replica of three down, and catches it up when it returns", async () => {
    await createGroup("one-down");
    await breakReplica("one-down", "r3");
    for (let i = 1; i <= 5; i++) expect((await command("one-down", { op: "put", key: `k${i}`, value: i })).status).toBe(200);
    const s = await statuses("one-down");
    expect(["suspect", "down"]).toContain(s.r3.status);
    expect(s.r1.status).toBe("healthy");
    await healReplica("one-down", "r3");
    // The next write (or the audit) wakes the send loop; r3 is caught up from the sequencer's log.
    await command("one-down", { op: "put", key: "k6", value: 6 });
    await waitFor("r3 to catch up", async () => (await statuses("one-down")).r3.appliedSeq >= 6, 50).catch(() => undefined);
    const r3 = (await statuses("one-down")).r3;
    expect(r3.appliedSeq).toBe(6);
    expect(r3.status).toBe("healthy");
    const audit = await api("POST", "/v1/groups/one-down/audit");
    expect(audit.body.verdict).toBe("consistent");
    expect(audit.body.replicas.every((r: any) => r.verdict === "agrees" || r.verdict === "behind")).toBe(true);
    // A replica one commit apart is "behind" (not compared) in that audit: once the positions meet,
    // every replica agrees (seq 0, counted for all before, made this pass without comparing anything).
    await waitFor("an audit in which every replica agrees", async () => (await api("POST", "/v1/groups/one-down/audit")).body.replicas.every((r: any) => r.verdict === "agrees"), 50);
  });

  it("a slow co-located replica holds back the others' appends for one of its calls at most (outputs majority)", async () => {
    await createGroup("slow-direct", { machine: "kv", outputs: "majority" });
    expect((await api("GET", "/v1/groups/slow-direct")).body.replicas.find((r: any) => r.id === "r1").colocated).toBe(true);
    expect((await command("slow-direct", { op: "put", key: "k0", value: 0 })).status).toBe(200);
    const slowMs = 2_500;
    await api("POST", "/v1/groups/slow-direct/faults", { target: "r1", fault: "slow", ms: slowMs });
    try {
      // The first write may wait out one slow call of r1; after it, r2 and r3 (a quorum) order
      // and answer without it. Before, every message to them waited for each of r1's calls.
      expect((await command("slow-direct", { op: "put", key: "k1", value: 1 })).status).toBe(200);
      // Five writers at once, four puts each: the co-located replica's loop is busy all along.
      const writer = async (w: number) => {
        for (let i = 0; i < 4; i++) {
          const startMs = Date.now();
          const r = await command("slow-direct", { op: "put", key: `w${w}-${i}`, value: i });
          expect(r.status, JSON.stringify(r.body)).toBe(200);
          expect(Date.now() - startMs, `writer ${w}, put ${i}`).toBeLessThan(slowMs / 2);
        }
      };
      await Promise.all([1, 2, 3, 4, 5].map(writer));
    } finally {
      await api("POST", "/v1/groups/slow-direct/faults", { target: "r1", fault: "none" });
    }
    // Nor was the sequencer failed over: its heartbeats to r2 and r3 waited for r1's turns too,
    // and before, they went silent for two of its calls, voted it gone and a successor took over.
    expect((await api("GET", "/v1/groups/slow-direct")).body.epoch).toBe(1);
    await waitFor("r1 to catch up", async () => (await statuses("slow-direct")).r1.appliedSeq >= 22, 100);
    expect((await api("POST", "/v1/groups/slow-direct/audit")).body.verdict).toBe("consistent");
  });

  it("a slow co-located replica, light load: no put waits for it once its first slow call is over, also after its loop idled", async () => {
    await createGroup("slow-direct-idle", { machine: "kv", outputs: "majority" });
    expect((await command("slow-direct-idle", { op: "put", key: "k0", value: 0 })).status).toBe(200);
    const slowMs = 600;
    await api("POST", "/v1/groups/slow-direct-idle/faults", { target: "r1", fault: "slow", ms: slowMs });
    const tookMs: number[] = [];
    try {
      expect((await command("slow-direct-idle", { op: "put", key: "k1", value: 1 })).status).toBe(200);
      await new Promise((r) => setTimeout(r, 4_000));
      // A lone client, one put every 1.3 s: r1's loop idles between them (heartbeats only), and
      // its empty rounds, always quick, cleared directSlow: each put waited a whole call (a review).
      for (let i = 2; i <= 6; i++) {
        const startMs = Date.now();
        const r = await command("slow-direct-idle", { op: "put", key: `k${i}`, value: i });
        expect(r.status, JSON.stringify(r.body)).toBe(200);
        tookMs.push(Date.now() - startMs);
        await new Promise((r) => setTimeout(r, 1_300));
      }
    } finally {
      await api("POST", "/v1/groups/slow-direct-idle/faults", { target: "r1", fault: "none" });
    }
    expect(tookMs.every((ms) => ms < slowMs / 2), `put latencies ${tookMs.join(", ")} ms`).toBe(true);
  });

  it("a sequencer that answers but has no quorum says so in the status (noQuorumMs), and stops saying it once it has one again", async () => {
    await createGroup("no-quorum-status");
    expect((await command("no-quorum-status", { op: "put", key: "k", value: 1 })).status).toBe(200);
    expect((await api("GET", "/v1/groups/no-quorum-status")).body.sequencer.noQuorumMs).toBeUndefined();
    for (const r of ["r2", "r3"]) await api("POST", "/v1/groups/no-quorum-status/faults", { target: r, fault: "unreachable" });
    try {
      await new Promise((r) => setTimeout(r, sequencerTimeoutMs + 1_500));
      const cut = (await api("GET", "/v1/groups/no-quorum-status")).body;
      expect(cut.sequencer.reachable).toBeUndefined();
      expect(cut.sequencer.noQuorumMs).toBeGreaterThanOrEqual(sequencerTimeoutMs);
      // r2 and r3 answer the router no more than the sequencer: no failover could recover (a probe:
      // a location holding two of three replicas, and the status promised a failover for minutes).
      expect(cut.sequencer.noQuorumSide).toBe("replicas");
      expect(cut.sequencer.silentVoters).toEqual(["r2", "r3"]);
    } finally {
      for (const r of ["r2", "r3"]) await api("POST", "/v1/groups/no-quorum-status/faults", { target: r, fault: "none" });
    }
    await waitFor("a quorum again", async () => (await api("GET", "/v1/groups/no-quorum-status")).body.sequencer.noQuorumMs === undefined, 100);
  });

  it("a sequencer that hears no quorum while its voters answer the router says it is the one cut off (noQuorumSide: sequencer)", async () => {
    await createGroup("no-quorum-side");
    expect((await command("no-quorum-side", { op: "put", key: "k", value: 1 })).status).toBe(200);
    // Every call to and from it takes 4 s: its appends time out (3 s), its status still answers (5 s).
    await api("POST", "/v1/groups/no-quorum-side/faults", { target: "sequencer", fault: "slow", ms: 4_000 });
    try {
      await new Promise((r) => setTimeout(r, sequencerTimeoutMs + 1_500));
      // The sequencer's answer takes 4 s of the status's 5: the side comes with a later read (the
      // voters' round, r1's 3 s, goes on past the first answer).
      let cut: any;
      await waitFor("the side", async () => (cut = (await api("GET", "/v1/groups/no-quorum-side")).body).sequencer.noQuorumSide !== undefined, 200);
      expect(cut.sequencer.noQuorumMs).toBeGreaterThanOrEqual(sequencerTimeoutMs);
      expect(cut.sequencer.noQuorumSide).toBe("sequencer");
      // r1 lives in the sequencer's object (co-located), slowed with it; r2 and r3 are a quorum.
      expect(cut.sequencer.silentVoters).toEqual(["r1"]);
    } finally {
      await api("POST", "/v1/groups/no-quorum-side/faults", { target: "sequencer", fault: "none" });
    }
    await waitFor("a quorum again", async () => (await api("GET", "/v1/groups/no-quorum-side")).body.sequencer.noQuorumSide === undefined, 100);
  }, 30_000);

  it("a command that found its sequencer cut off, whose failover was refused because it heard a quorum again meanwhile, is asked again (not the stale 503)", async () => {
    await createGroup("cut-heal");
    expect((await command("cut-heal", { op: "put", key: "k", value: 0 })).status).toBe(200);
    // Every call to and from it takes 4 s: its appends time out (3 s), it has no quorum.
    await api("POST", "/v1/groups/cut-heal/faults", { target: "sequencer", fault: "slow", ms: 4_000 });
    let healed = false;
    try {
      await new Promise((r) => setTimeout(r, sequencerTimeoutMs + 1_500));
      // The command's first answer (about 4 s) is a 503 with cutOffMs; the cut-off vote then waits
      // up to cutOffConfirmMs (6 s), during which the fault is cleared and the sequencer hears its
      // quorum again, so the vote refuses. Before, the router passed on that first 503.
      const pending = command("cut-heal", { op: "put", key: "k", value: 1 }, "healer", 1);
      await new Promise((r) => setTimeout(r, 5_500));
      await api("POST", "/v1/groups/cut-heal/faults", { target: "sequencer", fault: "none" });
      healed = true;
      const r = await pending;
      expect(r.status, JSON.stringify(r.body)).toBe(200);
    } finally {
      if (!healed) await api("POST", "/v1/groups/cut-heal/faults", { target: "sequencer", fault: "none" });
    }
    expect((await api("GET", "/v1/groups/cut-heal")).body.epoch).toBe(1);
  }, 60_000);

  it("a command sent as a cut-off sequencer's replicas come back is answered once it reaches them, not after the whole cut-off vote (6 s: a location probe)", async () => {
    await createGroup("cut-back");
    expect((await command("cut-back", { op: "put", key: "k", value: 0 })).status).toBe(200);
    const fault = (fault: string) => Promise.all(["r2", "r3"].map((target) => api("POST", "/v1/groups/cut-back/faults", { target, fault })));
    await fault("unreachable");
    try {
      await waitFor("the cut-off", async () => ((await api("GET", "/v1/groups/cut-back")).body.sequencer.noQuorumMs ?? 0) >= sequencerTimeoutMs + 500, 100);
    } finally {
      await fault("none");
    }
    // At once: the sequencer still says it is cut off, and the router's vote waits cutOffConfirmMs
    // for it to stay so; asked again meanwhile, it answers as soon as its appends reach r2 and r3.
    const startedMs = Date.now();
    const r = await command("cut-back", { op: "put", key: "k", value: 1 }, "returner", 1);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(Date.now() - startedMs).toBeLessThan(cutOffConfirmMs);
    expect((await api("GET", "/v1/groups/cut-back")).body.epoch).toBe(1); // no failover
  }, 60_000);

  it("a replica that failed is caught up once it is back even if no command comes (a timer restarts its send loop)", async () => {
    await createGroup("quiet");
    await breakReplica("quiet", "r2");
    for (let i = 1; i <= 3; i++) expect((await command("quiet", { op: "put", key: `k${i}`, value: i })).status).toBe(200);
    await healReplica("quiet", "r2");
    // No more commands or reads: only the send loop's own wake-up can bring r2 the log.
    await waitFor("r2 to catch up", async () => (await statuses("quiet")).r2.appliedSeq >= 3, 50).catch(() => undefined);
    const r2 = (await statuses("quiet")).r2;
    expect(r2.appliedSeq).toBe(3);
    expect(r2.status).toBe("healthy");
  });

  it("without a quorum: a queued command times out (504, outcome unknown), then new ones are refused (503); a retry after healing succeeds exactly once", async () => {
    await createGroup("no-quorum");
    await command("no-quorum", { op: "put", key: "a", value: 1 });
    await breakReplica("no-quorum", "r2");
    await breakReplica("no-quorum", "r3");
    const timedOut = await command("no-quorum", { op: "incr", key: "n", by: 1 }, "q", 1);
    expectError(timedOut, 504, "timeout");
    const refused = await command("no-quorum", { op: "incr", key: "n", by: 1 }, "q", 2);
    expectError(refused, 503, "unavailable", /reachable/);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    // A batch answers per command (200), and says when to retry the ones refused.
    const batch = await api("POST", "/v1/groups/no-quorum/commands", { client: "q", commands: [{ request: 3, command: { op: "incr", key: "n", by: 1 } }] }, clientToken);
    expect(batch.status).toBe(200);
    expect(batch.body.results[0].error.code).toBe("unavailable");
    expect(Number(batch.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    const s = await statuses("no-quorum");
    expect([s.r2.status, s.r3.status]).toEqual(["down", "down"]);

    await healReplica("no-quorum", "r2");
    await healReplica("no-quorum", "r3");
    // The retry of the timed-out command returns its outcome; it was executed exactly once.
    let retry = await command("no-quorum", { op: "incr", key: "n", by: 1 }, "q", 1);
    for (let i = 0; i < 20 && retry.status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 200));
      retry = await command("no-quorum", { op: "incr", key: "n", by: 1 }, "q", 1);
    }
    expect(retry.status).toBe(200);
    expect(retry.body).toMatchObject({ seq: 2, output: { value: 1 } });
    const n = await query("no-quorum", { op: "get", key: "n" });
    expect(n.body.result).toEqual({ value: 1 });
  }, 40_000);

  it("an audit reports an unreachable replica and the rest agree", async () => {
    await createGroup("unreach");
    await command("unreach", { op: "put", key: "a", value: 1 });
    await breakReplica("unreach", "r1");
    const audit = await api("POST", "/v1/groups/unreach/audit");
    expect(audit.body.verdict).toBe("consistent");
    expect(audit.body.replicas.map((r: any) => [r.id, r.verdict])).toEqual([
      ["r1", "unreachable"],
      ["r2", "agrees"],
      ["r3", "agrees"],
    ]);
    await healReplica("unreach", "r1");
  });
});

describe("divergence", () => {
  it("tampered state rows in one replica: the audit flags exactly that replica, quarantines it, and it is rebuilt", async () => {
    await createGroup("tamper", { machine: "kv", checkpointEvery: 5 });
    for (let i = 1; i <= 12; i++) await command("tamper", { op: "put", key: `k${i}`, value: i });
    await query("tamper", { op: "get", key: "k1" });
    const before = await api("POST", "/v1/groups/tamper/audit");
    expect(before.body.verdict).toBe("consistent");

    // Change a state row behind the replica's back (as disk corruption would).
    await runInDurableObject(replica("tamper", "r2"), (_inst: ReplicaObject, state) => {
      const n = state.storage.sql.exec("UPDATE state SET v = ? WHERE k = ?", JSON.stringify(666), "m/k3").rowsWritten;
      expect(n).toBe(1);
    });

    const report = (await api("POST", "/v1/groups/tamper/audit")).body;
    expect(report.verdict).toBe("diverged");
    expect(report.group).toBe("tamper");
    expect(report.replicas.map((r: any) => [r.id, r.verdict])).toEqual([
      ["r1", "agrees"],
      ["r2", "diverged"],
      ["r3", "agrees"],
    ]);
    expect(report.quarantined).toEqual(["r2"]);
    const events = (await api("GET", "/v1/groups/tamper/events", undefined, clientToken)).body.events;
    expect(events.filter((e: any) => e.kind === "quarantine").map((e: any) => e.replica)).toEqual(["r2"]);
    let s = await statuses("tamper");
    expect([s.r1.status, s.r3.status]).toEqual(["healthy", "healthy"]);
    expect(["quarantined", "repairing", "healthy"]).toContain(s.r2.status);

    // Until it is rebuilt it serves no reads; no read ever sees the tampered value.
    for (let i = 0; i < 30; i++) {
      const r = await query("tamper", { op: "get", key: "k3" }, "stale");
      expect(r.body.result).toEqual({ value: 3 });
    }
    // Writes go on meanwhile.
    expect((await command("tamper", { op: "put", key: "k13", value: 13 })).status).toBe(200);

    // The audit started a state transfer from a healthy replica: r2 ends healthy with the right rows.
    for (let i = 0; i < 60 && s.r2.status !== "healthy"; i++) {
      await new Promise((r) => setTimeout(r, 50));
      s = await statuses("tamper");
    }
    expect(s.r2.status).toBe("healthy");
    await command("tamper", { op: "put", key: "k14", value: 14 });
    await query("tamper", { op: "get", key: "k14" });
    const row = await runInDurableObject(replica("tamper", "r2"), (_inst: ReplicaObject, state) =>
      state.storage.sql.exec<{ v: string }>("SELECT v FROM state WHERE k = ?", "m/k3").one().v,
    );
    expect(row).toBe("3");
    // Past the next checkpoint (every 5), which all three then hold: r2's own start was its install.
    for (let i = 15; i <= 20; i++) await command("tamper", { op: "put", key: `k${i}`, value: i });
    await query("tamper", { op: "get", key: "k20" });
    const after = (await api("POST", "/v1/groups/tamper/audit")).body;
    expect(after.verdict).toBe("consistent");
    expect(after.replicas.every((r: any) => r.verdict === "agrees")).toBe(true);

    const history = (await api("GET", "/v1/groups/tamper/audits?limit=5", undefined, clientToken)).body.audits;
    // Newest first: the last audit, the one after r2's rebuild (the sequencer's own), the one that found it, the first.
    expect(history.map((a: any) => a.verdict)).toEqual(["consistent", "consistent", "diverged", "consistent"]);
  });
});

describe("cron", () => {
  it("the scheduled handler audits every group and records the reports", async () => {
    await createGroup("cron-a");
    await createGroup("cron-b", { machine: "bank", replicas: 5 });
    await command("cron-a", { op: "put", key: "x", value: 1 });
    await command("cron-b", { op: "open", account: "a", balance: 10 });
    // A command answers once one replica applied it; the others apply it a moment later.
    for (const g of ["cron-a", "cron-b"]) {
      await waitFor(`${g} to apply everywhere`, async () => Object.values(await statuses(g)).every((r: any) => r.appliedSeq >= 1), 20);
    }
    const controller = createScheduledController({ scheduledTime: new Date(), cron: "* * * * *" });
    await worker.scheduled(controller, env as any);
    for (const g of ["cron-a", "cron-b"]) {
      const audits = (await api("GET", `/v1/groups/${g}/audits`, undefined, clientToken)).body.audits;
      expect(audits).toHaveLength(1);
      expect(audits[0]).toMatchObject({ group: g, verdict: "consistent", seq: 1 });
    }
    expect((await api("GET", "/v1/groups/cron-b/audits", undefined, clientToken)).body.audits[0].replicas).toHaveLength(5);
  });
});

describe("output voting", () => {
  it("majority mode: a replica whose output differs is reported diverged and quarantined; the client gets the majority's output", async () => {
    await createGroup("vote", { machine: "kv", outputs: "majority" });
    await command("vote", { op: "put", key: "x", value: "right" });
    await query("vote", { op: "get", key: "x" });
    // Replicas store applied rows in batches; an audit stores them (its scrub reads storage).
    expect((await api("POST", "/v1/groups/vote/audit")).body.verdict).toBe("consistent");
    await runInDurableObject(replica("vote", "r3"), (_inst: ReplicaObject, state) => {
      const n = state.storage.sql.exec("UPDATE state SET v = ? WHERE k = ?", JSON.stringify("wrong"), "m/x").rowsWritten;
      expect(n).toBe(1);
    });
    const r = await command("vote", { op: "get", key: "x" });
    expect(r.body.output).toEqual({ value: "right" });
    // r3 is quarantined, then rebuilt by a state transfer (from r1 in the sequencer's object that
    // can take a few milliseconds only): the events show the quarantine; r1 and r2 never leave healthy.
    const quarantined = async () => {
      const events = (await api("GET", "/v1/groups/vote/events", undefined, clientToken)).body.events;
      return events.filter((e: any) => e.kind === "quarantine").map((e: any) => e.replica);
    };
    await waitFor("r3's quarantine", async () => (await quarantined()).length > 0, 40);
    expect(await quarantined()).toEqual(["r3"]);
    const s = await statuses("vote");
    expect([s.r1.status, s.r2.status]).toEqual(["healthy", "healthy"]);
  });
});
