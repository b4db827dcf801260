// The exposition formatter (shared/api/metrics.ts), read back by an independent parser (a port of
// Prometheus's own), and the structured log line (shared/log.ts).
import parse from "parse-prometheus-text-format";
import { afterEach, describe, expect, it, vi } from "vitest";
import { escapeHelp, escapeLabelValue, exposition, formatValue, groupFamilies, metricsContentType } from "../../shared/api/metrics.js";
import type { AuditReport, EventKind, GroupStatus } from "../../shared/api/types.js";
import { memoryDirectory } from "../support/directory.js";
import { auditHistoryMax } from "../../shared/limits.js";
import { type GroupConfig, membersOf } from "../../shared/protocol/types.js";
import { SequencerCore } from "../../shared/protocol/sequencer.js";
import { Cluster } from "../support/cluster.js";
import { logEvent, logText } from "../../shared/log.js";
import { groupsHealth, samples } from "../../public/health.js";

describe("the Prometheus text exposition", () => {
  it("escapes label values (backslash, double quote, line feed) and HELP text (backslash, line feed) so they read back as written", () => {
    expect(escapeLabelValue('a\\b"c\nd')).toBe('a\\\\b\\"c\\nd');
    expect(escapeHelp('say "x"\\n\nnext')).toBe('say "x"\\\\n\\nnext');
    const nasty = 'C:\\dir\\"quoted"\nline two';
    const text = exposition([
      { name: "t_gauge", type: "gauge", help: "a gauge\nwith a \\ in its help", samples: [{ labels: { path: nasty, plain: "ok" }, value: 3 }] },
      { name: "t_total", type: "counter", help: "a counter", samples: [{ labels: {}, value: 7 }] },
    ]);
    expect(text.endsWith("\n")).toBe(true);
    expect(text).toContain('t_gauge{path="C:\\\\dir\\\\\\"quoted\\"\\nline two",plain="ok"} 3\n');
    const families = parse(text);
    expect(families.map((f) => [f.name, f.type])).toEqual([
      ["t_gauge", "GAUGE"],
      ["t_total", "COUNTER"],
    ]);
    expect(families[0]!.help).toBe("a gauge\nwith a \\ in its help");
    expect(families[0]!.metrics[0]!.labels).toEqual({ path: nasty, plain: "ok" });
    expect(families[1]!.metrics).toEqual([{ value: "7" }]);
  });

  it("spells special values as Prometheus reads them, and refuses bad metric and label names", () => {
    expect([NaN, Infinity, -Infinity, 0, 42, 1.5].map(formatValue)).toEqual(["NaN", "+Inf", "-Inf", "0", "42", "1.5"]);
    expect(() => exposition([{ name: "bad-name", type: "gauge", help: "", samples: [] }])).toThrow(/bad metric name/);
    expect(() => exposition([{ name: "ok", type: "gauge", help: "", samples: [{ labels: { "bad-label": "x" }, value: 1 }] }])).toThrow(/bad label name/);
    expect(() => exposition([{ name: "ok", type: "gauge", help: "", samples: [{ labels: { __reserved: "x" }, value: 1 }] }])).toThrow(/bad label name/);
  });

  it("puts comment lines (the next page's cursor) after the families, one line each", () => {
    const text = exposition([{ name: "x", type: "gauge", help: "h", samples: [{ labels: {}, value: 1 }] }], ["next: grp-9\nsneaky"]);
    expect(text.split("\n").at(-2)).toBe("# next: grp-9 sneaky");
    expect(parse(text)[0]!.metrics).toEqual([{ value: "1" }]);
  });

  it("turns a group's figures into API.md's series: lag at least 0, one status line per replica, audits by verdict, a group that did not answer only as down", () => {
    const status: GroupStatus = {
      group: "g1",
      machine: "kv",
      epoch: 3,
      commitSeq: 10,
      lastSeq: 12,
      outputs: "first",
      checkpointEvery: 100,
      sequencer: { name: "g1~s2", location: null, epoch: 3, since: null },
      replicas: [
        { id: "r1", location: null, status: "healthy", lastSeq: 12, appliedSeq: 12, digest: "d", lastContact: "2026-12-04T00:00:00.000Z" },
        { id: "r2", location: null, status: "quarantined", lastSeq: 4, appliedSeq: 4, digest: "d", lastContact: "2026-12-04T00:00:00.000Z" },
        // Never heard from (cut off with a failed sequencer's object, no audit reached it): no position, not 0.
        { id: "r3", location: null, status: "down", lastSeq: 0, appliedSeq: 0, digest: "d", lastContact: null },
      ],
    };
    const text = exposition(
      groupFamilies([
        { group: "g1", up: true, status, commandsTotal: 9, counts: { failovers: 2, audits: { consistent: 5, diverged: 1, insufficient: 0 }, lastAudits: { diverged: "2026-12-04T00:00:01.500Z", consistent: "2026-12-04T00:01:00.000Z" } } },
        { group: "g2", up: false },
        // Its sequencer did not answer; r1 did (a status built from what it says), r2 did not; its
        // directory did: its failover and audit series stay (an alert on them resolved, a review).
        {
          group: "g3",
          up: false,
          counts: { failovers: 1, audits: { consistent: 2, diverged: 0, insufficient: 1 }, lastAudits: { insufficient: "2026-12-04T00:02:00.000Z" } },
          replicas: {
            ...status,
            group: "g3",
            commitSeq: 7,
            replicas: [
              { id: "r1", location: null, status: "healthy", lastSeq: 7, appliedSeq: 5, digest: "d", lastContact: "2026-12-04T00:00:00.000Z" },
              { id: "r2", location: null, status: "down", lastSeq: 0, appliedSeq: 0, digest: "d", lastContact: null },
            ],
          },
        },
      ]),
    );
    const byName = new Map(parse(text).map((f) => [f.name, f]));
    const values = (name: string) => byName.get(name)!.metrics.map((m) => [m.labels, Number(m.value)]);
    expect(values("smr_group_up")).toEqual([
      [{ group: "g1" }, 1],
      [{ group: "g2" }, 0],
      [{ group: "g3" }, 0],
    ]);
    expect(values("smr_group_commit_seq")).toEqual([[{ group: "g1" }, 10]]);
    expect(values("smr_group_epoch")).toEqual([[{ group: "g1" }, 3]]);
    expect(values("smr_group_asleep")).toEqual([[{ group: "g1" }, 0]]);
    expect(values("smr_commands_total")).toEqual([[{ group: "g1" }, 9]]);
    expect(values("smr_failovers_total")).toEqual([
      [{ group: "g1" }, 2],
      [{ group: "g3" }, 1],
    ]);
    expect(values("smr_replica_applied_seq")).toEqual([
      [{ group: "g1", replica: "r1" }, 12],
      [{ group: "g1", replica: "r2" }, 4],
      [{ group: "g3", replica: "r1" }, 5],
    ]);
    expect(values("smr_replica_lag_entries")).toEqual([
      [{ group: "g1", replica: "r1" }, 0],
      [{ group: "g1", replica: "r2" }, 6],
      [{ group: "g3", replica: "r1" }, 2],
    ]);
    expect(values("smr_replica_status")).toEqual([
      [{ group: "g1", replica: "r1", status: "healthy" }, 1],
      [{ group: "g1", replica: "r2", status: "quarantined" }, 1],
      [{ group: "g1", replica: "r3", status: "down" }, 1],
      [{ group: "g3", replica: "r1", status: "healthy" }, 1],
      [{ group: "g3", replica: "r2", status: "down" }, 1],
    ]);
    expect(values("smr_audits_total")).toEqual([
      [{ group: "g1", verdict: "consistent" }, 5],
      [{ group: "g1", verdict: "diverged" }, 1],
      [{ group: "g1", verdict: "insufficient" }, 0],
      [{ group: "g3", verdict: "consistent" }, 2],
      [{ group: "g3", verdict: "diverged" }, 0],
      [{ group: "g3", verdict: "insufficient" }, 1],
    ]);
    // A time per verdict reported (seconds), in the counters' order; none for a verdict never reported.
    expect(values("smr_audit_last_timestamp_seconds")).toEqual([
      [{ group: "g1", verdict: "consistent" }, Date.parse("2026-12-04T00:01:00.000Z") / 1000],
      [{ group: "g1", verdict: "diverged" }, Date.parse("2026-12-04T00:00:01.500Z") / 1000],
      [{ group: "g3", verdict: "insufficient" }, Date.parse("2026-12-04T00:02:00.000Z") / 1000],
    ]);
    for (const name of ["smr_commands_total", "smr_failovers_total", "smr_audits_total"]) expect(byName.get(name)!.type).toBe("COUNTER");
    for (const name of ["smr_audit_last_timestamp_seconds", "smr_group_up", "smr_group_commit_seq", "smr_replica_lag_entries", "smr_replica_status"]) expect(byName.get(name)!.type).toBe("GAUGE");
    expect(metricsContentType).toBe("text/plain; version=0.0.4; charset=utf-8");
  });
});

describe("the sequencer's commands counter (smr_commands_total)", () => {
  it("counts the command entries each flush orders, saved with the log, so a restart keeps it", () => {
    const c = Cluster.of("kv");
    for (let r = 1; r <= 3; r++) c.submit("a", r, { op: "incr", key: "n", by: 1 });
    c.settle();
    c.submit("a", 3, { op: "incr", key: "n", by: 1 }); // a retry orders nothing
    c.submit("a", 4, { op: "incr", key: "n", by: 1 });
    c.settle();
    expect(c.sequencer.commandsTotal).toBe(4);
    expect(c.seqStore.meta!.commandsTotal).toBe(4);
    expect(new SequencerCore(c.seqStore, c.seqStore.meta!).commandsTotal).toBe(4);
  });

  it("a start after a crash between a flush and the meta's save counts that flush from the log: the counter never steps back (a probe saw 840, then 839)", () => {
    const c = Cluster.of("kv");
    for (let r = 1; r <= 3; r++) c.submit("a", r, { op: "incr", key: "n", by: 1 });
    c.settle();
    expect(c.seqStore.meta!.commandsTotal).toBe(3);
    // Two more flushed (their entries written with the log), the count not saved yet: a crash.
    c.submit("a", 4, { op: "incr", key: "n", by: 1 });
    c.sequencer.flush(new Date(60_000).toISOString());
    c.submit("a", 5, { op: "incr", key: "n", by: 1 });
    c.sequencer.flush(new Date(60_010).toISOString());
    expect(c.sequencer.commandsTotal).toBe(5);
    expect(c.seqStore.meta!.commandsTotal).toBe(3);
    const restarted = new SequencerCore(c.seqStore, c.seqStore.meta!);
    expect(restarted.commandsTotal).toBe(5);
    // Counted once: a second start from the same saved meta counts the same.
    expect(new SequencerCore(c.seqStore, c.seqStore.meta!).commandsTotal).toBe(5);
  });
});


describe("the directory's counters (smr_failovers_total, smr_audits_total)", () => {
  const config = { group: "g", incarnation: 0, machine: "kv", replicas: 3, locations: [], outputs: "first", checkpointEvery: 100 } as unknown as GroupConfig;
  const audit = (verdict: AuditReport["verdict"], at = "t"): AuditReport => ({ at, group: "g", seq: 1, verdict, replicas: [], quarantined: [] });
  const event = (kind: EventKind) => ({ at: "t", kind, epoch: 2, message: kind });

  it("count failover events and audits by verdict past the bounded histories, tell the previous verdict, and start again for a new incarnation", () => {
    const dir = memoryDirectory();
    const inc = (dir.create(config, "t") as { record: { config: GroupConfig } }).record.config.incarnation;
    expect(dir.counters()).toEqual({ failovers: 0, audits: { consistent: 0, diverged: 0, insufficient: 0 }, lastAudits: {} });
    expect(dir.addAudit(inc, audit("consistent"))).toEqual({ kept: true, previous: null });
    for (let i = 0; i < auditHistoryMax + 5; i++) dir.addAudit(inc, audit("consistent"));
    expect(dir.addAudit(inc, audit("diverged", "t-diverged"))).toEqual({ kept: true, previous: "consistent" });
    expect(dir.addAudit(inc, audit("consistent", "t-last"))).toEqual({ kept: true, previous: "diverged" });
    expect(dir.audits(1000)).toHaveLength(auditHistoryMax);
    dir.addEvent(inc, event("failover"));
    dir.addEvent(inc, event("quarantine"));
    dir.addEvent(inc, event("failover"));
    // A late write of another incarnation counts nothing.
    expect(dir.addAudit(inc + 1, audit("diverged")).kept).toBe(false);
    expect(dir.addEvent(inc + 1, event("failover"))).toBe(false);
    expect(dir.counters()).toEqual({ failovers: 2, audits: { consistent: auditHistoryMax + 7, diverged: 1, insufficient: 0 }, lastAudits: { consistent: "t-last", diverged: "t-diverged" } });
    expect(dir.setState(inc, "deleted")).toBe(true);
    const again = (dir.create(config, "t") as { record: { config: GroupConfig } }).record.config.incarnation;
    expect(again).toBe(inc + 1);
    expect(dir.counters()).toEqual({ failovers: 0, audits: { consistent: 0, diverged: 0, insufficient: 0 }, lastAudits: {} });
  });

  it("lists an event kept under a kind of an older version (release, alarm, rejoin, restore) under API.md's kind and its action", () => {
    const dir = memoryDirectory();
    const inc = (dir.create(config, "t") as { record: { config: GroupConfig } }).record.config.incarnation;
    const kept = (kind: string) => ({ at: "t", kind: kind as EventKind, epoch: 1, message: kind, replica: "r2" });
    for (const kind of ["release", "alarm", "rejoin", "restore", "failover"]) dir.addEvent(inc, kept(kind));
    expect(dir.events(10).map((e) => [e.kind, e.action, e.message, e.replica])).toEqual([
      ["failover", undefined, "failover", "r2"],
      ["recovery", "restore", "restore", "r2"],
      ["quarantine", "rejoin", "rejoin", "r2"],
      ["quarantine", "alarm", "alarm", "r2"],
      ["quarantine", "release", "release", "r2"],
    ]);
  });

  it("a failover's compare-and-set answers the membership as stored, newer than the one its PreVote read", () => {
    const dir = memoryDirectory();
    const read = (dir.create(config, "t") as { record: { config: GroupConfig } }).record.config;
    // While the PreVote ran (seconds), the sequencer still named wrote a change ahead: r4 joins.
    const joined = { ...read, members: [...membersOf(read), { id: "r4", location: null, voter: false }], lastReplicaNo: 4 };
    expect(dir.update(read.incarnation, joined)).toBe(true);
    const stored = dir.replaceSequencer(read.incarnation, 0, { ...read, sequencer: { name: "g~s1", location: null, no: 1 } });
    expect(stored?.sequencer?.name).toBe("g~s1");
    expect(membersOf(stored!).map((m) => m.id)).toEqual(["r1", "r2", "r3", "r4"]);
    expect(dir.replaceSequencer(read.incarnation, 0, { ...read, sequencer: { name: "g~s2", location: null, no: 1 } })).toBeNull();
  });

  it("keeps a move's or a failover's event with the new sequencer's recovery event, whoever sends that (the router that made the change may be gone)", () => {
    const dir = memoryDirectory();
    const rec = (dir.create(config, "t") as { record: { config: GroupConfig } }).record.config;
    const atMs = Date.parse("2026-12-04T10:00:00.000Z");
    const moved = { ...rec, sequencer: { name: "g~s1", location: "weur", no: 1 } };
    expect(dir.replaceSequencer(rec.incarnation, 0, moved, { kind: "move", from: "g", to: "g~s1", location: "weur", atMs })).not.toBeNull();
    // Nothing yet: the epoch is known at the recovery. Another sequencer's recovery event settles nothing.
    dir.addEvent(rec.incarnation, { at: "2026-12-04T10:00:00.500Z", kind: "recovery", epoch: 1, message: "r", sequencer: "g" });
    expect(dir.events(10).map((e) => e.kind)).toEqual(["recovery"]);
    dir.addEvent(rec.incarnation, { at: "2026-12-04T10:00:01.000Z", kind: "recovery", epoch: 2, message: "r", sequencer: "g~s1" });
    expect(dir.events(10)[0]).toEqual({ at: "2026-12-04T10:00:01.000Z", kind: "move", epoch: 2, message: "sequencer g moved to g~s1 (weur) at epoch 2", from: "g", to: "g~s1", location: "weur" });
    expect(dir.get()!.change).toBeUndefined();
    // A failover: down 4 s when the change was made, recovered 1.5 s later; counted once.
    const failed = { ...rec, sequencer: { name: "g~s2", location: null, no: 2 } };
    dir.replaceSequencer(rec.incarnation, 1, failed, { kind: "failover", from: "g~s1", to: "g~s2", cause: "no answer", downMs: 4_000, atMs });
    dir.addEvent(rec.incarnation, { at: "2026-12-04T10:00:01.500Z", kind: "recovery", epoch: 3, message: "r", sequencer: "g~s2" });
    dir.addEvent(rec.incarnation, { at: "2026-12-04T10:00:02.000Z", kind: "recovery", epoch: 4, message: "r", sequencer: "g~s2" });
    expect(dir.events(10).filter((e) => e.kind === "failover")).toEqual([{ at: "2026-12-04T10:00:01.500Z", kind: "failover", epoch: 3, message: "sequencer g~s1 replaced by g~s2 at epoch 3", cause: "no answer", from: "g~s1", to: "g~s2", downMs: 5_500 }]);
    expect(dir.counters().failovers).toBe(1);
    // The router's settle after the recovery it awaited finds it kept: nothing more.
    expect(dir.settleChange(rec.incarnation, "g~s2", 3, "2026-12-04T10:00:03.000Z")).toBe(false);
    // A change whose sequencer never reported its recovery is kept when the next one replaces it,
    // at that time, its epoch unknown; the router's settle keeps the next one's.
    dir.replaceSequencer(rec.incarnation, 2, { ...rec, sequencer: { name: "g~s3", location: null, no: 3 } }, { kind: "move", from: "g~s2", to: "g~s3", atMs });
    const laterMs = atMs + 60_000;
    dir.replaceSequencer(rec.incarnation, 3, { ...rec, sequencer: { name: "g~s4", location: null, no: 4 } }, { kind: "move", from: "g~s3", to: "g~s4", atMs: laterMs }, laterMs);
    expect(dir.events(1)[0]).toEqual({ at: "2026-12-04T10:01:00.000Z", kind: "move", epoch: 0, message: "sequencer g~s2 moved to g~s3; its recovery was not recorded", from: "g~s2", to: "g~s3", location: null });
    expect(dir.settleChange(rec.incarnation + 1, "g~s4", 6, "2026-12-04T10:01:01.000Z")).toBe(false);
    expect(dir.settleChange(rec.incarnation, "g~s4", 6, "2026-12-04T10:01:01.000Z")).toBe(true);
    expect(dir.events(1)[0]).toMatchObject({ kind: "move", epoch: 6, to: "g~s4", message: "sequencer g~s3 moved to g~s4 at epoch 6" });
    expect(dir.get()!.change).toBeUndefined();
    // A first recovery however late (a quorum back after 15 minutes) gives it its epoch and down time.
    dir.replaceSequencer(rec.incarnation, 4, { ...rec, sequencer: { name: "g~s5", location: null, no: 5 } }, { kind: "failover", from: "g~s4", to: "g~s5", cause: "c", downMs: 1_000, atMs });
    dir.addEvent(rec.incarnation, { at: "2026-12-04T10:15:00.000Z", kind: "recovery", epoch: 7, message: "r", sequencer: "g~s5" });
    expect(dir.events(1)[0]).toMatchObject({ kind: "failover", epoch: 7, downMs: 901_000 });
    // A recovery that is not the sequencer's first (after a fencing: its first one's event was
    // lost) does not give the change its epoch, nor the days between as down time.
    dir.replaceSequencer(rec.incarnation, 5, { ...rec, sequencer: { name: "g~s6", location: null, no: 6 } }, { kind: "failover", from: "g~s5", to: "g~s6", cause: "c", downMs: 1_000, atMs });
    dir.addEvent(rec.incarnation, { at: "2026-12-07T10:00:00.000Z", kind: "recovery", epoch: 9, message: "r", sequencer: "g~s6", again: true });
    expect(dir.events(1)[0]).toMatchObject({ kind: "failover", epoch: 0, downMs: 1_000, message: "sequencer g~s5 replaced by g~s6; its recovery was not recorded" });
  });

  it("keeps the quarantined replicas apart from the membership (a membership record does not clear them), written only by the sequencer in office", () => {
    const dir = memoryDirectory();
    const rec = (dir.create(config, "t") as { record: { config: GroupConfig } }).record.config;
    expect(dir.setQuarantined(rec.incarnation, "g", ["r3"])).toBe(true);
    expect(dir.update(rec.incarnation, { ...rec, quarantined: [] })).toBe(true);
    expect(dir.get()!.config.quarantined).toEqual(["r3"]);
    expect(dir.setQuarantined(rec.incarnation + 1, "g", [])).toBe(false);
    // Only from the sequencer the record names: a deposed one's late list is refused.
    expect(dir.replaceSequencer(rec.incarnation, 0, { ...rec, sequencer: { name: "g~s1", location: null, no: 1 } })).toMatchObject({ sequencer: { name: "g~s1" } });
    expect(dir.setQuarantined(rec.incarnation, "g", [])).toBe(false);
    expect(dir.get()!.config.quarantined).toEqual(["r3"]);
    expect(dir.setQuarantined(rec.incarnation, "g~s1", [])).toBe(true);
    expect(dir.get()!.config.quarantined).toBeUndefined();
  });
});

describe("the structured log line", () => {
  afterEach(() => vi.restoreAllMocks());

  it("is one JSON object per line, the common fields first and undefined ones left out, at the level asked", () => {
    const error = vi.spyOn(console, "error").mockImplementation(() => undefined);
    logEvent({ event: "internal-error", requestId: "abc", message: "boom", group: undefined, path: "/v1/x" }, "error");
    expect(error).toHaveBeenCalledTimes(1);
    const line = error.mock.calls[0]![0] as string;
    expect(line).not.toContain("\n");
    expect(JSON.parse(line)).toEqual({ event: "internal-error", requestId: "abc", message: "boom", path: "/v1/x" });
    expect(Object.keys(JSON.parse(logText({ seq: 4, path: "p", event: "repair", replica: "r2", group: "g", epoch: 2 })))).toEqual(["event", "group", "replica", "epoch", "seq", "path"]);
  });
});

/** A group "a" that answered, with nothing in it: the sequencer's figures are what a test changes. */
const base: GroupStatus = { group: "a", machine: "kv", epoch: 1, commitSeq: 0, lastSeq: 0, outputs: "first", checkpointEvery: 100, sequencer: { name: "a", location: null, epoch: 1, since: null }, replicas: [] };
const counts = { failovers: 0, audits: {} };
/** The exposition of groups a and b (b's sequencer as given) and c, which did not answer. */
const exposed = (b: Partial<GroupStatus["sequencer"]>) =>
  exposition(
    groupFamilies([
      { group: "a", up: true, status: base, commandsTotal: 0, counts },
      { group: "b", up: true, status: { ...base, group: "b", sequencer: { ...base.sequencer, name: "b", ...b } }, commandsTotal: 0, counts },
      { group: "c", up: false },
    ]),
  );

describe("smr_group_deleting", () => {
  it("is 1 for a group stuck mid-delete (its smr_group_up 0), absent for the others: it read as an outage alone (a probe)", () => {
    const text = exposition(groupFamilies([{ group: "a", up: true, status: base, commandsTotal: 0, counts }, { group: "c", up: false }, { group: "d", up: false, deleting: true }]));
    const family = parse(text).find((f) => f.name === "smr_group_deleting")!;
    expect(family.type).toBe("GAUGE");
    expect(family.metrics.map((m) => [m.labels, Number(m.value)])).toEqual([[{ group: "d" }, 1]]);
    expect(parse(text).find((f) => f.name === "smr_group_up")!.metrics.map((m) => Number(m.value))).toEqual([1, 0, 0]);
  });
});

describe("smr_group_asleep", () => {
  it("is 1 for a group whose status says it sleeps, 0 for an awake one, absent for one that did not answer (an alert on audit age can leave asleep groups out)", async () => {
    const text = exposed({ asleepSince: "2026-12-05T10:00:00.000Z" });
    const family = parse(text).find((f) => f.name === "smr_group_asleep")!;
    expect(family.type).toBe("GAUGE");
    expect(family.metrics.map((m) => [m.labels, Number(m.value)])).toEqual([
      [{ group: "a" }, 0],
      [{ group: "b" }, 1],
    ]);
  });
});

describe("smr_group_no_quorum_seconds", () => {
  it("is how long a sequencer that answered has heard no quorum (0 while it has one), absent for a group that did not answer: smr_group_up stayed 1 through a whole write outage (a probe)", () => {
    const text = exposed({ noQuorumMs: 22_400 });
    const family = parse(text).find((f) => f.name === "smr_group_no_quorum_seconds")!;
    expect(family.type).toBe("GAUGE");
    expect(family.metrics.map((m) => [m.labels, Number(m.value)])).toEqual([
      [{ group: "a" }, 0],
      [{ group: "b" }, 22.4],
    ]);
    expect(groupsHealth(samples(text)).map((g) => [g.group, g.health])).toEqual([
      ["a", "ok"],
      ["b", "down"],
      ["c", "down"],
    ]);
  });
});

describe("the cron's series", () => {
  it("say when the registry did not answer (smr_cron_known 0, nothing else), which the CLI's line reads as unknown, not as no run yet", async () => {
    const { cronFamilies } = await import("../../shared/api/metrics.js");
    const { cronLine } = await import("../../cli/metrics.js");
    const samplesOf = (text: string) => (parse(text) as { name: string; metrics: { value: string }[] }[]).map((f) => ({ name: f.name, value: Number(f.metrics[0]!.value) }));
    const unanswered = samplesOf(exposition(cronFamilies(null)));
    expect(unanswered).toEqual([{ name: "smr_cron_known", value: 0 }]);
    expect(cronLine(unanswered)).toMatch(/^cron: unknown/);
    const none = samplesOf(exposition(cronFamilies({})));
    expect(none).toEqual([{ name: "smr_cron_known", value: 1 }]);
    expect(cronLine(none)).toBeNull();
    const ran = samplesOf(exposition(cronFamilies({ lastRun: { startedMs: 1_000, endedMs: 3_000, audited: 4, failed: 1 } })));
    expect(cronLine(ran)).toMatch(/^cron: last run .* ago, 4 audited, 1 failed; no whole lap yet$/);
    // Asleep groups are audited once a day, outside the laps: the line counts them.
    const sleeping = samplesOf(exposition(cronFamilies({ lastRun: { startedMs: 1_000, endedMs: 3_000, audited: 4, failed: 0 }, asleep: 2 })));
    expect(cronLine(sleeping)).toMatch(/no whole lap yet; now 2 groups asleep \(audited once a day, not in laps\)$/);
    const lapped = samplesOf(exposition(cronFamilies({ lastRun: { startedMs: 1_000, endedMs: 3_000, audited: 4, failed: 0 }, lastLapMs: 120_000, lastLapGroups: 4, asleep: 2 })));
    expect(cronLine(lapped)).toMatch(/; the last whole lap took 2 min; now 2 groups asleep/);
    const awake = samplesOf(exposition(cronFamilies({ lastRun: { startedMs: 1_000, endedMs: 3_000, audited: 4, failed: 0 }, asleep: 0 })));
    expect(cronLine(awake)).not.toMatch(/asleep/);
  });

  it("count the groups asleep (smr_groups_asleep, a gauge, 0 too) when the registry says, and leave it out when it does not", async () => {
    const { cronFamilies } = await import("../../shared/api/metrics.js");
    const asleepOf = (text: string) => (parse(text) as { name: string; type: string; help: string; metrics: { value: string }[] }[]).find((f) => f.name === "smr_groups_asleep");
    const three = asleepOf(exposition(cronFamilies({ asleep: 3 })));
    expect(three).toMatchObject({ type: "GAUGE", metrics: [{ value: "3" }] });
    expect(three!.help).toMatch(/stopped its heartbeats for lack of client activity.*once a day/);
    expect(asleepOf(exposition(cronFamilies({ asleep: 0 })))?.metrics).toEqual([{ value: "0" }]);
    // A registry that did not answer, or one older than the count: absent, not 0.
    expect(asleepOf(exposition(cronFamilies(null)))).toBeUndefined();
    expect(asleepOf(exposition(cronFamilies({})))).toBeUndefined();
  });
});
