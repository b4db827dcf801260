// A failover's or a move's successor makes sure the sequencers before it let go of their copy of
// the log. A deposed sequencer wipes itself once it hears of its successor (a fence, a rejoin it
// refused), but one asleep or evicted when it was cut off hears nothing: no call reaches it again,
// and it kept the group's whole log until the group was deleted (a probe: 7,455 entries 40 minutes
// later). So the successor, once it recovers in office, asks every earlier name to resign
// (SequencerLifecycle.resign: it wipes only if the directory names another, and spares a replica
// its object hosts), and asks again, with pauses doubling, those that did not answer. The names
// left are kept in its storage: an eviction of the successor does not end the asking; a wipe of it
// (deposed in turn) does, and its own successor asks them all again.
import { predecessorPauseMsFirst, predecessorPauseMsMax, sequencerCallTimeoutMs } from "../shared/limits.js";
import { withTimeout } from "../shared/protocol/io.js";
import { type GroupConfig, earlierSequencerNames } from "../shared/protocol/types.js";
import { realClock } from "./env.js";
import { chunks, destroyCallsAtOnce } from "./groups.js";
import { predecessorsMetaKey, readMeta, writeMeta } from "./sqlite.js";

/** An earlier sequencer's answer: it wiped its copy, holds none of this life, or kept it (the directory could not be read, or names it). */
export type ResignAnswer = "wiped" | "none" | "kept";

interface Pending {
  group: string;
  incarnation: number;
  names: string[];
}

export class Predecessors {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private pauseMs = predecessorPauseMsFirst;
  private running = false;
  /** A round was due while one ran (a begin() after a new recovery): it runs once that one ends. */
  private again = false;

  constructor(
    private readonly sql: SqlStorage,
    /** Asks sequencer `name` to resign from the group's life `incarnation`. */
    private readonly ask: (name: string, group: string, incarnation: number) => Promise<ResignAnswer>,
    /** The config this object serves now (null: none); the asking stops when it is not the one recorded. */
    private readonly serving: () => GroupConfig | null,
  ) {}

  /** After a recovery in office: every earlier name is asked, at once. */
  begin(config: GroupConfig): void {
    const names = earlierSequencerNames(config);
    if (names.length === 0) return;
    writeMeta(this.sql, predecessorsMetaKey, { group: config.group, incarnation: config.incarnation, names } satisfies Pending);
    this.pauseMs = predecessorPauseMsFirst;
    this.later(0);
  }

  /**
   * At the object's start: the names left before an eviction or a restart are asked again. With
   * no row at all (a row whose names are done stays, empty), a successor that recovered before
   * this asking existed has never asked: it begins now, once.
   */
  resume(): void {
    const pending = readMeta<Pending>(this.sql, predecessorsMetaKey);
    if (pending) {
      if (pending.names.length > 0) this.later(0);
      return;
    }
    const config = this.serving();
    if (config) this.begin(config);
  }

  private later(ms: number): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.round().catch((err: unknown) => console.error(`asking earlier sequencers to resign failed: ${String(err)}`));
    }, ms);
  }

  private current(): Pending | null {
    const pending = readMeta<Pending>(this.sql, predecessorsMetaKey);
    const config = this.serving();
    return pending && config && config.group === pending.group && config.incarnation === pending.incarnation ? pending : null;
  }

  /** One round: every name left, 32 at a time (a group failed over many times has as many). */
  private async round(): Promise<void> {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    try {
      const pending = this.current();
      if (!pending || pending.names.length === 0) return;
      const kept: string[] = [];
      for (const names of chunks(pending.names, destroyCallsAtOnce)) {
        const answers = await Promise.all(names.map((name) => this.askBounded(name, pending)));
        names.forEach((name, i) => answers[i] === "kept" && kept.push(name));
      }
      // Wiped meanwhile (deposed in turn), or begun again by a newer recovery: that one decides.
      const now = this.current();
      if (!now || JSON.stringify(now.names) !== JSON.stringify(pending.names)) return;
      // Done: the row stays, empty (its absence is a successor that never asked: resume()).
      writeMeta(this.sql, predecessorsMetaKey, { ...pending, names: kept } satisfies Pending);
      if (kept.length === 0) return;
      this.later(this.pauseMs);
      this.pauseMs = Math.min(this.pauseMs * 2, predecessorPauseMsMax);
    } finally {
      this.running = false;
      if (this.again) {
        this.again = false;
        this.later(0);
      }
    }
  }

  private askBounded(name: string, pending: Pending): Promise<ResignAnswer> {
    const call = withTimeout(realClock, this.ask(name, pending.group, pending.incarnation), sequencerCallTimeoutMs, `the resignation of ${name}`);
    return call.catch(() => "kept" as const);
  }
}
