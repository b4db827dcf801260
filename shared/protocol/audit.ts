import type { AuditInfo, AuditReport, ReplicaVerdict } from "./types.js";
import { majority } from "./types.js";

/**
 * Decides an audit from what each replica reported (null: unreachable). Pure, so the simulator
 * and the Durable Object reach the same verdict from the same answers.
 *
 * 1. Scrub: a replica whose digest recomputed from its rows differs from its recorded digest has
 *    corrupt state (storage, not execution): diverged.
 * 2. Compare checkpoint digests at the highest seq every remaining responder has a checkpoint for
 *    (or, if their retained checkpoints no longer overlap, the highest that a quorum shares).
 * 3. The digest held by a quorum of the group's replicas is right; other digests are diverged.
 *    Without a quorum to agree, the audit is insufficient and quarantines nobody.
 */
export function decideAudit(
  group: string,
  at: string,
  replicaCount: number,
  infos: Map<string, AuditInfo | null>,
): { report: AuditReport; diverged: string[] } {
  const need = majority(replicaCount);
  const verdicts = new Map<string, { verdict: ReplicaVerdict; reason?: string }>();
  const candidates: [string, AuditInfo][] = [];
  for (const [id, info] of infos) {
    if (info === null) verdicts.set(id, { verdict: "unreachable" });
    else if (info.rebuilding) verdicts.set(id, { verdict: "behind", reason: "being rebuilt by state transfer" });
    else if (info.scrub.actualDigest !== info.scrub.recordedDigest)
      verdicts.set(id, { verdict: "diverged", reason: "state rows do not match the recorded digest (scrub)" });
    else candidates.push([id, info]);
  }

  const bySeq = new Map<number, Map<string, string>>();
  for (const [id, info] of candidates) {
    for (const cp of info.checkpoints) {
      const m = bySeq.get(cp.seq) ?? new Map<string, string>();
      m.set(id, cp.digest);
      bySeq.set(cp.seq, m);
    }
  }
  const seqsDesc = [...bySeq.keys()].sort((a, b) => b - a);
  const common = seqsDesc.find((s) => bySeq.get(s)!.size === candidates.length);
  const seq = common ?? seqsDesc.find((s) => bySeq.get(s)!.size >= need) ?? 0;
  const atSeq = bySeq.get(seq) ?? new Map<string, string>();

  const counts = new Map<string, number>();
  for (const d of atSeq.values()) counts.set(d, (counts.get(d) ?? 0) + 1);
  const winner = [...counts.entries()].find(([, n]) => n >= need)?.[0];

  for (const [id] of candidates) {
    const d = atSeq.get(id);
    if (d === undefined) verdicts.set(id, { verdict: "behind", reason: `no checkpoint at seq ${seq}` });
    else if (winner === undefined) verdicts.set(id, { verdict: "agrees", reason: "no quorum to compare against" });
    else if (d === winner) verdicts.set(id, { verdict: "agrees" });
    else verdicts.set(id, { verdict: "diverged", reason: `checkpoint digest at seq ${seq} differs from the majority` });
  }

  const diverged = [...verdicts.entries()].filter(([, v]) => v.verdict === "diverged").map(([id]) => id);
  const verdict: AuditReport["verdict"] = diverged.length > 0 ? "diverged" : winner === undefined ? "insufficient" : "consistent";
  const replicas = [...infos.entries()].map(([id, info]) => {
    const v = verdicts.get(id)!;
    const entry: AuditReport["replicas"][number] = {
      id,
      appliedSeq: info?.appliedSeq ?? null,
      digest: info ? (atSeq.get(id) ?? info.digest) : null,
      verdict: v.verdict,
    };
    if (v.reason) entry.reason = v.reason;
    return entry;
  });
  return { report: { at, group, seq, verdict, replicas }, diverged };
}
