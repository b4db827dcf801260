// The auditor must never be able to kill a group, and an operator always has a way out of a
// quarantine (docs/OPERATIONS.md).
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { ReplicaObject } from "../../workers/replica.js";
import { api, apiEventKinds, clientToken, command, createGroup, expectError, query, replicaStatuses as statuses, waitFor, replicaObject } from "./helpers.js";

function replica(group: string, id: string) {
  return replicaObject(group, id);
}

/** Every replica has applied seq (a tampered row must be one the replica holds). */
async function applied(group: string, seq: number) {
  await waitFor(`${group} applied ${seq}`, async () => Object.values(await statuses(group)).every((r: any) => r.appliedSeq >= seq), 20);
}

async function tamper(group: string, id: string, key: string) {
  await runInDurableObject(replica(group, id), (inst: ReplicaObject, state) => {
    (inst as any).replica.driver.core.saveState();
    expect(state.storage.sql.exec("UPDATE state SET v = ? WHERE k = ?", JSON.stringify(666), `m/${key}`).rowsWritten).toBe(1);
  });
}

describe("the auditor never kills a group", () => {
  it("a majority failing the same check quarantines nobody: the group keeps serving, the report and the events say why", async () => {
    await createGroup("alarm");
    for (let i = 1; i <= 6; i++) expect((await command("alarm", { op: "put", key: `k${i}`, value: i })).status).toBe(200);
    await applied("alarm", 6);
    await tamper("alarm", "r1", "k2");
    await tamper("alarm", "r2", "k2");
    const report = (await api("POST", "/v1/groups/alarm/audit")).body;
    expect(report.verdict).toBe("diverged");
    expect(report.quarantined).toEqual([]);
    expect(report.alarm).toMatch(/2 of 3 voters failed the same check/);
    const s = await statuses("alarm");
    expect(Object.values(s).map((r: any) => r.status)).toEqual(["healthy", "healthy", "healthy"]);
    // Still serving: writes and reads.
    expect((await command("alarm", { op: "put", key: "k7", value: 7 })).status).toBe(200);
    expect((await query("alarm", { op: "get", key: "k7" })).body.result).toEqual({ value: 7 });
    const events = (await api("GET", "/v1/groups/alarm/events", undefined, clientToken)).body.events;
    expect(events.some((e: any) => e.kind === "quarantine" && e.action === "alarm" && /failed the same check/.test(e.message))).toBe(true);
    for (const e of events) expect(apiEventKinds).toContain(e.kind);
  });

  it("one replica that disagrees with a healthy majority is quarantined and rebuilt, and the events show both", async () => {
    await createGroup("one-bad", { machine: "kv", checkpointEvery: 5 });
    for (let i = 1; i <= 6; i++) await command("one-bad", { op: "put", key: `k${i}`, value: i });
    await applied("one-bad", 6);
    await tamper("one-bad", "r3", "k1");
    const report = (await api("POST", "/v1/groups/one-bad/audit")).body;
    expect(report.quarantined).toEqual(["r3"]);
    expect(report.alarm).toBeUndefined();
    await waitFor("r3 rebuilt", async () => (await statuses("one-bad")).r3.status === "healthy", 50);
    const kinds = (await api("GET", "/v1/groups/one-bad/events", undefined, clientToken)).body.events.map((e: any) => e.kind);
    expect(kinds).toContain("quarantine");
    expect(kinds).toContain("repair");
    // The rebuild is audited at once: the group's latest audit (what its health reads) is no
    // longer the one that found r3 damaged (asleep, the next audit came a day later).
    await waitFor("audited after the rebuild", async () => (await api("GET", "/v1/groups/one-bad/audits?limit=1", undefined, clientToken)).body.audits[0]?.verdict === "consistent", 50);
  });
});

describe("the operator's way out of a quarantine", () => {
  it("release: refused while the rows do not match the digest, unless rebased; a replica quarantined by mistake serves again", async () => {
    await createGroup("release");
    for (let i = 1; i <= 3; i++) await command("release", { op: "put", key: `k${i}`, value: i });
    await applied("release", 3);
    // Quarantined though its state is fine (as a lost sequencer or a bug could leave it).
    await replica("release", "r2").call(1, "setQuarantined", [true]);
    // It serves no reads: of 30 (spread over the equally near replicas), none comes from r2.
    const answeredBy = new Set<string>();
    for (let i = 0; i < 30; i++) answeredBy.add((await query("release", { op: "get", key: "k1" }, "stale")).body.replica);
    expect([...answeredBy].sort()).toEqual(["r1", "r3"]);
    // Its rows match its digest: the release is accepted.
    const ok = await api("POST", "/v1/groups/release/replicas/r2/release", {});
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    expect(["healthy", "lagging"]).toContain(ok.body.replica.status);
    expect(await runInDurableObject(replica("release", "r2"), (inst: ReplicaObject) => (inst as any).replica.driver.core.quarantined)).toBe(false);

    // Rows changed behind the digest: a plain release is refused (409), a rebase accepts them.
    await tamper("release", "r2", "k1");
    await replica("release", "r2").call(1, "setQuarantined", [true]);
    expectError(await api("POST", "/v1/groups/release/replicas/r2/release", {}), 409, "conflict", /repair it, or release it with rebase/);
    expect((await api("POST", "/v1/groups/release/replicas/r2/release", { rebase: true })).status).toBe(200);
    // The next audit compares it with the others and finds it diverged; it is rebuilt from a healthy one.
    const after = (await api("POST", "/v1/groups/release/audit")).body;
    expect(after.quarantined).toEqual(["r2"]);
    await waitFor("r2 rebuilt", async () => (await statuses("release")).r2.status === "healthy", 50);
    expectError(await api("POST", "/v1/groups/release/replicas/r9/release", {}), 404, "not_found");
    // A replica that is not quarantined has nothing to release: a 409, and no event (it was a 200
    // and a "released by an operator" event each time).
    expectError(await api("POST", "/v1/groups/release/replicas/r3/release", {}), 409, "conflict", /^replica r3 is not quarantined: nothing to release$/);
    expectError(await api("POST", "/v1/groups/release/replicas/r3/release", { rebase: true }), 409, "conflict", /not quarantined/);
    // A quarantined replica that cannot be reached: a 503 to retry, not the 409 of a refusal (a
    // probe got 409 "Error: injected fault: ...").
    await replica("release", "r3").call(1, "setQuarantined", [true]);
    await api("POST", "/v1/groups/release/faults", { target: "r3", fault: "unreachable" });
    const unreached = await api("POST", "/v1/groups/release/replicas/r3/release", {});
    expectError(unreached, 503, "unavailable", /^replica r3 did not answer \(.*unreachable\); retry$/);
    expect(unreached.headers.get("retry-after")).toBe("1");
    await api("POST", "/v1/groups/release/faults", { target: "r3", fault: "none" });
    expect((await api("POST", "/v1/groups/release/replicas/r3/release", {})).status).toBe(200);
    // Each release is in the history as a quarantine event that says so (the two refused ones are not).
    await waitFor("the releases' events", async () => {
      const events = (await api("GET", "/v1/groups/release/events", undefined, clientToken)).body.events;
      return events.filter((e: any) => e.kind === "quarantine" && e.action === "release" && e.replica === "r2").length === 2;
    });
  });

  it("repair: rebuilds a replica now from a healthy one", async () => {
    await createGroup("repair-now");
    for (let i = 1; i <= 3; i++) await command("repair-now", { op: "put", key: `k${i}`, value: i });
    await applied("repair-now", 3);
    await tamper("repair-now", "r1", "k3");
    const r = await api("POST", "/v1/groups/repair-now/replicas/r1/repair");
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const row = await runInDurableObject(replica("repair-now", "r1"), (_i: ReplicaObject, state) => state.storage.sql.exec<{ v: string }>("SELECT v FROM state WHERE k = ?", "m/k3").one().v);
    expect(row).toBe("3");
    expect((await api("POST", "/v1/groups/repair-now/audit")).body.verdict).toBe("consistent");
  });

  it("repair: a replica removed while it is being rebuilt answers the repair 404 (a probe: a 503 whose retry could only meet the 404)", async () => {
    await createGroup("repair-removed");
    for (let i = 1; i <= 3; i++) await command("repair-removed", { op: "put", key: `k${i}`, value: i });
    await applied("repair-removed", 3);
    await api("POST", "/v1/groups/repair-removed/faults", { target: "r3", fault: "slow", ms: 400 });
    const repair = api("POST", "/v1/groups/repair-removed/replicas/r3/repair");
    await waitFor("r3 repairing", async () => (await statuses("repair-removed")).r3?.status === "repairing", 10);
    expect((await api("DELETE", "/v1/groups/repair-removed/replicas/r3")).status).toBe(202);
    expectError(await repair, 404, "not_found", /replica r3 was removed while it was being rebuilt/);
    expect(Object.keys(await statuses("repair-removed")).sort()).toEqual(["r1", "r2"]);
  });

  it("repair: a second one while the first is under way is a 503 that says so (it said \"see the server's log\", which said nothing: a probe)", async () => {
    await createGroup("repair-twice");
    for (let i = 1; i <= 3; i++) await command("repair-twice", { op: "put", key: `k${i}`, value: i });
    await applied("repair-twice", 3);
    await api("POST", "/v1/groups/repair-twice/faults", { target: "r3", fault: "slow", ms: 400 });
    const first = api("POST", "/v1/groups/repair-twice/replicas/r3/repair");
    await waitFor("r3 repairing", async () => (await statuses("repair-twice")).r3?.status === "repairing", 10);
    expectError(await api("POST", "/v1/groups/repair-twice/replicas/r3/repair"), 503, "unavailable", /r3 is being repaired already/);
    // Another voter too: a group of three can spare one for a rebuild at a time.
    expectError(await api("POST", "/v1/groups/repair-twice/replicas/r2/repair"), 503, "unavailable", /r3 is being rebuilt, as many voters as a quorum can spare \(1\): retry when it is done/);
    await api("POST", "/v1/groups/repair-twice/faults", { target: "r3", fault: "none" });
    expect((await first).status).toBe(200);
  });
});
