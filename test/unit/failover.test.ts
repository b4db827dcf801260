// The PreVote decides as soon as its votes settle the question, without waiting out the vote of
// a replica that does not answer (a lost message cost every failover it hit replicaRpcTimeoutMs).
import { describe, expect, it } from "vitest";
import { type FailoverIO, preVote, successorLocation } from "../../shared/protocol/failover.js";
import type { VoteReply } from "../../shared/protocol/io.js";
import { type GroupConfig, type Member, sequencerLocationOf } from "../../shared/protocol/types.js";
import { commandTimeoutMs, cutOffConfirmMs, failoverHoldDownMs, cutOffLookupMs, replicaRpcTimeoutMs, resendMs, sequencerTimeoutMs } from "../../shared/limits.js";
import { cutOffOf, unsureAfter } from "../../shared/protocol/io.js";
import { directGroup, fastClock as fast, realClock } from "../support/direct.js";
import { ReplicaDriver } from "../../shared/protocol/replica-driver.js";
import { ReplicaCore, newReplicaMeta } from "../../shared/protocol/replica.js";
import { MemoryReplicaStorage } from "../../shared/protocol/memory.js";
import { machineFor } from "../../shared/machines/index.js";
import { SequencerDriver } from "../../shared/protocol/driver.js";
import { SequencerCore } from "../../shared/protocol/sequencer.js";


const config: GroupConfig = { group: "g", incarnation: 0, machine: "kv", replicas: 3, locations: [], outputs: "first", checkpointEvery: 50 };

/** Votes by replica id (undefined: never answers); timers run only when a test fires them. */
function io(votes: Record<string, VoteReply | undefined>) {
  const timers: (() => void)[] = [];
  const failover: FailoverIO = {
    nowMs: () => 1_000_000,
    setTimer: (_ms, fn) => {
      timers.push(fn);
      return () => timers.splice(timers.indexOf(fn), 1);
    },
    vote: (id) => (votes[id] === undefined ? new Promise(() => {}) : Promise.resolve(votes[id]!)),
  };
  return { failover, fireTimers: () => timers.splice(0).forEach((fn) => fn()) };
}

const gone: VoteReply = { epoch: 1, heardAgoMs: 6_000, gone: true };
const hears: VoteReply = { epoch: 1, heardAgoMs: 200, gone: false };
const settle = () => new Promise((r) => setTimeout(r, 0));

describe("the PreVote", () => {
  it("fails over once a quorum has lost the sequencer, before the silent replica's vote times out", async () => {
    const { failover } = io({ r1: gone, r2: gone });
    const decision = await Promise.race([preVote(failover, config), settle().then(() => "still waiting")]);
    expect(decision).toMatchObject({ go: true, downMs: 6_000, next: { name: "g~s1", no: 1 } });
  });

  it("refuses once a quorum still hears the sequencer, without waiting for the rest", async () => {
    const { failover } = io({ r1: hears, r2: hears });
    const decision = await Promise.race([preVote(failover, config), settle().then(() => "still waiting")]);
    expect(decision).toMatchObject({ go: false });
  });

  it("says why it refuses: how many replicas hear the sequencer, are unreachable, or have not answered", async () => {
    const { failover } = io({ r1: null as unknown as VoteReply, r2: hears });
    const decision = await preVote(failover, config);
    expect(decision).toMatchObject({ go: false, reason: "only 0 of 3 replicas have lost the sequencer (1 still hears it, 1 unreachable, 1 not answered by then); a failover needs a quorum of voters to have lost it" });
  });

  it("says when the unreachable leave too few for a quorum, so the vote stopped without waiting for the rest", async () => {
    const { failover } = io({ r1: null as unknown as VoteReply, r2: null as unknown as VoteReply });
    const decision = await preVote(failover, config);
    expect(decision).toMatchObject({
      go: false,
      reason: "only 0 of 3 replicas have lost the sequencer (0 still hear it, 2 unreachable, 1 not answered by then); a failover needs a quorum of voters to have lost it: with 2 unreachable, not enough replicas are left to make one, so the vote stopped there",
    });
  });

  it("counts a replica that was asleep until the vote apart from those that hear the sequencer", async () => {
    const waking: VoteReply = { epoch: 1, heardAgoMs: 0, gone: false, waking: true };
    const { failover } = io({ r1: waking, r2: waking, r3: hears });
    const decision = await preVote(failover, config);
    expect(decision).toMatchObject({ go: false, reason: "only 0 of 3 replicas have lost the sequencer (2 were asleep and are waking it, 1 not answered by then); a failover needs a quorum of voters to have lost it" });
  });

  it("waits for the deciding vote while the answers so far leave it open, and refuses when it times out", async () => {
    const { failover, fireTimers } = io({ r1: gone, r2: hears });
    const pending = preVote(failover, config);
    expect(await Promise.race([pending, settle().then(() => "still waiting")])).toBe("still waiting");
    fireTimers(); // r3's vote times out: one of three has lost the sequencer
    expect(await pending).toMatchObject({ go: false, reason: expect.stringContaining("only 1 of 3") });
  });

  it("asks a silent replica again after resendMs: a lost vote does not leave the question open", async () => {
    const timers: { ms: number; fn: () => void }[] = [];
    let r3Calls = 0;
    const failover: FailoverIO = {
      nowMs: () => 1_000_000,
      setTimer: (ms, fn) => {
        const t = { ms, fn };
        timers.push(t);
        return () => void (timers.includes(t) && timers.splice(timers.indexOf(t), 1));
      },
      // r3's first vote is lost on the way; the copy sent again answers.
      vote: (id) => (id === "r1" ? Promise.resolve(gone) : id === "r2" ? Promise.resolve(hears) : r3Calls++ === 0 ? new Promise(() => {}) : Promise.resolve(gone)),
    };
    const pending = preVote(failover, config);
    expect(await Promise.race([pending, settle().then(() => "still waiting")])).toBe("still waiting");
    // Only the resend falls due (the window of replicaRpcTimeoutMs is still open).
    for (const t of timers.filter((t) => t.ms === resendMs)) t.fn();
    expect(await pending).toMatchObject({ go: true });
    expect(r3Calls).toBe(2);
  });
});

describe("the PreVote of a sequencer that answers but has no quorum (cut off)", () => {
  /** Voters answer at once; timers are kept so a test sees the confirmation wait and fires it. */
  function cutIo(votes: Record<string, VoteReply | null | undefined>) {
    const waits: number[] = [];
    const timers: (() => void)[] = [];
    const failover: FailoverIO = {
      nowMs: () => 1_000_000,
      setTimer: (ms, fn) => {
        if (ms === cutOffConfirmMs) waits.push(ms);
        timers.push(fn);
        return () => void (timers.includes(fn) && timers.splice(timers.indexOf(fn), 1));
      },
      vote: (id) => (votes[id] === undefined ? new Promise(() => {}) : Promise.resolve(votes[id]!)),
    };
    const fire = async () => {
      await settle();
      timers.splice(0).forEach((fn) => fn());
    };
    return { failover, waits, fire };
  }

  it("fails over when the cut-off lasts through the confirmation wait and a quorum answers, even though they still hear it", async () => {
    const { failover, waits, fire } = cutIo({ r1: hears, r2: hears, r3: hears });
    let asked = 0;
    const pending = preVote(failover, config, { lostMs: 5_200, ask: async () => (asked++, 5_200 + cutOffConfirmMs) });
    await fire();
    const d = await pending;
    expect(waits).toEqual([cutOffConfirmMs]);
    expect(asked).toBe(1);
    expect(d).toMatchObject({ go: true, downMs: 5_200 + cutOffConfirmMs, next: { name: "g~s1" } });
  });

  it("refuses when the sequencer heard a quorum again meanwhile (replicas back from a partition): no churn", async () => {
    const { failover, fire } = cutIo({ r1: gone, r2: gone, r3: gone });
    const pending = preVote(failover, config, { lostMs: 7_000, ask: async () => 400 });
    await fire();
    expect(await pending).toMatchObject({ go: false, reason: expect.stringContaining("heard a quorum again") });
  });

  it("refuses at once when a quorum of voters does not answer this router: a successor could not reach them either", async () => {
    const { failover, waits } = cutIo({ r1: null, r2: null, r3: hears });
    let asked = 0;
    const d = await preVote(failover, config, { lostMs: 9_000, ask: async () => (asked++, 20_000) });
    expect(d).toMatchObject({ go: false, reason: expect.stringContaining("of 3 replicas answer here: not a cut-off") });
    expect(waits).toEqual([]);
    expect(asked).toBe(0);
  });

  it("goes without the wait when a quorum has heard nothing of it though back for longer than the wait, and it still says it is cut off", async () => {
    const goneUp: VoteReply = { ...gone, upMs: cutOffConfirmMs + replicaRpcTimeoutMs + 1_000 };
    const { failover, waits } = cutIo({ r1: goneUp, r2: goneUp, r3: hears });
    let asked = 0;
    const d = await preVote(failover, config, { lostMs: 5_200, ask: async () => (asked++, 5_300) });
    expect(d).toMatchObject({ go: true, next: { name: "g~s1" } });
    expect(waits).toEqual([]);
    expect(asked).toBe(1);
  });

  it("keeps the wait when the votes do not say how long the voters have been back (no upMs: an older replica)", async () => {
    const { failover, waits, fire } = cutIo({ r1: gone, r2: gone, r3: gone });
    let asked = 0;
    const pending = preVote(failover, config, { lostMs: 5_200, ask: async () => (asked++, 5_300) });
    await settle();
    await settle();
    expect(asked).toBe(0);
    expect(waits).toEqual([cutOffConfirmMs]);
    await fire();
    expect(await pending).toMatchObject({ go: false });
  });

  it("waits when the voters that heard nothing are just back (their silence may be their own), or it heard a quorum since", async () => {
    // Back for the wait but not a call's timeout more: its retry may be on its way still.
    const goneJustBack: VoteReply = { ...gone, upMs: cutOffConfirmMs + 1_000 };
    const back = cutIo({ r1: goneJustBack, r2: goneJustBack, r3: goneJustBack });
    let asked = 0;
    const pending = preVote(back.failover, config, { lostMs: 5_200, ask: async () => (asked++, 400) });
    await settle();
    expect(asked).toBe(0);
    expect(back.waits).toEqual([cutOffConfirmMs]);
    await back.fire();
    expect(await pending).toMatchObject({ go: false });
    const goneUp: VoteReply = { ...gone, upMs: cutOffConfirmMs + replicaRpcTimeoutMs + 1_000 };
    const regained = cutIo({ r1: goneUp, r2: goneUp, r3: goneUp });
    const again = preVote(regained.failover, config, { lostMs: 5_200, ask: async () => 300 });
    await settle();
    await settle();
    expect(regained.waits).toEqual([cutOffConfirmMs]);
    await regained.fire();
    expect(await again).toMatchObject({ go: false, reason: expect.stringContaining("heard a quorum again") });
  });

  it("refuses when the sequencer does not answer the second question", async () => {
    const { failover, fire } = cutIo({ r1: hears, r2: hears });
    const pending = preVote(failover, config, { lostMs: 6_000, ask: async () => null });
    await fire();
    expect(await pending).toMatchObject({ go: false, reason: "the sequencer did not answer again" });
  });
});

/** Votes from `vote`; of the timers, only the cut-off confirmation's wait runs (at once). */
function confirmingIo(vote: FailoverIO["vote"]): FailoverIO {
  return {
    nowMs: () => 1_000_000,
    setTimer: (ms, fn) => {
      if (ms === cutOffConfirmMs) setTimeout(fn, 0);
      return () => {};
    },
    vote,
  };
}

describe("the cut-off PreVote's choices", () => {
  const placed: GroupConfig = { ...config, locations: ["wnam", "weur", "apac"], colocated: "r1" };
  /** Votes by round (a vote's round is counted from r1's calls); the confirmation wait fires at once. */
  function rounds(byRound: Record<string, VoteReply | null>[]) {
    let round = -1;
    return confirmingIo((id) => {
      if (id === "r1") round++;
      const v = byRound[Math.min(round, byRound.length - 1)]![id];
      return v === undefined ? new Promise(() => {}) : Promise.resolve(v);
    });
  }

  it("places the successor away from the cut-off sequencer: not near the replica it hosts, nor at its location", async () => {
    const d = await preVote(rounds([{ r1: hears, r2: hears, r3: hears }]), placed, { lostMs: 5_500, ask: async () => 12_500 });
    expect(d).toMatchObject({ go: true, location: "weur" });
  });

  it("counts only voters that answered both rounds: one back just for the second may not have been reached yet", async () => {
    const failover = rounds([
      { r1: hears, r2: hears, r3: null },
      { r1: hears, r2: null, r3: hears },
    ]);
    expect(await preVote(failover, placed, { lostMs: 5_500, ask: async () => 12_500 })).toMatchObject({ go: false, reason: expect.stringContaining("in both rounds") });
  });

  it("does not count a voter halfway through a state transfer: a successor could not fence it", async () => {
    const rebuilding: VoteReply = { ...hears, amnesiac: true };
    const d = await preVote(rounds([{ r1: hears, r2: rebuilding, r3: null }]), placed, { lostMs: 5_500, ask: async () => 12_500 });
    expect(d).toMatchObject({ go: false, reason: expect.stringContaining("only 1 of 3 replicas answer here") });
  });
});

describe("the cut-off PreVote's rounds", () => {
  it("goes ahead when every voter answers both rounds, whichever quorum is quickest in each", async () => {
    // Round 1: r3 answers last (the round settles on r1 and r2); round 2: r2 answers last.
    const delays = [{ r1: 1, r2: 2, r3: 30 }, { r1: 1, r2: 30, r3: 2 }];
    const calls: Record<string, number> = { r1: 0, r2: 0, r3: 0 };
    const failover = confirmingIo((id) => {
      const round = Math.min(calls[id]!++, 1);
      return new Promise((resolve) => setTimeout(() => resolve(hears), delays[round]![id as "r1"]));
    });
    const d = await preVote(failover, config, { lostMs: 5_500, ask: async () => 12_500 });
    expect(d).toMatchObject({ go: true });
  });
});

describe("the cut-off PreVote's voters must have been back for the whole confirmation wait (upMs)", () => {
  /** Virtual time: timers run in time order, each once the promises before it have settled. */
  function virtual() {
    let now = 1_000_000;
    let n = 0;
    let timers: { at: number; n: number; fn: () => void }[] = [];
    const clock = {
      nowMs: () => now,
      setTimer: (ms: number, fn: () => void) => {
        const t = { at: now + ms, n: n++, fn };
        timers.push(t);
        return () => void (timers = timers.filter((x) => x !== t));
      },
    };
    const until = async <T>(p: Promise<T>): Promise<T> => {
      let out: { v: T } | null = null;
      void p.then((v) => (out = { v }));
      for (;;) {
        for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
        if (out) return (out as { v: T }).v;
        timers.sort((a, b) => a.at - b.at || a.n - b.n);
        const t = timers.shift();
        if (!t) throw new Error("nothing left to run, and the PreVote has not decided");
        now = Math.max(now, t.at);
        t.fn();
      }
    };
    return { clock, until };
  }

  /** Three real replica drivers that nothing has reached for 20 s; a vote to one `away` is lost. */
  function voters() {
    const { clock, until } = virtual();
    const drivers = new Map<string, ReplicaDriver>();
    for (const id of ["r1", "r2", "r3"]) {
      const storage = new MemoryReplicaStorage();
      storage.saveMeta(newReplicaMeta("g", id, "kv", 50));
      drivers.set(id, new ReplicaDriver(new ReplicaCore(storage, storage.meta!, machineFor("kv")), clock));
    }
    const away = new Set<string>();
    const failover: FailoverIO = { ...clock, vote: (id) => (away.has(id) ? new Promise(() => {}) : Promise.resolve(drivers.get(id)!.vote())) };
    return { clock, until, away, failover };
  }

  it("refuses when the quorum that answered both rounds was away in between and is back for less than cutOffConfirmMs (a flapping quorum, the sequencer's retry not yet come round)", async () => {
    const { clock, until, away, failover } = voters();
    await until(new Promise<void>((r) => clock.setTimer(20_000, r)));
    const startMs = clock.nowMs();
    // Away from everyone right after the first round, back 0.1 s before the second.
    clock.setTimer(100, () => ["r1", "r2", "r3"].forEach((id) => away.add(id)));
    clock.setTimer(cutOffConfirmMs - 100, () => away.clear());
    let asked = 0;
    const ask = async () => (asked++, 5_500 + (clock.nowMs() - startMs)); // its retry has not reached them yet
    const d = await until(preVote(failover, config, { lostMs: 5_500, ask }));
    expect(d).toMatchObject({ go: false, reason: expect.stringContaining("back for the whole wait") });
    expect(asked).toBe(0);
  });

  it("does not go on asking the voters with its calls during the wait once the wait is over", async () => {
    const { clock, until } = virtual();
    const startMs = clock.nowMs();
    // They hear the sequencer (late appends) and answer, except from 4 s to 6 s into the wait:
    // the call at two thirds of it goes unanswered there and is resent.
    const late: string[] = [];
    const vote = (id: string): Promise<VoteReply> => {
      const at = clock.nowMs() - startMs;
      if (at >= cutOffConfirmMs) late.push(id);
      if (at >= (2 * cutOffConfirmMs) / 3 && at < cutOffConfirmMs) return new Promise(() => {});
      return Promise.resolve({ epoch: 1, heardAgoMs: 1_000, gone: false, upMs: 60_000 });
    };
    const ask = async () => 5_500 + (clock.nowMs() - startMs);
    const d = await until(preVote({ ...clock, vote }, config, { lostMs: 5_500, ask }));
    expect(d).toMatchObject({ go: true });
    await until(new Promise<void>((r) => clock.setTimer(5_000, r))); // what is left runs
    // The second round's calls (to the first round's quorum, r1 and r2), none of the earlier call's copies.
    expect(late.sort()).toEqual(["r1", "r2"]);
  });

  it("ends the wait at the first of this router's calls during it that finds a quorum back for long and not hearing the sequencer for sequencerTimeoutMs", async () => {
    const { clock, until } = virtual();
    // Serving reads for a minute; the sequencer's last (late) append reached them 1 s before the first round.
    const heardAtMs = clock.nowMs() - 1_000;
    const vote = async (): Promise<VoteReply> => {
      const heardAgoMs = clock.nowMs() - heardAtMs;
      return { epoch: 1, heardAgoMs, gone: heardAgoMs >= sequencerTimeoutMs, upMs: 60_000 };
    };
    const startMs = clock.nowMs();
    let asked = 0;
    const ask = async () => (asked++, 5_500 + (clock.nowMs() - startMs));
    const d = await until(preVote({ ...clock, vote }, config, { lostMs: 5_500, ask }));
    expect(d).toMatchObject({ go: true, next: { name: "g~s1" } });
    // The call at two thirds of the wait (4 s: 5 s since they heard it), not the wait's end.
    expect(clock.nowMs() - startMs).toBe((2 * cutOffConfirmMs) / 3);
    expect(asked).toBe(1);
  });

  it("still fails over a cut-off sequencer of a quiet group: this router's own votes during the wait keep the voters from counting as just back", async () => {
    const { clock, until, failover } = voters();
    await until(new Promise<void>((r) => clock.setTimer(20_000, r)));
    const startMs = clock.nowMs();
    const d = await until(preVote(failover, config, { lostMs: 5_500, ask: async () => 5_500 + (clock.nowMs() - startMs) }));
    expect(d).toMatchObject({ go: true, next: { name: "g~s1" } });
  });
});

describe("a sequencer cut off from its replicas (no quorum for sequencerTimeoutMs)", () => {
  it("answers its waiting commands 504 at the next heartbeat and refuses new ones at once, each with cutOffMs", async () => {
    const g = directGroup({ ...config, outputs: "majority" }, { entries: 10_000, slack: 1_000 }, fast);
    g.driver.startHeartbeats();
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    g.down.add("r2");
    g.down.add("r3");
    const startedMs = fast.nowMs();
    // Waits for a commit that cannot come: answered once cut off, not after commandTimeoutMs.
    const waiting = await g.driver.submit("a", 2, { op: "put", key: "k", value: 2 });
    const waitedMs = fast.nowMs() - startedMs;
    expect(waiting).toMatchObject({ kind: "timeout", cutOffMs: expect.any(Number) });
    expect(waitedMs).toBeLessThan(commandTimeoutMs);
    expect((waiting as { cutOffMs: number }).cutOffMs).toBeGreaterThanOrEqual(sequencerTimeoutMs);
    const refused = await g.driver.submit("a", 3, { op: "put", key: "k", value: 3 });
    expect(refused).toMatchObject({ kind: "unavailable", cutOffMs: expect.any(Number), message: expect.stringMatching(/^only 1 voting replica reachable, 2 needed; no quorum/) });
    // A retry of the committed command with outputs "majority" cannot be voted on: 504 at once.
    expect(await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).toMatchObject({ kind: "timeout", cutOffMs: expect.any(Number) });
    expect(await g.driver.readIndex()).toMatchObject({ kind: "unavailable", cutOffMs: expect.any(Number) });
    expect(cutOffOf([waiting, refused])).toBe(Math.max((waiting as { cutOffMs: number }).cutOffMs, (refused as { cutOffMs: number }).cutOffMs));
    // Back: it hears a quorum again, and says nothing of a cut-off any more.
    g.down.clear();
    await new Promise((r) => setTimeout(r, 100));
    expect(g.driver.quorumLostMs()).toBeLessThan(sequencerTimeoutMs);
    expect(await g.driver.submit("a", 4, { op: "put", key: "k", value: 4 })).toMatchObject({ kind: "ok" });
    g.driver.stop();
  }, 20_000);
});

describe("a retry of a committed command while cut off, outputs first", () => {
  // Found by the simulator (seed 922121676, cut-sequencer,drop,reorder,duplicate,slow-sequencer):
  // a successor, with no replica in its own object, looked the retry's outcome up across the cut;
  // the lookup outlasted the router's call, the router saw silence and never cutOffMs, and nothing
  // failed the sequencer over while the cut lasted (29 s to the next acknowledged write).
  it("with no replica in its own object, answers from a replica it still reaches, else 504 with cutOffMs within cutOffLookupMs", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 }, fast);
    g.driver.startHeartbeats();
    expect((await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).kind).toBe("ok");
    g.down.add("r2");
    g.down.add("r3");
    await g.driver.submit("a", 2, { op: "put", key: "k", value: 2 }); // answered once it is cut off
    // r1 still answers: its session table gives the outcome (a 504 at once refused it: a review).
    expect(await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 })).toMatchObject({ kind: "ok", seq: 1 });
    // Nothing answers the lookup (the cut of the seed: messages lost or slow, not refused): not
    // the whole command timeout, cutOffLookupMs.
    const link = g.io.link;
    g.io.link = (id) => new Proxy(link(id), { get: (t, name) => (name === "session" ? () => new Promise(() => {}) : (t as never)[name]) });
    const startedMs = fast.nowMs();
    const retry = await g.driver.submit("a", 1, { op: "put", key: "k", value: 1 });
    expect(retry).toMatchObject({ kind: "timeout", cutOffMs: expect.any(Number) });
    expect(fast.nowMs() - startedMs).toBeLessThan(cutOffLookupMs + 1_500);
    g.driver.stop();
  }, 20_000);
});

describe("a successor that has committed nothing of its own yet", () => {

  it("answers a refusal 504, not 503: a predecessor's entry it did not see may still commit; once its epoch commits, 503 again", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 }, fast, 2);
    g.driver.startHeartbeats();
    g.down.add("r2");
    g.down.add("r3");
    const waiting = g.driver.submit("a", 1, { op: "put", key: "k", value: 1 });
    await waiting; // answered once it is cut off
    const refused = await g.driver.submit("a", 2, { op: "put", key: "k", value: 2 });
    expect(refused).toMatchObject({ kind: "timeout", cutOffMs: expect.any(Number), message: expect.stringMatching(/committed nothing of its own yet/) });
    g.down.clear();
    await new Promise((r) => setTimeout(r, 100));
    expect(await g.driver.submit("a", 3, { op: "put", key: "k", value: 3 })).toMatchObject({ kind: "ok" });
    g.down.add("r2");
    g.down.add("r3");
    await g.driver.submit("a", 4, { op: "put", key: "k", value: 4 });
    expect(await g.driver.submit("a", 5, { op: "put", key: "k", value: 5 })).toMatchObject({ kind: "unavailable", cutOffMs: expect.any(Number) });
    g.driver.stop();
  }, 20_000);
});

describe("a command sent again to a successor after an unknown outcome", () => {
  it("reports a refusal (503) as a timeout (504) where the first call's outcome was unknown, per item", () => {
    const refused = { kind: "unavailable", message: "recovering" } as const;
    const unsure = { kind: "timeout", message: expect.stringMatching(/^recovering; an earlier call for this request \(the router's own first try, to the sequencer\) may have reached it/) };
    expect(unsureAfter(refused, null)).toEqual(unsure);
    expect(unsureAfter({ kind: "not_found" }, null)).toMatchObject({ kind: "timeout" });
    expect(unsureAfter(refused, { kind: "timeout", message: "cut off", cutOffMs: 6_000 })).toEqual(unsure);
    // Refused at once by the cut-off sequencer: certainly not ordered, and still not.
    expect(unsureAfter(refused, { kind: "unavailable", message: "cut off", cutOffMs: 6_000 })).toEqual(refused);
    const ok = { kind: "ok", seq: 3, output: null, epoch: 2 } as const;
    expect(unsureAfter([refused, refused, ok], [{ kind: "timeout", message: "t" }, { kind: "unavailable", message: "u" }, { kind: "timeout", message: "t" }])).toEqual([unsure, refused, ok]);
  });

  it("drops \"replayed\" from an answer whose item the first call may have run: the replay is of this request's own call (a review: \"nothing ran now\" for a first run)", () => {
    const replayed = { kind: "ok", seq: 3, output: null, epoch: 2, incarnation: 0, replayed: true } as const;
    const { replayed: _r, ...plain } = replayed;
    expect(unsureAfter(replayed, null)).toEqual(plain);
    expect(unsureAfter(replayed, { kind: "timeout", message: "t" })).toEqual(plain);
    // Certainly not run by the first call (refused, 503): the replay is of an earlier request's.
    expect(unsureAfter(replayed, { kind: "unavailable", message: "u" })).toEqual(replayed);
    // A batch, per item: run by the first call (ok), unknown (timeout), refused (unavailable).
    expect(unsureAfter([replayed, replayed, replayed], [{ kind: "ok" }, { kind: "timeout", message: "t" }, { kind: "unavailable", message: "u" }])).toEqual([plain, plain, replayed]);
  });
});

describe("a voter back from an absence of its own", () => {
  it("reports how long it has been back: since the first call after nothing reached it for sequencerTimeoutMs", () => {
    let clock = 100_000;
    const storage = new MemoryReplicaStorage();
    storage.saveMeta(newReplicaMeta("g", "r1", "kv", 50));
    const driver = new ReplicaDriver(new ReplicaCore(storage, storage.meta!, machineFor("kv")), { nowMs: () => clock, setTimer: () => () => {} });
    clock += 3_000; // a router's vote 3 s after its start: no return
    expect(driver.vote()).toMatchObject({ gone: false, upMs: 3_000 });
    clock += sequencerTimeoutMs + 2_000; // isolated: nothing reached it, neither the sequencer nor a router
    expect(driver.vote()).toMatchObject({ gone: true, heardAgoMs: sequencerTimeoutMs + 5_000, upMs: 0 });
    clock += 1_000;
    expect(driver.vote()).toMatchObject({ upMs: 1_000 });
  });

  const back: VoteReply = { epoch: 1, heardAgoMs: 7_000, gone: true, upMs: 500 };

  it("does not count as gone while another voter still hears the sequencer (a quorum back from a partition, the sequencer about to reach it)", async () => {
    const five = { ...config, replicas: 5 };
    const { failover } = io({ r1: back, r2: back, r3: back, r4: hears, r5: hears });
    expect(await preVote(failover, five)).toMatchObject({ go: false, reason: expect.stringMatching(/3 just back from an absence of their own/) });
  });

  it("counts as gone when no voter hears the sequencer (nothing reached anyone: a successor isolated through its hold-down, a quiet group's evicted voters)", async () => {
    const { failover } = io({ r1: back, r2: back, r3: back });
    expect(await preVote(failover, config)).toMatchObject({ go: true });
  });
});

// A replica object outlives its group's DELETE (replicas are named by group and id): a re-created
// group's r1 is served by the same driver. What it heard of the deleted group's sequencer is not
// the new group's: kept, its vote called the new sequencer gone the moment the replica was made
// (the old one silent for minutes before the DELETE), with that silence as the failover's downMs.
describe("a replica of a group deleted and created again", () => {
  it("votes from its new start, not from the deleted group's silence", () => {
    let clock = 100_000;
    const make = (incarnation: number) => {
      const storage = new MemoryReplicaStorage();
      storage.saveMeta(newReplicaMeta("g", "r1", "kv", 50, incarnation));
      return new ReplicaCore(storage, storage.meta!, machineFor("kv"));
    };
    const driver = new ReplicaDriver(make(1), { nowMs: () => clock, setTimer: () => () => {} });
    clock += 120_000; // the first group's sequencer unreachable for two minutes, then the group deleted
    expect(driver.vote()).toMatchObject({ gone: true, heardAgoMs: 120_000 });
    driver.detach(); // its destroy (ReplicaHost.destroy)
    clock += 1_000;
    driver.attach(make(2)); // the re-created group's init (ReplicaHost.init)
    expect(driver.vote()).toMatchObject({ epoch: 0, gone: false, heardAgoMs: 0, upMs: 0 });
    expect(driver.fence(0)).toMatchObject({ ackedAgoMs: 0 });
  });

  it("a read waiting for a position when the replica is destroyed answers not_found, not a timeout at position 0 (a probe's 504 after 0.3 s)", async () => {
    const storage = new MemoryReplicaStorage();
    storage.saveMeta(newReplicaMeta("g", "r1", "kv", 50, 1));
    const driver = new ReplicaDriver(new ReplicaCore(storage, storage.meta!, machineFor("kv")), realClock);
    const waiting = driver.query({ op: "get", key: "k" }, 5, 10_000);
    driver.detach(); // the group's DELETE (ReplicaHost.destroy)
    expect(await waiting).toEqual({ kind: "not_found" });
  });
});

const sleepFast = (ms: number) => new Promise((r) => setTimeout(r, ms / 50));

// A review: the session lookup's deadline settled at the deadline on the normal path too; a retry
// whose commit came late in its budget then gave up on a replica answering a little slowly.
describe("a retry of a command ordered before a restart, committed late in its budget (not cut off)", () => {
  it("is answered from a replica's session table that answers 1.5 s later", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 }, fast);
    g.down.add("r2");
    g.down.add("r3");
    void g.driver.submit("a", 1, { op: "put", key: "k", value: 1 }); // ordered at 1 on r1 alone
    await sleepFast(500);
    g.driver.stop();
    // The sequencer restarts (same storage): the request index has (a, 1) at seq 1, not known committed.
    const driver = new SequencerDriver(new SequencerCore(g.seqStore, g.seqStore.meta!), g.io, { entries: 10_000, slack: 1_000 });
    // Session lookups take 1.5 s (a slow link).
    const link = g.io.link;
    g.io.link = (id) =>
      new Proxy(link(id), {
        get: (t, name) => (name === "session" ? async (...args: unknown[]) => (await sleepFast(1_500), (t as never as { session: (...a: unknown[]) => unknown }).session(...args)) : (t as never)[name]),
      });
    driver.kickAll();
    const retry = driver.submit("a", 1, { op: "put", key: "k", value: 1 });
    // r2 back 9 s into the retry's budget: the entry commits, ~1 s left for the lookup.
    await sleepFast(9_000);
    g.down.delete("r2");
    driver.kickAll();
    const r = await retry;
    driver.stop();
    expect(r).toMatchObject({ kind: "ok", seq: 1 });
  }, 20_000);
});

describe("where a successor goes (API.md: failover prefers the next sequencer location that is healthy)", () => {
  const five: GroupConfig = { ...config, replicas: 5, locations: ["wnam", "weur", "apac", "enam", "oc"], sequencerLocations: ["wnam", "enam", "weur"] };

  it("skips a listed location whose replicas did not answer (it took enam, whose replica was cut off with the sequencer)", () => {
    expect(successorLocation(five, ["r2", "r3", "r5"], 1)).toBe("weur");
    expect(successorLocation(five, ["r2", "r3", "r4", "r5"], 1)).toBe("enam");
  });

  it("never goes back to the failed sequencer's location while another fits (it did with one entry listed, and after a move)", () => {
    const one = { ...five, sequencerLocations: ["wnam"] };
    expect(successorLocation(one, ["r2", "r3"], 1)).toBe("weur");
    const moved = { ...five, sequencerLocations: ["wnam", "weur", "apac"], sequencer: { name: "g~s2", location: "apac", no: 2 } };
    expect(successorLocation(moved, ["r1", "r2", "r4"], 3)).toBe("wnam");
    expect(successorLocation(moved, ["r2", "r4"], 3)).toBe("weur");
  });

  it("takes a listed location with no member when none with a healthy voter is listed, else goes near a healthy voter", () => {
    const listed = { ...config, locations: ["wnam", "weur", "apac"], sequencerLocations: ["wnam", "weur", "me"] };
    expect(successorLocation(listed, ["r3"], 1)).toBe("me");
    expect(successorLocation({ ...listed, sequencerLocations: undefined }, ["r3"], 1)).toBe("apac");
  });
});

describe("PreVote rules a mutation probe found unguarded (test/unit/guards.test.ts has the others)", () => {
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
  it("a voter that heard the sequencer more than half a timeout ago does not keep just-back voters from counting (failover.ts: the whole timeout)", async () => {
    const back: VoteReply = { epoch: 1, heardAgoMs: 7_000, gone: true, upMs: 500 };
    const late: VoteReply = { epoch: 1, heardAgoMs: 3_000, gone: false, upMs: 60_000 };
    const { failover } = io({ r1: back, r2: back, r3: late });
    expect(await preVote(failover, config)).toMatchObject({ go: true });
  });
  it("no failover within failoverHoldDownMs of the sequencer taking office (failover.ts: a third of it)", async () => {
    const nowMs = 1_000_000;
    const held: GroupConfig = { ...config, sequencer: { name: "g~s1", location: null, no: 1, since: new Date(nowMs - failoverHoldDownMs / 2).toISOString() } };
    const { failover } = io({ r1: gone, r2: gone, r3: gone });
    expect(await preVote(failover, held)).toMatchObject({ go: false, reason: expect.stringContaining("hold-down") });
  });
});

describe("where the sequencer runs, as its status says and its object is placed", () => {
  it("is the given place, else the co-located replica's in the group's first object only", () => {
    const cfg = { group: "g", incarnation: 1, machine: "kv", replicas: 3, locations: ["wnam", "weur", "apac"], outputs: "first", checkpointEvery: 50, colocated: "r1" } as GroupConfig;
    // Locations alone: the first sequencer's object hosts r1 (its status said null: a location probe).
    expect(sequencerLocationOf(cfg)).toBe("wnam");
    expect(sequencerLocationOf({ ...cfg, sequencer: { name: "g", location: "apac", no: 0 } })).toBe("apac");
    // Moved anywhere: g~s1 hosts no replica, and was placed back at r1's place (a review).
    expect(sequencerLocationOf({ ...cfg, sequencer: { name: "g~s1", location: null, no: 1 } })).toBeNull();
    expect(sequencerLocationOf({ ...cfg, colocated: undefined })).toBeNull();
  });
});
