// Answers from before a repair of their replica began or ended are left out: an audit's answers are
// acted on once every replica answered, and a quarantined replica's "quarantined: true", read
// before its rebuild, quarantined it again after the rebuild released it, and started a second
// transfer (a review).
import { describe, expect, it } from "vitest";
import { delayCall, directGroup, fastClock, overrideCall, realClock } from "../support/direct.js";
import { Cluster } from "../support/cluster.js";

const config = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "first" as const, checkpointEvery: 4 };
const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));

describe("an audit during a repair", () => {
  it("leaves out the answer of a replica rebuilt while the audit waited for a slow one: it is not quarantined again", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 }, realClock);
    for (let i = 1; i <= 8; i++) expect((await g.driver.submit("c", i, { op: "put", key: `k${i}`, value: i })).kind).toBe("ok");
    await tick();
    // r3 is quarantined (an earlier audit, say) and told so.
    (g.driver as unknown as { quarantine(id: string): void }).quarantine("r3");
    await tick();
    expect(g.replicas.get("r3")!.core!.quarantined).toBe(true);
    // r2 answers audits slowly (within the audit's timeout).
    delayCall(g.io, "r2", "auditInfo", 300);
    const audit = g.driver.audit();
    await tick(); // r1 and r3 have answered; r2 has not
    // Meanwhile r3 is rebuilt (the operator's repair, or the previous audit's).
    expect(await g.driver.repair("r3")).toBe(true);
    expect(g.driver.core.quarantinedIds()).not.toContain("r3");
    expect(g.replicas.get("r3")!.core!.quarantined).toBe(false);
    await audit;
    // The audit read r3 before its rebuild: it must not undo the rebuild.
    expect(g.driver.core.quarantinedIds(), "re-quarantined by a stale answer").not.toContain("r3");
    await tick(100);
    expect(g.calls.get("r3:beginInstall"), "state transfers to r3 (one was needed)").toBe(1);
    g.driver.stop();
  }, 30_000);
});

describe("an append's answer from before a repair", () => {
  it("says nothing of the rebuilt replica: its position stays the one the transfer installed", () => {
    const c = Cluster.of("kv");
    for (let r = 1; r <= 3; r++) c.submit("a", r, { op: "put", key: `k${r}`, value: r });
    c.settle();
    // A heartbeat to r3 at seq 3, its answer late.
    const beat = c.sequencer.heartbeat("r3")!;
    const late = c.replicas.get("r3")!.append(beat);
    expect(late).toMatchObject({ ok: true, appliedSeq: 3 });
    for (let r = 4; r <= 5; r++) c.submit("a", r, { op: "put", key: `k${r}`, value: r });
    c.settle(); // r1 and r2 (r3's heartbeat is in flight)
    expect(c.sequencer.commitSeq).toBe(5);
    // r3 is rebuilt at seq 5 meanwhile; then the heartbeat's answer arrives.
    expect(c.sequencer.beginRepair("r3")).toBe(true);
    c.sequencer.endRepair("r3", 5, Date.now());
    c.sequencer.onAppendResponse("r3", late, Date.now());
    const r3 = c.sequencer.replicaStatuses().find((s) => s.id === "r3")!;
    expect(r3.appliedSeq).toBe(5);
    // The next message to it goes on from the installed position.
    expect(c.messageFor("r3")?.prevSeq).toBe(5);
  });
});

describe("an operator's release during a repair", () => {
  it("is refused (503, retry): released between the repair's start and its install, the replica voted with a log the install then cleared (a review)", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 }, realClock);
    for (let i = 1; i <= 4; i++) expect((await g.driver.submit("c", i, { op: "put", key: `k${i}`, value: i })).kind).toBe("ok");
    await tick();
    (g.driver as unknown as { quarantine(id: string): void }).quarantine("r3");
    await tick();
    // The target's install starts late (a slow object).
    delayCall(g.io, "r3", "beginInstall", 100);
    const repair = g.driver.repair("r3");
    await tick();
    expect(await g.driver.release("r3", false)).toMatchObject({ ok: false, unavailable: true, reason: expect.stringMatching(/being rebuilt/) });
    expect(await repair).toBe(true);
    expect(g.driver.core.quarantinedIds()).not.toContain("r3");
    g.driver.stop();
  });
});

describe("an operator's release during a repair, begun while the release's calls were under way", () => {
  it("is refused too: the rebuild decides (a review: checked before the calls only)", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    for (let i = 1; i <= 5; i++) expect((await g.driver.submit("c", i, { op: "put", key: `k${i}`, value: i })).kind).toBe("ok");
    // Quarantined (as an audit's verdict, or its own flag) and waiting for its rebuild.
    g.driver.core.setQuarantined("r2", true);
    expect(g.driver.core.quarantinedIds()).toContain("r2");
    g.slow.set("r2", 100); // the release call (and the repair's) take 100 ms
    const released = g.driver.release("r2", false);
    await new Promise((r) => setTimeout(r, 10));
    const repaired = g.driver.repair("r2"); // e.g. the audit's actOnAudit or the send loop
    expect(g.driver.core.isRepairing("r2")).toBe(true);
    const r = await released;
    const during = { released: r, repairing: g.driver.core.isRepairing("r2"), quarantined: g.driver.core.quarantinedIds().includes("r2") };
    g.slow.delete("r2");
    await repaired;
    expect(r).toMatchObject({ ok: false, unavailable: true, reason: expect.stringMatching(/being rebuilt/) });
    expect(during.quarantined).toBe(true);
    g.driver.stop();
  }, 20_000);
});

describe("audits asked for at once (the cron's and a repair's own, or an operator's)", () => {
  it("run one at a time (each sets its mark, and a replica keeps one: a review); the calls made during one share one that starts after it, so each report begins after its call", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 }, realClock);
    for (let i = 1; i <= 4; i++) expect((await g.driver.submit("c", i, { op: "put", key: `k${i}`, value: i })).kind).toBe("ok");
    await tick();
    let inFlight = 0;
    let most = 0;
    overrideCall(g.io, "r1", "auditInfo", async (real, ...args) => {
      most = Math.max(most, ++inFlight);
      await tick(30);
      try {
        return await real(...args);
      } finally {
        inFlight--;
      }
    });
    const before = g.calls.get("r1:auditInfo") ?? 0;
    const first = g.driver.audit();
    await tick(5);
    const [a, b, c] = await Promise.all([first, g.driver.audit(), g.driver.audit()]);
    expect(b).not.toBe(a); // a later audit, begun after the call
    expect(c).toBe(b); // the two calls made during the first share it
    expect(most).toBe(1);
    expect((g.calls.get("r1:auditInfo") ?? 0) - before).toBe(2);
    g.driver.stop();
  });
});

describe("a replica that quarantined itself", () => {
  it("is quarantined at the sequencer by its next append answer, not at the next audit: its acks and outputs stop counting", () => {
    const c = Cluster.of("kv");
    for (let r = 1; r <= 3; r++) c.submit("a", r, { op: "put", key: `k${r}`, value: r });
    c.settle();
    // r3's replay missed its digest at a restart (ReplicaCore.loadState): it withholds its reads and outputs.
    c.replicas.get("r3")!.setQuarantined(true);
    expect(c.sequencer.quarantinedIds()).toEqual([]);
    c.submit("a", 4, { op: "put", key: "k4", value: 4 });
    c.settle();
    expect(c.sequencer.quarantinedIds(), "learned from the append answer").toEqual(["r3"]);
    expect(c.sequencer.replicaStatuses().find((s) => s.id === "r3")).toMatchObject({ status: "quarantined" });
    expect(c.sequencer.transferCandidates(), "rebuilt by a state transfer").toContain("r3");
    // r1 and r2 alone commit (r3 still stores the log but no longer votes).
    c.down.add("r2");
    c.submit("a", 5, { op: "put", key: "k5", value: 5 });
    c.settle();
    expect(c.sequencer.commitSeq, "r3's ack is no vote: r1 alone is no quorum").toBe(4);
  });

  it("is not quarantined again by an answer from before an operator's release", () => {
    const c = Cluster.of("kv");
    for (let r = 1; r <= 3; r++) c.submit("a", r, { op: "put", key: `k${r}`, value: r });
    c.settle();
    c.replicas.get("r3")!.setQuarantined(true);
    c.sequencer.setQuarantined("r3", true);
    // A heartbeat to r3 answered "quarantined", the answer late...
    const late = c.replicas.get("r3")!.append(c.sequencer.heartbeat("r3")!);
    expect(late).toMatchObject({ ok: true, quarantined: true });
    // ...while an operator releases r3 (DriverCore.release: the replica, then the sequencer).
    expect(c.replicas.get("r3")!.release(false)).toMatchObject({ ok: true });
    c.sequencer.setQuarantined("r3", false);
    c.sequencer.onAppendResponse("r3", late, Date.now());
    expect(c.sequencer.quarantinedIds(), "re-quarantined by a stale answer").toEqual([]);
    // Its next answers say it serves, and it votes again.
    c.submit("a", 4, { op: "put", key: "k4", value: 4 });
    c.settle();
    expect(c.sequencer.quarantinedIds()).toEqual([]);
    expect(c.replicas.get("r3")!.appliedSeq).toBe(4);
  });
});

describe("a replica that quarantined itself, under the driver", () => {
  it("is reported at once: a quarantine event and the directory's list, and a state transfer rebuilds it", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 }, realClock);
    for (let i = 1; i <= 4; i++) expect((await g.driver.submit("c", i, { op: "put", key: `k${i}`, value: i })).kind).toBe("ok");
    await tick();
    g.replicas.get("r2")!.core!.setQuarantined(true);
    expect((await g.driver.submit("c", 5, { op: "put", key: "k5", value: 5 })).kind).toBe("ok");
    await tick(100);
    expect(g.events.filter((e) => e.kind === "quarantine" && e.fields.replica === "r2").map((e) => e.message)).toEqual([expect.stringMatching(/r2 says it is quarantined/)]);
    expect(g.calls.get("r2:beginInstall"), "rebuilt without waiting for an audit").toBe(1);
    await tick(100);
    expect(g.replicas.get("r2")!.core!.quarantined).toBe(false);
    expect(g.driver.core.quarantinedIds()).toEqual([]);
    g.driver.stop();
  }, 30_000);
});

describe("an operator's release and a tell of the quarantine still on its way", () => {
  it("waits for the tell: landing after the release, it quarantined the replica again, which its next answer reported as its own (a review)", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 }, realClock);
    for (let i = 1; i <= 3; i++) expect((await g.driver.submit("c", i, { op: "put", key: `k${i}`, value: i })).kind).toBe("ok");
    await tick();
    delayCall(g.io, "r3", "setQuarantined", 300); // the tell takes 300 ms to land
    (g.driver as unknown as { quarantine(id: string): void }).quarantine("r3");
    expect(g.replicas.get("r3")!.core!.quarantined, "not landed yet").toBe(false);
    const released = await g.driver.release("r3", false);
    expect(released).toEqual({ ok: true });
    expect(g.replicas.get("r3")!.core!.quarantined).toBe(false);
    await tick(400); // past when the tell would land
    expect(g.replicas.get("r3")!.core!.quarantined, "the late tell landed after the release").toBe(false);
    for (let i = 4; i <= 6; i++) expect((await g.driver.submit("c", i, { op: "put", key: `k${i}`, value: i })).kind).toBe("ok");
    await tick(100);
    expect(g.driver.core.quarantinedIds(), "quarantined again by the late tell").toEqual([]);
    expect(g.events.filter((e) => /says it is quarantined/.test(e.message)), "reported as its own doing").toEqual([]);
    expect(g.calls.get("r3:beginInstall"), "rebuilt for it").toBeUndefined();
    g.driver.stop();
  }, 30_000);
});

describe("an operator's release and a tell of the quarantine that never settles", () => {
  it("waits for it at most a replica call's timeout, then releases", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 }, fastClock);
    for (let i = 1; i <= 3; i++) expect((await g.driver.submit("c", i, { op: "put", key: `k${i}`, value: i })).kind).toBe("ok");
    await tick();
    overrideCall(g.io, "r3", "setQuarantined", () => new Promise(() => {})); // lost on the way: never answered
    (g.driver as unknown as { quarantine(id: string): void }).quarantine("r3");
    g.replicas.get("r3")!.core!.setQuarantined(true); // as if it had landed, its answer lost
    const releasing = g.driver.release("r3", false);
    const outcome = await Promise.race([releasing.then(() => "released"), tick(2_000).then(() => "waiting")]);
    expect(outcome, "a tell that never settles held the release (3 s under the fast clock is 60 ms)").toBe("released");
    expect(await releasing).toEqual({ ok: true });
    expect(g.replicas.get("r3")!.core!.quarantined).toBe(false);
    expect(g.driver.core.quarantinedIds()).toEqual([]);
    g.driver.stop();
  }, 30_000);
});

describe("an audit whose question to a replica crosses that replica's release", () => {
  it("reports it behind, not compared, and not unreachable: it answered (a probe)", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 }, realClock);
    for (let i = 1; i <= 3; i++) expect((await g.driver.submit("c", i, { op: "put", key: `k${i}`, value: i })).kind).toBe("ok");
    await tick();
    (g.driver as unknown as { quarantine(id: string): void }).quarantine("r3");
    await tick();
    expect(g.replicas.get("r3")!.core!.quarantined).toBe(true);
    delayCall(g.io, "r3", "auditInfo", 300);
    const audit = g.driver.audit();
    await tick(50);
    expect(await g.driver.release("r3", false)).toEqual({ ok: true });
    const report = await audit;
    expect(report.replicas.find((r) => r.id === "r3")).toMatchObject({ verdict: "behind", reason: expect.stringMatching(/released or rebuilt while the audit asked it/) });
    expect(report.verdict).toBe("consistent");
    g.driver.stop();
  }, 30_000);
});

describe("a release of a replica this sequencer had not learned was quarantined", () => {
  it("is a new generation too: a heartbeat's answer from before it does not quarantine it again (a review)", () => {
    const c = Cluster.of("kv");
    for (let r = 1; r <= 3; r++) c.submit("a", r, { op: "put", key: `k${r}`, value: r });
    c.settle();
    c.replicas.get("r3")!.setQuarantined(true); // its own flag only
    const late = c.replicas.get("r3")!.append(c.sequencer.heartbeat("r3")!);
    expect(late).toMatchObject({ ok: true, quarantined: true });
    expect(c.replicas.get("r3")!.release(false)).toMatchObject({ ok: true });
    c.sequencer.setQuarantined("r3", false); // DriverCore.release, which found it quarantined by its own word
    c.sequencer.onAppendResponse("r3", late, Date.now());
    expect(c.sequencer.quarantinedIds()).toEqual([]);
  });
});

describe("a release that fails", () => {
  it("leaves the quarantine to be told: a replica that had not heard it is told once it answers (a review: the release dropped the re-tell, and it served its suspect rows)", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 }, realClock);
    for (let i = 1; i <= 3; i++) expect((await g.driver.submit("c", i, { op: "put", key: `k${i}`, value: i })).kind).toBe("ok");
    await tick();
    g.driver.startHeartbeats();
    g.down.add("r3");
    (g.driver as unknown as { quarantine(id: string): void }).quarantine("r3"); // its tell fails: r3 is down
    await tick();
    // No rebuild meanwhile (one under way is not told, and one that ends ends the quarantine).
    overrideCall(g.io, "r3", "beginInstall", () => Promise.reject(new Error("no rebuild in this test")));
    expect(await g.driver.release("r3", false)).toMatchObject({ ok: false, unavailable: true });
    expect(g.replicas.get("r3")!.core!.quarantined).toBe(false);
    g.down.delete("r3");
    await tick(2_500); // heartbeats
    expect(g.driver.core.quarantinedIds()).toContain("r3");
    expect(g.replicas.get("r3")!.core!.quarantined, "told at a heartbeat").toBe(true);
    g.driver.stop();
  }, 30_000);
});
