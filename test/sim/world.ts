// Virtual time and a faulty network. Everything that happens in a simulation is an event on
// one queue, ordered by (time, insertion order); all randomness comes from one seeded Prng.
// After each event the microtask queue is drained, so promise chains in the drivers run to
// their next wait before the next event: the same seed gives the same run.
import { sha256Hex } from "../../shared/protocol/hash.js";
import { rttMs } from "../../shared/geo.js";
import type { Clock } from "../../shared/protocol/io.js";
import type { Prng } from "./prng.js";

/**
 * SIM_TRACE=1: the trace's lines (but each message's) go to stderr too; =log adds the sequencer
 * driver's log lines, =all every message as well. Read once, not per line.
 */
const printTrace = Boolean(process.env.SIM_TRACE);
const printMessages = process.env.SIM_TRACE === "all";
export const printDriverLog = process.env.SIM_TRACE === "log" || printMessages;

interface Event {
  atMs: number;
  order: number;
  fn: () => void;
  cancelled: boolean;
}

function drainMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export class World implements Clock {
  now = 0;
  private order = 0;
  private heap: Event[] = [];
  events = 0;
  private traceHash = "";
  private traceBuffer: string[] = [];

  constructor(readonly rng: Prng) {}

  /** DriverIO.sleepAfterMs of every sequencer (SimOptions.sleepAfterMs); absent: groups never sleep. */
  sleepAfterMs?: number;
  /** A replica's call for the group's current sequencer (ReplicaDriver.wakeSequencer), set by the group. */
  wakeSequencer?: (fromId: string) => void;

  /**
   * With sleepAfterMs, every client pauses until this time: each cycle of 10 s of work is
   * followed by a quiet time long enough for the group to fall asleep (2 x sleepAfterMs + 3 s),
   * so sleeps and wakes happen under every fault. 0: no pause now.
   */
  quietUntilMs(): number {
    if (this.sleepAfterMs === undefined) return 0;
    const quietMs = 2 * this.sleepAfterMs + 3_000;
    const cycleMs = 10_000 + quietMs;
    const inCycleMs = this.now % cycleMs;
    return inCycleMs < 10_000 ? 0 : this.now - inCycleMs + cycleMs;
  }

  nowMs(): number {
    return this.now;
  }

  setTimer(ms: number, fn: () => void): () => void {
    const ev: Event = { atMs: this.now + Math.max(0, ms), order: this.order++, fn, cancelled: false };
    this.push(ev);
    return () => {
      ev.cancelled = true;
    };
  }

  /** Records a line in the run's trace; the trace hash names the run (equal seeds, equal hashes). */
  trace(line: string): void {
    this.traceBuffer.push(`${this.now} ${line}`);
    if (printTrace && (printMessages || (!line.startsWith("deliver") && !line.startsWith("drop")))) console.error(`${this.now} ${line}`);
    if (this.traceBuffer.length >= 256) this.flushTrace();
  }

  private flushTrace(): void {
    this.traceHash = sha256Hex(this.traceHash + this.traceBuffer.join("\n"));
    this.traceBuffer = [];
  }

  traceDigest(): string {
    this.flushTrace();
    return this.traceHash;
  }

  /** Runs events until done() holds, the queue is empty, or virtual time passes untilMs. */
  async run(untilMs: number, done: () => boolean = () => false): Promise<void> {
    await drainMicrotasks();
    while (this.heap.length > 0 && !done()) {
      const ev = this.pop()!;
      if (ev.atMs > untilMs) {
        this.push(ev);
        this.now = untilMs;
        return;
      }
      if (ev.cancelled) continue;
      this.now = ev.atMs;
      this.events++;
      ev.fn();
      await drainMicrotasks();
    }
  }

  private push(ev: Event): void {
    const h = this.heap;
    h.push(ev);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  private pop(): Event | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && less(h[l]!, h[m]!)) m = l;
        if (r < h.length && less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

function less(a: Event, b: Event): boolean {
  return a.atMs < b.atMs || (a.atMs === b.atMs && a.order < b.order);
}

export interface NetworkFaults {
  dropP: number;
  duplicateP: number;
  /** Delivery delay is 1 + [0, jitterMs): with jitter, messages overtake each other (reordering). */
  jitterMs: number;
}

/** Delivers messages between named nodes with loss, duplication, delay and partitions. */
export class Network {
  faults: NetworkFaults = { dropP: 0, duplicateP: 0, jitterMs: 0 };
  /** The labels of messages sent twice (a client's submits look here: see SimClient.submitBatch). */
  readonly duplicated = new Set<string>();
  /** Nodes cut off from every other node. */
  readonly isolated = new Set<string>();
  /** Nodes that are down (crashed): they neither send nor receive. */
  readonly down = new Set<string>();
  /** Nodes whose messages, both ways, take this much longer (slow, but answering). */
  readonly slow = new Map<string, number>();
  /**
   * A sequencer's node cut off from some replicas but not from routers (clients, the directory):
   * its messages to and from them are dropped (delayMs null) or arrive delayMs late.
   */
  readonly severed = new Map<string, { from: Set<string>; delayMs: number | null }>();
  /**
   * The geography model (--geo): each node's location hint; a message then takes half the
   * round-trip time between the two places (shared/geo.ts) instead of 1 ms.
   */
  readonly location = new Map<string, string>();
  /**
   * Nodes that live in another node's object (the co-located replica in the group's first
   * sequencer object): they share its crashes, isolation, slowness and place.
   */
  readonly host = new Map<string, string>();
  sent = 0;
  dropped = 0;

  constructor(private readonly world: World) {}

  hostOf(node: string): string {
    return this.host.get(node) ?? node;
  }

  isDown(node: string): boolean {
    return this.down.has(node) || this.down.has(this.hostOf(node));
  }

  isIsolated(node: string): boolean {
    return this.isolated.has(node) || this.isolated.has(this.hostOf(node));
  }

  private cut(from: string, to: string): boolean {
    if (this.isDown(from) || this.isDown(to)) return true;
    const a = this.isIsolated(from);
    return a !== this.isIsolated(to) || (a && this.hostOf(from) !== this.hostOf(to));
  }

  private placeOf(node: string): string | null {
    return this.location.get(node) ?? this.location.get(this.hostOf(node)) ?? null;
  }

  private slowMs(node: string): number {
    return this.slow.get(node) ?? this.slow.get(this.hostOf(node)) ?? 0;
  }

  /** How much later a message between from and to arrives (undefined: not severed; null: never). */
  private severance(from: string, to: string): number | null | undefined {
    for (const [a, b] of [[from, to], [to, from]] as const) {
      const s = this.severed.get(this.hostOf(a));
      if (s && s.from.has(b)) return s.delayMs;
    }
    return undefined;
  }

  send(from: string, to: string, what: string, deliver: () => void): void {
    this.sent++;
    const rng = this.world.rng;
    const severedMs = this.severed.size > 0 ? this.severance(from, to) : undefined;
    if (this.cut(from, to) || severedMs === null || rng.chance(this.faults.dropP)) {
      this.dropped++;
      this.world.trace(`drop ${from}->${to} ${what}`);
      return;
    }
    const copies = rng.chance(this.faults.duplicateP) ? 2 : 1;
    if (copies > 1 && this.duplicated.size < 100_000) this.duplicated.add(what);
    for (let i = 0; i < copies; i++) {
      const baseMs = this.location.size > 0 ? Math.max(1, Math.round(rttMs(this.placeOf(from), this.placeOf(to)) / 2)) : 1;
      const delayMs = baseMs + (this.faults.jitterMs > 0 ? rng.int(this.faults.jitterMs) : 0) + this.slowMs(from) + this.slowMs(to) + (severedMs ?? 0);
      this.world.setTimer(delayMs, () => {
        if (this.cut(from, to)) {
          this.dropped++;
          return;
        }
        this.world.trace(`deliver ${from}->${to} ${what}`);
        deliver();
      });
    }
  }
}
