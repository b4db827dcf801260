// Protocol rules a mutation probe of shared/protocol found no test for (2026-12-05): each test
// fails with its mutant (named in the test) and passes on the code. The tests kept here are
// those whose rule no other file's helpers reach simply; see docs/PROTOCOL.md for each rule.
import { describe, expect, it } from "vitest";
import { type FailoverIO, preVote } from "../../shared/protocol/failover.js";
import type { VoteReply } from "../../shared/protocol/io.js";
import type { GroupConfig, Member } from "../../shared/protocol/types.js";
import { appendEntriesMax, downAfterMisses, failoverHoldDownMs, readLeaseMs, sequencerTimeoutMs, watchKeepaliveMs, watchSilenceMs } from "../../shared/limits.js";
import { Cluster } from "../support/cluster.js";
import { directGroup, realClock } from "../support/direct.js";
import type { Entry } from "../../shared/api/types.js";
import { entryHash } from "../../shared/protocol/entry.js";
import { zeroHash } from "../../shared/protocol/hash.js";
import { MemoryReplicaStorage, MemorySequencerStorage } from "../../shared/protocol/memory.js";
import { ReplicaCore, newReplicaMeta } from "../../shared/protocol/replica.js";
import { ReplicaDriver } from "../../shared/protocol/replica-driver.js";
import { SequencerCore, type SequencerMeta } from "../../shared/protocol/sequencer.js";
import type { AppendRequest } from "../../shared/protocol/types.js";
import { machineFor } from "../../shared/machines/index.js";
import { WatchHub, type WatchSink } from "../../shared/protocol/watch.js";

const config: GroupConfig = { group: "g", incarnation: 0, machine: "kv", replicas: 3, locations: [], outputs: "first", checkpointEvery: 50 };
function io(votes: Record<string, VoteReply | undefined>, nowMs = 1_000_000) {
  const failover: FailoverIO = {
    nowMs: () => nowMs,
    setTimer: () => () => {},
    vote: (id) => (votes[id] === undefined ? new Promise(() => {}) : Promise.resolve(votes[id]!)),
  };
  return { failover };
}
const gone: VoteReply = { epoch: 1, heardAgoMs: 6_000, gone: true };
const hears: VoteReply = { epoch: 1, heardAgoMs: 200, gone: false };
const put = (key: string, value: unknown) => ({ op: "put", key, value });

const stamp = (seq: number) => new Date(Date.UTC(2024, 0, 1) + seq * 1000).toISOString();
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
function withNoop(log: Entry[], epoch: number): Entry[] {
  const prev = log[log.length - 1];
  const seq = (prev?.seq ?? 0) + 1;
  const body = { seq, epoch, kind: "noop" as const, client: null, request: null, command: null, timestamp: stamp(seq) };
  return [...log, { ...body, hash: entryHash(prev?.hash ?? zeroHash, body) }];
}
function appendOf(log: Entry[], epoch: number, prevSeq: number, toSeq: number, commitSeq: number): AppendRequest {
  return { epoch, prevSeq, prevHash: prevSeq === 0 ? zeroHash : log[prevSeq - 1]!.hash, entries: log.slice(prevSeq, toSeq), commitSeq };
}
function takeOver(c: Cluster, log: Entry[], epoch: number, commitSeq: number): void {
  const storage = new MemorySequencerStorage();
  storage.appendEntries(log);
  const meta: SequencerMeta = { config: c.config, epoch, commitSeq, quarantined: [] };
  storage.saveMeta(meta);
  c.seqStore = storage;
  c.sequencer = new SequencerCore(storage, meta);
}
const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

describe("rules a mutation probe found unguarded", () => {
  it("a PreVote during a membership change needs a quorum of every membership in force (quorum.ts: some instead of every)", async () => {
    const m = (id: string, voter = true): Member => ({ id, location: null, voter });
    const changing: GroupConfig = {
      ...config,
      replicas: 4,
      members: [m("r1"), m("r2"), m("r3"), m("r4")],
      inFlight: [[m("r1"), m("r2"), m("r3"), m("r4", false)], [m("r1"), m("r2"), m("r3"), m("r4")]],
    };
    // r1, r2 are a quorum of the old voters (2 of 3) but not of the new (3 of 4 needed).
    const { failover } = io({ r1: gone, r2: gone, r3: hears, r4: hears });
    expect(await preVote(failover, changing)).toMatchObject({ go: false });
  });

  it("a voter with exactly downAfterMisses misses is down and not counted reachable (tracker.ts: <= instead of <)", () => {
    const c = Cluster.of("kv");
    for (const id of ["r2", "r3"]) for (let i = 0; i < downAfterMisses; i++) c.sequencer.onAppendFailure(id);
    expect(c.sequencer.replicaStatuses().filter((r) => r.status === "down").map((r) => r.id)).toEqual(["r2", "r3"]);
    expect(c.submit("a", 1, put("x", 1)).kind).toBe("unavailable");
  });

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

  it("past readLeaseMs (not yet cut off) a read index needs a fresh round: a successor waits out only readLeaseMs (driver.ts: the lease doubled)", async () => {
    let nowMs = 1_000_000;
    let timersFire = false;
    const g = directGroup(config, { entries: 1000, slack: 100 }, { nowMs: () => nowMs, setTimer: (ms, fn) => (timersFire ? realClock.setTimer(ms, fn) : () => {}) });
    expect((await g.driver.submit("a", 1, put("k", 1))).kind).toBe("ok");
    nowMs += readLeaseMs + 500;
    expect(nowMs - 1_000_000).toBeLessThan(sequencerTimeoutMs);
    timersFire = true;
    for (const id of ["r1", "r2", "r3"]) g.down.add(id);
    const answer = await Promise.race([g.driver.readIndex(), tick(200).then(() => "still confirming")]);
    expect(answer).not.toMatchObject({ kind: "ok" });
    g.driver.stop();
  });

  it("a voter that heard the sequencer more than half a timeout ago does not keep just-back voters from counting (failover.ts: the whole timeout)", async () => {
    const back: VoteReply = { epoch: 1, heardAgoMs: 7_000, gone: true, upMs: 500 };
    const late: VoteReply = { epoch: 1, heardAgoMs: 3_000, gone: false, upMs: 60_000 };
    const { failover } = io({ r1: back, r2: back, r3: late });
    expect(await preVote(failover, config)).toMatchObject({ go: true });
  });

  it("no failover within failoverHoldDownMs of the sequencer taking office (failover.ts: a third of it)", async () => {
    const nowMs = 1_000_000;
    const held: GroupConfig = { ...config, sequencer: { name: "g~s1", location: null, no: 1, since: new Date(nowMs - failoverHoldDownMs / 2).toISOString() } };
    const { failover } = io({ r1: gone, r2: gone, r3: gone }, nowMs);
    expect(await preVote(failover, held)).toMatchObject({ go: false, reason: expect.stringContaining("hold-down") });
  });

  it("a deposed sequencer's append (stale epoch) is not hearing the sequencer, nor its sleep notice (replica-driver.ts)", () => {
    let clock = 100_000;
    const storage = new MemoryReplicaStorage();
    storage.saveMeta(newReplicaMeta("g", "r1", "kv", 50));
    const d = new ReplicaDriver(new ReplicaCore(storage, storage.meta!, machineFor("kv")), { nowMs: () => clock, setTimer: () => () => {} });
    expect(d.fence(2, "x")?.accepted).toBe(true);
    clock += sequencerTimeoutMs + 1_000;
    expect(d.append({ epoch: 1, prevSeq: 0, prevHash: zeroHash, entries: [], commitSeq: 0, sleep: true })).toMatchObject({ ok: false, reason: "stale_epoch" });
    expect(d.vote()).toMatchObject({ gone: true, heardAgoMs: sequencerTimeoutMs + 1_000 });
  });

  it("with a wake hook, a silent replica's watches still end (watch.ts without the wokeAtMs check kept them open)", () => {
    let now = 0;
    const timers: { at: number; fn: () => void }[] = [];
    const clock = {
      nowMs: () => now,
      setTimer: (ms: number, fn: () => void) => {
        const t = { at: now + ms, fn };
        timers.push(t);
        return () => void (timers.includes(t) && timers.splice(timers.indexOf(t), 1));
      },
    };
    let wakes = 0;
    const hub = new WatchHub({ appliedSeq: () => 0, readEvents: () => [], silentMs: () => now, wake: () => void wakes++ }, clock);
    const sink = { texts: [] as string[], closed: false, dropped: false, queuedBytes: 0, takenBytes: 0, gone: false,
      write(t: string) { this.texts.push(t); }, close() { this.closed = true; this.gone = true; }, drop() { this.dropped = true; this.gone = true; } };
    expect(hub.open(sink, null, null)).toBe("ok");
    for (let i = 0; i < 20 && now < watchSilenceMs + 3 * watchKeepaliveMs; i++) {
      now += watchKeepaliveMs / 2;
      for (const t of timers.filter((x) => x.at <= now)) { timers.splice(timers.indexOf(t), 1); t.fn(); }
    }
    expect(wakes).toBeGreaterThan(0);
    expect(sink.closed).toBe(true);
  });
});
