// Output votes: the outputs replicas reported per seq, and the decision for each (after the
// group's outputs mode). One home for the tally, so "first" and "majority" are decided once.
import type { OutputsMode } from "../api/types.js";
import { canonicalJson, sha256Hex } from "./hash.js";
import type { MajorityConfig } from "./quorum.js";
import type { AppliedOutput } from "./types.js";

export interface Decision {
  seq: number;
  /** null when the replicas' outputs disagree and no majority agrees (outputs: "majority"). */
  outcome: AppliedOutput | null;
}

interface Votes {
  decided: boolean;
  /** Each voter's outcome, by the hash of its canonical JSON. */
  byReplica: Map<string, string>;
  /** Each voter's install count when it voted (ReplicaPosition.installs): a vote from before its rebuild judged a state it no longer holds. */
  installsAt: Map<string, number>;
  /** One copy of each distinct outcome (a large output is not held once per voter). */
  outcomes: Map<string, AppliedOutput>;
}

/** The identity of an outcome: equal outputs (in any key order) give equal keys. */
function outcomeKey(out: AppliedOutput): string {
  return sha256Hex(canonicalJson([out.status, out.originalSeq, out.output]));
}

export class OutputVotes {
  private readonly bySeq = new Map<number, Votes>();

  /** Undecided or partly voted seqs tracked at once; older ones are dropped (their waiters time out). */
  constructor(private readonly seqsMax: number) {}

  open(seq: number): void {
    this.bySeq.set(seq, { decided: false, byReplica: new Map(), installsAt: new Map(), outcomes: new Map() });
    if (this.bySeq.size <= this.seqsMax) return;
    for (const s of this.bySeq.keys()) {
      this.bySeq.delete(s);
      if (this.bySeq.size <= this.seqsMax) break;
    }
  }

  /** Distinct outcomes held across the seqs still voted on (for tests and bounds). */
  get outputsHeld(): number {
    let n = 0;
    for (const v of this.bySeq.values()) n += v.outcomes.size;
    return n;
  }

  /**
   * One voter's outputs. Decisions go to `decided`; replicas whose output differs from the winning
   * one go to `diverged` ("majority" mode). `voters` is the configuration in force, `active` the
   * voters that may vote now (a decision without a winner waits until all of them have voted).
   * `installs`: the voter's install count as it voted; `stamps.divergedAt` (made when first needed)
   * gets, for each replica in `diverged`, the highest count among its losing votes (the quarantine's stamp: a replica rebuilt
   * since refuses it). A vote cast before a rebuild, outvoted once a slow replica's answer came,
   * quarantined the rebuilt replica again (the simulator, seed 455436698).
   */
  collect(replica: string, outputs: AppliedOutput[], mode: OutputsMode, voters: MajorityConfig, active: string[], decided: Decision[], diverged: string[], installs = 0, stamps: { divergedAt?: Map<string, number> } = {}): void {
    for (const out of outputs) {
      const v = this.bySeq.get(out.seq);
      if (!v) continue;
      if (mode === "first") {
        if (!v.decided) decided.push({ seq: out.seq, outcome: out });
        this.bySeq.delete(out.seq);
        continue;
      }
      const key = outcomeKey(out);
      v.byReplica.set(replica, key);
      v.installsAt.set(replica, installs);
      if (!v.decided && !v.outcomes.has(key)) v.outcomes.set(key, out);
      this.decideMajority(out.seq, v, voters, active, decided, diverged, stamps);
    }
  }

  private decideMajority(seq: number, v: Votes, voters: MajorityConfig, active: string[], decided: Decision[], diverged: string[], stamps: { divergedAt?: Map<string, number> }): void {
    const idsByKey = new Map<string, string[]>();
    for (const [id, key] of v.byReplica) {
      const ids = idsByKey.get(key) ?? [];
      ids.push(id);
      idsByKey.set(key, ids);
    }
    const winner = [...idsByKey].find(([, ids]) => voters.reached(ids));
    const everyoneVoted = active.every((id) => v.byReplica.has(id));
    if (winner) {
      const [key, ids] = winner;
      if (!v.decided) decided.push({ seq, outcome: v.outcomes.get(key)! });
      v.decided = true;
      for (const [id] of v.byReplica) {
        if (ids.includes(id)) continue;
        if (!diverged.includes(id)) diverged.push(id);
        const at = (stamps.divergedAt ??= new Map());
        at.set(id, Math.max(at.get(id) ?? 0, v.installsAt.get(id) ?? 0));
      }
      // Decided: later voters are compared by key alone, so no output is held any longer.
      v.outcomes.clear();
    } else if (everyoneVoted && !v.decided) {
      decided.push({ seq, outcome: null });
      v.decided = true;
    }
    if (everyoneVoted) this.bySeq.delete(seq);
  }
}
