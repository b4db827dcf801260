import { MajorityConfig } from "../../shared/protocol/quorum.js";
import { assert } from "../../shared/protocol/assert.js";
import { simMachineFor as machineFor } from "./machines.js";
// The group's nodes in the simulator: the real cores and drivers, with their RPCs carried by the
// simulated network and their storage in memory that survives crashes.
import { SequencerDriver } from "../../shared/protocol/driver.js";
import { type DriverIO, type ReadAnswer, type ReadIndexAnswer, type ReplicaApi, type ReplicaArgs, type ReplicaLink, type ReplicaMethod, type ReplicaTransport, type SubmitAnswer, askAgain, linkOver, serve, withTimeout } from "../../shared/protocol/io.js";
import type { DirectoryCore } from "../../shared/control/directory.js";
import { handOverTimeoutMs, replicaDestroyTimeoutMs, replicaRpcTimeoutMs } from "../../shared/limits.js";
import { memoryDirectory } from "../support/directory.js";
import { type FailoverIO, preVote } from "../../shared/protocol/failover.js";
import { SequencerLifecycle, type SequencerHost } from "../../shared/protocol/lifecycle.js";
import { MemoryReplicaStorage, MemorySequencerStorage } from "../../shared/protocol/memory.js";
import { ReplicaCore, type Rejoin, newReplicaMeta } from "../../shared/protocol/replica.js";
import { ReplicaDriver } from "../../shared/protocol/replica-driver.js";
import { SequencerCore } from "../../shared/protocol/sequencer.js";
import type { AppendRequest, AppendResponse, AuditInfo, GroupConfig, ReplicaPosition } from "../../shared/protocol/types.js";
import type { Entry } from "../../shared/api/types.js";
import { isColocated, membersOf, replicaIds, sequencerName } from "../../shared/protocol/types.js";
import { type Network, type World, printDriverLog } from "./world.js";

/** Small compaction windows, so short runs compact their logs and need state transfers. */
export const simRetention = { entries: 40, slack: 10 };
/** A few rows per audit's scrub, so a pass spans several audits with writes between them. */
export const simScrubRows = 16;

export type Variant = "correct" | "stale-reads" | "early-commit" | "apply-uncommitted";

/** Failures found while running (invariant assertions, monotonicity): the run's checkers add theirs. */
export class Failures {
  readonly list: string[] = [];
  add(message: string): void {
    if (this.list.length < 50 && !this.list.includes(message)) this.list.push(message);
  }
}

/**
 * A request/response over the simulated network. Never settles if a message is lost (the caller's
 * timeout covers that); rejects when the callee crashed while handling it, as a Durable Object
 * RPC does when the object is reset.
 */
export function rpc<T>(world: World, net: Network, from: string, to: string, what: string, alive: () => number, handle: () => T | Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    net.send(from, to, what, () => {
      const incarnation = alive();
      void Promise.resolve()
        .then(handle)
        .then(
          (result) => {
            if (alive() !== incarnation || net.isDown(to)) {
              world.trace(`reset ${to} during ${what}`);
              return reject(new Error(`${to} was reset during ${what}`));
            }
            const copy = structuredClone(result);
            net.send(to, from, `${what}:reply`, () => resolve(copy));
          },
          // The handler threw: the caller gets an error, as from a Durable Object RPC.
          (err) => net.send(to, from, `${what}:error`, () => reject(err)),
        );
    });
  });
}

export class SimReplica {
  storage = new MemoryReplicaStorage();
  driver: ReplicaDriver;
  incarnation = 0;
  /** Highest positions seen, across restarts: they must never go backwards. */
  private seenApplied = 0;
  private seenCommit = 0;
  corruptedAtMs: number | null = null;
  /** The row the last corruption changed, and what it wrote there. */
  private corruptedRow: [string, string] | null = null;
  /** Removed from the group (its removal committed): no longer a member. */
  retired = false;
  /** Times a healthy state of it was told "quarantined" (see serve). */
  requarantined = 0;
  /** Times it was made again after losing its storage (with its object: the co-located replica). */
  rejoins = 0;
  /** Times during which this replica's state was corrupt (from corruption to rebuild). */
  readonly corruptWindows: { fromMs: number; toMs: number }[] = [];

  constructor(
    readonly id: string,
    private readonly config: GroupConfig,
    private readonly world: World,
    private readonly failures: Failures,
    private readonly variant: Variant,
  ) {
    const meta = newReplicaMeta(config.group, id, config.machine, config.checkpointEvery, 0, undefined, config);
    this.storage.saveMeta(meta);
    this.driver = this.newDriver();
  }

  /** A driver over its storage; a PreVote while its sequencer sleeps wakes the group's current one (World.wakeSequencer). */
  private newDriver(): ReplicaDriver {
    const driver = new ReplicaDriver(this.core(), this.world);
    driver.wakeSequencer = () => this.world.wakeSequencer?.(this.id);
    return driver;
  }

  /** Null without storage (lost with the object that hosts it, until a sequencer makes it again). */
  private core(): ReplicaCore | null {
    const meta = this.storage.meta;
    if (!meta) return null;
    return this.variant === "apply-uncommitted"
      ? new ApplyUncommittedCore(this.storage, meta, machineFor(meta.machine), simRetention, simScrubRows)
      : new ReplicaCore(this.storage, meta, machineFor(meta.machine), simRetention, simScrubRows);
  }

  append(msg: AppendRequest): AppendResponse {
    let resp: AppendResponse;
    try {
      resp = this.driver.append(msg);
    } catch (err) {
      // As for a query: a corrupted replica's rows are garbage, and a machine may throw reading
      // one (a lock lease without its expiry); it stays stuck until its repair. A healthy one never may.
      if (this.corruptedAtMs === null) this.failures.add(`${this.id} broke an invariant at ${this.world.now} ms: ${(err as Error).message}`);
      throw err;
    }
    if (!this.driver.core) return resp;
    const p = this.driver.core.position();
    if (p.appliedSeq < this.seenApplied || p.commitSeq < this.seenCommit) {
      this.failures.add(`${this.id} went backwards: applied ${this.seenApplied}->${p.appliedSeq}, commit ${this.seenCommit}->${p.commitSeq}`);
    }
    this.seenApplied = Math.max(this.seenApplied, p.appliedSeq);
    this.seenCommit = Math.max(this.seenCommit, p.commitSeq);
    return resp;
  }

  /** The receiving end of the simulated RPC: the driver's API, with the harness's checks on a few calls. */
  serve<K extends ReplicaMethod>(method: K, args: ReplicaArgs<K>, onTransfer: () => void): unknown {
    if (method === "append") return this.append(args[0] as AppendRequest);
    if (method === "query") return this.query(...(args as ReplicaArgs<"query">));
    // A "quarantined" that lands on a healthy replica (never corrupted, or rebuilt since: the
    // harness corrupts one replica per run) re-quarantines it for nothing, and its next rebuild's
    // install takes it out of every fence again: a tell sent before a rebuild began and delivered
    // after its install ended (seed 1367861615), or a successor's tell from the directory's list
    // written before the rebuild (seed 1184612567). Counted (SIM_REQUARANTINE=fail: a failure).
    if (method === "setQuarantined" && args[0] === true && this.corruptedAtMs === null && this.storage.meta && !this.storage.meta.quarantined && this.driver.core) {
      const epoch = args[1] as number | undefined;
      // One stamped below its install count is refused (ReplicaCore.setQuarantined): no harm done.
      const stamp = args[2] as number | undefined;
      const stale = stamp !== undefined && stamp < (this.storage.meta.installs ?? 0);
      if ((epoch === undefined || epoch >= this.driver.core.position().epoch) && !stale) {
        this.requarantined++;
        if (process.env.SIM_REQUARANTINE === "fail") this.failures.add(`${this.id}, healthy${this.corruptWindows.length > 0 ? ` (rebuilt at ${this.corruptWindows.at(-1)!.toMs} ms)` : ""}, was told it is quarantined at ${this.world.now} ms`);
      }
    }
    const result = serve(this.driver, method, args);
    // A rebuilt replica holds a healthy one's state: it is no longer corrupted.
    if (method === "endInstall" && (result as ReturnType<ReplicaApi["endInstall"]>)?.ok) {
      this.rebuilt();
      onTransfer();
    }
    return result;
  }

  /** A query; a corrupted replica may fail one (its rows are garbage), a healthy one never may. */
  async query(q: unknown, minSeq: number, waitMs: number, evenDamaged?: boolean): Promise<ReadAnswer> {
    try {
      return await this.driver.query(q, minSeq, waitMs, evenDamaged);
    } catch (err) {
      if (this.corruptedAtMs === null) this.failures.add(`${this.id} failed a query: ${(err as Error).message}`);
      throw err;
    }
  }

  crash(): void {
    this.driver.detach();
    this.incarnation++;
  }

  restart(): void {
    this.incarnation++;
    this.driver = this.newDriver();
  }

  /** Its storage is gone (the co-located replica loses it with the sequencer's object). */
  loseStorage(): void {
    this.storage = new MemoryReplicaStorage();
    this.seenApplied = 0;
    this.seenCommit = 0;
    this.world.trace(`${this.id} lost its storage`);
  }

  /** A sequencer's init: a replica without storage is made again (a rejoin); otherwise nothing changes. */
  init(rejoin?: Rejoin): ReplicaPosition {
    if (!this.storage.meta) {
      if (rejoin) this.rejoins++;
      this.storage.saveMeta(newReplicaMeta(this.config.group, this.id, this.config.machine, this.config.checkpointEvery, 0, rejoin, this.config));
      this.driver = this.newDriver();
      this.world.trace(`${this.id} made again${rejoin ? ` (rejoin at epoch ${rejoin.epoch} through ${rejoin.throughSeq})` : ""}`);
    }
    return this.driver.core!.position();
  }

  /** A state transfer replaced this replica's state: positions may restart lower (it served nothing meanwhile). */
  rebuilt(): void {
    // A row damaged after its page was installed passes the install's check (summed from the
    // pages as they came: docs/PROTOCOL.md, "State transfer"): still corrupt, for a scrub to find.
    const survived = this.corruptedAtMs !== null && this.corruptedRow !== null && this.storage.rows.get(this.corruptedRow[0]) === this.corruptedRow[1];
    if (!survived) {
      if (this.corruptedAtMs !== null) this.corruptWindows.push({ fromMs: this.corruptedAtMs, toMs: this.world.now });
      this.corruptedAtMs = null;
    }
    const p = this.driver.core!.position();
    this.seenApplied = p.appliedSeq;
    this.seenCommit = p.commitSeq;
  }

  wasCorruptAt(ms: number): boolean {
    if (this.corruptedAtMs !== null && ms >= this.corruptedAtMs) return true;
    return this.corruptWindows.some((w) => ms >= w.fromMs && ms <= w.toMs);
  }

  /** Changes one machine row behind the digest, as disk corruption would. */
  corrupt(anyRow = false): boolean {
    // Rows written by recent entries may not be stored yet; store them, or the next save would
    // overwrite the corruption (harmless, but then there would be nothing for the audit to find).
    this.driver.core?.saveState();
    // anyRow (corrupt-any): a session row, a client's book or the idle index as well.
    const rows = anyRow ? ["m/", "s/", "c/", "d/"].flatMap((p) => this.storage.rows.scan(p, null, 1_000)) : this.storage.rows.scan("m/", null, 1_000);
    if (rows.length === 0) return false;
    const [key] = this.world.rng.pick(rows);
    this.corruptedRow = [key, JSON.stringify({ corrupted: this.world.now })];
    this.storage.rows.put(...this.corruptedRow);
    this.corruptedAtMs = this.world.now;
    return true;
  }
}

/** Broken variants: the simulator must catch each within a few seeds. */
class EarlyCommitCore extends SequencerCore {
  // Commits (and decides outputs) as soon as one replica holds an entry: no majority.
  override votingConfig(): MajorityConfig {
    return new AnyOne(super.votingConfig().voters);
  }
}

class AnyOne extends MajorityConfig {
  override get need(): number {
    return 1;
  }
  override reached(ids: Iterable<string>): boolean {
    return [...ids].some((id) => this.voters.has(id));
  }
}

class ApplyUncommittedCore extends ReplicaCore {
  // Applies every entry it receives, committed or not.
  override append(req: AppendRequest): AppendResponse {
    return super.append({ ...req, commitSeq: Math.max(req.commitSeq, req.prevSeq + req.entries.length) });
  }
}

class StaleReadDriver extends SequencerDriver {
  // Serves "linearizable" reads without a read index: any replica, whatever it has applied.
  override async readIndex(): Promise<ReadIndexAnswer> {
    return { kind: "ok", seq: 0 };
  }
}

/**
 * Sequencer storage that also archives every entry it is given, across compactions and storage
 * losses: the checkers need the whole history, which no node keeps once logs are compacted.
 * A later entry at the same seq (a recovery replacing an uncommitted one) overwrites.
 */
class ArchivingStorage extends MemorySequencerStorage {
  constructor(
    private readonly archive: Map<number, Entry>,
    /** Only the sequencer the directory names writes history: a deposed one (cut off, still ordering into its own log) never commits. */
    private readonly inOffice: () => boolean,
  ) {
    super();
  }
  override appendEntries(entries: Entry[]): void {
    super.appendEntries(entries);
    if (this.inOffice()) for (const e of entries) this.archive.set(e.seq, e);
  }
}

/**
 * The group's directory: the real DirectoryCore over memory (its record, membership writes,
 * quarantine list, failover compare-and-set and list of removed replicas to destroy), and the
 * history archive.
 */
export class SimDirectory {
  readonly archive = new Map<number, Entry>();
  readonly core: DirectoryCore;
  constructor(config: GroupConfig) {
    this.core = memoryDirectory(config.incarnation);
    const made = this.core.create(config, new Date(0).toISOString());
    assert(made.kind === "created" && made.record.config.incarnation === config.incarnation, "the simulator's directory made its group");
    this.core.setState(config.incarnation, "ready");
  }
  get config(): GroupConfig {
    return this.core.get()!.config;
  }
  get incarnation(): number {
    return this.config.incarnation;
  }
}

export class SimSequencer {
  storage: MemorySequencerStorage;
  /** The real lifecycle (shared/protocol/lifecycle.ts), as the Durable Object runs it. */
  private lifecycle: SequencerLifecycle;
  incarnation = 0;
  recoveries = 0;
  fencings = 0;
  transfers = 0;
  private seenCommit = 0;

  constructor(
    /** The object's name (the group's, or a successor's: group~sN) and its node on the network. */
    readonly name: string,
    readonly node: string,
    private readonly dir: SimDirectory,
    private readonly world: World,
    private readonly net: Network,
    private readonly replicas: Map<string, SimReplica>,
    private readonly failures: Failures,
    private readonly variant: Variant,
    /** The group's first sequencer starts with the group; a failover's successor recovers. */
    first: boolean,
    skewMs = 0,
  ) {
    this.skewMs = skewMs;
    this.storage = new ArchivingStorage(dir.archive, () => this.inOffice());
    this.lifecycle = this.newLifecycle();
    if (first) {
      this.storage.saveMeta({ config: dir.config, epoch: 1, commitSeq: 0, quarantined: [] });
      this.lifecycle.start(this.storage.meta);
    } else {
      this.recover(this.lifecycle);
    }
  }

  /**
   * A call to the group's directory (another object) takes 1 to 20 ms: a crash can fall between a
   * change's write-ahead and its append, and a start's read of the directory can come late (they
   * were instant, and a review found three defects the simulator could not reach).
   */
  private directoryDelay(): Promise<void> {
    return new Promise((resolve) => this.world.setTimer(1 + this.world.rng.int(20), resolve));
  }

  private inOffice(): boolean {
    return sequencerName(this.dir.config) === this.name;
  }

  /** What the directory knows of the group: updated after each committed membership change. */
  get registryConfig(): GroupConfig {
    return this.dir.config;
  }

  /** null while recovering from lost storage. */
  get driver(): SequencerDriver | null {
    return this.lifecycle.driver;
  }

  private newLifecycle(): SequencerLifecycle {
    const host: SequencerHost = {
      storage: () => this.storage,
      prepare: () => {},
      // Memory storage: a wipe is a new, empty one (the archive keeps the history for the checkers).
      // Only by the incarnation running: a Durable Object reset runs none of the old one's code,
      // and a hand-over queued in a crashed lifecycle wiped the log its successor had just
      // recovered (move-sequencer, seed 176507576: "commitSeq beyond the sequencer's log").
      wipe: async () => {
        if (this.lifecycle !== lifecycle) return;
        this.storage = new ArchivingStorage(this.dir.archive, () => this.inOffice());
      },
      inOffice: async () => (await this.directoryDelay(), this.inOffice()),
      directoryConfig: async () => (await this.directoryDelay(), structuredClone(this.dir.config)),
      io: () => this.io(),
      fenced: () => {
        this.world.trace("fenced");
        this.fencings++;
        this.seenCommit = 0;
      },
      recoveryFailed: () => this.retryRecovery(lifecycle),
    };
    const lifecycle = new SequencerLifecycle(host, {
      makeCore: (storage, meta) => (this.variant === "early-commit" ? new EarlyCommitCore(storage, meta) : new SequencerCore(storage, meta)),
      makeDriver: (core, io) => (this.variant === "stale-reads" ? new StaleReadDriver(core, io, simRetention) : new SequencerDriver(core, io, simRetention)),
    });
    return lifecycle;
  }

  /** This object's clock is off the world's by this much (clock-skew): timestamps, leases, timers' bookkeeping. */
  skewMs = 0;

  private io(): DriverIO {
    const colocated = this.dir.config.colocated;
    return {
      nowMs: () => this.world.now + this.skewMs,
      setTimer: (ms, fn) => this.world.setTimer(ms, fn),
      link: (id) => this.link(id),
      directReplica: colocated && this.name === this.dir.config.group ? colocated : null,
      // Printed, not traced: the trace hash names the run whatever SIM_TRACE says.
      log: (_level: string, message: string) => {
        if (printDriverLog) console.error(`${this.world.now} log ${message}`);
      },
      provision: async (id) => {
        // Always a fresh replica: an id can come round again if an add was lost with the sequencer's storage.
        this.net.down.delete(id);
        this.replicas.set(id, new SimReplica(id, this.registryConfig, this.world, this.failures, this.variant));
      },
      // The directory: a durable write, refused from a sequencer it no longer names.
      recordMemberships: async (config) => {
        await this.directoryDelay();
        if (!this.dir.core.update(this.dir.incarnation, config)) throw new Error(`${this.name} is no longer in office`);
      },
      // The directory's list of quarantined replicas, from the sequencer it names only: a
      // successor's recovery keeps them quarantined.
      recordQuarantined: async (ids, stamps) => (await this.directoryDelay(), this.dir.core.setQuarantined(this.dir.incarnation, this.name, ids, stamps)),
      retire: (id) => this.retire(id),
      leftovers: async () => (await this.directoryDelay(), this.dir.core.retiring(this.dir.incarnation)),
      ...(this.world.sleepAfterMs === undefined ? {} : { sleepAfterMs: this.world.sleepAfterMs }),
      onSleep: (sinceMs, changed) => {
        if (!changed) return; // a start saying its state
        this.world.trace(`${this.name} ${sinceMs === null ? "woke" : "asleep"}`);
        if (sinceMs !== null) this.sleeps++;
      },
    };
  }

  /** Times it fell asleep (DriverIO.onSleep). */
  sleeps = 0;

  /** A move's hand-over (workers/groups.ts handOver): it stops and forgets everything. */
  handOver(): Promise<{ epoch: number }> {
    return this.lifecycle.handOver();
  }

  /** As the router's next request does (groups.ts, recover): a named sequencer without state recovers. */
  recoverIfIdle(): void {
    if (!this.driver && this.inOffice()) this.recover(this.lifecycle);
  }

  /** A replica's call (ReplicaDriver.wakeSequencer): ends a sleep, as the Durable Object's wake(). */
  wake(): void {
    this.lifecycle.driver?.wake();
  }

  /**
   * Destroys a removed replica over the network (bounded, as replicaDestroyTimeoutMs): one that
   * cannot be reached is not destroyed, the driver tries again, and the directory lists it until one
   * is (a successor's start destroys what is listed).
   */
  private async retire(id: string): Promise<void> {
    const r = this.replicas.get(id);
    if (r && !r.retired) {
      const here = isColocated(this.dir.config, id) && this.name === this.dir.config.group;
      // Destroyed where the call lands, as the object's storage is: an answer lost on the way back
      // leaves it destroyed and the call failed (the retry finds it so).
      const destroy = () => {
        if (r.retired) return;
        r.retired = true;
        r.crash();
        this.net.down.add(id);
        this.world.trace(`destroyed ${id}`);
      };
      if (here) destroy();
      else await withTimeout(this.world, rpc(this.world, this.net, this.node, id, "destroy", () => r.incarnation, destroy), replicaDestroyTimeoutMs, `the destroy of ${id}`).catch((err) => {
        if (!r.retired) throw err;
      });
    }
    await this.directoryDelay();
    this.dir.core.retired(this.dir.incarnation, id);
  }

  private link(id: string): ReplicaLink {
    const r = this.replicas.get(id)!;
    // The co-located replica of the object this sequencer lives in: a direct call, no network
    // (as in the Durable Object, where it shares the object's thread and storage commit).
    const here = isColocated(this.dir.config, id) && this.name === this.dir.config.group;
    const call = <T>(what: string, handle: () => T | Promise<T>): Promise<T> =>
      here ? Promise.resolve().then(handle) : rpc(this.world, this.net, this.node, id, what, () => r.incarnation, handle);
    // Every call crosses a copy, as a Durable Object RPC does (and the direct call's JSON).
    const transport: ReplicaTransport = (method, args) => {
      const copy = structuredClone(args);
      return call(callLabel(method, copy), () => r.serve(method, copy, () => this.transfers++)) as never;
    };
    // A deposed sequencer never makes a replica again (it would take its forgotten promise).
    // Deposed, it stops and wipes (SequencerLifecycle.resign), as the Durable Object does.
    return linkOver(transport, (rejoin) => {
      if (!rejoin || this.inOffice()) return call("init", () => r.init(rejoin));
      const config = this.lifecycle.core?.config;
      if (config) void this.lifecycle.resign(config);
      return Promise.reject(new Error(`${this.name} is not in office`));
    });
  }

  /** Replace one replica under load: add a new one, then remove an old one (the registry follows). */
  async replaceOne(pickOld: (ids: string[]) => string): Promise<string | null> {
    const d = this.driver;
    if (!d) return null;
    const added = await d.addReplica(null);
    if (!added.ok || this.driver !== d) return null;
    // Wait (bounded) for the new replica's vote before taking one away.
    for (let i = 0; i < 100 && !d.core.voterIds().includes(added.id!); i++) {
      await new Promise<void>((r) => this.world.setTimer(50, r));
    }
    if (this.driver !== d) return null;
    // As PROTOCOL.md says to replace one: the old one goes only once the new one votes. Removing
    // it anyway left two voters and no fault margin, which the fault budget (run.ts) now counts
    // but an operator following the procedure never does.
    if (!d.core.voterIds().includes(added.id!)) return null;
    const old = pickOld(d.core.replicaIds().filter((id) => id !== added.id));
    const removed = await d.removeReplica(old);
    return removed.ok ? `${added.id} for ${old}` : null;
  }

  submit(client: string, request: number, command: unknown): Promise<SubmitAnswer> {
    if (!this.driver) return Promise.resolve({ kind: "unavailable", message: "recovering" });
    return this.driver.submit(client, request, command);
  }

  submitBatch(client: string, items: { request: number; command: unknown }[]): Promise<SubmitAnswer[]> {
    if (!this.driver) return Promise.resolve(items.map(() => ({ kind: "unavailable", message: "recovering" }) as SubmitAnswer));
    return Promise.all(this.driver.submitBatch(client, items));
  }

  readIndex(): Promise<ReadIndexAnswer> {
    if (!this.driver) return Promise.resolve({ kind: "unavailable", message: "recovering" });
    return this.driver.readIndex();
  }

  /** As the Durable Object's: how long it has had no quorum; null when not serving. */
  quorumLostMs(): number | null {
    const d = this.driver;
    return d && !d.isStopped && !d.core.fenced ? d.quorumLostMs() : null;
  }

  /** Called periodically: commitSeq must never go backwards within one log (a recovery may re-learn it). */
  observe(): void {
    if (!this.driver) return;
    const c = this.driver.core.commitSeq;
    if (c < this.seenCommit) this.failures.add(`sequencer commitSeq went backwards ${this.seenCommit}->${c}`);
    this.seenCommit = Math.max(this.seenCommit, c);
  }

  crash(): void {
    this.lifecycle.stop();
    this.incarnation++;
  }

  /** The sequencer's storage is gone too: after restart it must recover from the replicas. */
  loseStorage(): void {
    this.storage = new ArchivingStorage(this.dir.archive, () => this.inOffice());
  }

  /** Every entry of the final log, from seq 1, compacted or not. */
  fullLog(): Entry[] {
    const last = this.driver?.core.lastLogSeq ?? 0;
    const out: Entry[] = [];
    for (let seq = 1; seq <= last; seq++) {
      const e = this.dir.archive.get(seq);
      if (!e) break;
      out.push(e);
    }
    return out;
  }

  restart(): void {
    // Only one incarnation runs: a restart ends the one running first, as a Durable Object reset would.
    this.lifecycle.stop();
    this.incarnation++;
    this.lifecycle = this.newLifecycle();
    if (this.storage.meta) {
      this.lifecycle.start(this.storage.meta);
      return;
    }
    this.recover(this.lifecycle);
  }

  /** A recovery of this lifecycle, and another try soon while not enough replicas answer. */
  private recover(lifecycle: SequencerLifecycle): void {
    this.recoveries++;
    void lifecycle.recover(this.registryConfig).then(
      (r) => {
        if (this.lifecycle !== lifecycle) return;
        if (r.ok) {
          this.seenCommit = 0;
          this.world.trace(`recovered epoch ${r.epoch}`);
        } else if (!r.deposed) {
          if (process.env.SIM_TRACE) console.error(`${this.world.now} recovery failed: ${r.reason}`);
          this.retryRecovery(lifecycle);
        }
      },
      (err) => (process.env.SIM_STACK && console.error(`${this.world.now} ${this.name} recovery threw`, err), this.failures.add(`sequencer recovery broke an invariant: ${(err as Error).message}`)),
    );
  }

  private retryRecovery(lifecycle: SequencerLifecycle): void {
    this.world.setTimer(500, () => this.lifecycle === lifecycle && !lifecycle.driver && this.recover(lifecycle));
  }
}

/** The trace's name for a call (the trace hash names a run). */
function callLabel(method: ReplicaMethod, args: unknown[]): string {
  switch (method) {
    case "append": {
      const m = args[0] as AppendRequest;
      return `append ${m.prevSeq}+${m.entries.length} c${m.commitSeq}`;
    }
    case "fence":
      return `fence ${args[0]}`;
    case "readLog":
      return `readLog ${args[0]}-${args[1]}`;
    case "auditInfo":
      return "audit";
    case "setQuarantined":
      return "quarantine";
    default:
      return method;
  }
}

/**
 * The group: its replicas, the directory, and every sequencer object it has had (a failover adds
 * one). The directory names the one in office; clients and the auditor go to it.
 */
export class SimGroup {
  readonly dir: SimDirectory;
  readonly sequencers = new Map<string, SimSequencer>();
  /** Failovers done, and PreVotes that said no. */
  readonly failovers: { atMs: number; to: string; downMs: number }[] = [];
  refusedFailovers = 0;
  /** Sequencer moves done (move-sequencer). */
  moves = 0;
  /** The clock skew of each sequencer object made from now on (clock-skew): drawn per object. */
  skewOf: (() => number) | null = null;

  addSequencer(name: string, node: string): SimSequencer {
    const s = new SimSequencer(name, node, this.dir, this.world, this.net, this.replicas, this.failures, this.variant, false, this.skewOf?.() ?? 0);
    this.sequencers.set(name, s);
    return s;
  }
  /** Failovers of a sequencer that answered but had no quorum (cutOffVote). */
  cutOffFailovers = 0;
  private failingOver = false;

  constructor(
    config: GroupConfig,
    readonly replicas: Map<string, SimReplica>,
    private readonly world: World,
    private readonly net: Network,
    private readonly failures: Failures,
    private readonly variant: Variant,
  ) {
    this.dir = new SimDirectory(config);
    world.wakeSequencer = (from) => {
      const s = this.current();
      void rpc(world, net, from, s.node, "wake", () => s.incarnation, () => s.wake()).catch(() => undefined);
    };
    this.sequencers.set(config.group, new SimSequencer(config.group, "seq", this.dir, world, net, replicas, failures, variant, true));
  }

  current(): SimSequencer {
    return this.sequencers.get(sequencerName(this.dir.config))!;
  }

  /**
   * A router (the client at `from`) could not reach the sequencer `failed`: the real PreVote
   * (shared/protocol/failover.ts) over the simulated network; if a quorum of voters lost it too,
   * the directory names a successor (compare-and-set), which recovers at a higher epoch.
   */
  async failover(from: string, failed: string, cutOffMs?: number): Promise<void> {
    if (this.failingOver || sequencerName(this.dir.config) !== failed) return;
    this.failingOver = true;
    try {
      const config = this.dir.config;
      const io: FailoverIO = {
        nowMs: () => this.world.now,
        setTimer: (ms, fn) => this.world.setTimer(ms, fn),
        vote: (id) => {
          const r = this.replicas.get(id);
          if (!r) return Promise.resolve(null);
          return rpc(this.world, this.net, from, id, "vote", () => r.incarnation, () => r.driver.vote());
        },
      };
      const old = this.sequencers.get(failed)!;
      // The router asks once (failover.ts says why); a lost answer costs it up to its call
      // timeout. The simulated network loses far more messages (the drop fault), so here the
      // question is asked again while unanswered, within 3 s: a difference of transport only.
      const ask = () => askAgain(this.world, () => rpc(this.world, this.net, from, old.node, "quorumLost", () => old.incarnation, () => old.quorumLostMs()));
      const d = await preVote(io, config, cutOffMs === undefined ? undefined : { lostMs: cutOffMs, ask });
      if (!d.go) {
        this.world.trace(`no failover${cutOffMs === undefined ? "" : ` (cut off ${cutOffMs} ms)`}: ${d.reason}`);
        this.refusedFailovers++;
        return;
      }
      if (this.dir.core.replaceSequencer(this.dir.incarnation, config.sequencer?.no ?? 0, { ...config, sequencer: d.next }, undefined, this.world.now) === null) return;
      this.failovers.push({ atMs: this.world.now, to: d.next.name, downMs: d.downMs });
      if (cutOffMs !== undefined) this.cutOffFailovers++;
      this.world.trace(`failover to ${d.next.name}`);
      if (d.next.location) this.net.location.set(`seq~s${d.next.no}`, d.next.location);
      this.addSequencer(d.next.name, `seq~s${d.next.no}`);
    } finally {
      this.failingOver = false;
    }
  }
}

/** Sequencer moves (workers/groups.ts move), done by a router at `from`: hand-over, compare-and-set, recovery. */
export async function moveSequencer(group: SimGroup, world: World, net: Network, from: string): Promise<string | null> {
  const config = group.dir.config;
  const old = group.current();
  // votersAnswering: a quorum of voters answers a position call.
  const voters = membersOf(config).filter((m) => m.voter).map((m) => m.id);
  const answers = await Promise.all(
    voters.map((id) => {
      const r = group.replicas.get(id);
      if (!r) return Promise.resolve(null);
      return withTimeout(world, rpc(world, net, from, id, "position", () => r.incarnation, () => r.driver.position()), replicaRpcTimeoutMs, "position").catch(() => null);
    }),
  );
  if (answers.filter((a) => a !== null).length < Math.floor(voters.length / 2) + 1) return null;
  const handed = await withTimeout(world, rpc(world, net, from, old.node, "handOver", () => old.incarnation, () => old.handOver()), handOverTimeoutMs, "handOver").then(
    () => true,
    () => false,
  );
  if (!handed) {
    // Its hand-over may have happened with the answer lost: the next request recovers it.
    world.setTimer(1_000, () => old.recoverIfIdle());
    return null;
  }
  const no = (config.sequencer?.no ?? 0) + 1;
  const next = { name: `${config.group}~s${no}`, location: null, no, movedAt: new Date(world.now).toISOString() };
  const stored = group.dir.core.replaceSequencer(group.dir.incarnation, config.sequencer?.no ?? 0, { ...config, sequencer: next }, { kind: "move", from: old.name, to: next.name, location: null, atMs: world.now }, world.now);
  if (stored === null) {
    // Changed meanwhile (a failover): the sequencer named recovers at the next request.
    world.setTimer(1_000, () => group.current().recoverIfIdle());
    return null;
  }
  group.moves++;
  world.trace(`move ${old.name} to ${next.name}`);
  group.addSequencer(next.name, `seq~s${no}`);
  return next.name;
}

export function makeGroup(config: GroupConfig, world: World, net: Network, failures: Failures, variant: Variant) {
  const replicas = new Map<string, SimReplica>();
  for (const id of replicaIds(config.replicas)) replicas.set(id, new SimReplica(id, config, world, failures, variant));
  const group = new SimGroup(config, replicas, world, net, failures, variant);
  return { replicas, group };
}
