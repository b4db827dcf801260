// `smr groups status` (cli/groups.ts printStatus): a sequencer the router could not reach is said
// to be unreachable, with the API's problem, not shown like a healthy group's.
import { afterEach, describe, expect, it, vi } from "vitest";
import { printStatus } from "../../cli/groups.js";
import type { GroupStatus } from "../../shared/client/index.js";

const replica = { id: "r2", location: null, status: "healthy", lastSeq: 1, appliedSeq: 1, digest: "ab".repeat(32), lastContact: "2026-12-04T04:39:44.406Z" } as const;
const base: GroupStatus = {
  group: "flt",
  machine: "kv",
  epoch: 1,
  commitSeq: 1,
  outputs: "first",
  checkpointEvery: 100,
  sequencer: { name: "flt", location: null, epoch: 1, since: "2026-12-04T04:39:43.273Z" },
  replicas: [replica],
} as GroupStatus;

function printed(s: GroupStatus): string {
  let out = "";
  const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  try {
    printStatus(s);
  } finally {
    spy.mockRestore();
  }
  return out;
}

afterEach(() => vi.restoreAllMocks());

describe("smr groups status", () => {
  it("says when the group sleeps, since when, and what wakes it; nothing while awake", () => {
    const out = printed({ ...base, sequencer: { ...base.sequencer, asleepSince: "2026-12-05T10:00:00.000Z" } });
    expect(out).toMatch(/│ asleep +│ since 2026-12-05T10:00:00.000Z \(no client work; the next command wakes it\) +│/);
    expect(printed(base)).not.toMatch(/asleep/);
  });

  it("shows a rebuild's rows copied so far beside its status (it showed \"repairing\" alone: a probe)", () => {
    const rebuilding = { ...replica, id: "r3", status: "repairing", rebuild: { source: "r1", seq: 13355, rows: 4096, since: "2026-12-06T02:00:00.000Z" } } as const;
    expect(printed({ ...base, replicas: [replica, rebuilding] })).toMatch(/│ r3 +│ [^│]*│ repairing \(4096 rows from r1\) +│/);
    expect(printed(base)).not.toMatch(/rows from/);
  });

  it("says when the sequencer cannot be reached, and why", () => {
    const out = printed({ ...base, sequencer: { ...base.sequencer, reachable: false, problem: "the sequencer of flt cannot be reached (injected fault)" } });
    expect(out).toMatch(/│ reachable +│ NO: the sequencer of flt cannot be reached \(injected fault\) +│/);
  });

  it("says when a replica is at the group's storage quota (the list and the dashboard show it degraded)", () => {
    const full = { ...base, storageQuotaMiB: 16, replicas: [{ ...replica, storageBytes: 21.5 * 1024 * 1024 }] } as GroupStatus;
    expect(printed(full)).toMatch(/│ storage +│ storage quota reached: r2 holds 21\.5 MiB of 16\.0 MiB \(writes refused\) +│/);
    expect(printed({ ...full, replicas: [{ ...replica, storageBytes: 1024 }] } as GroupStatus)).not.toMatch(/│ storage /);
  });

  it("says which side a sequencer with no quorum is on, as the router saw its voters (a probe: a failover promised that could not come)", () => {
    const noQuorum = (side: Record<string, unknown>) => printed({ ...base, sequencer: { ...base.sequencer, noQuorumMs: 74_000, ...side } } as GroupStatus);
    expect(noQuorum({ noQuorumSide: "replicas", silentVoters: ["r1", "r2"] })).toMatch(/│ quorum +│ NONE for 74 s \(r1, r2 answer neither the sequencer nor the router: no failover can help\) +│/);
    expect(noQuorum({ noQuorumSide: "sequencer", silentVoters: [] })).toMatch(/│ quorum +│ NONE for 74 s \(the voters answer the router: the sequencer is cut off, a failover replaces it\) +│/);
    // Voters that answer the router but may not vote (quarantined) are not said silent; one silent voter in the singular (a review).
    expect(noQuorum({ noQuorumSide: "replicas", silentVoters: [] })).not.toMatch(/answer neither the sequencer nor the router/);
    expect(noQuorum({ noQuorumSide: "replicas", silentVoters: [] })).toMatch(/quarantined/);
    expect(noQuorum({ noQuorumSide: "replicas", silentVoters: ["r3"] })).toMatch(/r3 answers neither the sequencer nor the router/);
    // An older server says no side.
    expect(noQuorum({})).toMatch(/│ quorum +│ NONE for 74 s \(cut off from its replicas; a failover may replace it\) +│/);
  });

  it("adds nothing for a sequencer that answered", () => {
    const out = printed(base);
    expect(out).not.toContain("reachable");
    expect(out).toMatch(/│ sequencer +│ flt @ any \(epoch 1/);
  });
});

describe("smr groups status, a replica the sequencer has not heard from", () => {
  it("shows an audit's positions as the audit's, with its time, never as a last contact; none at all as ?", () => {
    const audited = { ...replica, id: "r3", status: "down", lastSeq: 7, appliedSeq: 7, lastContact: null, audited: "2026-12-04T04:30:00.000Z" } as const;
    const unknown = { ...replica, id: "r4", status: "lagging", lastSeq: 0, appliedSeq: 0, digest: "0".repeat(64), lastContact: null } as const;
    const uncompared = { ...audited, id: "r5", digest: "0".repeat(64) } as const; // the audit compared no digest at its position
    const out = printed({ ...base, replicas: [replica, audited, unknown, uncompared] } as GroupStatus);
    expect(out).toMatch(/│ r5 .*│ down +│ 7 +│ 7 +│ \? +│ none \(positions: audit /);
    expect(out).toMatch(/│ r3 .*│ down +│ 7 +│ 7 +│ abababab\w* +│ none \(positions: audit 2026-12-04T04:30:00.000Z\) +│/);
    expect(out).toMatch(/│ r4 .*│ lagging +│ \? +│ \? +│ \? +│/);
    expect(out).toMatch(/│ r2 .*│ healthy +│ 1 +│ 1 +│ abababab\w* +│ 2026-12-04T04:39:44.406Z +│/);
  });
});
