import { appendEntriesMax, checkpointsKeptMax, scrubPageRows } from "../limits.js";
import { machineFor } from "../machines/index.js";
import type { RowStore, StateMachine } from "../machines/types.js";
import { assert } from "./assert.js";
import { entryHash } from "./entry.js";
import { zeroHash } from "./hash.js";
import { DigestedState, applyEntry, lookupSession, recomputeDigest } from "./state.js";
import type {
  AppendRequest,
  AppendResponse,
  AppliedOutput,
  AuditInfo,
  Checkpoint,
  Entry,
  FenceReply,
  MachineName,
  ReplicaPosition,
} from "./types.js";

export interface ReplicaMeta {
  group: string;
  id: string;
  machine: MachineName;
  checkpointEvery: number;
  epoch: number;
  lastSeq: number;
  lastHash: string;
  commitSeq: number;
  appliedSeq: number;
  digest: string;
  quarantined: boolean;
}

/**
 * Everything a replica persists, behind a narrow synchronous interface: SQLite in the Durable
 * Object, maps in the simulator. `transaction` must be all-or-nothing.
 */
export interface ReplicaStorage {
  transaction<T>(fn: () => T): T;
  readonly rows: RowStore;
  /** Inserts entries, replacing any at the same seq. */
  appendEntries(entries: Entry[]): void;
  truncateFrom(seq: number): void;
  entryHash(seq: number): string | null;
  readEntries(fromSeq: number, toSeq: number): Entry[];
  saveMeta(meta: ReplicaMeta): void;
  addCheckpoint(checkpoint: Checkpoint, keepMax: number): void;
  checkpoints(): Checkpoint[];
}

export function newReplicaMeta(group: string, id: string, machine: MachineName, checkpointEvery: number): ReplicaMeta {
  return {
    group,
    id,
    machine,
    checkpointEvery,
    epoch: 0,
    lastSeq: 0,
    lastHash: zeroHash,
    commitSeq: 0,
    appliedSeq: 0,
    digest: zeroHash,
    quarantined: false,
  };
}

/**
 * The replica's side of the protocol: accept appends in order, persist them, and apply what is
 * committed, all in one transaction per step.
 */
export class ReplicaCore {
  private meta: ReplicaMeta;
  private state: DigestedState;
  private readonly machine: StateMachine;

  constructor(
    private readonly storage: ReplicaStorage,
    meta: ReplicaMeta,
  ) {
    this.meta = { ...meta };
    this.state = new DigestedState(storage.rows, meta.digest);
    this.machine = machineFor(meta.machine);
  }

  get id(): string {
    return this.meta.id;
  }
  get appliedSeq(): number {
    return this.meta.appliedSeq;
  }
  get quarantined(): boolean {
    return this.meta.quarantined;
  }
  get config(): Readonly<ReplicaMeta> {
    return this.meta;
  }

  position(): ReplicaPosition {
    const { epoch, lastSeq, commitSeq, appliedSeq, digest } = this.meta;
    return { epoch, lastSeq, commitSeq, appliedSeq, digest };
  }

  append(req: AppendRequest): AppendResponse {
    const m = this.meta;
    if (req.epoch < m.epoch) return { ok: false, reason: "stale_epoch", ...this.position() };
    if (req.prevSeq > m.lastSeq) return { ok: false, reason: "gap", ...this.position() };
    const prevHash = req.prevSeq === 0 ? zeroHash : this.storage.entryHash(req.prevSeq);
    if (prevHash !== req.prevHash) return { ok: false, reason: "mismatch", ...this.position() };

    try {
      const resp = this.storage.transaction(() => this.step(req));
      this.state.endStep();
      return resp;
    } catch (err) {
      // The transaction rolled back; drop in-memory state that may have moved with it.
      this.state = new DigestedState(this.storage.rows, this.meta.digest);
      throw err;
    }
  }

  private step(req: AppendRequest): AppendResponse {
    const next: ReplicaMeta = { ...this.meta, epoch: req.epoch };
    const fresh = new Map<number, Entry>();
    let prevHash = req.prevHash;
    const toAppend: Entry[] = [];
    for (let i = 0; i < req.entries.length; i++) {
      const e = req.entries[i]!;
      assert(e.seq === req.prevSeq + 1 + i, `append entries not consecutive at ${e.seq}`);
      assert(e.hash === entryHash(prevHash, e), `entry ${e.seq} does not chain to its predecessor`);
      prevHash = e.hash;
      fresh.set(e.seq, e);
      if (e.seq <= next.lastSeq) {
        const have = this.storage.entryHash(e.seq);
        if (have === e.hash) continue;
        // A suffix written under an older epoch that the new sequencer does not hold: drop it.
        assert(e.seq > next.appliedSeq, `conflicting entry ${e.seq} at or below appliedSeq ${next.appliedSeq}`);
        this.storage.truncateFrom(e.seq);
        next.lastSeq = e.seq - 1;
      }
      toAppend.push(e);
      next.lastSeq = e.seq;
      next.lastHash = e.hash;
    }
    if (toAppend.length > 0) this.storage.appendEntries(toAppend);

    // Only what this message vouched for can be taken as committed (raft's min(leaderCommit, last new)).
    const vouchedSeq = req.prevSeq + req.entries.length;
    next.commitSeq = Math.max(next.commitSeq, Math.min(req.commitSeq, vouchedSeq));
    const outputs: AppliedOutput[] = [];
    if (next.commitSeq > next.appliedSeq) {
      const missing = next.appliedSeq + 1 < req.prevSeq + 1 ? this.storage.readEntries(next.appliedSeq + 1, req.prevSeq) : [];
      for (const e of missing) fresh.set(e.seq, e);
      for (let seq = next.appliedSeq + 1; seq <= next.commitSeq; seq++) {
        const e = fresh.get(seq);
        assert(e !== undefined, `committed entry ${seq} missing from the log`);
        outputs.push(applyEntry(this.state, this.machine, e));
        next.appliedSeq = seq;
        if (seq % next.checkpointEvery === 0) {
          this.storage.addCheckpoint({ seq, digest: this.state.digest, logHash: e.hash }, checkpointsKeptMax);
        }
      }
    }
    next.digest = this.state.digest;
    this.storage.saveMeta(next);
    this.meta = next;
    return { ok: true, outputs, ...this.position() };
  }

  /**
   * A recovering sequencer's fence: from now on appends from a lower epoch are refused. Accepted
   * only for an epoch higher than any seen, like a ballot, so two recoveries cannot share one.
   */
  fence(epoch: number): FenceReply {
    const accepted = epoch > this.meta.epoch;
    if (accepted) {
      const next = { ...this.meta, epoch };
      this.storage.saveMeta(next);
      this.meta = next;
    }
    const last = this.meta.lastSeq > 0 ? this.storage.readEntries(this.meta.lastSeq, this.meta.lastSeq)[0] : undefined;
    const { lastSeq, commitSeq, appliedSeq } = this.meta;
    return { accepted, epoch: this.meta.epoch, lastSeq, lastEpoch: last?.epoch ?? 0, commitSeq, appliedSeq };
  }

  /** A page of this replica's log, for a sequencer rebuilding its own. */
  readLog(fromSeq: number, toSeq: number): Entry[] {
    return this.storage.readEntries(fromSeq, Math.min(toSeq, fromSeq + appendEntriesMax - 1, this.meta.lastSeq));
  }

  query(q: unknown): unknown {
    return this.machine.query(this.state.machineView(), q);
  }

  session(client: string, request: number) {
    return lookupSession(this.state, client, request);
  }

  setQuarantined(quarantined: boolean): void {
    if (this.meta.quarantined === quarantined) return;
    const next = { ...this.meta, quarantined };
    this.storage.saveMeta(next);
    this.meta = next;
  }

  auditInfo(): AuditInfo {
    const scrubbed = recomputeDigest(this.storage.rows, scrubPageRows);
    return {
      ...this.position(),
      quarantined: this.meta.quarantined,
      // The current position counts as a checkpoint too: replicas that stand at the same seq
      // (an idle group) are compared there, not only at the last periodic checkpoint.
      checkpoints: dedupeBySeq([
        { seq: 0, digest: zeroHash, logHash: zeroHash },
        ...this.storage.checkpoints(),
        { seq: this.meta.appliedSeq, digest: this.meta.digest, logHash: this.storage.entryHash(this.meta.appliedSeq) ?? zeroHash },
      ]),
      scrub: { recordedDigest: this.meta.digest, actualDigest: scrubbed.digest, rows: scrubbed.rows },
    };
  }
}

function dedupeBySeq(checkpoints: Checkpoint[]): Checkpoint[] {
  const bySeq = new Map<number, Checkpoint>();
  for (const cp of checkpoints) bySeq.set(cp.seq, cp);
  return [...bySeq.values()].sort((a, b) => a.seq - b.seq);
}
