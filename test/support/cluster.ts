import { machineFor } from "../../shared/machines/index.js";
// A synchronous in-memory group: the real SequencerCore and ReplicaCores over memory storage,
// with messages delivered by hand. The unit tests drive it step by step.
import { MemoryReplicaStorage, MemorySequencerStorage } from "../../shared/protocol/memory.js";
import { ReplicaCore, newReplicaMeta } from "../../shared/protocol/replica.js";
import { SequencerCore, type SubmitDecision } from "../../shared/protocol/sequencer.js";
import type { Decision } from "../../shared/protocol/votes.js";
import type { AppendRequest, AppendResponse, GroupConfig } from "../../shared/protocol/types.js";
import type { MachineName, OutputsMode } from "../../shared/api/types.js";
import { replicaIds } from "../../shared/protocol/types.js";

export class Cluster {
  seqStore = new MemorySequencerStorage();
  sequencer: SequencerCore;
  replicaStores = new Map<string, MemoryReplicaStorage>();
  replicas = new Map<string, ReplicaCore>();
  /** Replicas whose messages are lost (both ways). */
  down = new Set<string>();
  decided: Decision[] = [];
  diverged: string[] = [];
  nowMs = 0;

  constructor(
    readonly config: GroupConfig,
  ) {
    const meta = { config, epoch: 1, commitSeq: 0, quarantined: [] };
    this.seqStore.saveMeta(meta);
    this.sequencer = new SequencerCore(this.seqStore, meta);
    for (const id of replicaIds(config.replicas)) {
      const store = new MemoryReplicaStorage();
      const meta = newReplicaMeta(config.group, id, config.machine, config.checkpointEvery);
      store.saveMeta(meta);
      this.replicaStores.set(id, store);
      this.replicas.set(id, new ReplicaCore(store, meta, machineFor(meta.machine)));
    }
  }

  static of(machine: MachineName, replicas = 3, outputs: OutputsMode = "first", checkpointEvery = 4): Cluster {
    return new Cluster({ group: "g", incarnation: 0, machine, replicas, locations: [], outputs, checkpointEvery });
  }

  submit(client: string, request: number, command: unknown): SubmitDecision {
    return this.sequencer.submit({ client, request, command });
  }

  /** Sends one round: flush, then one append to every replica that has something to learn. */
  round(): void {
    this.nowMs += 10;
    this.sequencer.flush(new Date(this.nowMs).toISOString());
    const sent: [string, AppendRequest][] = [];
    for (const id of this.sequencer.replicaIds()) {
      const msg = this.messageFor(id);
      if (msg) sent.push([id, msg]);
    }
    for (const [id, msg] of sent) this.deliver(id, msg);
  }

  /** The next message to a replica, or null (nothing to send, or only a state transfer would help). */
  messageFor(id: string, holdable = false): AppendRequest | null {
    const d = this.sequencer.nextAppend(id, holdable);
    return d.kind === "send" ? d.msg : null;
  }

  deliver(id: string, msg: AppendRequest): AppendResponse | null {
    if (this.down.has(id)) {
      this.sequencer.onAppendFailure(id);
      return null;
    }
    const resp = this.replicas.get(id)!.append(msg);
    const step = this.sequencer.onAppendResponse(id, resp, this.nowMs);
    this.decided.push(...step.decided);
    for (const d of step.diverged) {
      this.diverged.push(d);
      this.sequencer.setQuarantined(d, true);
    }
    return resp;
  }

  /** Rounds until nothing is left to send (bounded). */
  settle(roundsMax = 50): void {
    for (let i = 0; i < roundsMax; i++) {
      this.round();
      const busy = this.sequencer.replicaIds().some((id) => !this.down.has(id) && this.pendingFor(id));
      if (!busy && this.sequencer.pendingCount === 0) return;
    }
  }

  private pendingFor(id: string): boolean {
    const r = this.replicas.get(id)!;
    return r.appliedSeq < this.sequencer.commitSeq || r.position().lastSeq < this.sequencer.lastLogSeq;
  }

  /** The sequencer loses its memory; its storage survives. */
  restartSequencer(): void {
    this.sequencer = new SequencerCore(this.seqStore, this.seqStore.meta!);
  }

  /** A replica loses its memory; its storage survives. */
  restartReplica(id: string): void {
    const store = this.replicaStores.get(id)!;
    this.replicas.set(id, new ReplicaCore(store, store.meta!, machineFor(store.meta!.machine)));
  }

  outcome(seq: number) {
    return this.decided.find((d) => d.seq === seq)?.outcome;
  }
}
