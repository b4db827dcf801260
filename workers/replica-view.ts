// A group's status without its sequencer: what each replica says of itself. Served while the
// sequencer cannot be reached (http.ts statusForReaders), so an operator sees the replicas during
// the outage instead of a 503.
import type { GroupRecord } from "../shared/control/directory.js";
import { laggingEntriesMin, replicaRpcTimeoutMs } from "../shared/limits.js";
import type { GroupStatus, ReplicaStatus } from "../shared/api/types.js";
import { type ReplicaResult, withTimeout } from "../shared/protocol/io.js";
import { membersOf, sequencerName, withCurrentSequencer } from "../shared/protocol/types.js";
import { zeroHash } from "../shared/protocol/hash.js";
import { type Env, realClock, replicaStub, rpc } from "./env.js";

type Position = ReplicaResult<"position">;

export async function statusFromReplicas(env: Env, record: GroupRecord, problem: string): Promise<GroupStatus> {
  const config = record.config;
  const members = membersOf(config);
  const positions = await Promise.all(
    members.map((m) =>
      withTimeout(realClock, rpc<Position>(replicaStub(env, config, m.id, m.location).call(config.incarnation, "position", [])), replicaRpcTimeoutMs, `replica ${m.id}`).catch(() => null),
    ),
  );
  const known = positions.filter((p): p is NonNullable<Position> => p !== null);
  const most = (f: (p: NonNullable<Position>) => number) => Math.max(0, ...known.map(f));
  const lastSeq = most((p) => p.lastSeq);
  const now = new Date().toISOString();
  const replicas = members.map((m, i): ReplicaStatus => {
    const p = positions[i] ?? null;
    if (p === null) return { id: m.id, location: m.location, status: "down", lastSeq: 0, appliedSeq: 0, digest: zeroHash, lastContact: null };
    const status = p.quarantined ? "quarantined" : lastSeq - p.lastSeq >= laggingEntriesMin ? "lagging" : "healthy";
    return { id: m.id, location: m.location, status, lastSeq: p.lastSeq, appliedSeq: p.appliedSeq, digest: p.digest, lastContact: now, ...(withCurrentSequencer(config, m.id) ? { colocated: true as const } : {}) };
  });
  return {
    group: config.group,
    machine: config.machine,
    epoch: most((p) => p.epoch),
    commitSeq: most((p) => p.commitSeq),
    lastSeq,
    outputs: config.outputs,
    checkpointEvery: config.checkpointEvery,
    sequencer: { name: sequencerName(config), location: config.sequencer?.location ?? null, epoch: most((p) => p.epoch), since: config.sequencer?.since ?? record.created, reachable: false, problem },
    replicas,
  };
}
