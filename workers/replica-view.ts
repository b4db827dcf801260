// A group's status without its sequencer: what each replica says of itself. Served while the
// sequencer cannot be reached (http.ts statusForReaders), so an operator sees the replicas during
// the outage instead of a 503.
import type { GroupRecord } from "../shared/control/directory.js";
import { auditsPageDefault, laggingEntriesMin, replicaRpcTimeoutMs, storageQuotaMiBOf } from "../shared/limits.js";
import type { AuditReport, GroupStatus, ReplicaStatus } from "../shared/api/types.js";
import { type ReplicaResult, withTimeout } from "../shared/protocol/io.js";
import { type GroupConfig, type Member, membersOf, sequencerLocationOf, sequencerName, withCurrentSequencer } from "../shared/protocol/types.js";
import { MajorityConfig } from "../shared/protocol/quorum.js";
import { inForce } from "../shared/protocol/failover.js";
import { zeroHash } from "../shared/protocol/hash.js";
import { type Env, directoryStub, realClock, replicaStub, rpc } from "./env.js";

type Position = ReplicaResult<"position">;

/** What each member (in membership order) says of its position, asked from here; null: no answer within timeoutMs. */
export function positionsOf(env: Env, config: GroupConfig, members: Member[] = membersOf(config), timeoutMs = replicaRpcTimeoutMs): Promise<(Position | null)[]> {
  return Promise.all(
    members.map((m) =>
      withTimeout(realClock, rpc<Position>(replicaStub(env, config, m.id, m.location).call(config.incarnation, "position", [])), timeoutMs, `replica ${m.id}`).catch(() => null),
    ),
  );
}

/**
 * Whether the voters that answer here (not quarantined) are a quorum of every membership in
 * force: what a new sequencer needs to recover (a move checks it first). Asked from the router,
 * not the old sequencer, whose view is empty after a restart and which may be the one cut off.
 */
export function votersAnswering(env: Env, config: GroupConfig): Promise<{ ok: boolean; count: number; need: number }> {
  const { members: everyone, quorum } = inForce(config);
  const voters = new MajorityConfig(membersOf(config).filter((m) => m.voter).map((m) => m.id));
  const answered: string[] = [];
  const result = () => ({ ok: quorum.reached(answered), count: answered.filter((id) => voters.voters.has(id)).length, need: voters.need });
  // Decided as soon as a quorum has answered: a slow member does not hold the move up.
  return new Promise((resolve) => {
    let pending = everyone.length;
    if (pending === 0) resolve(result());
    for (const m of everyone) {
      void positionsOf(env, config, [m]).then(([p]) => {
        if (p && !p.quarantined) answered.push(m.id);
        if (--pending === 0 || quorum.reached(answered)) resolve(result());
      });
    }
  });
}

/**
 * Which side a sequencer that hears no quorum of voters is on, as this router sees it: the
 * voters answer here (a quorum of every membership in force, none quarantined) and the sequencer
 * is the one cut off, which a failover replaces; or they do not answer here either, and no
 * failover can help until they do (a new sequencer recovers from a quorum of them). The status
 * said "cut off from its replicas; a failover may replace it" for both: a location that held two
 * of three replicas went down, the status promised a failover for 3.5 minutes, none could come,
 * and the runbook said replacing replicas would not help (a probe).
 */
export async function noQuorumSide(env: Env, config: GroupConfig): Promise<{ noQuorumSide: "sequencer" | "replicas"; silentVoters: string[] }> {
  // Every voter of each membership in force: a removal in flight still needs the removed voter
  // for the old membership's quorum (membersOf names the new one only, a review).
  const { members, quorum } = inForce(config);
  const voters = members.filter((m) => (config.inFlight ?? [membersOf(config)]).some((ms) => ms.some((x) => x.id === m.id && x.voter)));
  const positions = await positionsOf(env, config, voters);
  const answering = voters.filter((m, i) => positions[i] !== null && !positions[i]!.quarantined).map((m) => m.id);
  const silentVoters = voters.filter((_m, i) => positions[i] === null).map((m) => m.id);
  return { noQuorumSide: quorum.reached(answering) ? "sequencer" : "replicas", silentVoters };
}

/**
 * `timeoutMs`: how long each replica may take to answer (a metrics scrape has less than a call's
 * timeout). `audited` false: one that does not answer keeps no position (the metrics: a series
 * says what a replica said now, and the last audit's position with a lag of 0 was a down
 * replica's, a probe), where the status shows where the last audit saw it.
 */
export async function statusFromReplicas(env: Env, record: GroupRecord, problem: string, timeoutMs = replicaRpcTimeoutMs, audited = true): Promise<GroupStatus> {
  const config = record.config;
  const members = membersOf(config);
  const positions = await positionsOf(env, config, members, timeoutMs);
  const known = positions.filter((p): p is NonNullable<Position> => p !== null);
  const most = (f: (p: NonNullable<Position>) => number) => Math.max(0, ...known.map(f));
  const lastSeq = most((p) => p.lastSeq);
  const now = new Date().toISOString();
  const replicas = members.map((m, i): ReplicaStatus => {
    const p = positions[i] ?? null;
    if (p === null) return { id: m.id, location: m.location, status: "down", lastSeq: 0, appliedSeq: 0, digest: zeroHash, lastContact: null };
    // Quarantined by its own flag, or on the directory's list (a replica that never heard it).
    const quarantined = p.quarantined || (config.quarantined ?? []).includes(m.id);
    const status = quarantined ? "quarantined" : !m.voter ? "joining" : lastSeq - p.lastSeq >= laggingEntriesMin ? "lagging" : "healthy";
    return { id: m.id, location: m.location, status, lastSeq: p.lastSeq, appliedSeq: p.appliedSeq, digest: p.digest, lastContact: now, ...(withCurrentSequencer(config, m.id) ? { colocated: true as const } : {}) };
  });
  const status: GroupStatus = {
    group: config.group,
    machine: config.machine,
    epoch: most((p) => p.epoch),
    commitSeq: most((p) => p.commitSeq),
    lastSeq,
    outputs: config.outputs,
    checkpointEvery: config.checkpointEvery,
    sessionIdleSeconds: config.sessionIdleMs === undefined ? null : config.sessionIdleMs / 1000,
    incarnation: config.incarnation,
    storageQuotaMiB: storageQuotaMiBOf(config),
    sequencer: { name: sequencerName(config), location: sequencerLocationOf(config), epoch: most((p) => p.epoch), since: config.sequencer?.since ?? config.sequencer?.movedAt ?? record.created, reachable: false, problem },
    replicas,
  };
  return audited ? withAuditedPositions(env, status) : status;
}

/**
 * A replica not heard from (by a sequencer since it took office, or by the router while the
 * sequencer cannot be reached) shows what the group's last audit saw of it (its applied position,
 * the digest if the audit compared at that position, and the audit's time as `audited`) instead
 * of seq 0: its positions went back to 0 in the status. Its lastContact stays null: the audit's
 * time there read as "last answered 5 min ago" for a replica that answered the old sequencer
 * seconds before a failover, and the metrics took its old position for a lag of 22 (a probe).
 */
export async function withAuditedPositions(env: Env, status: GroupStatus): Promise<GroupStatus> {
  if (status.replicas.every((r) => r.lastContact !== null)) return status;
  // Newest first: the latest audit that reached each replica (the newest may not have: the cron
  // audits every minute, and one that found it unreachable used to send it back to 0).
  const audits = ((await directoryStub(env, status.group)
    .audits(auditsPageDefault)
    .catch(() => [])) ?? []) as AuditReport[];
  const seen = new Map<string, { at: string; seq: number; appliedSeq: number; digest: string }>();
  for (const audit of audits) {
    for (const r of audit.replicas) {
      if (r.appliedSeq === null || r.digest === null || seen.has(r.id)) continue;
      seen.set(r.id, { at: audit.at, seq: audit.seq, appliedSeq: r.appliedSeq, digest: r.digest });
    }
  }
  const replicas = status.replicas.map((r): ReplicaStatus => {
    const a = seen.get(r.id);
    if (r.lastContact !== null || !a) return r;
    // The audit's digest is at the position it compared (audit.seq), not at appliedSeq.
    const digest = a.seq === a.appliedSeq ? a.digest : r.digest;
    return { ...r, lastSeq: Math.max(r.lastSeq, a.appliedSeq), appliedSeq: a.appliedSeq, digest, audited: a.at };
  });
  return { ...status, replicas };
}
