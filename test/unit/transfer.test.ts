import { describe, expect, it } from "vitest";
import { copySuspectMs, logRetentionEntries } from "../../shared/limits.js";
import { directGroup, realClock } from "../support/direct.js";
import { SequencerDriver } from "../../shared/protocol/driver.js";
import { SequencerCore } from "../../shared/protocol/sequencer.js";
import { MemoryReplicaStorage } from "../../shared/protocol/memory.js";
import { ReplicaCore, newReplicaMeta } from "../../shared/protocol/replica.js";
import { ReplicaDriver } from "../../shared/protocol/replica-driver.js";
import { machineFor } from "../../shared/machines/index.js";

const config = (replicas = 3) => ({ group: "g", incarnation: 0, machine: "kv" as const, replicas, locations: [], outputs: "first" as const, checkpointEvery: 50 });
const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));

async function putMany(driver: ReturnType<typeof directGroup>["driver"], client: string, from: number, count: number, concurrency = 500) {
  for (let i = 0; i < count; i += concurrency) {
    const batch = [];
    for (let j = i; j < Math.min(count, i + concurrency); j++) {
      const n = from + j;
      batch.push(driver.submit(client, n, { op: "put", key: `key-${String(n).padStart(6, "0")}`, value: { n, pad: "x".repeat(40) } }));
    }
    const answers = await Promise.all(batch);
    for (const a of answers) if (a.kind !== "ok") throw new Error(`submit: ${JSON.stringify(a)}`);
  }
}

/** r3 goes down, and `puts` puts follow once the sequencer counts it down (until then it holds compaction back for it). */
async function fallBehindCompaction(g: ReturnType<typeof directGroup>, puts: number) {
  g.down.add("r3");
  for (let i = 1; i < 400 && g.driver.core.replicaStatuses().find((r) => r.id === "r3")!.status !== "down"; i++) {
    await putMany(g.driver, "warm", i, 1);
    await new Promise((r) => setTimeout(r, 10));
  }
  await putMany(g.driver, "c", 1, puts, 100);
}

/** r3 is back, and is given time (and kicks) to catch up with the commit point, by state transfer if need be. */
async function backAndCaughtUp(g: ReturnType<typeof directGroup>) {
  g.down.delete("r3");
  await putMany(g.driver, "c", 2_000, 1);
  for (let i = 0; i < 200 && g.replicas.get("r3")!.core!.appliedSeq < g.driver.core.commitSeq; i++) {
    await new Promise((r) => setTimeout(r, 25));
    g.driver.kickAll();
  }
}

describe("log compaction", () => {
  it("keeps the sequencer's and the replicas' logs bounded under a write load of many times the window", async () => {
    const retention = { entries: 200, slack: 50 };
    const g = directGroup(config(), retention);
    await putMany(g.driver, "c", 1, 3_000, 100);
    await new Promise((r) => setTimeout(r, 20));
    // Many times the window went through; each log holds at most the window, the slack and one batch.
    const bound = retention.entries + retention.slack + 256;
    expect(g.seqStore.log.length).toBeLessThanOrEqual(bound);
    expect(g.driver.core.requestIndexSize).toBeLessThanOrEqual(bound);
    for (const s of g.stores.values()) {
      expect(s.log.size).toBeLessThanOrEqual(bound);
      expect(s.meta!.baseSeq).toBeGreaterThan(2_000);
    }
    // Nothing is lost: every key is there, and a retry of a compacted request still answers once.
    for (const [id, replica] of g.replicas) {
      const items: [string, { n: number; pad: string }][] = [];
      let after: string | undefined;
      do {
        const r = await replica.query({ op: "list", prefix: "key-", limit: 1000, ...(after === undefined ? {} : { after }) }, g.driver.core.commitSeq, 2_000);
        if (r.kind !== "ok") throw new Error(`${id}: ${JSON.stringify(r)}`);
        const page = r.result as { items: [string, { n: number; pad: string }][]; next?: string };
        items.push(...page.items);
        after = page.next;
      } while (after !== undefined);
      expect(items.length, id).toBe(3_000);
      items.forEach(([key, value], i) => {
        expect(key).toBe(`key-${String(i + 1).padStart(6, "0")}`);
        expect(value).toEqual({ n: i + 1, pad: "x".repeat(40) });
      });
    }
    // Request 2,700's entry is compacted away (and its index row with it); the replicated session
    // table still answers the retry with the original output, executing nothing.
    expect(g.driver.core.baseSeq).toBeGreaterThan(2_700);
    const retry = await g.driver.submit("c", 2_700, { op: "put", key: "key-002700", value: { n: 2_700, pad: "x".repeat(40) } });
    expect(retry).toMatchObject({ kind: "ok", output: { previous: null } });
    expect(retry.kind === "ok" && retry.seq).toBeLessThanOrEqual(3_000);
    // The default window is a named constant.
    expect(logRetentionEntries).toBe(10_000);
  });
});

describe("state transfer", () => {
  it("after a copy that did not match its source's digest, the next try copies from another replica", async () => {
    const g = directGroup(config(), { entries: 100_000, slack: 1_000 });
    await putMany(g.driver, "c", 1, 50);
    // r1, the first source by position, has a row changed behind its digest: a copy from it can
    // never match. r3 needs a transfer.
    g.replicas.get("r1")!.core!.saveState();
    g.stores.get("r1")!.rows.put("m/key-000007", JSON.stringify({ corrupted: true }));
    expect(await g.driver.repair("r3")).toBe(false);
    expect(g.calls.get("r1:beginSnapshot")).toBe(1);
    expect(await g.driver.repair("r3")).toBe(true);
    expect(g.calls.get("r2:beginSnapshot")).toBe(1);
    expect(g.stores.get("r3")!.rows.get("m/key-000007")).toBe(JSON.stringify({ n: 7, pad: "x".repeat(40) }));
    g.driver.stop();
  });

  it("a source whose copy did not sum to its digest is not copied again, and is judged at once by a whole scrub (two damaged alike: a whole transfer every 1 to 2 s, for good)", async () => {
    const g = directGroup({ ...config(), checkpointEvery: 5 }, { entries: 10, slack: 5 });
    for (let n = 1; n <= 40; n++) await putMany(g.driver, "c", n, 1);
    await tick();
    expect(g.driver.core.baseSeq).toBeGreaterThan(0); // no rebuild from the empty state and the log
    // r1 and r2 damaged alike, behind their digests, before any audit: the sequencer cannot know.
    for (const id of ["r1", "r2"]) {
      g.replicas.get(id)!.core!.saveState();
      g.stores.get(id)!.rows.put("m/key-000007", JSON.stringify({ corrupted: true }));
    }
    const snapshots = () => (g.calls.get("r1:beginSnapshot") ?? 0) + (g.calls.get("r2:beginSnapshot") ?? 0);
    for (let i = 0; i < 6; i++) {
      expect(await g.driver.repair("r3")).toBe(false);
      await tick(); // the judgement of the suspect runs meanwhile
    }
    // One copy from each, then none: the others are refused before anything is frozen or touched.
    expect(snapshots()).toBe(2);
    const failed = g.events.filter((e) => e.kind === "repair" && e.fields.action === "failed");
    expect(failed.map((e) => e.fields.source).sort()).toEqual(["r1", "r2"]);
    expect(failed[0]!.message).toMatch(/^a rebuild of r3 from r\d at seq \d+ failed: the rows copied sum to \w{12}, not r\d's digest \w{12}; r\d is no source for 5 min, or until its rows pass a scrub$/);
    // Each judged by a whole scrub: damaged, so only an operator mends it (the alarm's way out).
    expect(g.driver.repairRefusal("r3")).toMatchObject({ code: "conflict", reason: expect.stringMatching(/^no replica to copy r3 from: r1, r2 failed the last audit's scrub .*release one that failed with rebase/) });
    // r1's rows mended: its next scrub passes, and it is a source again.
    g.stores.get("r1")!.rows.put("m/key-000007", JSON.stringify({ n: 7, pad: "x".repeat(40) }));
    await g.driver.audit();
    expect(g.driver.repairRefusal("r3")).toBeNull();
    // The send loop's next try (a pause after the last failure) copies from r1.
    const status = () => g.driver.core.replicaStatuses().find((r) => r.id === "r3")!.status;
    for (let i = 0; i < 200 && status() !== "healthy"; i++) await tick(25);
    expect(status()).toBe("healthy");
    expect(g.calls.get("r1:beginSnapshot")).toBe(2);
    expect(g.stores.get("r3")!.rows.get("m/key-000007")).toBe(JSON.stringify({ n: 7, pad: "x".repeat(40) }));
    g.driver.stop();
  });

  it("a target whose install fails from a source a whole scrub then passes waits copySuspectMs, and the source is no suspect (every source was suspected in turn: a review)", async () => {
    const g = directGroup({ ...config(), checkpointEvery: 5 }, { entries: 10, slack: 5 });
    for (let n = 1; n <= 40; n++) await putMany(g.driver, "c", n, 1);
    await tick();
    // r3's installs never sum to the digest (its storage failing), whatever it is sent.
    const r3 = g.replicas.get("r3")! as unknown as { endInstall: (id: string) => unknown };
    const endInstall = r3.endInstall.bind(r3);
    r3.endInstall = (id: string) => ({ ...(endInstall(id) as object), ok: false, digest: "f".repeat(64) });
    g.driver.core.setQuarantined("r3", true);
    expect(await g.driver.repair("r3")).toBe(false);
    for (let i = 0; i < 40 && g.driver.repairRefusal("r3") === null; i++) await tick();
    expect(g.driver.repairRefusal("r3")).toMatchObject({ code: "unavailable", reason: expect.stringMatching(/^r3's install did not sum to the digest of a source that then passed a whole scrub \(1 time in a row\): its storage may be failing; tried again 5 min after, or remove it and add a replica/) });
    expect(g.events.find((e) => e.fields.action === "judged")).toMatchObject({ kind: "repair", fields: { verdict: "sound", target: "r3" }, message: expect.stringMatching(/r3's install is what failed/) });
    const copies = (g.calls.get("r1:beginSnapshot") ?? 0) + (g.calls.get("r2:beginSnapshot") ?? 0);
    expect(copies).toBe(1);
    expect(await g.driver.repair("r3")).toBe(false); // refused before any copy
    expect((g.calls.get("r1:beginSnapshot") ?? 0) + (g.calls.get("r2:beginSnapshot") ?? 0)).toBe(copies);
    // copySuspectMs later it is tried again; failing again, it waits twice as long.
    const nowMs = g.io.nowMs.bind(g.io);
    let shiftMs = copySuspectMs + 1;
    Object.assign(g.io, { nowMs: () => nowMs() + shiftMs });
    expect(g.driver.repairRefusal("r3")).toBeNull();
    expect(await g.driver.repair("r3")).toBe(false);
    for (let i = 0; i < 40 && g.driver.repairRefusal("r3") === null; i++) await tick();
    expect(g.driver.repairRefusal("r3")?.reason).toMatch(/\(2 times in a row\).*tried again 10 min after/);
    shiftMs += copySuspectMs + 1;
    expect(g.driver.repairRefusal("r3")).not.toBeNull();
    shiftMs += copySuspectMs;
    expect(g.driver.repairRefusal("r3")).toBeNull();
    Object.assign(g.io, { nowMs });
    g.driver.stop();
  });

  it("does not judge the replica in the sequencer's object by a whole scrub (its direct calls would hold every write): it stays a suspect (a review)", async () => {
    const g = directGroup({ ...config(), checkpointEvery: 5 }, { entries: 10, slack: 5 });
    for (let n = 1; n <= 40; n++) await putMany(g.driver, "c", n, 1);
    await tick();
    Object.assign(g.io, { directReplica: "r1" });
    g.down.add("r2"); // r1 the only source
    g.replicas.get("r1")!.core!.saveState();
    g.stores.get("r1")!.rows.put("m/key-000007", JSON.stringify({ corrupted: true }));
    g.driver.core.setQuarantined("r3", true);
    expect(await g.driver.repair("r3")).toBe(false);
    await tick(50);
    expect(g.events.find((e) => e.fields.action === "failed")?.fields.source).toBe("r1");
    expect(g.calls.get("r1:scrubNow") ?? 0).toBe(0);
    expect((g.driver as unknown as { suspected: (id: string) => boolean }).suspected("r1")).toBe(true);
    g.driver.stop();
  });

  it("copies from a replica outside the sequencer's object when one can serve: freezing the one inside held every write (a probe: 2.7 to 5 s)", async () => {
    const g = directGroup(config(), { entries: 100_000, slack: 1_000 });
    await putMany(g.driver, "c", 1, 50);
    Object.assign(g.io, { directReplica: "r1" }); // as the workers' layout: r1 in the sequencer's object
    expect(g.driver.core.readCandidates()[0]).toBe("r1"); // first by position (tied, first by id)
    expect(await g.driver.repair("r3")).toBe(true);
    expect([g.calls.get("r1:beginSnapshot") ?? 0, g.calls.get("r2:beginSnapshot") ?? 0]).toEqual([0, 1]);
    // With r2 out of reach, r1 is the source.
    g.down.add("r2");
    expect(await g.driver.repair("r3")).toBe(true);
    expect(g.calls.get("r1:beginSnapshot")).toBe(1);
    // Once r2 is known to miss (suspect), r1 is asked first: a hung r2 first cost 3 s (a review).
    g.driver.core.noteContact("r2", false, Date.now());
    const asked = g.calls.get("r2:beginSnapshot") ?? 0;
    expect(await g.driver.repair("r3")).toBe(true);
    expect([g.calls.get("r1:beginSnapshot"), g.calls.get("r2:beginSnapshot") ?? 0]).toEqual([2, asked]);
    g.driver.stop();
  });

  it("a repair whose source fails at once is tried again after a growing pause, not at once for ever", async () => {
    const g = directGroup(config(), { entries: 100_000, slack: 1_000 });
    await putMany(g.driver, "c", 1, 20);
    // Every possible source fails at once; r3 needs a transfer.
    g.down.add("r1");
    g.down.add("r2");
    const snapshots = () => (g.calls.get("r1:beginSnapshot") ?? 0) + (g.calls.get("r2:beginSnapshot") ?? 0);
    // Without a pause, repair and the send loop call each other in microtasks and never yield:
    // past 1,000 tries the sources come back (checked on every call) so that the loop can end.
    const count = g.calls.set.bind(g.calls);
    g.calls.set = (key, n) => {
      count(key, n);
      if (snapshots() > 1_000) g.down.clear();
      return g.calls;
    };
    g.driver.core.setQuarantined("r3", true);
    g.driver.kickAll();
    await new Promise((r) => setTimeout(r, 400));
    // Pauses of 50, 100, 200 ms: a handful of tries in 400 ms.
    expect(snapshots()).toBeGreaterThan(0);
    expect(snapshots()).toBeLessThan(10);
    // Back, the sources serve the next try, and r3 is rebuilt.
    g.down.clear();
    for (let i = 0; i < 100 && g.driver.core.replicaStatuses().find((r) => r.id === "r3")!.status !== "healthy"; i++) await new Promise((r) => setTimeout(r, 25));
    expect(g.driver.core.replicaStatuses().find((r) => r.id === "r3")!.status).toBe("healthy");
    g.driver.stop();
  });

  it("rebuilds a corrupted replica from a healthy one in pages (20,000 keys) while writes continue, and the audit then agrees", async () => {
    const g = directGroup(config(), { entries: 100_000, slack: 1_000 });
    await putMany(g.driver, "loader", 1, 20_000);
    // Corrupt one row of r2 behind its digest.
    g.stores.get("r2")!.rows.put("m/key-000123", JSON.stringify({ corrupted: true }));
    const audit = await g.driver.audit();
    expect(audit.verdict).toBe("diverged");
    expect(audit.replicas.filter((r) => r.verdict === "diverged").map((r) => r.id)).toEqual(["r2"]);

    // The audit started the repair; writes go on meanwhile. Each page to r2 takes 30 ms more, so
    // its progress can be seen between pages (the status shows it: a probe saw nothing move).
    g.slow.set("r2", 30);
    const during = putMany(g.driver, "writer", 1, 300, 50);
    const seen: { source: string; seq: number; rows: number }[] = [];
    for (let i = 0; i < 400 && g.driver.core.replicaStatuses().find((r) => r.id === "r2")!.status !== "healthy"; i++) {
      const p = g.driver.rebuildProgress("r2");
      if (p) seen.push({ source: p.source, seq: p.seq, rows: p.rows });
      await new Promise((r) => setTimeout(r, 10));
    }
    g.slow.delete("r2");
    await during;
    const r2 = g.driver.core.replicaStatuses().find((r) => r.id === "r2")!;
    expect(r2.status).toBe("healthy");
    expect(g.driver.rebuildProgress("r2")).toBeUndefined();
    const rows = seen.map((p) => p.rows);
    expect(rows).toEqual([...rows].sort((a, b) => a - b)); // only ever up
    expect(rows.some((n) => n > 0 && n < 20_000)).toBe(true); // seen between pages
    expect(seen[0]).toMatchObject({ source: expect.stringMatching(/^r[13]$/), seq: expect.any(Number) });
    expect(seen[0]!.seq).toBeGreaterThanOrEqual(20_000);
    // Let r2 catch up from the log, then compare at the same seq.
    await putMany(g.driver, "writer", 1_000, 1);
    const applied = () => new Set([...g.replicas.values()].map((d) => d.core!.position().appliedSeq)).size;
    for (let i = 0; i < 100 && applied() > 1; i++) await new Promise((r) => setTimeout(r, 20));
    const positions = [...g.replicas.values()].map((d) => d.core!.position());
    expect(new Set(positions.map((p) => p.appliedSeq)).size).toBe(1);
    expect(new Set(positions.map((p) => p.digest)).size).toBe(1);
    expect(g.stores.get("r2")!.rows.get("m/key-000123")).toBe(JSON.stringify({ n: 123, pad: "x".repeat(40) }));
    expect(g.stores.get("r2")!.rows.size).toBeGreaterThan(20_000);
    const after = await g.driver.audit();
    expect(after.verdict).toBe("consistent");
    expect(after.replicas.every((r) => r.verdict === "agrees")).toBe(true);
  }, 60_000);

  it("rebuilds a replica that fell behind the compacted log", async () => {
    const g = directGroup(config(), { entries: 100, slack: 20 });
    await fallBehindCompaction(g, 1_000);
    expect(g.driver.core.baseSeq).toBeGreaterThan(500);
    await backAndCaughtUp(g);
    const r3 = g.replicas.get("r3")!.core!.position();
    const r1 = g.replicas.get("r1")!.core!.position();
    expect(r3.appliedSeq).toBe(r1.appliedSeq);
    expect(r3.digest).toBe(r1.digest);
  }, 60_000);

  it("a replica rebuilt past a compacted config entry knows the membership it carried (a recovery starts from it)", async () => {
    const g = directGroup(config(4), { entries: 100, slack: 20 });
    expect(await g.driver.removeReplica("r4")).toEqual({ ok: true });
    await fallBehindCompaction(g, 500);
    expect(g.driver.core.baseSeq).toBeGreaterThan(100);
    await backAndCaughtUp(g);
    const own = g.replicas.get("r1")!.fence(0)!.membership;
    expect(own?.members.map((m) => m.id)).toEqual(["r1", "r2", "r3"]);
    const rebuilt = g.replicas.get("r3")!.fence(0)!;
    expect(rebuilt.baseSeq).toBeGreaterThan(own!.seq); // it never held the entry
    expect(rebuilt.membership).toEqual(own);
  }, 60_000);
});

describe("a replica added to a compacted group", () => {
  it("shows joining, never repairing, while a state transfer brings it in, then healthy as a voter", async () => {
    const g = directGroup(config(), { entries: 100, slack: 20 });
    await putMany(g.driver, "c", 1, 600, 100);
    expect(g.driver.core.baseSeq).toBeGreaterThan(100);
    // The object the add provisions (the direct group makes none): an empty replica r4.
    const store = new MemoryReplicaStorage();
    const meta = newReplicaMeta("g", "r4", "kv", 50);
    store.saveMeta(meta);
    g.replicas.set("r4", new ReplicaDriver(new ReplicaCore(store, meta, machineFor("kv"), { entries: 100, slack: 20 }), realClock));
    // Every call a replica serves samples r4's status (the transfer runs on microtasks: a timer would miss it).
    const seen = new Set<string>();
    g.hooks.served = () => {
      const r4 = g.driver.core.replicaStatuses().find((r) => r.id === "r4");
      if (r4) seen.add(r4.status);
    };
    expect(await g.driver.addReplica(null)).toEqual({ ok: true, id: "r4" });
    for (let i = 0; i < 400 && g.driver.core.replicaStatuses().find((r) => r.id === "r4")!.status !== "healthy"; i++) {
      await putMany(g.driver, "d", i + 1, 1);
      await new Promise((r) => setTimeout(r, 10));
      g.driver.kickAll();
    }
    expect(g.driver.core.replicaStatuses().find((r) => r.id === "r4")!.status).toBe("healthy");
    expect(g.replicas.get("r4")!.core!.appliedSeq).toBeGreaterThan(600);
    expect(seen.has("joining")).toBe(true);
    expect(seen.has("repairing")).toBe(false);
  }, 60_000);
});

describe("a replica waiting for a state transfer", () => {
  it("that cannot be reached shows suspect, then down, not lagging for good (its failed rebuild calls are misses)", async () => {
    const g = directGroup(config(), { entries: 100_000, slack: 1_000 });
    await putMany(g.driver, "c", 1, 20, 20);
    g.down.add("r3");
    g.driver.core.noteRebuilding("r3"); // as a restore or a failed transfer leaves it: no appends, only transfers
    g.driver.kickAll();
    const status = () => g.driver.core.replicaStatuses().find((r) => r.id === "r3")!.status;
    for (let i = 0; i < 400 && status() !== "down"; i++) {
      await new Promise((r) => setTimeout(r, 25));
      g.driver.kickAll();
    }
    expect(status()).toBe("down");
    // Each rebuild asks the target first (before a source freezes its state): those calls are its misses.
    expect(g.calls.get("r3:position") ?? 0).toBeGreaterThan(0);
    expect(g.calls.get("r3:beginInstall") ?? 0).toBe(0);
    g.down.delete("r3");
    for (let i = 0; i < 400 && status() !== "healthy"; i++) {
      await new Promise((r) => setTimeout(r, 25));
      g.driver.kickAll();
    }
    expect(status()).toBe("healthy");
    expect(g.replicas.get("r3")!.core!.appliedSeq).toBe(g.driver.core.commitSeq);
  }, 30_000);
});

describe("a repair of a group's only replica", () => {
  it("once its log was compacted is a 409 (conflict: no retry mends it, so it keeps no group awake) that says there is nothing to copy from (it said retry)", async () => {
    const g = directGroup(config(1), { entries: 10, slack: 5 });
    await putMany(g.driver, "c", 1, 50, 10);
    expect(g.driver.core.baseSeq).toBeGreaterThan(0);
    expect(g.driver.repairRefusal("r1")).toMatchObject({ code: "conflict", reason: expect.stringMatching(/^r1 is the group's only replica .*nothing to rebuild it from; release it/) });
    g.driver.stop();
  });
});

describe("a rebuild's first question to its target", () => {
  it("a target that lost its storage while awaiting a transfer is made again (a rejoin), then rebuilt: it gets no appends to learn it from", async () => {
    const retention = { entries: 100_000, slack: 1_000 };
    const g = directGroup(config(), retention);
    await putMany(g.driver, "c", 1, 60, 10);
    const r3 = g.replicas.get("r3")!;
    // Awaiting a transfer (as a failed one leaves it: no appends, only transfers), then its storage is lost.
    g.driver.core.noteRebuilding("r3");
    r3.detach();
    g.stores.set("r3", new MemoryReplicaStorage());
    // A sequencer's init of a replica with no state (ReplicaHost.init): made again, rejoined.
    const made: unknown[] = [];
    (r3 as unknown as { init: (rejoin: unknown) => unknown }).init = (rejoin) => {
      made.push(rejoin);
      const store = g.stores.get("r3")!;
      const meta = newReplicaMeta(config().group, "r3", "kv", config().checkpointEvery, 0, rejoin as never);
      store.saveMeta(meta);
      r3.attach(new ReplicaCore(store, meta, machineFor("kv"), retention));
      return r3.core!.position();
    };
    for (let i = 0; i < 200 && r3.core?.appliedSeq !== g.driver.core.commitSeq; i++) {
      await new Promise((r) => setTimeout(r, 25));
      g.driver.kickAll();
    }
    expect(made).toHaveLength(1);
    expect(r3.core!.appliedSeq).toBe(g.driver.core.commitSeq);
    expect(g.driver.core.replicaStatuses().find((r) => r.id === "r3")!.status).toBe("healthy");
    g.driver.stop();
  }, 30_000);

  it("a target at a newer epoch (fenced by a newer sequencer) stops this one, as an append's stale_epoch does, and no source's state is frozen", async () => {
    const g = directGroup(config(), { entries: 100_000, slack: 1_000 });
    await putMany(g.driver, "c", 1, 10, 10);
    const r3 = g.replicas.get("r3")!;
    const real = r3.position.bind(r3);
    r3.position = () => ({ ...real()!, epoch: g.driver.core.epoch + 1 });
    let fenced = 0;
    g.io.onFenced = () => void fenced++;
    g.driver.core.noteRebuilding("r3");
    expect(await g.driver.repair("r3")).toBe(false);
    expect((g.calls.get("r1:beginSnapshot") ?? 0) + (g.calls.get("r2:beginSnapshot") ?? 0)).toBe(0);
    expect(g.driver.repairFailure("r3")).toMatch(/newer sequencer/);
    expect((g.driver as unknown as { stopped: boolean }).stopped).toBe(true);
    expect(fenced).toBe(1);
  });
});

describe("a repair when a quorum's rows failed the scrub (the audit's alarm)", () => {
  // A probe corrupted every replica: the audit raised its alarm and quarantined nobody, and an
  // operator's repair of r2 copied r1's damaged rows, whose digest check failed, r2 left
  // rebuilding for good. A replica that failed the last scrub is no source now.
  const corruptAll = (g: ReturnType<typeof directGroup>) => {
    for (const id of ["r1", "r2", "r3"]) {
      g.replicas.get(id)!.core!.saveState();
      g.stores.get(id)!.rows.put("m/k1", JSON.stringify(1_000));
    }
  };

  it("an audit whose scrub flags a replica, with no position the others share yet, asks again and quarantines it (it was left serving until the next audit: a probe)", async () => {
    const g = directGroup(config(), { entries: 1000, slack: 100 });
    for (let r = 1; r <= 4; r++) expect((await g.driver.submit("a", r, { op: "put", key: `k${r}`, value: r })).kind).toBe("ok");
    await tick();
    g.replicas.get("r3")!.core!.saveState();
    g.stores.get("r3")!.rows.put("m/k1", JSON.stringify(1_000));
    // r2 misses the next entry (r1 and r3 commit it) and is back, one entry behind, as the audit asks.
    g.down.add("r2");
    expect((await g.driver.submit("a", 5, { op: "put", key: "k5", value: 5 })).kind).toBe("ok");
    g.down.delete("r2");
    expect(g.replicas.get("r2")!.core!.position().appliedSeq).toBeLessThan(g.replicas.get("r1")!.core!.position().appliedSeq);
    const report = await g.driver.audit();
    expect(report).toMatchObject({ verdict: "diverged", quarantined: ["r3"] });
    expect(report.compared).toBeUndefined();
    g.driver.stop();
  });

  it("is refused before anything is touched once the log is compacted; a rebased replica is then the source of the others", async () => {
    const g = directGroup({ ...config(), checkpointEvery: 5 }, { entries: 10, slack: 5 });
    for (let r = 1; r <= 40; r++) expect((await g.driver.submit("a", r, { op: "put", key: `k${r}`, value: r })).kind).toBe("ok");
    await tick();
    expect(g.driver.core.baseSeq).toBeGreaterThan(0);
    corruptAll(g);
    expect((await g.driver.audit()).alarm).toMatch(/3 of 3 voters failed the same check \(r1, r2, r3\): their rows do not match their digests .*release one with rebase/);
    // The same alarm at the next audits is one event: one per audit pushed the group's failovers,
    // moves and repairs out of its 200 events in about 3 hours of cron (a probe).
    for (let i = 0; i < 3; i++) expect((await g.driver.audit()).alarm).toMatch(/3 of 3 voters failed/);
    expect(g.events.filter((e) => e.fields.action === "alarm")).toHaveLength(1);
    // Nothing was compared (every replica failed its scrub): the event names no seq, 0 read as one (a probe).
    expect(g.events.find((e) => e.fields.action === "alarm")!.fields).toEqual({ action: "alarm" });
    expect(g.driver.repairRefusal("r2")).toMatchObject({ code: "conflict", reason: expect.stringMatching(/^no replica to copy r2 from: r1, r3 failed the last audit's scrub .*release one that failed with rebase/) });
    // With one of them only out of reach (and its scrub not failed), a retry may find it: a 503.
    const failedScrubs = (g.driver as unknown as { scrubFailed: Map<string, unknown> }).scrubFailed;
    const r3Failed = failedScrubs.get("r3");
    failedScrubs.delete("r3");
    const core = g.driver.core as unknown as { readCandidates: () => string[] };
    const candidates = core.readCandidates;
    core.readCandidates = () => candidates.call(g.driver.core).filter((id) => id !== "r3"); // out of reach
    expect(g.driver.repairRefusal("r2")).toMatchObject({ code: "unavailable", reason: expect.stringMatching(/^no healthy replica to copy r2 from now \(r1 failed the last audit's scrub\); retry/) });
    // With it needing a state transfer itself (left halfway by a failed rebuild), a retry never
    // finds a source: a 409 with the way out (it was a 503 "retry": a probe).
    const needs = (g.driver.core as unknown as { needsTransfer: (id: string) => boolean });
    const needsTransfer = needs.needsTransfer;
    needs.needsTransfer = (id) => id === "r3" || needsTransfer.call(g.driver.core, id);
    expect(g.driver.repairRefusal("r2")).toMatchObject({ code: "conflict", reason: expect.stringMatching(/^no replica to copy r2 from: r1 failed the last audit's scrub \(their rows do not match their digests\) and r3 needs a state transfer itself; release one that failed with rebase/) });
    needs.needsTransfer = needsTransfer;
    core.readCandidates = candidates;
    failedScrubs.set("r3", r3Failed);
    // Not quarantined: a plain release has nothing to do, a rebase takes its rows as they are.
    expect(await g.driver.release("r2", false)).toMatchObject({ ok: false, reason: "replica r2 is not quarantined: nothing to release; its rows failed its last scrub: release it with rebase to take them as they are" });
    expect(await g.driver.release("r2", true)).toEqual({ ok: true });
    expect(g.driver.repairRefusal("r1")).toBeNull();
    expect(await g.driver.repair("r1")).toBe(true);
    expect(await g.driver.repair("r3")).toBe(true);
    expect((await g.driver.audit()).verdict).toBe("consistent");
    g.driver.stop();
  });

  it("after the sequencer's restart (it knows no scrub yet): the damaged sources refuse, the target is left as it was, and rebase is still the way out", async () => {
    const g = directGroup({ ...config(), checkpointEvery: 5 }, { entries: 10, slack: 5 });
    for (let r = 1; r <= 40; r++) expect((await g.driver.submit("a", r, { op: "put", key: `k${r}`, value: r })).kind).toBe("ok");
    await tick();
    corruptAll(g);
    expect((await g.driver.audit()).alarm).toMatch(/3 of 3 voters failed the same check/);
    g.driver.stop();
    const restarted = new SequencerDriver(new SequencerCore(g.seqStore, g.seqStore.meta!), g.io, { entries: 10, slack: 5 });
    expect(restarted.repairRefusal("r2")).toBeNull(); // it cannot know yet
    const before = g.stores.get("r2")!.meta!;
    expect(await restarted.repair("r2")).toBe(false);
    expect(restarted.repairFailure("r2")).toMatch(/^Error: no healthy replica to copy from \(.*r1 cannot serve a snapshot .*failed its last scrub.*release one with rebase/);
    expect(g.stores.get("r2")!.meta!).toMatchObject({ lastSeq: before.lastSeq, appliedSeq: before.appliedSeq }); // untouched
    expect(g.stores.get("r2")!.meta!.installing ?? null).toBeNull();
    expect(await restarted.release("r1", true)).toEqual({ ok: true });
    expect(await restarted.repair("r2")).toBe(true);
    expect(await restarted.repair("r3")).toBe(true);
    expect((await restarted.audit()).verdict).toBe("consistent");
    restarted.stop();
  });

  it("with the whole log, rebuilds from the empty state and the log instead of a damaged source", async () => {
    const g = directGroup({ ...config(), checkpointEvery: 5 }, { entries: 10_000, slack: 1_000 });
    for (let r = 1; r <= 12; r++) expect((await g.driver.submit("a", r, { op: "put", key: `k${r}`, value: r })).kind).toBe("ok");
    await tick();
    corruptAll(g);
    expect((await g.driver.audit()).alarm).toMatch(/failed the same check/);
    expect(g.driver.repairRefusal("r2")).toBeNull();
    expect(await g.driver.repair("r2")).toBe(true);
    await tick(50);
    expect(await g.replicas.get("r2")!.query({ op: "get", key: "k1" }, 12, 1_000)).toMatchObject({ kind: "ok", result: { value: 1 } });
    g.driver.stop();
  });
});
