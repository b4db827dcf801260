// The health rule shared by `smr groups status` and the dashboard (public/health.js), over a
// scrape's text as /v1/metrics writes it.
import { describe, expect, it } from "vitest";
import { groupsHealth, healthOf, noQuorumSideText, noQuorumText, quotaText, replicaTrouble, samples } from "../../public/health.js";

const scrape = [
  "# HELP smr_group_up 1 if the group's objects answered this scrape",
  'smr_group_up{group="a"} 1',
  'smr_group_epoch{group="a"} 2',
  'smr_group_commit_seq{group="a"} 40',
  'smr_replica_status{group="a",replica="r1",status="healthy"} 1',
  'smr_replica_status{group="a",replica="r2",status="healthy"} 1',
  'smr_replica_status{group="a",replica="r2",status="quarantined"} 0',
  'smr_replica_lag_entries{group="a",replica="r1"} 0',
  'smr_replica_lag_entries{group="a",replica="r2"} 7',
  'smr_audit_last_timestamp_seconds{group="a",verdict="diverged"} 1700000000',
  'smr_audit_last_timestamp_seconds{group="a",verdict="consistent"} 1700000060',
  'smr_failovers_total{group="a"} 1',
  'smr_sequencer_answer_seconds{group="a"} 0.004',
  'smr_group_up{group="b"} 1',
  'smr_replica_status{group="b",replica="r1",status="healthy"} 1',
  'smr_replica_status{group="b",replica="r2",status="down"} 1',
  'smr_group_up{group="d"} 1',
  'smr_replica_status{group="d",replica="r1",status="healthy"} 1',
  'smr_sequencer_answer_seconds{group="d"} 1.52',
  'smr_group_up{group="c"} 0',
  'smr_group_deleting{group="c"} 1',
  'smr_group_up{group="e"} 1',
  'smr_group_no_quorum_seconds{group="e"} 22.4',
  'smr_replica_status{group="e",replica="r1",status="healthy"} 1',
  'smr_replica_status{group="e",replica="r2",status="down"} 1',
  'smr_replica_status{group="e",replica="r3",status="down"} 1',
  'smr_group_no_quorum_seconds{group="a"} 0',
  'smr_replica_storage_bytes{group="a",replica="r1"} 1048576',
  'smr_group_storage_quota_bytes{group="a"} 16777216',
  'smr_group_up{group="f"} 1',
  'smr_replica_status{group="f",replica="r1",status="healthy"} 1',
  'smr_replica_status{group="f",replica="r2",status="healthy"} 1',
  'smr_replica_storage_bytes{group="f",replica="r1"} 22544384',
  'smr_replica_storage_bytes{group="f",replica="r2"} 16777216',
  'smr_group_storage_quota_bytes{group="f"} 16777216',
  'smr_build_info{version="x \\"q\\"\\nz"} 1',
].join("\n");

describe("health", () => {
  it("reads each group's health, positions, lag and newest audit from one scrape", () => {
    const [a, b, d, c, e, f, ...rest] = groupsHealth(samples(scrape));
    expect(rest).toEqual([]);
    expect(a).toEqual({
      group: "a", health: "ok", up: true, deleting: false, epoch: 2, commitSeq: 40, lagMax: 7, failovers: 1, answerMs: 4, noQuorumMs: null, quotaBytes: 16777216,
      replicas: [{ id: "r1", status: "healthy", storageBytes: 1048576 }, { id: "r2", status: "healthy" }],
      lastAudit: { verdict: "consistent", at: new Date(1700000060 * 1000).toISOString() },
    });
    expect([b?.group, b?.health, b?.lastAudit, b?.lagMax]).toEqual(["b", "degraded", null, null]);
    // Stuck mid-delete: down, and said so (it read as an outage: a probe).
    expect([c?.group, c?.health, c?.replicas, c?.deleting]).toEqual(["c", "down", [], true]);
    // Every replica healthy, but a sequencer 1.5 s to answer: degraded (every command waits as long).
    expect([d?.group, d?.health, d?.answerMs]).toEqual(["d", "degraded", 1520]);
    // Its sequencer answers but has heard no quorum: no write can commit. It showed degraded (a probe).
    expect([e?.group, e?.health, e?.up, e?.noQuorumMs]).toEqual(["e", "down", true, 22_400]);
    expect(noQuorumText(e?.noQuorumMs)).toBe("no quorum of replicas for 22 s (writes cannot commit)");
    // Every replica healthy, but one at the storage quota: every write is refused. It showed ok (a probe).
    expect([f?.group, f?.health]).toEqual(["f", "degraded"]);
    expect(quotaText(f!.replicas, f!.quotaBytes)).toBe("storage quota reached: r1 holds 21.5 MiB of 16.0 MiB (writes refused)");
    expect(quotaText(a!.replicas, a!.quotaBytes)).toBeNull();
    // Near it (from 90%): degraded and said, before writes fail (it showed ok until then: an operator probe).
    const mib = 1048576;
    expect(quotaText([{ id: "r1", status: "healthy", storageBytes: 15.8 * mib }, { id: "r2", status: "healthy", storageBytes: mib }], 16 * mib)).toBe("storage near the quota: r1 holds 15.8 MiB of 16.0 MiB (98%; writes are refused at the quota)");
    expect(healthOf(true, [{ id: "r1", status: "healthy", storageBytes: 14.5 * mib }], null, 4, null, 16 * mib)).toBe("degraded");
    expect(healthOf(true, [{ id: "r1", status: "healthy", storageBytes: 14 * mib }], null, 4, null, 16 * mib)).toBe("ok");
  });

  it("is ok only when the group answered, every replica is healthy and its last audit agreed", () => {
    const healthy = [{ id: "r1", status: "healthy" }];
    expect(healthOf(true, healthy, null)).toBe("ok");
    expect(healthOf(true, healthy, { verdict: "consistent", at: "" })).toBe("ok");
    expect(healthOf(true, healthy, { verdict: "insufficient", at: "" })).toBe("degraded");
    expect(healthOf(true, [...healthy, { id: "r2", status: "joining" }], null)).toBe("degraded");
    expect(healthOf(false, healthy, { verdict: "consistent", at: "" })).toBe("down");
    expect(healthOf(true, healthy, null, 4, 6_000)).toBe("down");
    expect(healthOf(true, healthy, null, 4, null)).toBe("ok");
    expect(healthOf(true, [{ id: "r1", status: "healthy", storageBytes: 89 }], null, 4, null, 100)).toBe("ok");
    expect(healthOf(true, [{ id: "r1", status: "healthy", storageBytes: 99 }], null, 4, null, 100)).toBe("degraded"); // near it
    expect(healthOf(true, [{ id: "r1", status: "healthy", storageBytes: 100 }], null, 4, null, 100)).toBe("degraded");
  });

  it("a damaged replica (its rows failed their scrub) degrades its group, and is named, though its status reads healthy (only the audits named it: a probe)", () => {
    const [g] = groupsHealth(samples(['smr_group_up{group="g"} 1', 'smr_replica_status{group="g",replica="r1",status="healthy"} 1', 'smr_replica_status{group="g",replica="r2",status="healthy"} 1', 'smr_replica_damaged{group="g",replica="r1"} 0', 'smr_replica_damaged{group="g",replica="r2"} 1'].join("\n")));
    expect(g?.replicas).toEqual([{ id: "r1", status: "healthy" }, { id: "r2", status: "healthy", damaged: true }]);
    expect(g?.health).toBe("degraded");
    expect(replicaTrouble(g!.replicas)).toEqual(["r2 damaged (its rows failed their scrub: repair it)"]);
    expect(replicaTrouble([{ id: "r3", status: "down" }])).toEqual(["r3 down"]);
    // A replica not heard from has no lag sample: the largest lag is unknown, not the others' 0 (a probe).
    const [h] = groupsHealth(samples(['smr_group_up{group="h"} 1', 'smr_replica_status{group="h",replica="r1",status="healthy"} 1', 'smr_replica_status{group="h",replica="r2",status="down"} 1', 'smr_replica_lag_entries{group="h",replica="r1"} 0'].join("\n")));
    expect(h?.lagMax).toBeNull();
  });

  it("undoes label escapes and skips comments", () => {
    const parsed = samples(scrape);
    expect(parsed.some((s) => s.name.startsWith("#") || s.name === "HELP")).toBe(false);
    expect(parsed.find((s) => s.name === "smr_build_info")?.labels.version).toBe('x "q"\nz');
  });
});

describe("which side a sequencer with no quorum is on, in words (the CLI's quorum line and the dashboard's group view)", () => {
  it("says a failover replaces a cut-off sequencer, and that none can help when the voters answer no one (an operator probe: a failover promised for minutes)", () => {
    expect(noQuorumSideText("sequencer", [])).toBe("the voters answer the router: the sequencer is cut off, a failover replaces it");
    expect(noQuorumSideText("replicas", ["r1", "r2"])).toBe("r1, r2 answer neither the sequencer nor the router: no failover can help");
    expect(noQuorumSideText("replicas", ["r3"])).toBe("r3 answers neither the sequencer nor the router: no failover can help");
    expect(noQuorumSideText("replicas", [])).toMatch(/too many are quarantined for a quorum: no failover can help$/);
    // The dashboard shows it in a group's tooltip, after "no quorum of replicas for N s": no
    // sequencer named there, so "it" read as the group (a review: "it is cut off" of a group).
    for (const text of [noQuorumSideText("sequencer", []), noQuorumSideText("replicas", ["r2", "r3"]), noQuorumSideText("replicas", [])]) {
      expect(text).not.toMatch(/\b(it|its) (is|nor|voters)\b|neither it\b/);
    }
    expect(noQuorumSideText(undefined, undefined)).toBeNull();
  });
});
