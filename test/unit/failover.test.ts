// The PreVote decides as soon as its votes settle the question, without waiting out the vote of
// a replica that does not answer (a lost message cost every failover it hit replicaRpcTimeoutMs).
import { describe, expect, it } from "vitest";
import { type FailoverIO, preVote } from "../../shared/protocol/failover.js";
import type { VoteReply } from "../../shared/protocol/io.js";
import type { GroupConfig } from "../../shared/protocol/types.js";
import { resendMs } from "../../shared/limits.js";

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
    expect(decision).toMatchObject({ go: false, reason: "only 0 of 3 replicas have lost the sequencer (1 still hears it, 1 unreachable, 1 not answered); a quorum of voters must" });
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
