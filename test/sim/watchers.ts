// Watch clients (API.md "Watch"): each follows the group's log through a replica's WatchHub,
// as a router's stream does, and resumes with Last-Event-ID at another replica whenever its
// stream ends (a crash, a quarantine, a rebuild, a silence, the network, or its own whim). What
// it saw is checked against the final log after the heal (checkers.ts, checkWatchers).
import type { WatchSink } from "../../shared/protocol/watch.js";
import type { SimReplica } from "./nodes.js";
import type { Network, World } from "./world.js";

export interface WatchEvent {
  seq: number;
  data: { seq: number; kind: string; client: string | null; request: number | null; command: unknown; output: unknown; timestamp: string; changes: [string, unknown][] };
  replica: string;
  atMs: number;
}

export class SimWatcher {
  readonly events: WatchEvent[] = [];
  /** Stream faults found while it ran (a gap, a repeat, an event out of order). */
  readonly failures: string[] = [];
  /** Where it stands (Last-Event-ID): every entry up to here was delivered or passed over. */
  lastId = 0;
  /** Reopened from the replica's position after a 410 (compacted): entries between may be missed. */
  readonly resyncs: { fromSeq: number; toSeq: number }[] = [];
  connections = 0;
  /** What each write moved it over: (fromSeq, toSeq], from which replica, when (a corrupt one may pass over entries). */
  readonly spans: { fromSeq: number; toSeq: number; replica: string; atMs: number }[] = [];
  private current: { sink: WatchSink & { gone: boolean }; replica: string; sinceMs: number; fromSeq: number } | null = null;

  constructor(
    readonly index: number,
    private readonly world: World,
    private readonly net: Network,
    private readonly replicas: Map<string, SimReplica>,
    private readonly members: () => string[],
    readonly prefix: string | null,
  ) {}

  get name(): string {
    return `w${this.index}`;
  }

  private stopped: () => boolean = () => false;

  start(stopped: () => boolean): void {
    this.stopped = stopped;
    const loop = () => {
      if (stopped()) return;
      if (this.current === null) this.connect();
      this.world.setTimer(200 + this.world.rng.int(800), loop);
    };
    loop();
  }

  /**
   * After the heal: connected until it has caught up with `seq`; a connection that brings nothing
   * for 3 s is left for another replica. A prefix watcher stands where the last `id:` said: told
   * by a keepalive.
   */
  caughtUp(seq: number): boolean {
    if (this.lastId >= seq) return true;
    if (this.current !== null && this.world.now - this.current.sinceMs > 3_000 && this.lastId === this.current.fromSeq && this.prefix === null) this.disconnect(this.current.sink);
    if (this.current === null) this.connect();
    return this.lastId >= seq;
  }

  private connect(): void {
    const rng = this.world.rng;
    const live = this.members().filter((id) => {
      const r = this.replicas.get(id);
      return r && !r.retired && r.driver.core && !this.net.isDown(id) && !this.net.isIsolated(id);
    });
    if (live.length === 0) return;
    const replicaId = rng.pick(live);
    const r = this.replicas.get(replicaId)!;
    const me = this;
    let taken = 0;
    const sink = {
      gone: false,
      queuedBytes: 0,
      get takenBytes() {
        return taken;
      },
      write(text: string) {
        if (sink.gone) return;
        // A stream is a connection: cut, it breaks (its client resumes elsewhere).
        if (me.net.isDown(replicaId) || me.net.isIsolated(replicaId)) return me.disconnect(sink);
        taken += text.length;
        me.parse(text, replicaId);
      },
      close() {
        me.disconnect(sink);
      },
      drop() {
        me.disconnect(sink);
      },
    };
    this.current = { sink, replica: replicaId, sinceMs: this.world.now, fromSeq: this.lastId };
    this.connections++;
    const res = r.driver.watches.open(sink, this.lastId, this.prefix);
    if (process.env.SIM_WATCH_DEBUG === this.name) console.error(`${this.world.now} ${this.name} open at ${replicaId} from ${this.lastId} (applied ${r.driver.core?.appliedSeq}): ${res}`);
    if (res === "busy") return this.disconnect(sink);
    if (res === "compacted") {
      // The client reads the state and watches from its seq (410): a gap it knows of.
      this.disconnect(sink);
      const at = r.driver.core?.appliedSeq ?? this.lastId;
      this.resyncs.push({ fromSeq: this.lastId, toSeq: at });
      this.lastId = Math.max(this.lastId, at);
      return;
    }
    // Its own whim: the reader goes away after a while (a router that moves it to another replica).
    if (!this.stopped()) this.world.setTimer(500 + rng.int(6_000), () => {
      if (this.current?.sink === sink) {
        sink.gone = true;
        this.current = null;
      }
    });
  }

  private disconnect(sink: { gone: boolean }): void {
    sink.gone = true;
    if (this.current?.sink === sink) this.current = null;
  }

  private parse(text: string, replica: string): void {
    const before = this.lastId;
    this.parseBlocks(text, replica);
    if (this.lastId > before) this.spans.push({ fromSeq: before, toSeq: this.lastId, replica, atMs: this.world.now });
  }

  private parseBlocks(text: string, replica: string): void {
    if (process.env.SIM_WATCH_DEBUG === this.name) console.error(`${this.world.now} ${this.name}<-${replica} lastId ${this.lastId}: ${text.replace(/data: .*\n/g, "").replace(/\n/g, "|")}`);
    for (const block of text.split("\n\n")) {
      if (block.trim() === "") continue;
      let id: number | null = null;
      let data: string | null = null;
      for (const line of block.split("\n")) {
        if (line.startsWith("id: ")) id = Number(line.slice(4));
        else if (line.startsWith("data: ")) data = line.slice(6);
      }
      if (data !== null) {
        const d = JSON.parse(data) as WatchEvent["data"];
        if (id !== d.seq) this.failures.push(`${this.name}: event id ${id} carries seq ${d.seq}`);
        if (this.prefix === null ? d.seq !== this.lastId + 1 : d.seq <= this.lastId) {
          this.failures.push(`${this.name}${this.prefix ? ` (prefix ${this.prefix})` : ""}: after ${this.lastId} got ${d.seq} from ${replica} at ${this.world.now} ms`);
        }
        this.events.push({ seq: d.seq, data: d, replica, atMs: this.world.now });
        this.lastId = Math.max(this.lastId, d.seq);
      } else if (id !== null) {
        if (id < this.lastId) this.failures.push(`${this.name}: id ${id} after ${this.lastId} from ${replica}`);
        this.lastId = Math.max(this.lastId, id);
      }
    }
  }
}
