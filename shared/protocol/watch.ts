// A replica's watch streams (API.md "Watch"): each watcher gets one event per applied, committed
// entry after its position, read from the replica's log and effects, so catching up and following
// live are one path, and a watcher that falls behind (a slow reader) simply reads on from the log
// when it drains: a queue that never grows past watchQueueBytesMax, and nothing is ever skipped.
import { watchKeepaliveMs, watchPageEntries, watchQueueBytesMax, watchQueuesBytesMax, watchersPerReplicaMax } from "../limits.js";
import type { Clock } from "./io.js";
import type { WatchText } from "./replica.js";

/** Where a watcher's text goes (a stream in a Durable Object, an array in a test). */
export interface WatchSink {
  write(text: string): void;
  /** Ends the stream after what is queued. */
  close(): void;
  /** Ends the stream at once, discarding what is queued (the reader resumes with Last-Event-ID). */
  drop(): void;
  /** Bytes written and not yet taken by the reader. */
  readonly queuedBytes: number;
  /** The reader went away. */
  readonly gone: boolean;
}

interface Watcher {
  sink: WatchSink;
  /** Every entry up to here has been sent (or skipped by the prefix filter). */
  sentSeq: number;
  prefix: string | null;
  lastWriteMs: number;
}

export interface WatchSource {
  appliedSeq(): number;
  readEvents(fromSeq: number, limit: number): WatchText[] | "compacted";
}

export class WatchHub {
  private watchers: Watcher[] = [];
  private cancelKeepalive: (() => void) | null = null;

  constructor(
    private readonly source: WatchSource,
    private readonly clock: Clock,
  ) {}

  get count(): number {
    return this.watchers.length;
  }

  /** Opens a watch after fromSeq (null: from the applied position). "busy" past watchersPerReplicaMax. */
  open(sink: WatchSink, fromSeq: number | null, prefix: string | null): "ok" | "busy" | "compacted" {
    this.prune();
    if (this.watchers.length >= watchersPerReplicaMax) return "busy";
    const from = fromSeq ?? this.source.appliedSeq();
    if (from < this.source.appliedSeq() && this.source.readEvents(from, 0) === "compacted") return "compacted";
    const w: Watcher = { sink, sentSeq: from, prefix: prefix || null, lastWriteMs: this.clock.nowMs() };
    this.watchers.push(w);
    this.armKeepalive();
    this.pump();
    return "ok";
  }

  /**
   * Sends every watcher what it lacks, as far as its queue allows. Watchers at the same position
   * share each page read (under a steady load they all are: one read per step, not one each).
   */
  pump(): void {
    const applied = this.source.appliedSeq();
    const pages = new Map<number, WatchText[] | "compacted">();
    let queuedBytes = 0;
    for (const w of this.watchers) queuedBytes += w.sink.gone ? 0 : w.sink.queuedBytes;
    for (const w of this.watchers) {
      while (w.sentSeq < applied && w.sink.queuedBytes < watchQueueBytesMax && !w.sink.gone) {
        if (queuedBytes >= watchQueuesBytesMax) {
          const freed = this.dropLargest();
          if (freed === 0 || w.sink.gone) break;
          queuedBytes -= freed;
        }
        let page = pages.get(w.sentSeq);
        if (page === undefined) {
          page = this.source.readEvents(w.sentSeq, watchPageEntries);
          pages.set(w.sentSeq, page);
        }
        if (page === "compacted") {
          // It fell behind the retained log: the client reconnects and gets 410 (read state, watch from its seq).
          w.sink.close();
          break;
        }
        if (page.length === 0) break;
        const before = w.sink.queuedBytes;
        this.send(w, page);
        queuedBytes += w.sink.queuedBytes - before;
      }
    }
    this.prune();
  }

  /** Drops the watcher with the largest queue (a stalled reader); the bytes that frees. */
  private dropLargest(): number {
    let largest: Watcher | null = null;
    for (const w of this.watchers) {
      if (!w.sink.gone && w.sink.queuedBytes > (largest?.sink.queuedBytes ?? 0)) largest = w;
    }
    if (largest === null) return 0;
    const freed = largest.sink.queuedBytes;
    largest.sink.drop();
    return freed;
  }

  private send(w: Watcher, page: WatchText[]): void {
    let text = "";
    for (const e of page) if (w.prefix === null || e.keys.some((k) => k.startsWith(w.prefix!))) text += e.text;
    if (text !== "") {
      w.sink.write(text);
      w.lastWriteMs = this.clock.nowMs();
    }
    w.sentSeq = page[page.length - 1]!.seq;
  }

  /** Ends every stream (quarantine, rebuild, deletion): clients resume at another replica. */
  closeAll(): void {
    for (const w of this.watchers) w.sink.close();
    this.watchers = [];
    this.cancelKeepalive?.();
    this.cancelKeepalive = null;
  }

  private prune(): void {
    if (this.watchers.some((w) => w.sink.gone)) this.watchers = this.watchers.filter((w) => !w.sink.gone);
  }

  /** A comment to every watcher sent nothing for watchKeepaliveMs (a timer callback while any watch is open). */
  private armKeepalive(): void {
    if (this.cancelKeepalive) return;
    this.cancelKeepalive = this.clock.setTimer(watchKeepaliveMs / 2, () => {
      this.cancelKeepalive = null;
      const now = this.clock.nowMs();
      for (const w of this.watchers) {
        if (now - w.lastWriteMs < watchKeepaliveMs) continue;
        w.sink.write(": keepalive\n\n");
        w.lastWriteMs = now;
      }
      this.prune();
      if (this.watchers.length > 0) this.armKeepalive();
    });
  }
}
