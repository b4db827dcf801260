// A group's control-plane record, as its directory object keeps it: pure logic over a small
// synchronous store (SQLite in the Durable Object, a map in tests).
import { auditHistoryMax, eventHistoryMax, groupTokensMax } from "../limits.js";
import type { GroupConfig } from "../protocol/types.js";
import type { AuditReport } from "../api/types.js";
import { creationConfig, membersOf, sequencerName } from "../protocol/types.js";

/**
 * creating: the record exists, its objects may not all be initialized yet (a PUT that died midway
 * is finished by the next lookup); ready: serving; deleting: its objects are being destroyed (a
 * DELETE that died midway is finished by the next lookup or the cron).
 */
export type GroupState = "creating" | "ready" | "deleting";

export interface GroupRecord {
  /** The config, with `incarnation` and the current membership and sequencer. */
  config: GroupConfig;
  state: GroupState;
  created: string;
  /** The last sequencer change, until the new sequencer's recovery event keeps its event. */
  change?: SequencerChange;
}

/**
 * A move or a failover, recorded by the compare-and-set that makes it (replaceSequencer). Its
 * event needs the new epoch and, for a failover, how long the group was down: both known at the
 * new sequencer's recovery, whose event then keeps it (addEvent). The router wrote it after the
 * recovery before: a server killed between the two left a move in force with no `move` event (a
 * probe), and a failover uncounted.
 */
export interface SequencerChange {
  kind: "move" | "failover";
  from: string;
  to: string;
  /** A move's location hint. */
  location?: string | null;
  /** A failover's cause, and how long the old sequencer had been unreachable at the change. */
  cause?: string;
  downMs?: number;
  atMs: number;
}

/**
 * The event of a sequencer change, once the new sequencer recovered at `epoch` (at time `at`);
 * epoch null: its recovery was never reported (the event is kept when the next change replaces it).
 */
export function changeEvent(change: SequencerChange, epoch: number | null, at: string): GroupEvent {
  const { from, to } = change;
  const when = epoch === null ? "; its recovery was not recorded" : ` at epoch ${epoch}`;
  if (change.kind === "move") {
    const location = change.location ?? null;
    return { at, kind: "move", epoch: epoch ?? 0, message: `sequencer ${from} moved to ${to}${location ? ` (${location})` : ""}${when}`, from, to, location };
  }
  // Down until the recovery, if known; else what the router had seen.
  const downMs = (change.downMs ?? 0) + (epoch === null ? 0 : Math.max(0, Date.parse(at) - change.atMs));
  return { at, kind: "failover", epoch: epoch ?? 0, message: `sequencer ${from} replaced by ${to}${when}`, cause: change.cause ?? "", from, to, downMs };
}

import type { EventAction, GroupEvent } from "../api/types.js";
export type { GroupEvent };

/**
 * The kinds events were kept under before only API.md's were written (an `action` says it now):
 * a history kept by an older version still holds them, and GET /events answered them as they were.
 */
const legacyKinds: Record<string, { kind: GroupEvent["kind"]; action: EventAction }> = {
  release: { kind: "quarantine", action: "release" },
  alarm: { kind: "quarantine", action: "alarm" },
  rejoin: { kind: "quarantine", action: "rejoin" },
  restore: { kind: "recovery", action: "restore" },
};

/** An event as the API lists it: a kept one of a legacy kind under its listed kind and action. */
function asListedKind(event: GroupEvent): GroupEvent {
  const legacy = Object.hasOwn(legacyKinds, event.kind) ? legacyKinds[event.kind] : undefined;
  return legacy ? { ...event, ...legacy } : event;
}

/** A group token as the directory keeps it: the secret only hashed. */
export interface TokenRecord {
  id: string;
  scope: "read" | "write";
  name: string | null;
  created: string;
  /** sha256 (hex) of the secret. */
  hash: string;
}

export type AuditVerdict = AuditReport["verdict"];

/**
 * Counts that outlive the bounded histories (for GET /v1/metrics): failover events and audit
 * reports kept for the current incarnation. A deletion resets them with the record.
 */
export interface GroupCounters {
  failovers: number;
  audits: Record<AuditVerdict, number>;
  /**
   * When the last report of each verdict was made (ISO time; absent: none yet): an operator's
   * alert on groups not found consistent for N minutes needs a time, not a count that stands still.
   */
  lastAudits: Partial<Record<AuditVerdict, string>>;
}

const noCounters = (): GroupCounters => ({ failovers: 0, audits: { consistent: 0, diverged: 0, insufficient: 0 }, lastAudits: {} });

export interface DirectoryStore {
  get(key: string): any;
  put(key: string, value: unknown): void;
  delete(key: string): void;
  list(prefix: string): [string, any][];
  append(kind: string, body: unknown, keepMax: number): void;
  recent(kind: string, limit: number): any[];
  clearHistory(): void;
  transaction<T>(fn: () => T): T;
}

export type CreateResult =
  | { kind: "created" | "resume" | "exists"; record: GroupRecord }
  | { kind: "conflict" | "deleting"; record: GroupRecord };

const same = (a: GroupConfig, b: GroupConfig) => JSON.stringify(creationConfig(a)) === JSON.stringify(creationConfig(b));

export class DirectoryCore {
  constructor(private readonly store: DirectoryStore) {}

  get(): GroupRecord | null {
    return this.store.get("record");
  }

  /** A new record at the next incarnation, or what stands already (the caller resumes a creation, finishes a deletion, or answers 200/409). */
  create(config: GroupConfig, nowIso: string): CreateResult {
    return this.store.transaction(() => {
      const rec = this.get();
      if (rec) {
        if (rec.state === "deleting") return { kind: "deleting", record: rec };
        if (!same(rec.config, config)) return { kind: "conflict", record: rec };
        return { kind: rec.state === "ready" ? "exists" : "resume", record: rec };
      }
      const incarnation = (this.store.get("incarnation") ?? 0) + 1;
      const record: GroupRecord = { config: { ...config, incarnation }, state: "creating", created: nowIso };
      this.store.put("incarnation", incarnation);
      this.store.put("record", record);
      return { kind: "created", record };
    });
  }

  /**
   * Moves the record of that incarnation to a state; "deleted" removes it (the incarnation counter
   * stays). "ready" only finishes a creation: a record already "deleting" stays so. A PUT whose
   * registry call was slow used to mark "ready" a group whose DELETE had begun meanwhile and
   * stopped at an unreachable replica: its sequencer destroyed, its record "ready", every command
   * refused for good, and no request (nor the cron) finishing the delete, since none was due.
   */
  setState(incarnation: number, state: GroupState | "deleted"): boolean {
    return this.store.transaction(() => {
      const rec = this.get();
      if (!rec || rec.config.incarnation !== incarnation) return false;
      if (state === "ready" && rec.state === "deleting") return false;
      if (state === "deleted") {
        this.store.delete("record");
        this.store.delete("counters");
        this.store.delete("retiring");
        this.store.clearHistory();
        for (const [k] of this.store.list("token/")) this.store.delete(k);
      } else {
        this.store.put("record", { ...rec, state });
      }
      return true;
    });
  }

  /**
   * The config after a membership change, from the sequencer in office: refused for another
   * incarnation, and from a sequencer the record no longer names (a deposed one's late write must
   * not undo a failover). The sequencer itself changes only by replaceSequencer.
   */
  update(incarnation: number, config: GroupConfig): boolean {
    const rec = this.get();
    if (!rec || rec.config.incarnation !== incarnation || config.incarnation !== incarnation || rec.state === "deleting") return false;
    if (sequencerName(config) !== sequencerName(rec.config)) return false;
    // The quarantine list is written by setQuarantined only.
    const { quarantined: _ignored, quarantinedAt: _ignoredAt, ...membership } = config;
    const { quarantined, quarantinedAt } = rec.config;
    this.store.put("record", { ...rec, config: { ...membership, sequencer: rec.config.sequencer, ...(quarantined ? { quarantined } : {}), ...(quarantinedAt ? { quarantinedAt } : {}) } });
    this.noteRetiring(rec.config, config);
    return true;
  }

  /**
   * Members a recorded membership (or a change's write-ahead) no longer names: their storage is to
   * be destroyed, and they stay listed here until their sequencer says it was (retired). A
   * sequencer kept the list in memory only: a move or a failover before a destroy that had failed
   * (the replica unreachable) left that replica's whole state for good (a probe: five such after a
   * chaos run). Each sequencer's start destroys what is listed (SequencerDriver.settleStart).
   * Only members: a removed member's id is never given again, but an add refused after its
   * write-ahead leaves its id to the next add (a review: listed, the next add's replica would have
   * been destroyed), so an id named again leaves the list too.
   */
  private noteRetiring(before: GroupConfig, after: GroupConfig): void {
    const named = new Set([...membersOf(after), ...(after.inFlight ?? []).flat()].map((m) => m.id));
    // The membership in force before: a change's write-ahead holds [in force, next] in flight.
    // A write-ahead counts too (its in force is the log's committed membership): a removal whose
    // final record failed, followed at once by another change, was never listed (a review).
    const inForce = before.inFlight?.[0] ?? membersOf(before);
    const gone = inForce.map((m) => m.id).filter((id) => !named.has(id));
    const listed = this.retiring(after.incarnation);
    const ids = [...new Set([...listed, ...gone])].filter((id) => !named.has(id));
    if (ids.length === listed.length && ids.every((id, i) => id === listed[i])) return;
    if (ids.length === 0) this.store.delete("retiring");
    else this.store.put("retiring", { incarnation: after.incarnation, ids });
  }

  /** The removed replicas of this incarnation whose storage is not known to be destroyed. */
  retiring(incarnation: number): string[] {
    const r = this.store.get("retiring") as { incarnation: number; ids: string[] } | null;
    return r && r.incarnation === incarnation ? r.ids : [];
  }

  /** A removed replica's storage was destroyed: no longer listed. */
  retired(incarnation: number, id: string): void {
    const ids = this.retiring(incarnation).filter((x) => x !== id);
    if (ids.length === 0) this.store.delete("retiring");
    else this.store.put("retiring", { incarnation, ids });
  }

  /**
   * The replicas the sequencer holds quarantined (empty: none), for a successor to keep so. Only
   * from the sequencer the record names: a deposed one's late list would overwrite its successor's.
   */
  setQuarantined(incarnation: number, sequencer: string, ids: string[], stamps: Record<string, number> = {}): boolean {
    const rec = this.get();
    if (!rec || rec.config.incarnation !== incarnation || rec.state === "deleting") return false;
    if (sequencerName(rec.config) !== sequencer) return false;
    const { quarantined: _old, quarantinedAt: _oldAt, ...config } = rec.config;
    const at = Object.fromEntries(ids.filter((id) => stamps[id] !== undefined).map((id) => [id, stamps[id]!]));
    const listed = ids.length > 0 ? { quarantined: [...ids], ...(Object.keys(at).length > 0 ? { quarantinedAt: at } : {}) } : {};
    this.store.put("record", { ...rec, config: { ...config, ...listed } });
    return true;
  }

  /**
   * A failover's compare-and-set: names the new sequencer only if the record still names the one
   * that failed (two routers failing over at once agree on one successor). Returns the config as
   * stored (null: refused), which the successor recovers with: the membership may have changed
   * since the caller read it (the old sequencer, still named during a PreVote of seconds, can
   * write a change ahead), and a recovery fencing an older membership could misjudge the old
   * sequencer's lease (recovery.ts, oldLeaseEndMs).
   */
  replaceSequencer(incarnation: number, expectedNo: number, config: GroupConfig, change?: SequencerChange, nowMs = Date.now()): GroupConfig | null {
    return this.store.transaction(() => {
      const rec = this.get();
      if (!rec || rec.config.incarnation !== incarnation || rec.state === "deleting") return null;
      if ((rec.config.sequencer?.no ?? 0) !== expectedNo) return null;
      // A change whose sequencer never reported its recovery is kept now, its epoch unknown (0).
      if (rec.change) this.keepEvent(incarnation, changeEvent(rec.change, null, new Date(nowMs).toISOString()));
      const stored = { ...rec.config, sequencer: config.sequencer };
      const { change: _settled, ...rest } = rec;
      this.store.put("record", { ...rest, config: stored, ...(change ? { change } : {}) });
      return stored;
    });
  }

  /**
   * Keeps an event; a sequencer's recovery event is followed by the event of the change that named
   * it (SequencerChange), which is done only then (listed newest first, it comes before).
   */
  addEvent(incarnation: number, event: GroupEvent): boolean {
    return this.store.transaction(() => {
      if (!this.keepEvent(incarnation, event)) return false;
      // Not the sequencer's first recovery (after a fencing, a restore cut by a restart, its
      // storage lost): the change's own recovery went unreported, its epoch unknown.
      if (event.kind === "recovery" && typeof event.sequencer === "string") this.settle(incarnation, event.sequencer, event.again === true ? null : event.epoch, event.at);
      return true;
    });
  }

  /**
   * Keeps the event of the change that named `to`, which recovered at `epoch` (at time `at`), if
   * it is still to be kept: the router that made the change asks after the recovery it awaited,
   * in case the sequencer's own recovery event was not kept. Idempotent.
   */
  settleChange(incarnation: number, to: string, epoch: number, at: string): boolean {
    return this.store.transaction(() => this.settle(incarnation, to, epoch, at));
  }

  private settle(incarnation: number, to: string, epoch: number | null, at: string): boolean {
    const rec = this.get();
    const change = rec?.change;
    if (!rec || !change || change.to !== to || rec.config.incarnation !== incarnation) return false;
    const { change: _settled, ...rest } = rec;
    this.store.put("record", rest);
    this.keepEvent(incarnation, changeEvent(change, epoch, at));
    return true;
  }

  private keepEvent(incarnation: number, event: GroupEvent): boolean {
    if (!this.keep(incarnation, "event", event, eventHistoryMax)) return false;
    if (event.kind === "failover") this.count((c) => c.failovers++);
    return true;
  }

  events(limit: number): GroupEvent[] {
    return this.store.recent("event", limit).map(asListedKind);
  }

  /** Keeps the report; `previous` is the verdict of the audit before it (null if none), so the caller can tell a change. */
  addAudit(incarnation: number, report: AuditReport): { kept: boolean; previous: AuditVerdict | null } {
    return this.store.transaction(() => {
      const previous: AuditVerdict | null = this.store.recent("audit", 1)[0]?.verdict ?? null;
      if (!this.keep(incarnation, "audit", report, auditHistoryMax)) return { kept: false, previous };
      this.count((c) => {
        c.audits[report.verdict]++;
        c.lastAudits[report.verdict] = report.at;
      });
      return { kept: true, previous };
    });
  }

  counters(): GroupCounters {
    const kept: Partial<GroupCounters> | null = this.store.get("counters");
    const zero = noCounters();
    return { failovers: kept?.failovers ?? 0, audits: { ...zero.audits, ...kept?.audits }, lastAudits: { ...kept?.lastAudits } };
  }

  private count(change: (c: GroupCounters) => void): void {
    const c = this.counters();
    change(c);
    this.store.put("counters", c);
  }

  /** Appends to a bounded history of the current incarnation (a late write of a deleted one is dropped). */
  private keep(incarnation: number, kind: string, body: unknown, keepMax: number): boolean {
    if (this.get()?.config.incarnation !== incarnation) return false;
    this.store.append(kind, body, keepMax);
    return true;
  }

  audits(limit: number): AuditReport[] {
    return this.store.recent("audit", limit);
  }

  // ---- group tokens --------------------------------------------------------------------------

  addToken(incarnation: number, token: TokenRecord): boolean {
    const rec = this.get();
    if (!rec || rec.config.incarnation !== incarnation || rec.state === "deleting") return false;
    if (this.store.list("token/").length >= groupTokensMax) return false;
    this.store.put(`token/${token.id}`, token);
    return true;
  }

  /** Every token of the group, without their hashes. */
  tokens(): Omit<TokenRecord, "hash">[] {
    return this.store.list("token/").map(([, t]) => ({ id: t.id, scope: t.scope, name: t.name, created: t.created }));
  }

  /** The token with the life (incarnation) of the group it belongs to: a router's cached copy is checked against the group's route. */
  token(id: string): (TokenRecord & { incarnation: number }) | null {
    const rec = this.get();
    if (rec?.state !== "ready") return null;
    const token = this.store.get(`token/${id}`) as TokenRecord | null;
    return token === null ? null : { ...token, incarnation: rec.config.incarnation };
  }

  revokeToken(id: string): boolean {
    if (this.store.get(`token/${id}`) === null) return false;
    this.store.delete(`token/${id}`);
    return true;
  }
}
