// A replica's in-memory copy of entries it appended and has not applied yet, so the step that
// learns their commit need not read them back from its log. Bounded in entries and in bytes (an
// entry's command may be 256 KiB: 1,024 of them were 256 MiB). When full, new entries are not
// kept (the oldest are applied first, so they are the ones worth keeping); those are read from the
// log when they are applied.
import { entryBytes } from "./entry.js";
import type { Entry } from "../api/types.js";

export class UnappliedEntries {
  private readonly bySeq = new Map<number, Entry>();
  private byteCount = 0;

  constructor(
    private readonly entriesMax: number,
    private readonly bytesMax: number,
  ) {}

  get bytes(): number {
    return this.byteCount;
  }

  get(seq: number): Entry | undefined {
    return this.bySeq.get(seq);
  }

  /** Keeps newly appended entries, in order, as far as they fit. */
  add(entries: Entry[]): void {
    for (const e of entries) {
      const bytes = entryBytes(e);
      if (this.bySeq.size + 1 > this.entriesMax || this.byteCount + bytes > this.bytesMax) return;
      this.bySeq.set(e.seq, e);
      this.byteCount += bytes;
    }
  }

  delete(seq: number): void {
    const e = this.bySeq.get(seq);
    if (e === undefined) return;
    this.bySeq.delete(seq);
    this.byteCount -= entryBytes(e);
  }

  /** Forgets entries from seq on (the log was truncated there). */
  deleteFrom(seq: number): void {
    for (const s of [...this.bySeq.keys()]) if (s >= seq) this.delete(s);
  }

  clear(): void {
    this.bySeq.clear();
    this.byteCount = 0;
  }
}
