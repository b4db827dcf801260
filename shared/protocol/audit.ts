import { MajorityConfig } from "./quorum.js";
import type { AuditInfo } from "./types.js";
import type { AuditReport, ReplicaVerdict } from "../api/types.js";

/**
 * Decides an audit from what each replica reported (null: unreachable, or in `stale` an answer
 * from before its replica's release or rebuild). Pure, so the simulator
 * and the Durable Object reach the same verdict from the same answers.
 *
 * 1. Scrub: a replica whose digest recomputed from its rows differs from its recorded digest has
 *    corrupt state (storage, not execution): diverged.
 * 2. Compare checkpoint digests at the highest seq every remaining responder has a checkpoint for
 *    (or, if their retained checkpoints no longer overlap, the highest that a quorum shares). The
 *    empty state at seq 0 counts only for a replica that stands there: every replica lists it,
 *    and as the seq all of them shared it made an audit of replicas at 41, 42 and 41 (right after
 *    a failover's recovery, the new no-op's commit not yet heard by all) compare nothing but the
 *    empty state and call it consistent (a probe). With no seq a quorum shares, nothing is
 *    compared: insufficient.
 * 3. The digest held by a quorum of the voters is right; other digests are diverged.
 *    Without a quorum to agree, the audit is insufficient.
 * 4. The auditor must never be able to kill a group: a replica is quarantined only when it
 *    disagrees with a healthy quorum of voters that agree with each other. When the voters that
 *    fail a check are themselves a quorum, that is a bug in us (every replica ran the same code
 *    on the same log), not corruption in them: nobody is quarantined, the group keeps serving, and
 *    the report carries an `alarm`. Without a healthy quorum to confirm it, a diverged replica is
 *    reported but not quarantined either.
 */
export function decideAudit(
  group: string,
  at: string,
  voterIds: Iterable<string>,
  infos: Map<string, AuditInfo | null>,
  stale: ReadonlySet<string> = new Set(),
): { report: AuditReport; diverged: string[]; alarm: string | null } {
  const voters = new MajorityConfig(voterIds);
  const need = voters.need;
  const verdicts = new Map<string, { verdict: ReplicaVerdict; reason?: string }>();
  const candidates: [string, AuditInfo][] = [];
  for (const [id, info] of infos) {
    // Answered, but from before a release or a rebuild that began or ended meanwhile: not
    // compared, and not "unreachable" either (it answered the release in the same moment: a probe).
    if (info === null && stale.has(id)) verdicts.set(id, { verdict: "behind", reason: "released or rebuilt while the audit asked it: its answer is of before, not compared" });
    else if (info === null) verdicts.set(id, { verdict: "unreachable" });
    else if (info.rebuilding) verdicts.set(id, { verdict: "behind", reason: "being rebuilt by state transfer" });
    else if (info.scrub.actualDigest !== info.scrub.recordedDigest)
      verdicts.set(id, { verdict: "diverged", reason: "state rows do not match the recorded digest (scrub)" });
    else candidates.push([id, info]);
  }

  const bySeq = checkpointsBySeq(candidates);
  const seqsDesc = [...bySeq.keys()].sort((a, b) => b - a);
  const common = seqsDesc.find((s) => bySeq.get(s)!.size === candidates.length);
  // null: no position a quorum shares (replicas at 40, 41 and 42 between periodic checkpoints).
  const compared = common ?? seqsDesc.find((s) => bySeq.get(s)!.size >= need) ?? null;
  const seq = compared ?? 0;
  const atSeq = (compared !== null && bySeq.get(compared)) || new Map<string, string>();

  const holders = new Map<string, string[]>();
  for (const [id, d] of atSeq) holders.set(d, [...(holders.get(d) ?? []), id]);
  const winner = [...holders.entries()].find(([, ids]) => voters.reached(ids))?.[0];

  for (const [id, info] of candidates) {
    const d = atSeq.get(id);
    if (d === undefined) verdicts.set(id, { verdict: "behind", reason: notCompared(info.appliedSeq, compared) });
    else if (winner === undefined) verdicts.set(id, { verdict: "agrees", reason: "no quorum to compare against" });
    else if (d === winner) verdicts.set(id, { verdict: "agrees" });
    else verdicts.set(id, { verdict: "diverged", reason: `checkpoint digest at seq ${seq} differs from the majority` });
  }

  const flagged = [...verdicts.entries()].filter(([, v]) => v.verdict === "diverged").map(([id]) => id);
  const verdict: AuditReport["verdict"] = flagged.length > 0 ? "diverged" : winner === undefined ? "insufficient" : "consistent";
  let alarm: string | null = null;
  let diverged = flagged;
  if (flagged.length > 0 && voters.reached(flagged)) {
    // Rows that fail their own digest on a quorum may be damaged storage (a probe corrupted every
    // replica's), and the operator needs the way out; differing digests from the same log are a bug.
    const scrub = flagged.every((id) => verdicts.get(id)?.reason?.includes("(scrub)"));
    alarm = scrub
      ? `${flagged.length} of ${voters.size} voters failed the same check (${flagged.join(", ")}): their rows do not match their digests (damaged storage, or a bug); nobody is quarantined and the group keeps serving; repair them (from the log while it holds every entry), or release one with rebase and repair the others from it`
      : `${flagged.length} of ${voters.size} voters failed the same check (${flagged.join(", ")}): a bug in the replica set, not corruption; nobody is quarantined and the group keeps serving`;
    diverged = [];
  } else if (flagged.length > 0 && winner === undefined) {
    diverged = []; // no healthy quorum to confirm the verdict: report it, quarantine nobody
  }
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
  const report: AuditReport = { at, group, seq, verdict, replicas, quarantined: diverged };
  if (alarm !== null) report.alarm = alarm;
  // seq 0 read as a position compared (every replica at 70,000 failed its scrub: a probe).
  if (compared === null) report.compared = false;
  return { report, diverged, alarm };
}

/** Each checkpoint position the candidates hold, with each holder's digest there. */
function checkpointsBySeq(candidates: [string, AuditInfo][]): Map<number, Map<string, string>> {
  const bySeq = new Map<number, Map<string, string>>();
  for (const [id, info] of candidates) {
    for (const cp of info.checkpoints) {
      if (cp.seq === 0 && info.appliedSeq > 0) continue; // the empty state, which it has left
      const m = bySeq.get(cp.seq) ?? new Map<string, string>();
      m.set(id, cp.digest);
      bySeq.set(cp.seq, m);
    }
  }
  return bySeq;
}

/** Why a replica that answered was not compared at `seq` (null: no seq a quorum shares). */
function notCompared(appliedSeq: number, seq: number | null): string {
  if (seq === null) return `no checkpoint that a quorum shares (applied ${appliedSeq}): not compared`;
  if (appliedSeq > seq) return `no checkpoint at seq ${seq} (applied ${appliedSeq}, past it): not compared`;
  return `no checkpoint at seq ${seq}`;
}
