import { compactionSlackShare, firstCutBytes } from "../limits.js";

/**
 * When an object measures its retained log by bytes (compaction by bytes, limits.ts
 * logRetentionBytesOf): once per compactionSlackShare of the budget appended (a measure reads the
 * retained rows' lengths), stretched by `stretch` (a replica's save phase, so the replicas of a
 * group cut, and store their rows, at different seqs); the first after a start once firstCutBytes
 * are appended, not in the step of its first answer. The sequencer's and the replicas' one rule.
 */
export class CutMeter {
  private bytesSinceCut = 0;
  private measured = false;

  constructor(private readonly stretch = 1) {}

  /** Bytes stored in the log (entries, and a replica's effects rows). */
  add(bytes: number): void {
    this.bytesSinceCut += bytes;
  }

  /** Whether a measure is due for this budget; if so, counting starts again. */
  due(budgetBytes: number): boolean {
    const share = budgetBytes * compactionSlackShare * this.stretch;
    if (this.bytesSinceCut < (this.measured ? share : Math.min(share, firstCutBytes))) return false;
    this.bytesSinceCut = 0;
    this.measured = true;
    return true;
  }
}
