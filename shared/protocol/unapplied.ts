// A replica's in-memory copy of entries it appended and has not applied yet, so the step that
// learns their commit need not read them back from its log. Bounded in entries and in bytes (an
// entry's command may be 256 KiB: 1,024 of them were 256 MiB); when full it starts over, and the
// entries it dropped are read from the log when they are applied.
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

  /** Keeps newly appended entries, after dropping everything held if they would not fit. */
  add(entries: Entry[]): void {
    let bytes = 0;
    for (const e of entries) bytes += entryBytes(e);
    if (this.bySeq.size + entries.length > this.entriesMax || this.byteCount + bytes > this.bytesMax) this.clear();
    if (entries.length > this.entriesMax || bytes > this.bytesMax) return;
    for (const e of entries) this.bySeq.set(e.seq, e);
    this.byteCount += bytes;
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
