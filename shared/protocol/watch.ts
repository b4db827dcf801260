// A replica's watch streams (API.md "Watch"): each watcher gets one event per applied, committed
// entry after its position, read from the replica's log and effects, so catching up and following
// live are one path, and a watcher that falls behind (a slow reader) simply reads on from the log
// when it drains: a queue that never grows past watchQueueBytesMax, and nothing is ever skipped.
import {
  sequencerTimeoutMs,
  watchIdGapBytes,
  watchIdGapEntries,
  watchKeepaliveMs,
  watchPageBytesMax,
  watchPageEntries,
  watchProbeMs,
  watchPumpPagesMax,
  watchQueueBytesMax,
  watchPressureCheckMs,
  watchQueuesBytesMax,
  watchReserveBytes,
  watchSilenceMs,
  watchStallMs,
  watchersPerReplicaMax,
} from "../limits.js";
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
  /** Bytes the reader has taken so far (grows while it reads). */
  readonly takenBytes: number;
  /** The reader went away. */
  readonly gone: boolean;
}

interface Watcher {
  sink: WatchSink;
  /** Every entry up to here has been sent (or skipped by the prefix filter). */
  sentSeq: number;
  /**
   * The position the client knows it stands at: the last event's id, or an `id:` block's. A prefix
   * filter passes entries without telling it; it used to learn nothing until its next matching
   * event, so after a quiet spell longer than the retained log its reconnect got 410 (a probe).
   */
  idSeq: number;
  prefix: string | null;
  lastWriteMs: number;
  /** The sink's takenBytes when last looked at, and since when it has not grown while bytes were queued. */
  takenBytes: number;
  stuckSinceMs: number;
  openedMs: number;
  /** Bytes of events its prefix filter passed over since it was last told where it stands. */
  passedBytes: number;
  /** Opened at a silent replica because no replica in contact could serve (the router's second pass). */
  fallback: boolean;
}

export interface WatchSource {
  appliedSeq(): number;
  readEvents(fromSeq: number, limit: number, bytesMax: number): WatchText[] | "compacted";
  /** How long the replica has heard nothing from a serving sequencer (0: in contact). */
  silentMs(): number;
  /** Asks the sequencer to show itself (ReplicaHome.wakeSequencer); rate-limited by the host. */
  wake?(): void;
}

/**
 * Ends a stream. One with bytes queued is dropped, not closed: a closed stream keeps its queue
 * until its reader takes it, outside the hub's list and so outside watchQueuesBytesMax (stalled
 * readers held 32 MiB more after each quarantine). Its client resumes with Last-Event-ID.
 */
function end(sink: WatchSink): void {
  if (sink.queuedBytes > 0) sink.drop();
  else sink.close();
}

export class WatchHub {
  private watchers: Watcher[] = [];
  /** Where the next pump starts: where the shared bound stopped the last one, so every watcher gets its turn. */
  private nextFirst = 0;
  private cancelKeepalive: (() => void) | null = null;
  /** A pump that stopped at watchPumpPagesMax goes on in a later event (at most one pending). */
  private cancelContinue: (() => void) | null = null;
  /** While the shared bound holds everyone back: the next look for stalled readers (at most one pending). */
  private cancelPressure: (() => void) | null = null;

  constructor(
    private readonly source: WatchSource,
    private readonly clock: Clock,
  ) {}

  get count(): number {
    return this.watchers.length;
  }

  /**
   * Opens a watch after fromSeq (null: from the applied position). "busy" past watchersPerReplicaMax.
   * `fallback`: the router asked here only because no replica in contact could serve.
   */
  open(sink: WatchSink, fromSeq: number | null, prefix: string | null, fallback = false): "ok" | "busy" | "compacted" {
    this.prune();
    if (this.watchers.length >= watchersPerReplicaMax) {
      // Some may have gone without a word: a write to each idle one finds them (its failure comes
      // later, and the refused client's retry finds their places free). A probe: 400 of 700
      // watchers reconnecting after a network blip were refused for 16.7 s by their own ghosts.
      // Not those with bytes queued: their pending write fails alike, and each refusal would add
      // to a stalled reader's queue, past every bound.
      this.keepalives(this.clock.nowMs(), watchProbeMs, true);
      this.prune();
      if (this.watchers.length >= watchersPerReplicaMax) return "busy";
    }
    const from = fromSeq ?? this.source.appliedSeq();
    if (from < this.source.appliedSeq() && this.source.readEvents(from, 0, watchPageBytesMax) === "compacted") return "compacted";
    const now = this.clock.nowMs();
    const w: Watcher = { sink, sentSeq: from, idSeq: from, prefix, lastWriteMs: now, takenBytes: sink.takenBytes, stuckSinceMs: now, openedMs: now, passedBytes: 0, fallback };
    this.watchers.push(w);
    this.armKeepalive();
    this.pump();
    return "ok";
  }

  /**
   * Sends every watcher what it lacks, as far as its queue and the shared bound allow. Watchers at
   * the same position share each page read (under a steady load they all are: one read per step,
   * not one each). Past watchQueuesBytesMax nothing more is sent until queues drain (each drain
   * pumps again), and readers stalled for watchStallMs are dropped to make room. At most
   * watchPumpPagesMax pages are read per call, and the rest in later events: a prefix watcher
   * resuming far back, whose filter passes over every entry, queued nothing and so was never
   * stopped by a queue, and read up to the whole retained log in one event (a review measured
   * 5 s for 4,200 entries of 60 KiB), while appends to the replica waited.
   */
  pump(): void {
    this.cancelContinue?.();
    this.cancelContinue = null;
    const applied = this.source.appliedSeq();
    const pages = new Map<number, WatchText[] | "compacted">();
    let queuedBytes = this.queuedBytes();
    let dropped = false;
    /** The first watcher the bound held back: the next pump starts there, so each gets its turn. */
    let held: number | null = null;
    const n = this.watchers.length;
    const first = n === 0 ? 0 : this.nextFirst % n;
    for (let k = 0; k < n; k++) {
      const w = this.watchers[(first + k) % n]!;
      while (w.sentSeq < applied && w.sink.queuedBytes < watchQueueBytesMax && !w.sink.gone) {
        if (queuedBytes >= watchQueuesBytesMax) {
          if (!dropped) (queuedBytes -= this.dropStalled()), (dropped = true);
          if (w.sink.gone) break;
        }
        if (queuedBytes >= watchQueuesBytesMax) {
          this.armPressure();
          // Past the bound, a reader that has read and taken all it was sent gets its next page
          // from a reserve (watchReserveBytes): readers that hold their queues full, taking a
          // little now and then, never count as stalled, and held every live watch of the replica
          // back for as long as they went on (a review). The others wait their turn.
          const keepsUp = w.sink.queuedBytes === 0 && w.sink.takenBytes > 0;
          if (!keepsUp || queuedBytes >= watchQueuesBytesMax + watchReserveBytes) {
            held ??= (first + k) % n;
            break;
          }
        }
        let page = pages.get(w.sentSeq);
        if (page === undefined) {
          if (pages.size >= watchPumpPagesMax) {
            this.nextFirst = (first + k) % n;
            this.cancelContinue = this.clock.setTimer(0, () => this.pump());
            return this.prune();
          }
          page = this.source.readEvents(w.sentSeq, watchPageEntries, watchPageBytesMax);
          pages.set(w.sentSeq, page);
        }
        if (page === "compacted") {
          // It fell behind the retained log: the client reconnects and gets 410 (read state, watch
          // from its seq); what it still has queued is older than the log too.
          end(w.sink);
          break;
        }
        if (page.length === 0) break;
        const before = w.sink.queuedBytes;
        this.send(w, page);
        queuedBytes += w.sink.queuedBytes - before;
      }
    }
    if (held !== null) this.nextFirst = held;
    this.prune();
  }

  /**
   * Looks for stalled readers every watchPressureCheckMs while the shared bound holds: waiting for
   * the next keepalive tick (every 5 s) held live readers that long past watchStallMs.
   */
  private armPressure(): void {
    if (this.cancelPressure) return;
    this.cancelPressure = this.clock.setTimer(watchPressureCheckMs, () => {
      this.cancelPressure = null;
      this.prune();
      if (this.watchers.length === 0 || this.queuedBytes() < watchQueuesBytesMax) return this.pump();
      if (this.dropStalled() > 0) this.pump();
      else this.armPressure();
    });
  }

  private queuedBytes(): number {
    let bytes = 0;
    for (const w of this.watchers) bytes += w.sink.gone ? 0 : w.sink.queuedBytes;
    return bytes;
  }

  /** Drops every watcher whose reader has taken nothing for watchStallMs with bytes queued; the bytes that frees. */
  private dropStalled(): number {
    const now = this.clock.nowMs();
    let freed = 0;
    for (const w of this.watchers) {
      if (w.sink.gone || w.sink.queuedBytes === 0) continue;
      if (w.sink.takenBytes !== w.takenBytes) {
        // It read something since it was last looked at: its time starts again.
        w.takenBytes = w.sink.takenBytes;
        w.stuckSinceMs = now;
        continue;
      }
      if (now - w.stuckSinceMs < watchStallMs) continue;
      freed += w.sink.queuedBytes;
      w.sink.drop();
    }
    return freed;
  }

  private send(w: Watcher, page: WatchText[]): void {
    let text = "";
    for (const e of page) {
      if (w.prefix !== null && !e.keys.some((k) => k.startsWith(w.prefix!))) {
        w.passedBytes += e.text.length;
        continue;
      }
      text += e.text;
      w.idSeq = e.seq;
      w.passedBytes = 0;
    }
    w.sentSeq = page[page.length - 1]!.seq;
    // By bytes too: a small group's log keeps a few budgets of bytes, which a thousand large
    // entries pass, and the reconnect from the last event got 410 (a review).
    if (w.sentSeq - w.idSeq >= watchIdGapEntries || (w.sentSeq > w.idSeq && w.passedBytes >= watchIdGapBytes)) {
      text += `id: ${w.sentSeq}\n\n`;
      w.idSeq = w.sentSeq;
      w.passedBytes = 0;
    }
    if (text !== "") this.write(w, text);
  }

  /** Writes to a watcher; a queue that was empty starts the time its reader may take to read it. */
  private write(w: Watcher, text: string): void {
    const now = this.clock.nowMs();
    if (w.sink.queuedBytes === 0) {
      w.stuckSinceMs = now;
      w.takenBytes = w.sink.takenBytes;
    }
    w.sink.write(text);
    w.lastWriteMs = now;
  }

  /** Ends every stream (quarantine, rebuild, deletion): clients resume at another replica. */
  closeAll(): void {
    for (const w of this.watchers) end(w.sink);
    this.watchers = [];
    this.cancelContinue?.();
    this.cancelContinue = null;
    this.cancelKeepalive?.();
    this.cancelKeepalive = null;
    this.cancelPressure?.();
    this.cancelPressure = null;
  }

  /**
   * The lowest position a live watcher's client stands at (idSeq, where its reconnect resumes),
   * or null with none: compaction by bytes keeps the entries after it, within a bound
   * (ReplicaCore.heldForWatch), so one burst of large writes no longer ends every live watch
   * (`compacted`), nor a reconnect from where the client last heard. A prefix watch is told where
   * it stands every watchIdGapEntries or watchIdGapBytes passed over, well within the bound.
   */
  lowestSeq(): number | null {
    let low: number | null = null;
    for (const w of this.watchers) if (!w.sink.gone && (low === null || w.idSeq < low)) low = w.idSeq;
    return low;
  }

  private prune(): void {
    if (this.watchers.some((w) => w.sink.gone)) this.watchers = this.watchers.filter((w) => !w.sink.gone);
  }

  /**
   * Ends the streams open for watchSilenceMs once this replica has heard nothing from a serving
   * sequencer for as long: each would carry only keepalives while the group writes on elsewhere
   * (a replica cut off from the sequencer, which the routers still reach). Its client resumes with
   * Last-Event-ID at a replica in contact (the router prefers those); a stream opened at a silent
   * replica because none was in contact ends after its own watchSilenceMs, so it looks again.
   */
  private endSilent(now: number): void {
    const silentMs = this.source.silentMs();
    if (silentMs < watchSilenceMs) return;
    for (const w of this.watchers) {
      if (now - w.openedMs < watchSilenceMs) continue;
      if (w.sink.queuedBytes > 0) {
        // A reader behind: closed, its queue would be out of the shared bound's reach (it only
        // counts watchers in the list); dropped, nothing is skipped (it resumes with Last-Event-ID).
        w.sink.drop();
        continue;
      }
      const at = w.idSeq < w.sentSeq ? `id: ${w.sentSeq}\n` : ""; // where a prefix watcher stands
      // Opened here because no replica was in contact (a failover under way, most replicas down):
      // its client waits 5 to 10 s before it asks again, and not all at the same moment.
      const retry = w.fallback ? `retry: ${watchSilenceMs / 2 + (w.openedMs % (watchSilenceMs / 2))}\n` : "";
      w.sink.write(`: this replica has heard nothing from its sequencer for ${Math.round(silentMs / 1000)} s: reconnect with Last-Event-ID to follow one in contact\n${retry}${at}\n`);
      w.sink.close();
    }
  }

  /** A keepalive to every watcher sent nothing for idleMs (also how a write finds a reader gone); `drained`: only to those with nothing queued. */
  private keepalives(now: number, idleMs: number, drained = false): void {
    for (const w of this.watchers) {
      if (w.sink.gone || now - w.lastWriteMs < idleMs || (drained && w.sink.queuedBytes > 0)) continue;
      // With where the stream stands, if a prefix filter passed entries since the last id.
      const at = w.idSeq < w.sentSeq ? `id: ${w.sentSeq}\n` : "";
      w.idSeq = w.sentSeq;
      this.write(w, `: keepalive\n${at}\n`);
    }
  }

  /** When the sequencer was first asked to show itself in the current silence (source.wake). */
  private wokeAtMs = -Infinity;

  /**
   * An idle group's sequencer object may have been evicted (nothing called it) and its heartbeats
   * stopped: a silence that is only idleness ended every stream after watchSilenceMs (a probe).
   * Asked past sequencerTimeoutMs (each tick; the host bounds the calls), a sequencer in reach
   * wakes and heartbeats again; one cut off stays silent, and its streams end as before. True on
   * the first ask of a silence: the streams get one more tick (a tick late by a few ms found the
   * silence past watchSilenceMs at the same moment, a review).
   */
  private askSequencer(now: number): boolean {
    const silentMs = this.source.silentMs();
    if (!this.source.wake || this.watchers.length === 0 || silentMs < sequencerTimeoutMs) return false;
    this.source.wake();
    if (this.wokeAtMs >= now - silentMs) return false;
    this.wokeAtMs = now;
    return true;
  }

  /** A comment to every watcher sent nothing for watchKeepaliveMs (a timer callback while any watch is open). */
  private armKeepalive(): void {
    if (this.cancelKeepalive) return;
    this.cancelKeepalive = this.clock.setTimer(watchKeepaliveMs / 2, () => {
      this.cancelKeepalive = null;
      const now = this.clock.nowMs();
      if (!this.askSequencer(now)) this.endSilent(now);
      this.prune();
      this.keepalives(now, watchKeepaliveMs);
      // Notes who is still reading; under the shared bound, drops the stalled and sends on.
      if (this.queuedBytes() >= watchQueuesBytesMax && this.dropStalled() > 0) this.pump();
      this.prune();
      if (this.watchers.length > 0) this.armKeepalive();
    });
  }
}
