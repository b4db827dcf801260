// Log matching across epochs: what a sequencer may count as committed, and what a replica may
// take as committed, when logs of a deposed sequencer's epoch are still about. Logs are built
// by hand (hash-chained entries of chosen epochs) so each test starts from the exact state a
// takeover leaves behind, without running a recovery.
import { describe, expect, it } from "vitest";
import { machineFor } from "../../shared/machines/index.js";
import type { Entry } from "../../shared/api/types.js";
import { entryHash } from "../../shared/protocol/entry.js";
import { zeroHash } from "../../shared/protocol/hash.js";
import { MemoryReplicaStorage, MemorySequencerStorage } from "../../shared/protocol/memory.js";
import { ReplicaCore, newReplicaMeta } from "../../shared/protocol/replica.js";
import { SequencerCore, type SequencerMeta } from "../../shared/protocol/sequencer.js";
import type { AppendRequest, GroupConfig } from "../../shared/protocol/types.js";
import { appendEntriesMax, readLeaseMs, replicaRpcTimeoutMs, sequencerTimeoutMs } from "../../shared/limits.js";
import { Cluster } from "../support/cluster.js";
import { directGroup, realClock } from "../support/direct.js";

const stamp = (seq: number) => new Date(Date.UTC(2024, 0, 1) + seq * 1000).toISOString();

/**
 * `count` command entries of `epoch` after `log` (each a put of k<seq> to `${tag}<seq>`, so two
 * histories with different tags differ at every seq). Returns log with them added.
 */
function extend(log: Entry[], epoch: number, count: number, tag = "v"): Entry[] {
  const out = [...log];
  for (let i = 0; i < count; i++) {
    const prev = out[out.length - 1];
    const seq = (prev?.seq ?? 0) + 1;
    const body = { seq, epoch, kind: "command" as const, client: `c-${tag}`, request: seq, command: { op: "put", key: `k${seq}`, value: `${tag}${seq}` }, timestamp: stamp(seq) };
    out.push({ ...body, hash: entryHash(prev?.hash ?? zeroHash, body) });
  }
  return out;
}

/** A recovery's no-op of `epoch` after `log`. */
function withNoop(log: Entry[], epoch: number): Entry[] {
  const prev = log[log.length - 1];
  const seq = (prev?.seq ?? 0) + 1;
  const body = { seq, epoch, kind: "noop" as const, client: null, request: null, command: null, timestamp: stamp(seq) };
  return [...log, { ...body, hash: entryHash(prev?.hash ?? zeroHash, body) }];
}

/** The append that carries log entries prevSeq+1..toSeq, as a sequencer at `epoch` would send it. */
function appendOf(log: Entry[], epoch: number, prevSeq: number, toSeq: number, commitSeq: number): AppendRequest {
  return {
    epoch,
    prevSeq,
    prevHash: prevSeq === 0 ? zeroHash : log[prevSeq - 1]!.hash,
    entries: log.slice(prevSeq, toSeq),
    commitSeq,
  };
}

function freshReplica(id = "r1", retention?: { entries: number; slack: number }): ReplicaCore {
  const store = new MemoryReplicaStorage();
  const meta = newReplicaMeta("g", id, "kv", 4);
  store.saveMeta(meta);
  return new ReplicaCore(store, meta, machineFor("kv"), retention);
}

/** The value the replica's kv state holds at key (undefined: none). */
function valueAt(r: ReplicaCore, key: string): unknown {
  return (r.query({ op: "get", key }) as { value: unknown }).value ?? undefined;
}

/** Replaces the cluster's sequencer with one at `epoch` that recovered `log` (no-op included), commitSeq as given. */
function takeOver(c: Cluster, log: Entry[], epoch: number, commitSeq: number): void {
  const storage = new MemorySequencerStorage();
  storage.appendEntries(log);
  const meta: SequencerMeta = { config: c.config, epoch, commitSeq, quarantined: [] };
  storage.saveMeta(meta);
  c.seqStore = storage;
  c.sequencer = new SequencerCore(storage, meta);
}

describe("sequencer: the current-epoch commit rule (raft figure 8)", () => {
  it("does not commit a recovered older-epoch entry that a quorum holds until its own no-op is acknowledged", () => {
    // Entries 1-2 (epoch 1) are committed everywhere; a deposed epoch-2 sequencer stored 3..258
    // on r3 alone, which the epoch-3 recovery took as its best log. r1 and r2 are sent the
    // epoch-2 entries in one full message (appendEntriesMax of them) and the no-op in the next:
    // after the first, a quorum holds seq 258 but it is epoch 2's, and counting it could commit
    // an entry that a later recovery (without r1's and r2's newer logs) legitimately drops.
    // Only once the epoch-3 no-op is on a quorum does everything before it commit.
    const committed = extend([], 1, 2);
    const old = extend(committed, 2, appendEntriesMax);
    const recovered = withNoop(old, 3);
    const noopSeq = recovered.length;
    expect(noopSeq).toBe(appendEntriesMax + 3);
    const c = Cluster.of("kv");
    for (const id of ["r1", "r2", "r3"]) {
      const r = c.replicas.get(id)!;
      expect(r.append(appendOf(committed, 1, 0, 2, 2)).ok).toBe(true);
      expect(r.appliedSeq).toBe(2);
    }
    c.down.add("r3");
    takeOver(c, recovered, 3, 2);

    c.round(); // the no-op alone: both answer gap at 2
    for (const id of ["r1", "r2"]) expect(c.replicas.get(id)!.position().lastSeq).toBe(2);
    c.round(); // 3..258, all of epoch 2
    for (const id of ["r1", "r2"]) {
      const r = c.replicas.get(id)!;
      expect(r.position().lastSeq).toBe(noopSeq - 1);
      expect(r.appliedSeq, id).toBe(2);
    }
    expect(c.sequencer.commitSeq).toBe(2);
    expect(c.sequencer.epochSettled).toBe(false);

    c.round(); // the no-op: on a quorum now, and it commits everything before it
    expect(c.sequencer.commitSeq).toBe(noopSeq);
    c.settle();
    for (const id of ["r1", "r2"]) expect(c.replicas.get(id)!.appliedSeq, id).toBe(noopSeq);
    expect(valueAt(c.replicas.get("r1")!, `k${noopSeq - 1}`)).toBe(`v${noopSeq - 1}`);
  });
});

describe("sequencer: matchSeq is what was sent, not what the replica reports", () => {
  it("an empty append acknowledged by a replica with a longer, stale suffix counts only up to its prevSeq", () => {
    // r1 holds 1..5 (epoch 1, committed) and 6..10 of a deposed epoch-2 sequencer that the
    // epoch-3 recovery did not take; the recovered log is 1..5 then the no-op at 6. A heartbeat
    // at prevSeq 5 matches r1, which answers ok with lastSeq 10: that vouches for 1..5 only, its
    // 6 is not the no-op. Counting r1 at 6 would make r2's ack alone a "quorum" for the no-op,
    // committing an entry only one replica holds.
    const committed = extend([], 1, 5);
    const stale = extend(committed, 2, 5, "stale");
    const recovered = withNoop(committed, 3);
    const c = Cluster.of("kv");
    const r1 = c.replicas.get("r1")!;
    expect(r1.append(appendOf(stale, 2, 0, 10, 5)).ok).toBe(true);
    expect(r1.position()).toMatchObject({ lastSeq: 10, appliedSeq: 5 });
    expect(c.replicas.get("r2")!.append(appendOf(committed, 1, 0, 5, 5)).ok).toBe(true);
    c.down.add("r3");
    takeOver(c, recovered, 3, 5);

    const beat = c.sequencer.heartbeat("r1")!;
    expect(beat).toMatchObject({ prevSeq: 5, entries: [] });
    const resp = c.deliver("r1", beat)!;
    expect(resp).toMatchObject({ ok: true, lastSeq: 10 });
    c.deliver("r2", c.messageFor("r2")!); // the no-op, acknowledged by r2
    expect(c.replicas.get("r2")!.position().lastSeq).toBe(6);
    expect(c.sequencer.commitSeq).toBe(5);

    // r1 is then sent the no-op itself, which replaces its stale 6..10: now a quorum holds it.
    const toR1 = c.messageFor("r1")!;
    expect(toR1).toMatchObject({ prevSeq: 5 });
    expect(toR1.entries.map((e) => e.seq)).toEqual([6]);
    c.deliver("r1", toR1);
    expect(r1.position().lastSeq).toBe(6);
    expect(c.sequencer.commitSeq).toBe(6);
  });
});

describe("replica: commitSeq is bounded by what the message vouched for", () => {
  it("a lagging replica with an older epoch's suffix does not apply that suffix as committed", () => {
    // Entries 6..10 are a deposed epoch-2 sequencer's; the epoch-3 sequencer's 6..8 (committed)
    // are different entries. Its append catches r1 up to 5 with commitSeq 8: only 1..5 were
    // vouched for by the message (raft's min(leaderCommit, index of last new entry)). Applying
    // the replica's own 6..8 would execute a history the group never committed.
    const committed = extend([], 1, 5);
    const stale = extend(committed, 2, 5, "stale");
    const r = freshReplica();
    expect(r.append(appendOf(committed, 1, 0, 3, 3)).ok).toBe(true);
    expect(r.append(appendOf(stale, 2, 3, 10, 3)).ok).toBe(true);
    expect(r.position()).toMatchObject({ lastSeq: 10, appliedSeq: 3 });

    const resp = r.append(appendOf(committed, 3, 3, 5, 8));
    expect(resp).toMatchObject({ ok: true, appliedSeq: 5, commitSeq: 5 });
    expect(r.appliedSeq).toBe(5);
    expect(valueAt(r, "k5")).toBe("v5");
    expect(valueAt(r, "k6")).toBeUndefined();
  });
});

describe("replica: an append that reaches back below the compacted base", () => {
  /** r1 with 1..6 applied and its log compacted to a base above 0 (retention shrunk). */
  function compacted() {
    const log = extend([], 1, 6);
    const r = freshReplica("r1", { entries: 1, slack: 1 });
    expect(r.append(appendOf(log, 1, 0, 6, 6)).ok).toBe(true);
    const base = r.config.baseSeq;
    expect(base).toBeGreaterThan(1);
    expect(base).toBeLessThan(6);
    return { r, log, base };
  }

  it("is refused as a mismatch when its entry at the base differs, though nothing after the base is new", () => {
    // The skipped entries are applied already, so the only check left is that the message's
    // entry at the base is the one the replica holds there. Without it a replica with a
    // different history answered ok, and the sequencer counted it as holding the message.
    const { r, base } = compacted();
    const other = extend([], 1, 6, "other");
    const resp = r.append(appendOf(other, 1, 0, base, base));
    expect(resp).toMatchObject({ ok: false, reason: "mismatch" });
  });

  it("is refused as a mismatch, not an exception, when it also carries entries after the base", () => {
    // The entries after the base chain to the message's own hash at the base: spliced onto the
    // replica's base they would not chain, and the step failed an assertion instead of answering
    // mismatch (which the sequencer turns into a repair).
    const { r, base } = compacted();
    const other = extend([], 1, 6, "other");
    const resp = r.append(appendOf(other, 1, 0, 6, 6));
    expect(resp).toMatchObject({ ok: false, reason: "mismatch" });
    expect(r.position()).toMatchObject({ lastSeq: 6, appliedSeq: 6 });
  });

  it("skips the entries up to its base when the message's entry at the base matches", () => {
    // The positive case: the same history sent from before the base is taken, not refused.
    const { r, log, base } = compacted();
    const longer = extend(log, 1, 2);
    expect(r.append(appendOf(longer, 1, base - 1, 8, 8))).toMatchObject({ ok: true, lastSeq: 8, appliedSeq: 8 });
  });
});

describe("the quorum's position", () => {
  // A mutation probe: sorting the voters' positions as text ("9" > "11" > "10") made the second
  // highest of 9, 10 and 11 be 11, and an entry one replica held was committed. Only one seed in
  // twenty of the simulator's command line met it; the test suite none.
  it("is taken in numeric order: with voters at 9, 10 and 11 the commit is 10", () => {
    const c = Cluster.of("kv", 3, "first", 100);
    let request = 0;
    const write = () => c.submit("a", ++request, { op: "put", key: `k${request}`, value: request });
    for (let i = 0; i < 9; i++) write();
    c.settle();
    expect(c.sequencer.lastLogSeq).toBe(9);
    c.down = new Set(["r1"]);
    write();
    c.round(); // r2 and r3 store 10
    c.round();
    c.down = new Set(["r1", "r2"]);
    write();
    c.round(); // r3 alone stores 11
    c.round();
    expect(c.sequencer.replicaStatuses().map((r) => r.lastSeq)).toEqual([9, 10, 11]);
    expect(c.sequencer.commitSeq).toBe(10);
  });
});

describe("a linearizable read's index", () => {
  // A mutation probe: an index of commitSeq instead of readIndexSeq survived every test. A message
  // that completes a quorum carries the commit with it (commitWithAck), and its replica applies
  // and serves that state before the ack comes back; a read index below it let a later
  // linearizable read, at a replica not yet there, see an older state (the simulator once showed
  // it; its seed no longer does).
  it("covers every commit sent to a replica, not only the commits acknowledged", async () => {
    const g = directGroup({ group: "g", incarnation: 1, machine: "kv", replicas: 3, locations: [], outputs: "first", checkpointEvery: 100 } as GroupConfig, { entries: 10_000, slack: 1_000 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    const core = g.driver.core;
    // r2 alone stores the next put: not committed.
    g.down.add("r1");
    g.down.add("r3");
    const second = g.driver.submit("a", 2, { op: "put", key: "k", value: 2 });
    const until = async (cond: () => boolean) => {
      for (let i = 0; i < 600 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
      expect(cond()).toBe(true);
    };
    await until(() => g.replicas.get("r2")!.core!.position().lastSeq >= 2);
    expect(core.commitSeq).toBe(1);
    // r1 back, slowly: its next message carries the entry and, its ack completing the quorum, the commit.
    g.slow.set("r1", 400);
    g.down.delete("r1");
    g.driver.kickAll();
    await until(() => core.readIndexSeq > core.commitSeq);
    const answer = await g.driver.readIndex();
    expect(answer).toMatchObject({ kind: "ok", seq: 2 });
    expect((await second).kind).toBe("ok");
    g.driver.stop();
  }, 15_000);
});

/**
 * A group whose one write's quorum was heard readLeaseMs + 500 ms ago by its clock (not yet cut
 * off), every replica down since: a read index then needs a heartbeat round that gets no answer.
 */
async function pastLeaseAllDown() {
  let nowMs = 1_000_000;
  let timersFire = false;
  const config = { group: "g", incarnation: 0, machine: "kv", replicas: 3, locations: [], outputs: "first", checkpointEvery: 50 } as GroupConfig;
  const g = directGroup(config, { entries: 1000, slack: 100 }, { nowMs: () => nowMs, setTimer: (ms, fn) => (timersFire ? realClock.setTimer(ms, fn) : () => {}) });
  expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
  nowMs += readLeaseMs + 500;
  expect(nowMs - 1_000_000).toBeLessThan(sequencerTimeoutMs);
  timersFire = true;
  for (const id of ["r1", "r2", "r3"]) g.down.add(id);
  return g;
}

describe("rules a mutation probe found unguarded (test/unit/guards.test.ts has the others)", () => {
  it("a message capped before the no-op does not carry an older epoch's entry as committed (sequencer.ts commitWithAck without the current-epoch rule: raft's figure 8)", () => {
    const committed = extend([], 1, 2);
    const old = extend(committed, 2, appendEntriesMax);
    const recovered = withNoop(old, 3);
    const noopSeq = recovered.length;
    const c = Cluster.of("kv");
    for (const id of ["r1", "r2", "r3"]) expect(c.replicas.get(id)!.append(appendOf(committed, 1, 0, 2, 2)).ok).toBe(true);
    c.down.add("r2");
    c.down.add("r3");
    takeOver(c, recovered, 3, 2);
    c.round(); // the no-op: r1 answers gap
    c.round(); // 3..258 to r1
    c.round(); // the no-op to r1
    expect(c.replicas.get("r1")!.position().lastSeq).toBe(noopSeq);
    c.down.delete("r2");
    c.round(); // r2: the no-op, gap
    c.round(); // r2: 3..258 (capped before the no-op); r1 holds the no-op, so a quorum holds 258 (epoch 2)
    expect(c.replicas.get("r2")!.position().lastSeq).toBe(noopSeq - 1);
    expect(c.replicas.get("r2")!.appliedSeq).toBe(2);
    expect(c.sequencer.commitSeq).toBe(2);
  });
  it("a mismatch at exactly the replica's applied seq is divergence (quarantined), not a retry loop (sequencer.ts: < instead of <=; it was caught only by a hang)", () => {
    const mine = extend([], 1, 2, "v");
    const theirs = extend([], 1, 2, "w");
    const c = Cluster.of("kv");
    for (const id of ["r1", "r2"]) expect(c.replicas.get(id)!.append(appendOf(mine, 1, 0, 2, 2)).ok).toBe(true);
    expect(c.replicas.get("r3")!.append(appendOf(theirs, 1, 0, 2, 2)).ok).toBe(true);
    takeOver(c, withNoop(mine, 2), 2, 2);
    c.round(); c.round(); c.round();
    expect(c.diverged).toEqual(["r3"]);
  });
  it("a quorum that answers in 2.6 s (past the lease, within the append timeout) still confirms a read: its heartbeat waits behind the message in flight (a probe: every such read was a 503 while writes committed)", async () => {
    const config = { group: "g", incarnation: 0, machine: "kv", replicas: 3, locations: [], outputs: "first", checkpointEvery: 50 } as GroupConfig;
    const g = directGroup(config, { entries: 1000, slack: 100 });
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    // Every round trip past the lease: each read needs a heartbeat round, sent once the message
    // in flight is answered (up to 2.6 s later), then answered 2.6 s after that.
    const rttMs = readLeaseMs + 100;
    for (const id of ["r1", "r2", "r3"]) g.slow.set(id, rttMs);
    const started = Date.now();
    const writing = g.driver.submit("a", 2, { op: "put", key: "k", value: 2 });
    // Reads begin at several points of the message in flight (the write's), the lease long past.
    const reads = [200, 900, 1600].map((ms) => new Promise((r) => setTimeout(r, rttMs + ms)).then(() => g.driver.readIndex()));
    expect(await Promise.all(reads)).toEqual([expect.objectContaining({ kind: "ok" }), expect.objectContaining({ kind: "ok" }), expect.objectContaining({ kind: "ok" })]);
    expect((await writing).kind).toBe("ok");
    expect(Date.now() - started).toBeGreaterThan(rttMs);
    g.driver.stop();
  }, 30_000);

  it("a heartbeat round under way ends with the sequencer's stop, not at its timer (a read on a deposed sequencer waited up to 6 s: a review)", async () => {
    const g = await pastLeaseAllDown();
    const reading = g.driver.readIndex();
    const startedMs = Date.now();
    await new Promise((r) => setTimeout(r, 50));
    g.driver.stop();
    expect(await reading).toMatchObject({ kind: "unavailable" });
    expect(Date.now() - startedMs).toBeLessThan(replicaRpcTimeoutMs);
  });

  it("past readLeaseMs (not yet cut off) a read index needs a fresh round: a successor waits out only readLeaseMs (driver.ts: the lease doubled)", async () => {
    const g = await pastLeaseAllDown();
    const answer = await Promise.race([g.driver.readIndex(), new Promise((r) => setTimeout(r, 200)).then(() => "still confirming")]);
    expect(answer).not.toMatchObject({ kind: "ok" });
    g.driver.stop();
  });
});
