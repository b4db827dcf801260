// Per-replica progress, as the sequencer tracks it (after etcd raft's tracker/): what each replica
// holds, what is in flight to it, whether it answers, votes, is quarantined or being rebuilt. Pure
// bookkeeping; the sequencer core decides what to send from it.
import { downAfterMisses, laggingEntriesMin, suspectAfterMisses } from "../limits.js";
import type { ReplicaStatus, ReplicaStatusName } from "../api/types.js";
import { zeroHash } from "./hash.js";
import { MajorityConfig } from "./quorum.js";

/**
 * What the sequencer last knew of a replica's contact and position when its group fell asleep
 * (SequencerMeta.contacts): an asleep group's object is evicted, and its next start (a status, a
 * scrape) knew nothing; with no heartbeats to count misses again, a replica down since before the
 * sleep showed `suspect` after that start's one miss, and no last contact (an operator's probe).
 */
export interface Contact {
  lastContactMs: number | null;
  misses: number;
  lastSeq: number;
  appliedSeq: number;
  digest: string;
}

/** A replica's size as an audit counted it (absent: unknown). */
export interface ReplicaSize {
  stateRows?: number;
  storageBytes?: number;
}

export interface Progress {
  id: string;
  location: string | null;
  /** Next seq to send; everything below is believed to be on the replica. */
  nextSeq: number;
  /** Highest seq known to match the sequencer's log on that replica. */
  matchSeq: number;
  /** The commitSeq the replica last acknowledged hearing. */
  heardCommitSeq: number;
  inflightToSeq: number | null;
  inflightCommitSeq: number;
  lastSeq: number;
  appliedSeq: number;
  digest: string;
  lastContactMs: number | null;
  misses: number;
  /** Heard from or missed since this tracker began (a start asks the others first: hearUnheard). */
  contacted: boolean;
  quarantined: boolean;
  /** A joining replica has no vote until it has caught up (then a promote entry makes it a voter). */
  voter: boolean;
  /** Seq of the config entry that added it (0 for founding members). */
  joinSeq: number;
  /** Its next entries were compacted away: only a state transfer can bring it back. */
  needsTransfer: boolean;
  repairing: boolean;
  /**
   * State transfers to it begun or ended, and releases from a quarantine (a generation): an answer
   * to a message sent before the last of them says nothing of what it holds now. A late heartbeat's answer marked a rebuilt
   * replica for another transfer, and an audit's answer from before a repair quarantined it again
   * (a review).
   */
  repairs: number;
  /** `repairs` when the append in flight to it was sent. */
  inflightRepairs: number;
  /**
   * It may hold a half-done state transfer (it said so, or one to it failed midway): it refuses
   * every fence until it is rebuilt, so it counts against the repairs at once (beginRepair).
   */
  rebuilding: boolean;
  /** State transfers it had installed in its last answer (ReplicaPosition.installs; undefined: no answer yet). */
  installs?: number;
  /** Quarantined: the install count the quarantine was decided at (SequencerMeta.quarantinedAt; undefined: unknown). */
  quarantineStamp?: number;
  /** From its last audit answer: its state's rows (last scrub pass) and its storage's bytes. */
  stateRows?: number;
  storageBytes?: number;
  /**
   * Its rows failed their last scrub: from its append answers (ReplicaMeta.scrubFailed, which it
   * keeps: a sequencer that restarted showed it healthy until the next audit, a day away for an
   * asleep group, a review) and from the audits (noteScrub).
   */
  scrubFailed?: boolean;
}

export class ProgressTracker {
  private readonly byId = new Map<string, Progress>();

  get(id: string): Progress | undefined {
    return this.byId.get(id);
  }

  all(): Progress[] {
    return [...this.byId.values()];
  }

  ids(): string[] {
    return [...this.byId.keys()];
  }

  add(id: string, location: string | null, voter: boolean, joinSeq: number, nextSeq: number, quarantined: boolean): Progress {
    const p: Progress = {
      id,
      location,
      nextSeq,
      matchSeq: 0,
      heardCommitSeq: 0,
      inflightToSeq: null,
      inflightCommitSeq: 0,
      lastSeq: 0,
      appliedSeq: 0,
      digest: zeroHash,
      lastContactMs: null,
      misses: 0,
      contacted: false,
      quarantined,
      voter,
      joinSeq,
      needsTransfer: false,
      repairing: false,
      repairs: 0,
      inflightRepairs: 0,
      rebuilding: false,
    };
    this.byId.set(id, p);
    return p;
  }

  remove(id: string): void {
    this.byId.delete(id);
  }

  /** The voting members (quarantined ones included: they are members that may not vote now). */
  voterIds(): string[] {
    return this.all().filter((p) => p.voter).map((p) => p.id);
  }

  votingConfig(): MajorityConfig {
    return new MajorityConfig(this.voterIds());
  }

  /**
   * Of a membership's voters (by id), those that may vote and answered lately, against how many
   * its quorum needs: whether it can commit now.
   */
  reachableOf(voterIds: string[]): { count: number; need: number } {
    const count = voterIds.filter((id) => {
      const p = this.byId.get(id);
      return p !== undefined && !p.quarantined && p.misses < downAfterMisses;
    }).length;
    return { count, need: new MajorityConfig(voterIds).need };
  }

  /** Voters that may vote now (not quarantined). */
  activeVoters(): Progress[] {
    return this.all().filter((p) => p.voter && !p.quarantined);
  }

  quarantinedIds(): string[] {
    return this.all().filter((p) => p.quarantined).map((p) => p.id);
  }

  /** A contact outside the append path (audit, read, init): failure detection and position. */
  noteContact(id: string, ok: boolean, nowMs: number, position?: { lastSeq: number; appliedSeq: number; digest: string; installs?: number }): void {
    const p = this.byId.get(id);
    if (!p) return;
    p.contacted = true;
    if (!ok) {
      p.misses++;
      return;
    }
    p.misses = 0;
    p.lastContactMs = nowMs;
    if (position) {
      p.lastSeq = Math.max(p.lastSeq, position.lastSeq);
      p.appliedSeq = Math.max(p.appliedSeq, position.appliedSeq);
      p.digest = position.digest;
      p.installs = position.installs ?? 0;
    }
  }

  /**
   * What an audit answer said of the replica's size: absent is unknown from now on, not the last
   * figure (a rebuilt or restarted replica has no finished scrub pass yet: its old count stayed
   * shown, a review).
   */
  noteSize(id: string, size: ReplicaSize): void {
    const p = this.byId.get(id);
    if (!p) return;
    p.stateRows = size.stateRows;
    // A size an append's answer gave stays when the audit has none (a rebuilding replica's): the
    // storage quota reads it (a review: it was cleared).
    p.storageBytes = size.storageBytes ?? p.storageBytes;
  }

  statusOf(p: Progress, lastSeq: number, commitSeq: number): ReplicaStatusName {
    // A replica still joining that is brought in by a state transfer (the log it would need was
    // compacted) is joining, not being repaired: nothing of it was ever a member's.
    if (p.repairing) return p.voter ? "repairing" : "joining";
    if (p.quarantined) return "quarantined";
    if (p.misses >= downAfterMisses) return "down";
    if (p.misses >= suspectAfterMisses) return "suspect";
    if (!p.voter) return "joining";
    // Not heard from since this sequencer started (its position is unknown, e.g. right after a
    // restart), or far behind: lagging, never "healthy" with a stale appliedSeq.
    // Nor one not asked since this start, whatever it said before the group slept (its restored
    // last contact made a replica that hangs show healthy until its miss came, 3 s later: a review).
    if (p.needsTransfer || !p.contacted || p.lastContactMs === null) return "lagging";
    if (lastSeq - p.lastSeq >= laggingEntriesMin || commitSeq - p.appliedSeq >= laggingEntriesMin) return "lagging";
    return "healthy";
  }

  statuses(lastSeq: number, commitSeq: number): ReplicaStatus[] {
    return this.all().map((p) => this.statusReport(p, this.statusOf(p, lastSeq, commitSeq)));
  }

  /** One replica's report; `damaged` only beside a status that serves (a quarantined or repairing one is not). */
  private statusReport(p: Progress, status: ReplicaStatusName): ReplicaStatus {
    return {
      id: p.id,
      location: p.location,
      status,
      lastSeq: p.lastSeq,
      appliedSeq: p.appliedSeq,
      digest: p.digest,
      lastContact: p.lastContactMs === null ? null : new Date(p.lastContactMs).toISOString(),
      ...(p.stateRows !== undefined ? { stateRows: p.stateRows } : {}),
      ...(p.storageBytes !== undefined ? { storageBytes: p.storageBytes } : {}),
      ...(p.scrubFailed && status !== "quarantined" && status !== "repairing" ? { damaged: true as const } : {}),
    };
  }

  /** A scrub's word on its rows (an audit's, a rebuild's, a release's), until its next answer says its own. */
  noteScrub(id: string, failed: boolean): void {
    const p = this.byId.get(id);
    if (p) p.scrubFailed = failed;
  }

  /** Replicas neither heard from nor missed since this tracker began (a restarted sequencer's). */
  unheardIds(): string[] {
    return this.all().filter((p) => !p.contacted && !p.repairing).map((p) => p.id);
  }

  /** Replicas heard from, or missed, since this tracker began, but not answered since `sinceMs`. */
  unheardSince(sinceMs: number): string[] {
    return this.all().filter((p) => p.contacted && !p.repairing && (p.lastContactMs ?? 0) < sinceMs).map((p) => p.id);
  }

  /** Each member's contact and position, to be kept while the group sleeps. */
  contacts(): Record<string, Contact> {
    return Object.fromEntries(this.all().map((p) => [p.id, { lastContactMs: p.lastContactMs, misses: p.misses, lastSeq: p.lastSeq, appliedSeq: p.appliedSeq, digest: p.digest }]));
  }

  /** A start of an asleep group's sequencer: what it knew at the sleep, until each replica is asked again (contacted stays false). */
  restoreContacts(contacts: Record<string, Contact>): void {
    for (const [id, c] of Object.entries(contacts)) {
      const p = this.byId.get(id);
      if (!p) continue;
      Object.assign(p, { lastContactMs: c.lastContactMs, misses: c.misses, lastSeq: c.lastSeq, appliedSeq: c.appliedSeq, digest: c.digest });
    }
  }

  /** Replicas without a vote until they are rebuilt: quarantined, or left halfway through a rebuild. */
  awaitingRebuild(): string[] {
    return this.all().filter((p) => p.quarantined || p.rebuilding).map((p) => p.id);
  }

  /** Replicas that need a state transfer: quarantined, or behind the compacted log. */
  transferCandidates(): string[] {
    return this.all().filter((p) => !p.repairing && (p.quarantined || p.needsTransfer)).map((p) => p.id);
  }

  /** Replicas to try for a read (or to copy from), best first: voting, reachable, most applied. */
  readCandidates(): string[] {
    return this.all()
      .filter((p) => p.voter && !p.quarantined && !p.repairing)
      .sort((a, b) => a.misses - b.misses || b.appliedSeq - a.appliedSeq)
      .map((p) => p.id);
  }

  /** Replicas compaction must wait for: reachable, not quarantined, not being rebuilt. */
  healthy(): Progress[] {
    return this.all().filter((p) => !p.quarantined && !p.repairing && p.misses < downAfterMisses);
  }
}
