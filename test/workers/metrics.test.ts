// GET /v1/metrics inside workerd: the values of API.md's series for real groups, read back with a
// port of Prometheus's own parser; ?group=, paging, a group that does not answer; who may scrape.
// And the structured log lines of a quarantine, an audit verdict change and a 500.
import { SELF, env, runInDurableObject } from "cloudflare:test";
import parse from "parse-prometheus-text-format";
import { afterEach, describe, expect, it, vi } from "vitest";
import worker from "../../workers/index.js";
import { gather } from "../../workers/metrics.js";
import type { ReplicaObject } from "../../workers/replica.js";
import { adminToken, api, clientToken, command, createGroup, expectError, replicaStatuses, waitFor, replicaObject } from "./helpers.js";

async function scrape(query = "", token = adminToken) {
  const res = await SELF.fetch(`http://smr.test/v1/metrics${query}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, type: res.headers.get("content-type"), text: await res.text() };
}

/** name -> [labels, value][] of a scrape that must be 200. */
async function series(query = ""): Promise<{ get: (name: string, labels: Record<string, string>) => number | undefined; text: string }> {
  const r = await scrape(query);
  expect(r.status, r.text).toBe(200);
  expect(r.type).toBe("text/plain; version=0.0.4; charset=utf-8");
  const families = parse(r.text);
  const get = (name: string, labels: Record<string, string>) => {
    const m = families.find((f) => f.name === name)?.metrics.find((x) => JSON.stringify(x.labels) === JSON.stringify(labels));
    return m === undefined ? undefined : Number(m.value);
  };
  return { get, text: r.text };
}

async function applied(group: string, seq: number) {
  await waitFor(`${group} applied ${seq}`, async () => Object.values(await replicaStatuses(group)).every((r: any) => r.appliedSeq >= seq), 20);
}

function jsonLines(spy: { mock: { calls: unknown[][] } }): any[] {
  return spy.mock.calls.flatMap((args) => {
    try {
      return [JSON.parse(String(args[0]))];
    } catch {
      return [];
    }
  });
}

afterEach(() => vi.restoreAllMocks());

describe("GET /v1/metrics", () => {
  it("reports commit seq, epoch, commands, replicas' applied seq, lag and status, and audits by verdict, per group", async () => {
    await createGroup("mx-one");
    await createGroup("mx-two");
    for (let i = 1; i <= 5; i++) expect((await command("mx-one", { op: "put", key: `k${i}`, value: i })).status).toBe(200);
    for (let i = 1; i <= 2; i++) expect((await command("mx-two", { op: "put", key: `k${i}`, value: i })).status).toBe(200);
    await applied("mx-one", 5);
    await applied("mx-two", 2);
    const audit = (await api("POST", "/v1/groups/mx-one/audit")).body;
    expect(audit.verdict).toBe("consistent");

    const one = (await api("GET", "/v1/groups/mx-one", undefined, clientToken)).body;
    const m = await series("?group=mx-one");
    expect(m.get("smr_group_up", { group: "mx-one" })).toBe(1);
    expect(m.get("smr_group_commit_seq", { group: "mx-one" })).toBe(one.commitSeq);
    expect(one.commitSeq).toBeGreaterThanOrEqual(5);
    expect(m.get("smr_group_epoch", { group: "mx-one" })).toBe(1);
    expect(m.get("smr_commands_total", { group: "mx-one" })).toBe(5);
    expect(m.get("smr_failovers_total", { group: "mx-one" })).toBe(0);
    for (const r of one.replicas) {
      expect(m.get("smr_replica_applied_seq", { group: "mx-one", replica: r.id })).toBeGreaterThanOrEqual(5);
      expect(m.get("smr_replica_lag_entries", { group: "mx-one", replica: r.id })).toBe(Math.max(0, one.commitSeq - m.get("smr_replica_applied_seq", { group: "mx-one", replica: r.id })!));
      expect(m.get("smr_replica_status", { group: "mx-one", replica: r.id, status: "healthy" })).toBe(1);
    }
    expect(m.get("smr_audits_total", { group: "mx-one", verdict: "consistent" })).toBe(1);
    expect(m.get("smr_audits_total", { group: "mx-one", verdict: "diverged" })).toBe(0);
    // The last report's time, for an alert on groups not found consistent lately; none for a verdict never reported.
    expect(m.get("smr_audit_last_timestamp_seconds", { group: "mx-one", verdict: "consistent" })).toBe(Date.parse(audit.at) / 1000);
    expect(m.get("smr_audit_last_timestamp_seconds", { group: "mx-one", verdict: "diverged" })).toBeUndefined();
    // ?group= is that group only.
    expect(m.text).not.toContain('group="mx-two"');
    // ... without the cron's series (those of a plain scrape's first page).
    expect(m.text).not.toContain("smr_groups_asleep");

    const two = await series("?group=mx-two");
    expect(two.get("smr_commands_total", { group: "mx-two" })).toBe(2);
    expect(two.get("smr_audits_total", { group: "mx-two", verdict: "consistent" })).toBe(0);
    expect(two.get("smr_audit_last_timestamp_seconds", { group: "mx-two", verdict: "consistent" })).toBeUndefined();
    expect(two.get("smr_replica_status", { group: "mx-two", replica: "r1", status: "healthy" })).toBe(1);

    // Without ?group=: every group of the page.
    const all = await series();
    expect(all.get("smr_commands_total", { group: "mx-one" })).toBe(5);
    expect(all.get("smr_commands_total", { group: "mx-two" })).toBe(2);
    // The registry's count of groups asleep (none: no group here has gone minutes without clients).
    expect(all.text).toContain("# TYPE smr_groups_asleep gauge\nsmr_groups_asleep 0\n");
  });

  it("a plain scrape covers every group, not one page of 100 (Prometheus follows no '# next:')", async () => {
    // 150 listed names with no group behind them (left out of the figures) sort before a real one.
    const registry = env.REGISTRY.get(env.REGISTRY.idFromName("registry"));
    for (let i = 0; i < 150; i++) await registry.add(`mx-fill-${String(i).padStart(3, "0")}`, 1);
    await createGroup("mx-fill-zz");
    const all = await scrape("");
    expect(all.text).toContain('smr_group_up{group="mx-fill-zz"} 1');
    expect(all.text).not.toContain("# next:");
    for (let i = 0; i < 150; i++) await registry.remove(`mx-fill-${String(i).padStart(3, "0")}`);
  });

  it("pages through the registry with ?after= and ?limit=, a '# next:' comment saying where to go on", async () => {
    await createGroup("mx-page-a");
    await createGroup("mx-page-b");
    const first = await scrape("?after=mx-page-&limit=1");
    expect(first.text).toContain('smr_group_up{group="mx-page-a"} 1');
    expect(first.text).not.toContain("mx-page-b");
    expect(first.text.trimEnd().split("\n").at(-1)).toBe("# next: mx-page-a");
    // A page after the first repeats none of the cron's series.
    expect(first.text).not.toContain("smr_groups_asleep");
    const second = await scrape("?after=mx-page-a&limit=1");
    expect(second.text).toContain('smr_group_up{group="mx-page-b"} 1');
    expectError(await api("GET", "/v1/metrics?limit=0"), 400, "bad_request", /limit/);
  });

  it("a group whose sequencer does not answer is smr_group_up 0, not a failed scrape", async () => {
    await createGroup("mx-cut");
    // An audit saw every replica: the status would show r1 where that audit saw it.
    expect((await api("POST", "/v1/groups/mx-cut/audit")).body.verdict).toBe("consistent");
    expect((await api("POST", "/v1/groups/mx-cut/faults", { target: "sequencer", fault: "unreachable" })).status).toBe(200);
    try {
      const m = await series("?group=mx-cut");
      expect(m.get("smr_group_up", { group: "mx-cut" })).toBe(0);
      expect(m.get("smr_group_commit_seq", { group: "mx-cut" })).toBeUndefined();
      // The directory answered: its audit series stay, so an alert on the last consistent audit does not resolve now.
      expect(m.get("smr_audits_total", { group: "mx-cut", verdict: "consistent" })).toBe(1);
      expect(m.get("smr_audit_last_timestamp_seconds", { group: "mx-cut", verdict: "consistent" })).toEqual(expect.any(Number));
      expect(m.get("smr_failovers_total", { group: "mx-cut" })).toBe(0);
      // The replicas that answer say where they are (r1 lives in the sequencer's object, cut too).
      expect(m.get("smr_replica_applied_seq", { group: "mx-cut", replica: "r2" })).toBeGreaterThanOrEqual(0);
      expect(m.get("smr_replica_status", { group: "mx-cut", replica: "r2", status: "healthy" })).toBe(1);
      // One that does not answer has no position (not the last audit's, with a lag of 0: a probe).
      expect(m.get("smr_replica_status", { group: "mx-cut", replica: "r1", status: "down" })).toBe(1);
      expect(m.get("smr_replica_applied_seq", { group: "mx-cut", replica: "r1" })).toBeUndefined();
      expect(m.get("smr_replica_lag_entries", { group: "mx-cut", replica: "r1" })).toBeUndefined();
    } finally {
      await api("POST", "/v1/groups/mx-cut/faults", { target: "sequencer", fault: "none" });
    }
    expect((await series("?group=mx-cut")).get("smr_group_up", { group: "mx-cut" })).toBe(1);
  });

  it("a group stuck mid-delete (a replica out of reach) is smr_group_deleting 1 beside smr_group_up 0, and its 503 says reason deleting: it read as an outage alone (a probe)", async () => {
    await createGroup("mx-del");
    expect((await api("POST", "/v1/groups/mx-del/faults", { target: "r3", fault: "unreachable" })).status).toBe(200);
    try {
      const del = await api("DELETE", "/v1/groups/mx-del");
      expect(del.status, JSON.stringify(del.body)).toBe(503);
      expect(del.body.error).toMatchObject({ code: "unavailable", reason: "deleting" });
      const m = await series();
      expect(m.get("smr_group_up", { group: "mx-del" })).toBe(0);
      expect(m.get("smr_group_deleting", { group: "mx-del" })).toBe(1);
      expect(m.get("smr_group_deleting", { group: "mx-cut" })).toBeUndefined();
    } finally {
      await api("POST", "/v1/groups/mx-del/faults", { target: "r3", fault: "none" });
    }
    await waitFor("the delete finished", async () => (await api("DELETE", "/v1/groups/mx-del")).status === 404);
    expect((await series()).get("smr_group_deleting", { group: "mx-del" })).toBeUndefined();
  });

  it("a group stuck mid-delete on a replica that hangs (the scrape's lookup helps the delete past its time) is smr_group_deleting 1 too (a review)", async () => {
    await createGroup("mx-hang");
    expect((await api("POST", "/v1/groups/mx-hang/faults", { target: "r3", fault: "slow", ms: 30_000 })).status).toBe(200);
    try {
      const del = await api("DELETE", "/v1/groups/mx-hang");
      expect(del.status, JSON.stringify(del.body)).toBe(503);
      const m = await series();
      expect(m.get("smr_group_up", { group: "mx-hang" })).toBe(0);
      expect(m.get("smr_group_deleting", { group: "mx-hang" })).toBe(1);
    } finally {
      await api("POST", "/v1/groups/mx-hang/faults", { target: "r3", fault: "none" });
    }
    await waitFor("the delete finished", async () => (await api("DELETE", "/v1/groups/mx-hang")).status === 404);
  }, 60_000);

  it("a group whose sequencer hangs (the replica in its object with it): the replicas that answer still give their series", async () => {
    // A review: the replicas' view waited a call's timeout (3 s) for the hung replica, longer than
    // the scrape's 2 s, and was dropped whole; an unreachable fault fails at once and hid that.
    await createGroup("mx-slow");
    expect((await command("mx-slow", { op: "put", key: "k", value: 1 })).status).toBe(200);
    expect((await api("POST", "/v1/groups/mx-slow/faults", { target: "sequencer", fault: "slow", ms: 6_000 })).status).toBe(200);
    try {
      const m = await series("?group=mx-slow");
      expect(m.get("smr_group_up", { group: "mx-slow" })).toBe(0);
      expect(m.get("smr_replica_status", { group: "mx-slow", replica: "r2", status: "healthy" })).toBe(1);
      expect(m.get("smr_replica_applied_seq", { group: "mx-slow", replica: "r2" })).toBeGreaterThanOrEqual(0);
      // Its directory answered: the failover and audit series stay though the sequencer hangs past the bound (a review).
      expect(m.get("smr_audits_total", { group: "mx-slow", verdict: "consistent" })).toBe(0);
      expect(m.get("smr_failovers_total", { group: "mx-slow" })).toBe(0);
    } finally {
      await api("POST", "/v1/groups/mx-slow/faults", { target: "sequencer", fault: "none" });
    }
  }, 30_000);

  it("a slow sequencer that still answers: how long it took, in the status and the scrape (it showed reachable and healthy while every command waited)", async () => {
    await createGroup("mx-lag");
    expect((await command("mx-lag", { op: "put", key: "k", value: 1 })).status).toBe(200);
    const quick = await series("?group=mx-lag");
    expect(quick.get("smr_sequencer_answer_seconds", { group: "mx-lag" })).toBeLessThan(1.2);
    expect((await api("POST", "/v1/groups/mx-lag/faults", { target: "sequencer", fault: "slow", ms: 1_200 })).status).toBe(200);
    try {
      const status = (await api("GET", "/v1/groups/mx-lag", undefined, clientToken)).body;
      expect(status.sequencer.reachable).toBeUndefined();
      expect(status.sequencer.answerMs).toBeGreaterThanOrEqual(1_200);
      const m = await series("?group=mx-lag");
      expect(m.get("smr_group_up", { group: "mx-lag" })).toBe(1);
      expect(m.get("smr_sequencer_answer_seconds", { group: "mx-lag" })).toBeGreaterThanOrEqual(1.2);
    } finally {
      await api("POST", "/v1/groups/mx-lag/faults", { target: "sequencer", fault: "none" });
    }
    // Its own wait for its replicas (after a start, up to statusContactWaitMs for one that does not
    // answer) is not the sequencer being slow: left out of the measure (a review).
    const stub = env.SEQUENCER.get(env.SEQUENCER.idFromName("mx-lag")) as unknown as DurableObjectStub;
    const inSequencer = (fn: (o: any) => void) => runInDurableObject(stub, (o: unknown) => fn(o)) as Promise<void>;
    await inSequencer((o) => void (o.lifecycle.driver.hearUnheard = () => new Promise((r) => setTimeout(r, 1_300))));
    try {
      const status = (await api("GET", "/v1/groups/mx-lag", undefined, clientToken)).body;
      expect(status.sequencer.answerMs).toBeLessThan(1_000);
      const m = await series("?group=mx-lag");
      expect(m.get("smr_sequencer_answer_seconds", { group: "mx-lag" })).toBeLessThan(1);
    } finally {
      await inSequencer((o) => void delete o.lifecycle.driver.hearUnheard);
    }
  }, 30_000);

  it("a scrape ends by its deadline: a group that had its call's time and did not answer is smr_group_up 0; one cut short, or not asked, is named apart", async () => {
    // A probe: 20 groups of 300 behind a slow location made a plain scrape take 11.7 s, past
    // Prometheus's default scrape_timeout (10 s): every series was lost during the outage.
    const names = Array.from({ length: 17 }, (_, i) => `mx-late-${String(i).padStart(2, "0")}`);
    for (const g of names) await createGroup(g);
    const slow = names.slice(0, 16); // one wave of metricsConcurrencyMax: the last group waits for a free worker
    for (const g of slow) expect((await api("POST", `/v1/groups/${g}/faults`, { target: "sequencer", fault: "slow", ms: 20_000 })).status).toBe(200);
    try {
      // 1 s is less than a group's call time (2 s): the slow groups were cut short, not found down
      // (a probe at 612 groups: a healthy group asked near the deadline showed smr_group_up 0).
      const first = await gather(env as never, names, 1_000);
      expect(first.figures).toEqual([]);
      expect(first.unasked).toEqual(names);
      // The next scrape asks the groups cut short first, with their whole time: found down.
      const second = await gather(env as never, names, 3_000);
      expect(second.figures.filter((f) => f.group !== "mx-late-16").map((f) => [f.group, f.up])).toEqual(slow.map((g) => [g, false]));
      // The next asks the groups that did not answer apart (four workers), so the one named after
      // them is asked and answers; they are asked too (a probe: under a region's outage the same
      // healthy groups, named after the failing ones, were left unasked by every scrape).
      const third = await gather(env as never, names, 3_000);
      expect(third.unasked).toEqual([]);
      expect(third.figures.map((f) => [f.group, f.up])).toEqual([...slow.map((g) => [g, false]), ["mx-late-16", true]]);
    } finally {
      for (const g of slow) await api("POST", `/v1/groups/${g}/faults`, { target: "sequencer", fault: "none" });
    }
  }, 45_000);

  it("a scrape with a slow registry and a hung group answers by its deadline: the cron's figures are asked alongside, not after (9.5 s, a probe)", async () => {
    await createGroup("mx-reg-slow");
    for (const target of ["sequencer", "r2", "r3"]) expect((await api("POST", "/v1/groups/mx-reg-slow/faults", { target, fault: "slow", ms: 20_000 })).status).toBe(200);
    expect((await api("POST", "/v1/groups/mx-reg-slow/faults", { target: "registry", fault: "slow", ms: 2_900 })).status).toBe(200);
    try {
      const startMs = Date.now();
      const r = await scrape();
      const tookMs = Date.now() - startMs;
      expect(r.status, r.text).toBe(200);
      expect(r.text).toMatch(/^smr_group_up\{group="mx-reg-slow"\} 0$/m);
      expect(r.text).toMatch(/^smr_cron_known 1$/m); // the slow registry still answered the cron's figures
      // The listing (2.9 s) and the gather run to metricsScrapeMs (7 s); the cron's 2.9 s came after them.
      expect(tookMs).toBeLessThan(8_500);
    } finally {
      await api("POST", "/v1/groups/mx-reg-slow/faults", { target: "registry", fault: "none" });
      for (const target of ["sequencer", "r2", "r3"]) await api("POST", "/v1/groups/mx-reg-slow/faults", { target, fault: "none" });
    }
  }, 30_000);

  it("is the admin's: a client or group token is 403; an unknown group is 404; a malformed name is 400", async () => {
    await createGroup("mx-auth");
    expectError(await api("GET", "/v1/metrics", undefined, clientToken), 403, "forbidden");
    const t = (await api("POST", "/v1/groups/mx-auth/tokens", { scope: "read" })).body.token;
    expectError(await api("GET", "/v1/metrics?group=mx-auth", undefined, t), 403, "forbidden");
    expectError(await api("GET", "/v1/metrics", undefined, null), 401, "unauthorized");
    expectError(await api("GET", "/v1/metrics?group=mx-nope"), 404, "not_found");
    expectError(await api("GET", "/v1/metrics?group=Bad_Name"), 400, "bad_request", /group/);
  });
});

describe("structured log lines", () => {
  it("a quarantine and the audit's verdict change each log one JSON line with group, replica, epoch, seq; the counters follow", async () => {
    await createGroup("mx-bad", { machine: "kv", checkpointEvery: 5 });
    for (let i = 1; i <= 6; i++) await command("mx-bad", { op: "put", key: `k${i}`, value: i });
    await applied("mx-bad", 6);
    await runInDurableObject(replicaObject("mx-bad", "r3"), (inst: ReplicaObject, state) => {
      (inst as any).replica.driver.core.saveState();
      expect(state.storage.sql.exec("UPDATE state SET v = ? WHERE k = ?", JSON.stringify(666), "m/k1").rowsWritten).toBe(1);
    });
    const warn = vi.spyOn(console, "warn");
    const report = (await api("POST", "/v1/groups/mx-bad/audit")).body;
    expect(report.quarantined).toEqual(["r3"]);
    const lines = jsonLines(warn);
    expect(lines.find((l) => l.event === "quarantine")).toMatchObject({ group: "mx-bad", replica: "r3", epoch: 1 });
    expect(lines.find((l) => l.event === "audit-verdict")).toMatchObject({ group: "mx-bad", epoch: 1, seq: report.seq, verdict: "diverged", previous: "consistent" });
    const m = await series("?group=mx-bad");
    expect(m.get("smr_audits_total", { group: "mx-bad", verdict: "diverged" })).toBe(1);
    expect(m.get("smr_audits_total", { group: "mx-bad", verdict: "consistent" })).toBe(0);
  });

  it("a 500 logs one JSON line with its request id", async () => {
    const error = vi.spyOn(console, "error").mockImplementation(() => undefined);
    const res = await worker.fetch(new Request("http://smr.test/v1/groups/any", { headers: { authorization: `Bearer ${adminToken}` } }), { ...env, DIRECTORY: undefined } as any, {} as any);
    expect(res.status).toBe(500);
    const body = (await res.json()) as any;
    const lines = jsonLines(error).filter((l) => l.event === "internal-error");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ group: "any", requestId: body.error.requestId, path: "/v1/groups/any" });
  });
});
