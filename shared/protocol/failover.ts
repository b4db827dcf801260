// Automatic sequencer failover, decided once (after raft's PreVote): a new sequencer is started
// only when a quorum of voters of every membership in force has heard nothing from the current
// one for sequencerTimeoutMs. One router or one replica cut off alone cannot depose a healthy
// sequencer: the replicas that still hear it refuse. The new one then recovers exactly as after a
// loss of storage (a higher epoch, a quorum of every membership fenced, the log rebuilt).
import { cutOffConfirmMs, failoverHoldDownMs, replicaRpcTimeoutMs, sequencerTimeoutMs } from "../limits.js";
import { askAgain, type Clock, type VoteReply } from "./io.js";
import { JointConfig, MajorityConfig } from "./quorum.js";
import type { GroupConfig, Member } from "./types.js";
import { membersOf, sequencerLocationOf, sequencerName } from "./types.js";

export interface FailoverIO extends Clock {
  /** A replica's PreVote (null, or a rejection, when it cannot be reached). */
  vote(id: string): Promise<VoteReply | null>;
}

export type PreVote =
  | { go: true; downMs: number; location: string | null; next: NonNullable<GroupConfig["sequencer"]> }
  | { go: false; reason: string };

/** A sequencer's own report that it is cut off (see cutOffVote), and how to ask it again. */
export interface CutOff {
  /** Its `cutOffMs`: how long no quorum of voters has acknowledged it. */
  lostMs: number;
  /** Asks it again (null or rejected: no answer), within a router's call timeout. */
  ask(): Promise<number | null>;
}

/**
 * Every membership that may be in force (both while a change is in flight): their members, once
 * each, and the quorum a successor must reach, a majority of the voters of each. What a PreVote
 * asks, and what a move checks answers before its hand-over.
 */
export function inForce(config: GroupConfig): { members: Member[]; quorum: JointConfig } {
  const memberships: Member[][] = config.inFlight ?? [membersOf(config)];
  const members = [...new Map(memberships.flat().map((m) => [m.id, m])).values()];
  const voters = (ms: Member[]) => new MajorityConfig(ms.filter((m) => m.voter).map((m) => m.id));
  return { members, quorum: new JointConfig(memberships.map(voters)) };
}

export async function preVote(io: FailoverIO, config: GroupConfig, cutOff?: CutOff): Promise<PreVote> {
  const since = config.sequencer?.since ? Date.parse(config.sequencer.since) : NaN;
  if (Number.isFinite(since) && io.nowMs() - since < failoverHoldDownMs) {
    return { go: false, reason: `the sequencer took office ${io.nowMs() - since} ms ago (hold-down ${failoverHoldDownMs} ms)` };
  }
  if (cutOff) return cutOffVote(io, config, cutOff);
  const { members, quorum } = inForce(config);
  const ids = members.map((m) => m.id);
  const back = (r: VoteReply) => (r.upMs ?? Infinity) < sequencerTimeoutMs;
  const replies = await votes(io, ids, quorum, (r) => r.gone, (r) => !back(r));
  // A voter back within a timeout from an absence of its own (nothing reached it, this router's
  // votes neither) has heard nothing for as long as it was away. While another voter still hears
  // the sequencer, that silence is the voter's, and the sequencer's retry is about to reach it: a
  // quorum isolated for 6 s voted `gone` 0.5 s after its return, and a slow but healthy sequencer
  // was deposed (slow-sequencer,quorum-away, seed 1203133286). When none hears it (a successor
  // isolated through a hold-down, nothing reaching anyone, a cut-off sequencer of a quiet group
  // whose evicted replicas this vote woke), such votes count as before; nor does one that last
  // heard it half a timeout ago (an isolated sequencer's late message) stop them.
  // (A voter hearing a sequencer that says it is cut off still counts as hearing it: the cut-off
  // path decides then, with its confirmation. Not counting it let this path depose a slow
  // sequencer: slow-sequencer,quorum-away seeds 856764203 and 1669690215.)
  const hears = replies.some((r) => r && !r.gone && r.heardAgoMs < sequencerTimeoutMs / 2);
  const gone = ids.filter((_, i) => replies[i]?.gone && !(hears && back(replies[i]!)));
  const away = ids.filter((_, i) => replies[i]?.gone).length - gone.length;
  if (!quorum.reached(gone)) {
    const why = `${tally(replies)}${away > 0 ? `, ${away} just back from an absence of their own` : ""}`;
    // The unreachable alone may leave too few to make a quorum: then the vote stopped, and the
    // rest were not waited for (a probe read "1 not answered" of a healthy replica as a problem).
    const reachable = ids.filter((_, i) => replies[i] !== null);
    const none = quorum.reached(reachable) ? "" : `: with ${ids.length - reachable.length} unreachable, not enough replicas are left to make one, so the vote stopped there`;
    return { go: false, reason: `only ${gone.length} of ${ids.length} replicas have lost the sequencer (${why}); a failover needs a quorum of voters to have lost it${none}` };
  }
  const downMs = Math.min(...gone.map((id) => replies[ids.indexOf(id)]!.heardAgoMs));
  return successor(io, config, gone, downMs);
}

/**
 * A sequencer that answers but says it has had no quorum for sequencerTimeoutMs (`cutOffMs` in
 * its 503): cut off from its replicas, or so slow to reach them that every append times out. The
 * replicas may still hear it (late appends over a slow link), so their `gone` cannot decide; what
 * does is that the cut-off lasts and the replicas answer this router. A quorum of voters of every
 * membership in force must answer this router's votes in two rounds cutOffConfirmMs apart (a
 * successor near them can reach them), and after the second the sequencer, asked again, must
 * still report the same cut-off: a quorum it lost because the replicas were down or partitioned
 * from everyone is heard again within that wait once they are back (its append timeout, retry
 * backoff and a heartbeat), and a failover then would depose a healthy sequencer. So the voters
 * counted in the second round must have been back for that whole wait (upMs, below). Deposing it
 * is safe whatever it believes: the successor's fence stops its appends, and the successor waits
 * out its read lease (recovery.ts).
 */
async function cutOffVote(io: FailoverIO, config: GroupConfig, cutOff: CutOff): Promise<PreVote> {
  const startMs = io.nowMs();
  const { members, quorum } = inForce(config);
  const ids = members.map((m) => m.id);
  // A voter halfway through a state transfer answers, but a successor could not fence it.
  const answering = async (asked: string[], counts: (r: VoteReply) => boolean = () => true) => {
    const ok = (r: VoteReply) => !r.amnesiac && counts(r);
    const replies = await votes(io, asked, quorum, ok);
    return { ids: asked.filter((_, i) => replies[i] && ok(replies[i])), replies };
  };
  // Not a shortcut when a quorum votes `gone`: replicas back from a partition of their own have
  // heard nothing for as long, and the sequencer that answers here is about to reach them...
  const { ids: first, replies: firstReplies } = await answering(ids);
  if (!quorum.reached(first)) return { go: false, reason: `the sequencer has no quorum, and only ${first.length} of ${ids.length} replicas answer here: not a cut-off a successor would mend` };
  const backLong = (r: VoteReply) => (r.upMs ?? Infinity) >= cutOffConfirmMs;
  // ...unless each has been back for the whole wait already, and a call's timeout more for its
  // message to arrive (upMs), and still heard nothing of it for sequencerTimeoutMs: the sequencer
  // has had the time the wait would give it (its retry reaches a returned replica within
  // cutOffConfirmMs) and reached none of them. Then the rest of the wait only delays the
  // successor: up to 6 s of every cut-off failover in a group whose replicas answer reads. The
  // sequencer must still say it is cut off, asked again then. The price (a review): `upMs` is
  // how long a replica has answered anyone, so when only the sequencer's own link was cut and
  // heals, a vote before its retry lands deposes it, as the silence PreVote does after
  // sequencerTimeoutMs; the wait had kept it if it was back within cutOffConfirmMs.
  // A vote without `upMs` (a replica of an older version) cannot show it was not just back: it
  // keeps the wait (it counted as back for ever, so a quorum just back from a partition of its own
  // deposed a healthy sequencer at the first round, the one case the wait is for).
  const goneLong = (r: VoteReply) => !r.amnesiac && r.gone && r.upMs !== undefined && r.upMs >= cutOffConfirmMs + replicaRpcTimeoutMs;
  const early = async (asked: string[], replies: (VoteReply | null | undefined)[]): Promise<PreVote | null> => {
    const long = asked.filter((_, i) => replies[i] && goneLong(replies[i]!));
    if (!quorum.reached(long)) return null;
    const lostMs = await cutOff.ask().catch(() => null);
    return lostMs !== null && lostMs >= cutOff.lostMs ? successor(io, config, awayFrom(config, long), lostMs - (io.nowMs() - startMs)) : null;
  };
  const atOnce = await early(ids, firstReplies);
  if (atOnce) return atOnce;
  const ended = await confirmationWait(io, first, quorum, goneLong, early);
  if (ended) return ended;
  // The voters that answered the first round, asked again (the first settles on the quickest
  // quorum, so the second asks those, not every voter: a quorum that answered both must not be
  // missed because another one was quicker the second time); and only then the sequencer asked
  // again. A voter back only for the second round may not have been reached by it yet; nor may
  // one that answered both but was away in between and came back less than cutOffConfirmMs ago
  // (`upMs`): the sequencer's retry reaches it within that time of its return, not of the first
  // round. Counted, a quorum that flapped (back for the first round, away again, back 0.1 s
  // before the second) deposed a healthy sequencer whose retry had not come round yet
  // (quorum-away --replicas 5 --no-colocate, seeds 1710661176 and 168052263).
  const { ids: second, replies } = await answering(first, backLong);
  if (!quorum.reached(second)) {
    const back = first.flatMap((id, i) => (replies[i] && !replies[i].amnesiac && !backLong(replies[i]) ? [`${id} back ${replies[i].upMs} ms ago`] : []));
    return { go: false, reason: `only ${second.length} of ${ids.length} replicas answered here in both rounds${back.length > 0 ? ` and have been back for the whole wait (${back.join(", ")})` : ""}` };
  }
  // One call, not asked again every resendMs like a vote: a slow sequencer's answer takes
  // seconds, and the copies held workerd's few connections of the request, so the call to the
  // successor after the failover waited 6 s for one (the e2e test: 24 s instead of 18).
  const lostMs = await cutOff.ask().catch(() => null);
  if (lostMs === null || lostMs < cutOff.lostMs + cutOffConfirmMs / 2) {
    return { go: false, reason: lostMs === null ? "the sequencer did not answer again" : `the sequencer heard a quorum again (its cut-off went from ${cutOff.lostMs} to ${lostMs} ms)` };
  }
  // As of this round's start, like the silence PreVote's (the router adds the time since).
  return successor(io, config, awayFrom(config, second), lostMs - (io.nowMs() - startMs));
}

/**
 * cutOffVote's wait of cutOffConfirmMs between its rounds. Meanwhile this router keeps calling the
 * voters that answered the first (a vote every third of the wait), so that a voter's `upMs` in the
 * second round tells whether it was away: a voter counts its first call after sequencerTimeoutMs
 * of nothing as a return, and in a quiet group this router's votes may be all that reaches it.
 * Those votes may end the wait early (`early`'s decision, returned; null: the wait ran out): the
 * replicas may have heard the sequencer's last late appends less than sequencerTimeoutMs before
 * the first round.
 */
function confirmationWait(
  io: FailoverIO,
  first: string[],
  quorum: JointConfig,
  goneLong: (r: VoteReply) => boolean,
  early: (asked: string[], replies: (VoteReply | null | undefined)[]) => Promise<PreVote | null>,
): Promise<PreVote | null> {
  let waiting = true;
  return new Promise((resolve) => {
    const end = (decision: PreVote | null) => {
      if (!waiting) return;
      waiting = false;
      for (const cancel of cancels) cancel();
      resolve(decision);
    };
    const touch = () => {
      if (!waiting) return;
      // Not asked again once the wait is over: the second round asks the same voters, and these
      // copies, resent every resendMs for a whole replicaRpcTimeoutMs, ran alongside it.
      void votes(io, first, quorum, goneLong, undefined, () => !waiting).then(async (replies) => {
        if (!waiting) return;
        const d = await early(first, replies);
        if (d) end(d);
      });
    };
    const cancels = [1, 2].map((k) => io.setTimer((k * cutOffConfirmMs) / 3, touch));
    cancels.push(io.setTimer(cutOffConfirmMs, () => end(null)));
  });
}

/**
 * Of the voters that answered, the ones a successor should be placed near: not the replica hosted
 * in the cut-off sequencer's own object, nor any at its location (the cause may be that place's
 * link to the rest); all of them if that leaves none. It used to be the first that answered, which
 * was the co-located replica, so every successor went back where its predecessor was cut off.
 */
function awayFrom(config: GroupConfig, answered: string[]): string[] {
  const ms = membersOf(config);
  const hosted = sequencerName(config) === config.group ? config.colocated : undefined;
  const here = sequencerLocationOf(config);
  const elsewhere = answered.filter((id) => id !== hosted && (here === null || ms.find((m) => m.id === id)?.location !== here));
  return elsewhere.length > 0 ? elsewhere : answered;
}

/** The next name (`{group}~s{n}`), placed by successorLocation. */
function successor(io: Clock, config: GroupConfig, healthy: string[], downMs: number): PreVote {
  const no = (config.sequencer?.no ?? 0) + 1;
  const location = successorLocation(config, healthy, no);
  return { go: true, downMs, location, next: { name: `${config.group}~s${no}`, location, no, since: new Date(io.nowMs()).toISOString() } };
}

/**
 * Where a successor goes (API.md: "failover prefers the next one that is healthy"): the entries of
 * `sequencerLocations` in turn from the next one, leaving out the failed sequencer's own
 * location, the first where a healthy voter is (`healthy`: ones that lost the old sequencer but
 * answered), else the first where no member is (nothing known against it); with none listed, or
 * none of them fit, near a healthy voter; else the next entry, else where it was. It took the
 * next entry whatever its health: a probe's successor went to the location whose replica was cut
 * off with the sequencer, or back to the failed location (one entry listed, or after a move).
 */
export function successorLocation(config: GroupConfig, healthy: string[], no: number): string | null {
  const members = membersOf(config);
  const preferred = config.sequencerLocations ?? [];
  const failed = config.sequencer ? config.sequencer.location : (preferred[0] ?? null);
  const inTurn = preferred.map((_, i) => preferred[(no + i) % preferred.length]!).filter((l) => l !== failed);
  const healthyAt = (l: string) => members.some((m) => m.location === l && healthy.includes(m.id));
  const emptyAt = (l: string) => !members.some((m) => m.location === l);
  const near = members.find((m) => healthy.includes(m.id) && m.location !== null)?.location ?? null;
  return inTurn.find(healthyAt) ?? inTurn.find(emptyAt) ?? near ?? (preferred.length > 0 ? preferred[no % preferred.length]! : null) ?? config.sequencer?.location ?? null;
}

/** The votes that were not `gone`, by kind: "1 still hears it, 1 unreachable, 1 not answered by then". */
function tally(replies: (VoteReply | null | undefined)[]): string {
  const count = (f: (r: VoteReply | null | undefined) => boolean) => replies.filter(f).length;
  const waking = count((r) => !!r && !r.gone && r.waking === true);
  const hears = count((r) => !!r && !r.gone) - waking;
  const parts = hears > 0 || waking === 0 ? [`${hears} still ${hears === 1 ? "hears" : "hear"} it`] : [];
  // Asleep until the vote: their silence counts from it, so they are not "gone" yet.
  if (waking > 0) parts.push(`${waking} ${waking === 1 ? "was" : "were"} asleep and ${waking === 1 ? "is" : "are"} waking it`);
  const unreachable = count((r) => r === null);
  const silent = count((r) => r === undefined);
  if (unreachable > 0) parts.push(`${unreachable} unreachable`);
  // The count stops once it is decided: these may be up, only not heard by then.
  if (silent > 0) parts.push(`${silent} not answered by then`);
  return parts.join(", ");
}

/**
 * The replicas' votes (undefined: not in yet, null: unreachable), returned as soon as they settle
 * the question: a quorum has lost the sequencer, or can no longer have. Waiting for the rest
 * changes neither answer, and a vote lost on the way cost a whole replicaRpcTimeoutMs (3 s) of
 * every failover it hit (the simulator's random seeds with dropped messages). A vote is a read of
 * the replica's view, so one unanswered for resendMs is asked again (askAgain): a lost vote left
 * too few to decide, and the router tried again only after its next call timed out. A quorum that
 * counts replies not `sure` (voters just back, whose `gone` another's answer may undo) does not
 * settle it early: every voter is awaited.
 */
function votes(io: FailoverIO, ids: string[], quorum: JointConfig, counts: (r: VoteReply) => boolean, sure: (r: VoteReply) => boolean = () => true, over: () => boolean = () => false): Promise<(VoteReply | null | undefined)[]> {
  const replies: (VoteReply | null | undefined)[] = ids.map(() => undefined);
  return new Promise((resolve) => {
    let pending = ids.length;
    const settled = () => {
      const yes = ids.filter((_, i) => replies[i] && counts(replies[i]!) && sure(replies[i]!));
      const possible = ids.filter((_, i) => replies[i] === undefined || (replies[i] && counts(replies[i]!)));
      return pending === 0 || quorum.reached(yes) || !quorum.reached(possible);
    };
    let done = settled();
    if (done) return resolve(replies);
    ids.forEach((id, i) => {
      void askAgain(io, () => io.vote(id), () => done || over()).then((reply) => {
        replies[i] = reply;
        pending--;
        if (!done && settled()) {
          done = true;
          resolve([...replies]);
        }
      });
    });
  });
}
