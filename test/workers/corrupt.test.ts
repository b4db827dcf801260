import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { adminToken, api, clientToken, command, createGroup, expectError, query, replicaStatuses as statuses, waitFor } from "./helpers.js";

const corrupt = (group: string, target: string) => api("POST", `/v1/groups/${group}/faults`, { target, fault: "corrupt" });

describe("the corrupt fault", () => {
  it("a command whose outputs split with no majority ran: a 500 with reason outputs_split and a request id, the same for its retry (it was a bare 500 the client retried, then called unknown: a review)", async () => {
    await createGroup("corrupt-split", { machine: "kv", replicas: 2, outputs: "majority" });
    await command("corrupt-split", { op: "put", key: "k1", value: 1 });
    expect((await corrupt("corrupt-split", "r2")).status).toBe(200);
    const body = { client: "split", request: 1, command: { op: "incr", key: "k1", by: 1 } };
    for (let attempt = 0; attempt < 2; attempt++) {
      const r = await api("POST", "/v1/groups/corrupt-split/commands", body, clientToken);
      expect(r.status, JSON.stringify(r.body)).toBe(500);
      expect(r.body.error).toMatchObject({ code: "internal", reason: "outputs_split", message: expect.stringMatching(/no majority agreed: the command ran, but no output can be vouched for/) });
      // API.md: a 500's body carries a request id to find it in the logs (the outputs-split line names it).
      expect(r.body.error.requestId).toMatch(/^[0-9a-f-]{36}$/);
    }
  });


  it("changes one stored row of a replica: the next audit quarantines exactly that replica, and it is rebuilt", async () => {
    await createGroup("corrupt-one", { machine: "kv", checkpointEvery: 5 });
    for (let i = 1; i <= 8; i++) await command("corrupt-one", { op: "put", key: `k${i}`, value: i });
    await query("corrupt-one", { op: "get", key: "k1" });
    expect((await api("POST", "/v1/groups/corrupt-one/audit")).body.verdict).toBe("consistent");

    const r = await corrupt("corrupt-one", "r2");
    expect(r.status).toBe(200);
    expect(r.body.corrupted).toEqual({ replica: "r2", key: "m/k1" });

    const report = (await api("POST", "/v1/groups/corrupt-one/audit")).body;
    expect(report.verdict).toBe("diverged");
    expect(report.replicas.map((x: any) => [x.id, x.verdict])).toEqual([
      ["r1", "agrees"],
      ["r2", "diverged"],
      ["r3", "agrees"],
    ]);
    let s = await statuses("corrupt-one");
    expect(["quarantined", "repairing", "healthy"]).toContain(s.r2.status);
    const events = (await api("GET", "/v1/groups/corrupt-one/events", undefined, clientToken)).body.events;
    expect(events.some((e: any) => e.kind === "quarantine" && /r2/.test(e.message))).toBe(true);

    // The audit started the repair: r2 ends healthy, and a later audit finds every replica agreeing.
    for (let i = 0; i < 60 && s.r2.status !== "healthy"; i++) {
      await new Promise((res) => setTimeout(res, 50));
      s = await statuses("corrupt-one");
    }
    expect(s.r2.status).toBe("healthy");
    expect((await query("corrupt-one", { op: "get", key: "k1" }, "stale")).body.result).toEqual({ value: 1 });
    const after = (await api("POST", "/v1/groups/corrupt-one/audit")).body;
    expect(after.verdict).toBe("consistent");
  });

  it("on every replica: the audit's alarm quarantines nobody, and an operator's repairs rebuild each from the log, not from a damaged replica", async () => {
    await createGroup("corrupt-all", { machine: "kv", checkpointEvery: 5 });
    for (let i = 1; i <= 8; i++) await command("corrupt-all", { op: "put", key: `k${i}`, value: i });
    for (const id of ["r1", "r2", "r3"]) expect((await corrupt("corrupt-all", id)).status).toBe(200);
    const report = (await api("POST", "/v1/groups/corrupt-all/audit")).body;
    expect(report.alarm).toMatch(/3 of 3 voters failed the same check/);
    // A repair copied r1's damaged rows into r2, failed its digest check, and left r2 rebuilding for good (a probe).
    // Each rebuild is audited again at once: once two are sound, that audit quarantines the third
    // and repairs it itself, and the operator's repair of it is told so (503).
    for (const id of ["r2", "r1", "r3"]) {
      const r = await api("POST", `/v1/groups/corrupt-all/replicas/${id}/repair`, {});
      if (r.status === 503) expect(r.body.error.message).toMatch(new RegExp(`${id} is being repaired already`));
      else expect(r.status, JSON.stringify(r.body)).toBe(200);
    }
    await waitFor("every replica healthy", async () => Object.values(await statuses("corrupt-all")).every((x: any) => x.status === "healthy"), 50);
    expect((await query("corrupt-all", { op: "get", key: "k1" }, "stale")).body.result).toEqual({ value: 1 });
    expect((await api("POST", "/v1/groups/corrupt-all/audit")).body.verdict).toBe("consistent");
  });

  it("a replica whose own scrub failed, left serving (another down: no quorum to quarantine it), serves no read while a sound one can; alone, it still does (a probe)", async () => {
    await createGroup("corrupt-cut", { machine: "kv", checkpointEvery: 5 });
    for (let i = 1; i <= 8; i++) await command("corrupt-cut", { op: "put", key: `k${i}`, value: i });
    const fault = (target: string, f: string) => api("POST", "/v1/groups/corrupt-cut/faults", { target, fault: f });
    expect((await fault("r1", "unreachable")).status).toBe(200);
    expect((await corrupt("corrupt-cut", "r2")).body.corrupted).toEqual({ replica: "r2", key: "m/k1" });
    const report = (await api("POST", "/v1/groups/corrupt-cut/audit")).body;
    expect(report.replicas.find((x: any) => x.id === "r2").verdict).toBe("diverged");
    expect((await statuses("corrupt-cut")).r2.status).toBe("healthy"); // not quarantined
    // but said to be damaged, in its status and the metrics (only the audits named it: an operator probe)
    expect([(await statuses("corrupt-cut")).r2.damaged, (await statuses("corrupt-cut")).r3.damaged]).toEqual([true, undefined]);
    const scrape = await (await SELF.fetch("http://smr.test/v1/metrics?group=corrupt-cut", { headers: { authorization: `Bearer ${adminToken}` } })).text();
    expect(scrape).toMatch(/^smr_replica_damaged\{group="corrupt-cut",replica="r2"\} 1$/m);
    expect(scrape).toMatch(/^smr_replica_damaged\{group="corrupt-cut",replica="r3"\} 0$/m);
    const servedBy = new Set<string>();
    for (let i = 0; i < 12; i++) {
      const r = await query("corrupt-cut", { op: "get", key: "k1" }, "stale");
      expect(r.body.result).toEqual({ value: 1 });
      servedBy.add(r.body.replica);
    }
    expect([...servedBy]).toEqual(["r3"]);
    // A sound replica slower than a read's slack (1 s) is waited for: the damaged one, asked again
    // to serve anyway, does not overtake it (a review).
    await api("POST", "/v1/groups/corrupt-cut/faults", { target: "r3", fault: "slow", ms: 1_500 });
    expect((await query("corrupt-cut", { op: "get", key: "k1" }, "stale")).body).toMatchObject({ result: { value: 1 }, replica: "r3" });
    // With r3 cut off too, the damaged replica is the only one left: it serves, as before.
    expect((await fault("r3", "unreachable")).status).toBe(200);
    expect((await query("corrupt-cut", { op: "get", key: "k2" }, "stale")).body).toMatchObject({ result: { value: 2 }, replica: "r2", damaged: true });
    for (const id of ["r1", "r3"]) await fault(id, "none");
  });

  it("applies to a replica of the group that has rows: else a 400, 404 or 409 (every fault on an id the group does not have is a 404)", async () => {
    await createGroup("corrupt-bad");
    expectError(await corrupt("corrupt-bad", "sequencer"), 400, "bad_request", /replica/);
    expectError(await corrupt("corrupt-bad", "r9"), 404, "not_found", /r9/);
    expectError(await corrupt("corrupt-bad", "r1"), 409, "conflict", /no stored state rows/);
    // So do the other faults: a replica id the group does not have is a 404, not a fault on nothing.
    const fault = (target: string, f: string) => api("POST", "/v1/groups/corrupt-bad/faults", { target, fault: f, ms: 5 });
    expectError(await fault("r4", "unreachable"), 404, "not_found", /no replica r4/);
    expectError(await fault("r4", "slow"), 404, "not_found", /no replica r4/);
    expect((await fault("r4", "none")).status).toBe(200);
    expect((await fault("r2", "slow")).body.faults).toEqual([{ target: "r2", fault: "slow", ms: 5 }]);
    expect((await fault("r2", "none")).body.faults).toEqual([]);
  });
});
