// Output votes: the outputs replicas reported per seq, and the decision for each (after the
// group's outputs mode). One home for the tally, so "first" and "majority" are decided once.
import type { OutputsMode } from "../api/types.js";
import { canonicalJson } from "./hash.js";
import type { MajorityConfig } from "./quorum.js";
import type { AppliedOutput } from "./types.js";

export interface Decision {
  seq: number;
  /** null when the replicas' outputs disagree and no majority agrees (outputs: "majority"). */
  outcome: AppliedOutput | null;
}

interface Votes {
  decided: boolean;
  byReplica: Map<string, AppliedOutput>;
}

export class OutputVotes {
  private readonly bySeq = new Map<number, Votes>();

  /** Undecided or partly voted seqs tracked at once; older ones are dropped (their waiters time out). */
  constructor(private readonly seqsMax: number) {}

  open(seq: number): void {
    this.bySeq.set(seq, { decided: false, byReplica: new Map() });
    if (this.bySeq.size <= this.seqsMax) return;
    for (const s of this.bySeq.keys()) {
      this.bySeq.delete(s);
      if (this.bySeq.size <= this.seqsMax) break;
    }
  }

  /**
   * One voter's outputs. Decisions go to `decided`; replicas whose output differs from the winning
   * one go to `diverged` ("majority" mode). `voters` is the configuration in force, `active` the
   * voters that may vote now (a decision without a winner waits until all of them have voted).
   */
  collect(replica: string, outputs: AppliedOutput[], mode: OutputsMode, voters: MajorityConfig, active: string[], decided: Decision[], diverged: string[]): void {
    for (const out of outputs) {
      const v = this.bySeq.get(out.seq);
      if (!v) continue;
      v.byReplica.set(replica, out);
      if (mode === "first") {
        if (!v.decided) decided.push({ seq: out.seq, outcome: out });
        this.bySeq.delete(out.seq);
        continue;
      }
      this.decideMajority(out.seq, v, voters, active, decided, diverged);
    }
  }

  private decideMajority(seq: number, v: Votes, voters: MajorityConfig, active: string[], decided: Decision[], diverged: string[]): void {
    const tally = new Map<string, { outcome: AppliedOutput; ids: string[] }>();
    for (const [id, out] of v.byReplica) {
      const key = canonicalJson([out.status, out.originalSeq, out.output]);
      const t = tally.get(key) ?? { outcome: out, ids: [] };
      t.ids.push(id);
      tally.set(key, t);
    }
    const winner = [...tally.values()].find((t) => voters.reached(t.ids));
    const everyoneVoted = active.every((id) => v.byReplica.has(id));
    if (winner) {
      if (!v.decided) decided.push({ seq, outcome: winner.outcome });
      v.decided = true;
      for (const [id] of v.byReplica) if (!winner.ids.includes(id) && !diverged.includes(id)) diverged.push(id);
    } else if (everyoneVoted && !v.decided) {
      decided.push({ seq, outcome: null });
      v.decided = true;
    }
    if (everyoneVoted) this.bySeq.delete(seq);
  }
}
