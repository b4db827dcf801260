// Closed-loop clients: each issues random commands and reads, retries commands with the same
// request id while the outcome is unknown, and records what it saw for the checkers.
import type { ReadAnswer, ReadIndexAnswer, SubmitAnswer } from "../../shared/protocol/io.js";
import { cutOffOf, withTimeout } from "../../shared/protocol/io.js";
import { expiredMessage } from "../../shared/protocol/driver.js";
import { nearestFirst } from "../../shared/geo.js";
import { membersOf } from "../../shared/protocol/types.js";
import type { Operation } from "./linearizability.js";
import { simMachineFor } from "./machines.js";
import { type SimReplica, type SimSequencer, rpc } from "./nodes.js";
import type { Network, World } from "./world.js";

export interface Acked {
  client: string;
  request: number;
  seq: number;
  output: unknown;
  /** The answer may be a session row's (a retry, or a copy of a duplicated message): see the checker. */
  retried: boolean;
}

export interface ReadRecord {
  client: string;
  consistency: "linearizable" | "sequential" | "stale";
  query: unknown;
  minSeq: number;
  seq: number;
  replica: string;
  result: unknown;
  atMs: number;
  /** Served by a replica after its state was corrupted on purpose: not held to the reference. */
  fromCorrupted?: boolean;
}

export interface ClientHistory {
  operations: Operation[];
  acked: Acked[];
  /** Commands refused with 503 on every attempt: certainly never ordered. */
  refused: { client: string; request: number }[];
  reads: ReadRecord[];
  unexpected: string[];
  /**
   * Commands answered "expired" (a conflict whose session row is gone): with a session window,
   * the outcome of a command whose client was forgotten meanwhile (the checkers require that it
   * was); its outcome is unknown. Without one, unexpected.
   */
  expired: { client: string; request: number }[];
  /** Which sequencer object acknowledged each write, at which epoch (one per epoch, at most). */
  acksBy: { epoch: number; sequencer: string; atMs: number }[];
  /** Latency of each answered write and read, by the client's location (the --geo report). */
  latencies: { location: string | null; kind: "write" | "linearizable" | "sequential" | "stale"; ms: number }[];
}

const attemptsMax = 6;
const callTimeoutMs = 12_000;
/**
 * A call to the sequencer gives up sooner, as a router's connection to an unreachable location
 * would: the client retries (same request id) and, like a router, may fail the sequencer over.
 */
const sequencerCallTimeoutMs = 3_000;

/** A command whose outcome the client did not learn while the load ran. */
interface Unresolved {
  call: number;
  request: number;
  command: unknown;
}

export class SimClient {
  private request = 0;
  private bookmarkSeq = 0;
  private readonly unresolved: Unresolved[] = [];

  constructor(
    readonly index: number,
    private readonly world: World,
    private readonly net: Network,
    private readonly sequencer: () => SimSequencer,
    private readonly replicas: Map<string, SimReplica>,
    private readonly machine: string,
    private readonly history: ClientHistory,
    /**
     * Called, as a router would, when the sequencer did not answer, or answered that it has had no
     * quorum for cutOffMs: it may fail it over.
     */
    private readonly onUnreachable?: (from: string, failed: string, cutOffMs?: number) => Promise<void>,
    /** Where this client is (--geo): it reads at the replica nearest to it, as the router does. */
    readonly location: string | null = null,
    /** Also kv txns and batches (see SimOptions.batches). */
    private readonly batches = false,
  ) {}

  get name(): string {
    return `c${this.index}`;
  }

  private call<T>(to: string, what: string, alive: () => number, handle: () => T | Promise<T>, timeoutMs = callTimeoutMs): Promise<T | null> {
    return withTimeout(this.world, rpc(this.world, this.net, this.name, to, what, alive, handle), timeoutMs, what).catch(() => null);
  }

  private randomCommand(): unknown {
    const rng = this.world.rng;
    // Any machine but kv and bank draws from its own generator (kv's is this same mix).
    if (this.machine !== "kv" && this.machine !== "bank") return simMachineFor(this.machine).generate.command(rng);
    if (this.machine === "bank") {
      const accounts = ["a", "b", "c", "d"];
      const from = rng.pick(accounts);
      const to = rng.pick(accounts.filter((a) => a !== from));
      return { op: "transfer", from, to, amount: 1 + rng.int(30) };
    }
    const key = `k${rng.int(6)}`;
    if (this.batches && rng.chance(0.15)) return this.randomTxn();
    switch (rng.int(6)) {
      case 0:
      case 1:
        return { op: "put", key, value: rng.int(1000) };
      case 2:
        return { op: "get", key };
      case 3:
        return { op: "cas", key, expected: rng.chance(0.5) ? null : rng.int(1000), value: rng.int(1000) };
      case 4:
        return { op: "incr", key: `n${key}`, by: 1 + rng.int(3) };
      default:
        return { op: "delete", key };
    }
  }

  /** A txn over the t-keys: compare one, then move values between two (a conflict-prone mix). */
  private randomTxn(): unknown {
    const rng = this.world.rng;
    const a = `t${rng.int(4)}`;
    const b = `t${rng.int(4)}`;
    return {
      op: "txn",
      compare: [{ key: a, value: rng.chance(0.3) ? null : rng.int(3) }],
      success: [{ op: "put", key: a, value: rng.int(3) }, { op: "incr", key: `n${b}`, by: 1 }],
      failure: [{ op: "get", key: b }, { op: "cas", key: b, expected: null, value: rng.int(3) }],
    };
  }

  async submit(command: unknown): Promise<void> {
    return this.submitBatch([command]);
  }

  /**
   * Commands in one batch (one call, as the router makes it), each retried with its own request
   * id while its outcome is unknown, as the client library does; each is its own operation in the
   * history (they are concurrent with each other there: weaker than the batch's real order).
   */
  async submitBatch(commands: unknown[]): Promise<void> {
    const call = this.world.now;
    const open = commands.map((command) => ({ command, request: ++this.request, unknown: false }));
    for (let attempt = 1; attempt <= attemptsMax && open.length > 0; attempt++) {
      const seq = this.sequencer();
      const items = open.map((o) => ({ request: o.request, command: structuredClone(o.command) }));
      const label = `submit ${this.name}/${items[0]!.request}+${items.length}`;
      const answers = await this.call<SubmitAnswer[]>(seq.node, label, () => seq.incarnation, () => seq.submitBatch(this.name, items), sequencerCallTimeoutMs);
      // A Durable Object RPC is not delivered twice, so a 503 there speaks for the one call. This
      // network duplicates any message: a copy refused (503, "recovering") and another ordered a
      // moment later (seed 1042938228) leave the outcome unknown, as for a lost answer.
      const duplicated = this.net.duplicated.has(label);
      if (answers === null) await this.onUnreachable?.(this.name, seq.name);
      else if (cutOffOf(answers) !== null) await this.onUnreachable?.(this.name, seq.name, cutOffOf(answers)!);
      for (let i = open.length - 1; i >= 0; i--) {
        const o = open[i]!;
        const a = answers?.[i] ?? null;
        if (a?.kind === "ok") {
          this.acknowledged(seq.name, o.request, o.command, call, a, attempt > 1 || duplicated);
          this.history.latencies.push({ location: this.location, kind: "write", ms: this.world.now - call });
          this.bookmarkSeq = Math.max(this.bookmarkSeq, a.seq);
          open.splice(i, 1);
        } else if (a?.kind === "conflict" && a.message === expiredMessage) {
          this.history.expired.push({ client: this.name, request: o.request });
          open.splice(i, 1);
          this.unknownOutcome({ call, request: o.request, command: o.command });
        } else if (a?.kind === "conflict") {
          this.history.unexpected.push(`${this.name}/${o.request}: conflict for a request id used once: ${a.message}`);
          open.splice(i, 1);
        } else if (a?.kind !== "unavailable" || duplicated) {
          o.unknown = true;
        }
      }
      if (open.length > 0) await new Promise<void>((r) => this.world.setTimer(100 * attempt + this.world.rng.int(100), r));
    }
    for (const o of open) {
      if (o.unknown) this.unresolved.push({ call, request: o.request, command: o.command });
      else this.history.refused.push({ client: this.name, request: o.request });
    }
  }

  /**
   * After the heal, asks once more for every command whose outcome stayed unknown, with its own
   * request id, as a client library retries later: exactly-once answers one that was ordered
   * with its first output, and orders one that never was now, within the operation's interval
   * either way (it began at the call and ends at this answer). A known output constrains the
   * linearizability search where an unknown one lets the command take effect anywhere or never
   * (a history with a hundred of those outgrew any search). Still unknown after this: recorded
   * as unknown.
   */
  async resolve(): Promise<void> {
    const pending = this.unresolved.splice(0);
    for (let attempt = 1; attempt <= attemptsMax && pending.length > 0; attempt++) {
      const seq = this.sequencer();
      const items = pending.map((u) => ({ request: u.request, command: structuredClone(u.command) }));
      const answers = await this.call<SubmitAnswer[]>(seq.node, `resolve ${this.name}+${items.length}`, () => seq.incarnation, () => seq.submitBatch(this.name, items));
      for (let i = pending.length - 1; i >= 0; i--) {
        const u = pending[i]!;
        const a = answers?.[i] ?? null;
        if (a?.kind === "ok") {
          this.acknowledged(seq.name, u.request, u.command, u.call, a, true);
          pending.splice(i, 1);
        } else if (a?.kind === "conflict" && a.message === expiredMessage) {
          this.history.expired.push({ client: this.name, request: u.request });
          pending.splice(i, 1);
          this.unknownOutcome(u);
        } else if (a?.kind === "conflict") {
          // The same command under its own id: only an expired session could refuse it, and no
          // client here outgrows its window.
          this.history.unexpected.push(`${this.name}/${u.request}: conflict when asked again after the heal: ${a.message}`);
          pending.splice(i, 1);
          this.unknownOutcome(u);
        }
      }
      if (pending.length > 0) await new Promise<void>((r) => this.world.setTimer(500 * attempt, r));
    }
    for (const u of pending) this.unknownOutcome(u);
  }

  private acknowledged(sequencer: string, request: number, command: unknown, call: number, a: { seq: number; epoch: number; output: unknown }, retried: boolean): void {
    this.history.acked.push({ client: this.name, request, seq: a.seq, output: a.output, retried });
    this.history.acksBy.push({ epoch: a.epoch, sequencer, atMs: this.world.now });
    if (this.machine === "kv") this.history.operations.push({ client: this.index, call, return: this.world.now, input: command as any, output: a.output, id: `${this.name}/${request}` });
  }

  private unknownOutcome(u: Unresolved): void {
    if (this.machine === "kv") this.history.operations.push({ client: this.index, call: u.call, return: null, input: u.command as any, id: `${this.name}/${u.request}` });
  }

  async read(): Promise<void> {
    const rng = this.world.rng;
    const query = this.machine === "bank" ? { op: "balances" } : this.machine === "kv" ? { op: "get", key: `k${rng.int(6)}` } : simMachineFor(this.machine).generate.query(rng);
    const consistency = rng.pick(["linearizable", "sequential", "stale"] as const);
    const call = this.world.now;
    let a: ReadAnswer | null;
    let minSeq = 0;
    // A sequential read carries the client's latest position (its bookmark); a linearizable one
    // asks the sequencer for its read index first, as the router does, then reads at a replica.
    minSeq = consistency === "sequential" ? this.bookmarkSeq : 0;
    if (consistency === "linearizable") {
      const seq = this.sequencer();
      const idx = await this.call<ReadIndexAnswer>(seq.node, `index ${this.name}`, () => seq.incarnation, () => seq.readIndex(), sequencerCallTimeoutMs);
      if (idx === null) await this.onUnreachable?.(this.name, seq.name);
      else if (cutOffOf(idx) !== null) await this.onUnreachable?.(this.name, seq.name, cutOffOf(idx)!);
      if (idx?.kind !== "ok") return;
      minSeq = idx.seq;
    }
    // The members the directory names, as the router reads them (a removed replica whose destroy
    // failed is still up, and not one to read from).
    const named = new Set(membersOf(this.sequencer().registryConfig).map((m) => m.id));
    const live = [...this.replicas.values()].filter((x) => !x.retired && named.has(x.id));
    const r = this.location === null ? rng.pick(live) : nearestFirst(live.map((x) => ({ x, location: this.net.location.get(x.id) ?? null })), this.location, () => rng.next())[0]!.x;
    a = await this.call<ReadAnswer>(r.id, `read ${this.name}`, () => r.incarnation, () =>
      r.query(structuredClone(query), minSeq, consistency === "stale" ? 0 : 2_000),
    );
    if (a?.kind !== "ok") return;
    this.history.reads.push({ client: this.name, consistency, query, minSeq, seq: a.seq, replica: a.replica, result: a.result, atMs: this.world.now });
    this.history.latencies.push({ location: this.location, kind: consistency, ms: this.world.now - call });
    if (consistency !== "stale") this.bookmarkSeq = Math.max(this.bookmarkSeq, a.seq);
    if (consistency === "linearizable" && this.machine === "kv") {
      this.history.operations.push({ client: this.index, call, return: this.world.now, input: query as any, output: a.result, replica: a.replica } as any);
    }
  }

  async run(opsMax: number, stopped: () => boolean): Promise<void> {
    for (let i = 0; i < opsMax && !stopped(); i++) {
      const quietUntilMs = this.world.quietUntilMs();
      if (quietUntilMs > this.world.now) await new Promise<void>((r) => this.world.setTimer(quietUntilMs - this.world.now, r));
      if (this.world.rng.chance(0.3)) await this.read();
      else if (this.batches && this.world.rng.chance(0.1)) await this.submitBatch(Array.from({ length: 2 + this.world.rng.int(3) }, () => this.randomCommand()));
      else await this.submit(this.randomCommand());
      await new Promise<void>((r) => this.world.setTimer(this.world.rng.int(50), r));
    }
  }
}
