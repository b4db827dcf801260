// Sequencer recovery after the loss of its storage: a new epoch, fenced on a majority of
// replicas, and the log rebuilt from the most up-to-date of them. No acknowledged command is
// lost: it was on a majority, every majority intersects the fenced one, and of the fenced
// replicas the one with the highest (last entry epoch, lastSeq) holds every committed entry
// (raft's leader completeness, which the current-epoch commit rule preserves).
import { appendEntriesMax, fenceStragglersMs, readLeaseMs } from "../limits.js";
import { assert } from "./assert.js";
import { entryHash, stampAfter } from "./entry.js";
import { zeroHash } from "./hash.js";
import { askAgain, type DriverIO } from "./io.js";
import type { SequencerMeta, SequencerStorage } from "./sequencer.js";
import type { FenceReply, GroupConfig } from "./types.js";
import type { Entry } from "../api/types.js";
import { JointConfig, MajorityConfig } from "./quorum.js";
import { applyConfigChange, membersOf, sequencerName, type ConfigChange, type Member } from "./types.js";

/** `changes`: the recovered log's config entries (a successor finishes a change its predecessor had in flight). */
export type RecoveryResult =
  | { ok: true; meta: SequencerMeta; recoveredSeq: number; changes: { seq: number; change: ConfigChange }[] }
  | { ok: false; reason: string };

const fenceRoundsMax = 5;
/**
 * Tries of one page of the best log before the recovery gives up. The fence already holds (no
 * lower epoch can append any more), so asking again is safe, and far cheaper than fencing anew: in
 * the simulator one dropped read cost a whole recovery attempt, and three in a row put a takeover
 * at 29 s (seed 1404225932, geography).
 */
const readTriesMax = 3;

/**
 * Fences every replica at `epoch` (0: a probe), answering once all have replied or failed, or
 * fenceStragglersMs after `enough` of them have: a replica cut off must not hold a takeover for
 * its whole timeout (measured in the simulator: a successor that started just before a cut-off
 * location came back waited 3 s per round for the replica there, 7 s in all). A replica silent
 * for resendMs is asked again (askAgain; the round still ends replicaRpcTimeoutMs after it began): a
 * lost message used to cost the whole attempt and its 3 s. A replica that accepted this
 * recovery's fence (`by`) accepts its copies too (ReplicaMeta.fencedBy); without that, a lost
 * answer or a copy answered first read as a refusal.
 */
function fenceAll(
  io: DriverIO,
  ids: string[],
  epoch: number,
  enough: (answered: Map<string, FenceReply>) => boolean,
  by?: string,
): Promise<Map<string, FenceReply>> {
  const out = new Map<string, FenceReply>();
  return new Promise((resolve) => {
    let pending = ids.length;
    let finished = false;
    let cancelGrace: (() => void) | null = null;
    const done = () => {
      if (finished) return;
      finished = true;
      cancelGrace?.();
      resolve(new Map(out));
    };
    if (pending === 0) return done();
    for (const id of ids) {
      void askAgain(io, () => io.link(id).fence(epoch, by), () => finished).then((r) => {
        if (finished) return;
        if (r) out.set(id, r);
        if (--pending === 0) return done();
        if (r && cancelGrace === null && enough(out)) cancelGrace = io.setTimer(fenceStragglersMs, done);
      });
    }
  });
}

/**
 * `owner` says whether this recovery still speaks for the sequencer: an incarnation that died
 * meanwhile must not write (a Durable Object never has two; the simulator checks it).
 */
export async function recoverSequencer(
  config: GroupConfig,
  storage: SequencerStorage,
  io: DriverIO,
  owner: () => boolean = () => true,
): Promise<RecoveryResult> {
  assert(storage.lastEntry() === null, "recovery needs an empty sequencer log");
  // Every membership that may be in force (a change was under way): fence a quorum of each.
  const memberships = config.inFlight ?? [membersOf(config)];
  const fenced = await fenceQuorum(io, memberships);
  if (!fenced.ok) return fenced;
  const { epoch, accepted } = fenced;
  const leaseEndMs = oldLeaseEndMs(io, accepted, memberships);
  const [bestId, best] = [...accepted.entries()].sort(([, a], [, b]) => b.lastEpoch - a.lastEpoch || b.lastSeq - a.lastSeq)[0]!;
  const entries = await readLogOf(io, bestId, best);
  if (!entries) return { ok: false, reason: `could not read the log of ${bestId}` };
  const commitSeq = Math.max(...[...accepted.values()].map((r) => r.commitSeq));
  assert(commitSeq <= best.lastSeq, `a replica's commitSeq ${commitSeq} is beyond the most up-to-date log ${best.lastSeq}`);

  // A no-op of the new epoch: committing it commits everything recovered before it.
  const prevHash = entries.length > 0 ? entries[entries.length - 1]!.hash : best.baseSeq > 0 ? best.baseHash : zeroHash;
  // Not before the log it recovers nor any fenced replica's base (a replica rebuilt by a state
  // transfer holds no entry past its base). Taken from the recovered entries alone, a successor
  // whose clock was behind stamped its no-op (and the commands after it) before entries already
  // applied, and a lease found lapsed lived again. Bases only, not each replica's last entry: an
  // entry the recovery drops (a deposed sequencer's, unacknowledged) is no floor, and a clock
  // ahead there would have carried its time into every stamp after (a review).
  const floor = [entries[entries.length - 1]?.timestamp, ...[...accepted.values()].map((r) => r.baseTimestamp)].reduce<string | null>(
    (top, t) => (t != null && (top === null || t > top) ? t : top),
    null,
  );
  const body = { seq: best.lastSeq + 1, epoch, kind: "noop" as const, client: null, request: null, command: null, timestamp: stampAfter(new Date(io.nowMs()).toISOString(), floor) };
  const noop: Entry = { ...body, hash: entryHash(prevHash, body) };
  const { quarantined: recorded, quarantinedAt: recordedAt, ...recovered } = recoveredConfig(config, memberships[0]!, best, entries);
  const { quarantined, quarantinedAt } = recoveredQuarantines(new Set(membersOf(recovered).map((m) => m.id)), accepted, recorded ?? [], recordedAt ?? {});
  // Every member fenced, and every log a prefix of the best (the same last epoch: log matching):
  // then no entry outside this log can commit later. A member whose log ends in an older epoch
  // may hold an uncommitted entry the best log replaced, which a later recovery without the best
  // replica could still commit (raft's figure 8; a review's unit test).
  const fencedAll = memberships.every((ms) => ms.every((m) => accepted.has(m.id))) && [...accepted.values()].every((r) => r.lastEpoch === best.lastEpoch);
  const meta: SequencerMeta = { config: recovered, epoch, commitSeq: Math.max(commitSeq, best.baseSeq), quarantined, quarantinedAt, baseSeq: best.baseSeq, baseHash: best.baseHash, ...(fencedAll ? { fencedAll } : {}) };
  const leftMs = leaseEndMs - io.nowMs();
  if (leftMs > 0) {
    io.log("info", `sequencer ${config.group} waits ${leftMs} ms for an older sequencer's read lease to end`);
    await new Promise<void>((resolve) => io.setTimer(leftMs, resolve));
  }
  if (!owner()) return { ok: false, reason: "superseded" };
  assert(storage.lastEntry() === null, "another recovery wrote the sequencer's log meanwhile");
  storage.transaction(() => {
    for (let i = 0; i < entries.length; i += appendEntriesMax) storage.appendEntries(entries.slice(i, i + appendEntriesMax));
    storage.appendEntries([noop]);
    storage.saveMeta(meta);
  });
  io.log("warn", `sequencer ${sequencerName(config)} of ${config.group} recovered ${entries.length} entries from ${bestId} at epoch ${epoch}`);
  const changes = entries.filter((e) => e.kind === "config").map((e) => ({ seq: e.seq, change: e.command as ConfigChange }));
  return { ok: true, meta, recoveredSeq: best.lastSeq, changes };
}

/**
 * The quarantined members a recovery keeps: a replica's own flag outlives the sequencer that set
 * it, and so does the directory's list (the replica may never have heard it). A listed one whose
 * fence answer counts more installs than its quarantine was decided at was rebuilt since (a
 * sequencer that restarted between an install's end and its answer listed it again): not kept.
 * Each keeps the install count it was decided at (its own flag: its count now).
 */
export function recoveredQuarantines(members: Set<string>, accepted: Map<string, FenceReply>, recorded: string[], recordedAt: Record<string, number>): { quarantined: string[]; quarantinedAt: Record<string, number> } {
  const quarantinedAt: Record<string, number> = {};
  const kept = new Set<string>();
  for (const id of recorded) {
    const reply = accepted.get(id);
    const stamp = recordedAt[id];
    if (stamp !== undefined && reply !== undefined && !reply.quarantined && stamp < (reply.installs ?? 0)) continue;
    kept.add(id);
    if (stamp !== undefined) quarantinedAt[id] = stamp;
  }
  for (const [id, reply] of accepted) {
    if (!reply.quarantined) continue;
    kept.add(id);
    quarantinedAt[id] = reply.installs ?? 0;
  }
  const quarantined = [...kept].filter((id) => members.has(id)).sort();
  for (const id of Object.keys(quarantinedAt)) if (!members.has(id)) delete quarantinedAt[id];
  return { quarantined, quarantinedAt };
}

/**
 * When a read lease an older sequencer may hold ends. It serves linearizable reads without a round
 * trip for readLeaseMs after sending a message a quorum of voters acknowledged; that quorum meets
 * the one just fenced, whose members acknowledge no older epoch any more, so its lease ends at most
 * readLeaseMs after an acknowledgement among them (which one: see the loop). Until then this one must answer
 * nothing, or a read served from the old lease could miss a write acknowledged here: possible once
 * a sequencer that still reaches its replicas can be deposed (a cut-off, failover.ts), or when a
 * healed partition lets the old one through between the PreVote and the fence. Measured from now,
 * after the replies: later than their own clocks said, so never too early. A reply without the
 * figure (a replica of an older build) counts as just now.
 */
function oldLeaseEndMs(io: DriverIO, accepted: Map<string, FenceReply>, memberships: Member[][]): number {
  const agoOf = (id: string) => accepted.get(id)!.ackedAgoMs ?? 0;
  let ackedAgoMs = Infinity;
  for (const ms of memberships) {
    // The old lease's quorum is one of this membership's voters. Of its `need` members at least
    // need - (voters not fenced) were fenced, and each acknowledged the lease's message before
    // its fence: the lease ends by the k-th most recent acknowledgement among the fenced voters.
    // (The latest alone made every takeover wait for the replica hosted with the old sequencer,
    // which it reaches by direct call and which alone gives it no lease.)
    const voters = ms.filter((m) => m.voter).map((m) => m.id);
    const quorum = new MajorityConfig(voters);
    const fenced = voters.filter((id) => accepted.has(id)).map(agoOf).sort((a, b) => a - b);
    const k = quorum.need - (voters.length - fenced.length);
    ackedAgoMs = Math.min(ackedAgoMs, k >= 1 && k <= fenced.length ? fenced[k - 1]! : 0);
  }
  if (!Number.isFinite(ackedAgoMs)) ackedAgoMs = Math.min(...[...accepted.values()].map((r) => r.ackedAgoMs ?? 0));
  return io.nowMs() - ackedAgoMs + readLeaseMs;
}

/**
 * Step 1: probe every replica (epoch 0 is never accepted; it returns the highest epoch seen),
 * then propose one above it; a quorum of every membership in force must accept.
 */
async function fenceQuorum(
  io: DriverIO,
  memberships: Member[][],
): Promise<{ ok: true; epoch: number; accepted: Map<string, FenceReply> } | { ok: false; reason: string }> {
  const ids = [...new Set(memberships.flatMap((ms) => ms.map((m) => m.id)))];
  const quorumOf = (ms: Member[]) => {
    const voters = ms.filter((m) => m.voter);
    return new MajorityConfig((voters.length > 0 ? voters : ms).map((m) => m.id));
  };
  const quorums = new JointConfig(memberships.map(quorumOf));
  const enough = (answered: Map<string, unknown>) => quorums.reached(answered.keys());
  const accepting = (answered: Map<string, FenceReply>) => enough(new Map([...answered].filter(([, r]) => r.accepted)));
  // This recovery's name in the replicas' fencedBy: unique, so no other recovery passes for it.
  const by = crypto.randomUUID();
  for (let round = 0; round < fenceRoundsMax; round++) {
    const probe = await fenceAll(io, ids, 0, enough);
    if (!enough(probe)) return { ok: false, reason: `only ${probe.size} replicas answered, a quorum of every membership in force is needed to recover` };
    // A group's first sequencer takes epoch 1 without fencing anyone, so replicas it never
    // reached still say 0: a recovery must not take 1 as well, or two sequencers share an epoch
    // (seed 1730814463: the first one, cut off with its co-located replica before any append got
    // out, and its successor both ordered entry 1 at epoch 1).
    const epoch = Math.max(1, ...[...probe.values()].map((r) => r.epoch)) + 1;
    const replies = await fenceAll(io, ids, epoch, accepting, by);
    const yes = new Map([...replies].filter(([, r]) => r.accepted));
    if (enough(yes)) return { ok: true, epoch, accepted: yes };
  }
  return { ok: false, reason: "could not fence a majority at a new epoch" };
}

/** Step 2: the most up-to-date log of the quorum, read in pages, its hash chain verified. */
async function readLogOf(io: DriverIO, id: string, best: FenceReply): Promise<Entry[] | null> {
  // A compacted log starts after its base; the recovered one starts at the same place.
  const entries: Entry[] = [];
  let prevHash = best.baseSeq > 0 ? best.baseHash : zeroHash;
  while (best.baseSeq + entries.length < best.lastSeq) {
    const from = best.baseSeq + entries.length + 1;
    const to = Math.min(best.lastSeq, from + appendEntriesMax - 1);
    let page: Entry[] | null = null;
    for (let tries = 0; tries < readTriesMax && (page === null || page.length === 0); tries++) {
      page = await askAgain(io, () => io.link(id).readLog(from, to));
    }
    if (!page || page.length === 0) return null;
    for (const e of page) {
      assert(e.seq === best.baseSeq + entries.length + 1, `recovered log not consecutive at ${e.seq}`);
      assert(e.hash === entryHash(prevHash, e), `recovered log does not chain at ${e.seq}`);
      prevHash = e.hash;
      entries.push(e);
    }
  }
  return entries;
}

/**
 * Step 3: the membership. Start from the best log's own (the membership after the last config
 * entry its replica applied: committed, and the log holds every entry after it) or, if it knows
 * none, from the oldest membership that may be in force as the directory kept it; the recovered
 * log's later config entries bring it forward (idempotent, so a change the directory already knew
 * is harmless). The directory's record alone is not enough: a change whose record never reached
 * it (the directory unreachable after the commit, then the sequencer lost) and whose entry
 * compaction dropped from every log would be invisible, and a removed replica would come back.
 */
function recoveredConfig(config: GroupConfig, oldest: Member[], best: FenceReply, entries: Entry[]): GroupConfig {
  const own = best.membership ?? null;
  let recovered: GroupConfig = { ...config, members: own?.members ?? oldest };
  if (own) recovered.lastReplicaNo = Math.max(recovered.lastReplicaNo ?? recovered.replicas, own.lastReplicaNo);
  delete recovered.inFlight;
  for (const e of entries) {
    if (e.kind !== "config" || (own && e.seq <= own.seq)) continue;
    const change = e.command as ConfigChange;
    recovered = { ...recovered, members: applyConfigChange(membersOf(recovered), change) };
    if (change.op === "add") recovered.lastReplicaNo = Math.max(recovered.lastReplicaNo ?? recovered.replicas, Number(change.id.slice(1)));
  }
  return recovered;
}
