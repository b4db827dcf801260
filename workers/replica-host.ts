// One replica's serving code, hosted by a Durable Object: its own (ReplicaObject) or the group's
// first sequencer object (the co-located replica, GroupConfig.colocated). The host gives it its
// storage and a way to erase it; everything a replica answers is here, once.
import { DurableObject } from "cloudflare:workers";
import type { Env } from "./env.js";
import { machineFor } from "../shared/machines/index.js";
import { type ReplicaArgs, type ReplicaMethod, type ReplicaResult, serve } from "../shared/protocol/io.js";
import { ReplicaCore, type Rejoin, newReplicaMeta, type ReplicaMeta } from "../shared/protocol/replica.js";
import { ReplicaDriver } from "../shared/protocol/replica-driver.js";
import type { AppendRequest, AppendResponse, ReplicaPosition } from "../shared/protocol/types.js";
import type { MachineName } from "../shared/api/types.js";
import { realClock } from "./env.js";
import { SqlReplicaStorage, dropOrphanedFrozenTables, readMeta } from "./sqlite.js";
import { decodeAppend } from "./wire.js";
import { resendMs, watchSilenceMs, watchersPerReplicaMax } from "../shared/limits.js";
import type { WatchSink } from "../shared/protocol/watch.js";
import type { ErrorCode } from "../shared/api/errors.js";
import { logEvent } from "../shared/log.js";

function apiError(status: number, code: ErrorCode, message: string, retryAfterSec?: number): Response {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (retryAfterSec !== undefined) headers["retry-after"] = String(retryAfterSec);
  return new Response(JSON.stringify({ error: { code, message } }), { status, headers });
}

const encoder = new TextEncoder();

/** A watcher's stream: bytes queued until the reader takes them (drained: the hub sends more). */
class StreamSink implements WatchSink {
  private readonly stream = new TransformStream<Uint8Array, Uint8Array>();
  private readonly writer = this.stream.writable.getWriter();
  queuedBytes = 0;
  takenBytes = 0;
  gone = false;

  constructor(private readonly drained: () => void) {
    this.writer.closed.catch(() => {
      this.gone = true;
    });
  }

  get readable(): ReadableStream<Uint8Array> {
    return this.stream.readable;
  }

  write(text: string): void {
    if (this.gone) return;
    const bytes = encoder.encode(text);
    this.queuedBytes += bytes.length;
    this.writer.write(bytes).then(
      () => {
        this.queuedBytes = Math.max(0, this.queuedBytes - bytes.length); // drop() zeroed it
        this.takenBytes += bytes.length;
        if (this.queuedBytes === 0) this.drained();
      },
      () => {
        this.gone = true;
      },
    );
  }

  close(): void {
    if (this.gone) return;
    this.gone = true;
    this.writer.close().catch(() => undefined);
  }

  drop(): void {
    if (this.gone) return;
    this.gone = true;
    this.queuedBytes = 0;
    this.writer.abort(new Error("watch queue dropped: resume with Last-Event-ID")).catch(() => undefined);
  }
}

export interface ReplicaInit {
  group: string;
  incarnation: number;
  id: string;
  machine: MachineName;
  checkpointEvery: number;
  /** GroupConfig.sessionIdleMs (absent: sessions never expire). */
  sessionIdleMs?: number;
  /** GroupConfig.sessionOutputFreeChars (absent: session rows keep every output whole). */
  sessionOutputFreeChars?: number;
  /** A re-creation after the replica lost its storage (see ReplicaMeta.rejoinSeq). */
  rejoin?: Rejoin;
}

/** What a replica's home provides: its SQLite, the name of its log table, and how to erase it. */
export interface ReplicaHome {
  storage: DurableObjectStorage;
  /** "log", or another name where the host has a log of its own (the sequencer's). */
  logTable: string;
  /** Deletes everything this replica stored (and nothing of its host's own). */
  erase(): Promise<void>;
  /** Calls the sequencer the group's directory names, which wakes it if it was evicted (groups.wakeSequencer). */
  wakeSequencer?(group: string, incarnation: number): Promise<void>;
  /** Whether the sequencer the group's directory names still sleeps, without waking it (groups.sequencerAsleep). */
  sequencerAsleep?(group: string, incarnation: number): Promise<boolean>;
  /** The host's own transient bytes in this database (the sequencer's restore stage): not the replica's size. */
  transientBytes?(): number;
}

/** Answers for a caller of another incarnation: as if this replica did not exist. */
const empty = new ReplicaDriver(null, realClock);

/**
 * A replica: ReplicaDriver/ReplicaCore over SQLite. Every call names the group's incarnation,
 * and a call of another one is answered as if this replica did not exist: to an older caller (a
 * deleted group's late RPC) its group is gone; to a newer one this replica's state is a deleted
 * group's leftover, until an init of that incarnation replaces it. (Answers, not exceptions: a
 * late message is an expected condition.)
 */
export class ReplicaHost {
  readonly store: SqlReplicaStorage;
  readonly driver = new ReplicaDriver(null, realClock);

  constructor(private readonly home: ReplicaHome) {
    this.store = new SqlReplicaStorage(home.storage, home.storage.sql, home.logTable, () => home.transientBytes?.() ?? 0);
    this.driver.wakeSequencer = () => this.wake();
    this.driver.sequencerAsleep = () => this.askAsleep();
  }

  private askAsleep(): Promise<boolean> {
    const core = this.core;
    if (!core || !this.home.sequencerAsleep) return Promise.resolve(true);
    return this.home.sequencerAsleep(core.config.group, core.config.incarnation ?? 0);
  }

  private wokeAtMs = 0;

  /** At most one wake call every resendMs (each keepalive tick of a silence asks; a PreVote in a sleep asks each resendMs until heard). */
  private wake(): void {
    const core = this.core;
    const now = Date.now();
    if (!core || !this.home.wakeSequencer || now - this.wokeAtMs < resendMs) return;
    this.wokeAtMs = now;
    this.home.wakeSequencer(core.config.group, core.config.incarnation ?? 0).catch((err) => console.warn(`waking the sequencer of ${core.config.group} for ${core.id} (a PreVote in its sleep, or its watches in a silence): ${String(err)}`));
  }

  /** Serves from persisted state, if any (under the object's blockConcurrencyWhile). */
  load(): void {
    const sql = this.home.storage.sql;
    const meta = readMeta<ReplicaMeta>(sql, "replica");
    if (!meta) return;
    SqlReplicaStorage.upgrade(sql);
    dropOrphanedFrozenTables(sql);
    const core = new ReplicaCore(this.store, meta, machineFor(meta.machine));
    reportLoad(core, "at its start");
    this.driver.attach(core);
  }

  get core(): ReplicaCore | null {
    return this.driver.core;
  }

  private get incarnation(): number | null {
    return this.core ? (this.core.config.incarnation ?? 0) : null;
  }

  /** The driver that serves a call of that incarnation. */
  of(incarnation: number): ReplicaDriver {
    const mine = this.incarnation;
    return mine === null || mine === incarnation ? this.driver : empty;
  }

  /** Idempotent: creates the tables the first time; later calls check the identity matches. Null for an older incarnation's init. */
  async init(cfg: ReplicaInit): Promise<ReplicaPosition | null> {
    const mine = this.incarnation;
    if (mine !== null && mine > cfg.incarnation) return null;
    if (mine !== null && mine < cfg.incarnation) {
      // A deleted group's leftover (its destroy was lost): start from nothing.
      this.driver.detach();
      await this.home.erase();
    }
    if (!this.core) {
      const meta = newReplicaMeta(cfg.group, cfg.id, cfg.machine, cfg.checkpointEvery, cfg.incarnation, cfg.rejoin, cfg);
      const sql = this.home.storage.sql;
      this.home.storage.transactionSync(() => {
        SqlReplicaStorage.create(sql, this.home.logTable);
        this.store.saveMeta(meta);
      });
      this.driver.attach(new ReplicaCore(this.store, meta, machineFor(meta.machine)));
    }
    const c = this.core!.config;
    if (c.group !== cfg.group || c.id !== cfg.id || c.machine !== cfg.machine) {
      throw new Error(`replica ${c.group}/${c.id} (${c.machine}) asked to be ${cfg.group}/${cfg.id} (${cfg.machine})`);
    }
    // The window decides what each entry deletes: a replica made with another would diverge on
    // every forgetting (its rows repaired, its meta not), so it is refused like another machine.
    if (c.sessionIdleMs !== cfg.sessionIdleMs) {
      throw new Error(`replica ${c.group}/${c.id} has session window ${c.sessionIdleMs ?? "none"} ms, asked for ${cfg.sessionIdleMs ?? "none"}`);
    }
    if (c.sessionOutputFreeChars !== cfg.sessionOutputFreeChars) {
      throw new Error(`replica ${c.group}/${c.id} keeps outputs up to ${c.sessionOutputFreeChars ?? "any"} characters past their command, asked for ${cfg.sessionOutputFreeChars ?? "any"}`);
    }
    return this.core!.position();
  }

  /** An append message, as JSON (see wire.ts): each entry serialized once for every replica. */
  appendText(incarnation: number, text: string): AppendResponse {
    return this.append(incarnation, decodeAppend(text));
  }

  /** An append from the sequencer in the same object: no copy, no serialization. */
  append(incarnation: number, msg: AppendRequest): AppendResponse {
    try {
      return this.of(incarnation).append(msg);
    } catch (err) {
      // A step that threw rolled back, and the replica reloaded its state from the stored rows.
      if (this.core) reportLoad(this.core, "after a step that failed");
      throw err;
    }
  }

  /** Every other call of the replica's API (ReplicaApi, declared once in shared/protocol/io.ts). */
  call<K extends ReplicaMethod>(incarnation: number, method: K, args: ReplicaArgs<K>): Promise<ReplicaResult<K>> {
    if (method === "append") throw new Error("append goes through appendText");
    return Promise.resolve(serve(this.of(incarnation), method, args)) as Promise<ReplicaResult<K>>;
  }

  /**
   * A watch stream (the router passes the request on): GET /watch?incarnation=&from=&prefix=,
   * answered with text/event-stream, or an API error (404, 410 compacted, 503 busy or quarantined).
   * With `fresh=1` it is also a 503 (header x-smr-silent-ms) while this replica has heard nothing
   * from a serving sequencer for watchSilenceMs: the router then asks the others first.
   */
  watch(request: Request): Response {
    const url = new URL(request.url);
    if (url.pathname !== "/watch") return apiError(404, "not_found", "no such replica route");
    const incarnation = Number(url.searchParams.get("incarnation"));
    const core = this.core;
    if (!core || this.incarnation !== incarnation) return apiError(404, "not_found", "no such replica");
    if (core.withheld) return apiError(503, "unavailable", core.quarantined ? `replica ${core.id} is quarantined` : `replica ${core.id} holds a restore not yet adopted`, 1);
    const silentMs = this.driver.silentMs();
    const fresh = url.searchParams.get("fresh") === "1";
    if (fresh && silentMs >= watchSilenceMs) {
      const res = apiError(503, "unavailable", `replica ${core.id} has heard nothing from its sequencer for ${silentMs} ms`, 1);
      res.headers.set("x-smr-silent-ms", String(silentMs));
      return res;
    }
    const fromText = url.searchParams.get("from");
    const sink = new StreamSink(() => this.driver.watches.pump());
    // The first bytes at once (headers reach the client now), before any catch-up events.
    // The position it starts after, as an SSE id (no event): a client that drops before the first
    // event still knows where to resume (Last-Event-ID), though it gave no `from`.
    const start = fromText ?? String(core.appliedSeq);
    sink.write(`: watching ${core.config.group} at ${core.id} after ${start}\nid: ${start}\n\n`);
    const opened = this.driver.watches.open(sink, fromText === null ? null : Number(fromText), url.searchParams.get("prefix"), !fresh);
    if (opened !== "ok") sink.close();
    if (opened === "busy") return apiError(503, "unavailable", `replica ${core.id} serves as many watches as it may (${watchersPerReplicaMax})`, 5);
    if (opened === "compacted") {
      // Where its log starts now, as the log route's 410 says (a probe: the watch's did not).
      return apiError(410, "compacted", `entries after ${fromText} were compacted at ${core.id} (its log holds the entries after ${core.config.baseSeq}); read the state, then watch from its seq`);
    }
    return new Response(sink.readable, {
      headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "x-smr-replica": core.id },
    });
  }

  /**
   * Test-only (the fault route's "corrupt", with ALLOW_FAULTS=1): changes one stored machine row
   * behind the replica's digest, as disk corruption would, so the next audit's scrub finds it.
   * The unsaved rows are stored first (as the scrub does), or the next save would overwrite the
   * change. Returns the key changed, or null if this replica has no machine rows.
   */
  corrupt(incarnation: number): string | null {
    const core = this.of(incarnation).core;
    if (!core) return null;
    core.saveState();
    const sql = this.home.storage.sql;
    // Machine rows are "m/<key>" ("m0" is the next string after the prefix).
    const row = sql.exec<{ k: string; v: string }>("SELECT k, v FROM state WHERE k >= 'm/' AND k < 'm0' ORDER BY k LIMIT 1").toArray()[0];
    if (!row) return null;
    const value: unknown = JSON.parse(row.v);
    // Still a value the machine can read: a number (a bank balance) stays a number.
    const changed = typeof value === "number" ? value + 1 : { corrupted: value };
    sql.exec("UPDATE state SET v = ? WHERE k = ?", JSON.stringify(changed), row.k);
    return row.k;
  }

  /** Whether this replica holds anything (its host must not erase it with its own storage). */
  get exists(): boolean {
    return this.core !== null;
  }

  /** Destroys this replica's storage, unless it already belongs to a newer incarnation. */
  async destroy(incarnation: number): Promise<void> {
    const mine = this.incarnation;
    if (mine !== null && mine > incarnation) return;
    this.driver.detach();
    await this.home.erase();
  }
}

/**
 * A Durable Object that hosts a replica: the replica's RPC methods, declared once for both hosts
 * (a stub of either serves every caller, see replicaStub).
 */
export abstract class ReplicaServing extends DurableObject<Env> {
  protected abstract readonly replica: ReplicaHost;

  async replicaInit(cfg: ReplicaInit): Promise<ReplicaPosition | null> {
    return this.replica.init(cfg);
  }

  async appendText(incarnation: number, text: string): Promise<AppendResponse> {
    return this.replica.appendText(incarnation, text);
  }

  async call<K extends ReplicaMethod>(incarnation: number, method: K, args: ReplicaArgs<K>): Promise<ReplicaResult<K>> {
    return this.replica.call(incarnation, method, args);
  }

  override async fetch(request: Request): Promise<Response> {
    return this.replica.watch(request);
  }

  async corrupt(incarnation: number): Promise<string | null> {
    return this.replica.corrupt(incarnation);
  }

  async replicaDestroy(incarnation: number): Promise<void> {
    await this.replica.destroy(incarnation);
  }
}

/** Logs what a replica's load found (ReplicaCore.takeLoadReport): a quarantine was silent, and every replica of a group went so (an upgrade probe). */
function reportLoad(core: ReplicaCore, when: string): void {
  const { problem, note } = core.takeLoadReport();
  const where = { group: core.config.group, replica: core.id, seq: core.appliedSeq };
  if (problem !== null) {
    const message = `replica ${core.config.group}/${core.id} quarantined itself ${when}: ${problem}; an audit rebuilds it from a healthy replica if one is left, else, once an audit finds the replicas consistent, release them with rebase (docs/OPERATIONS.md, "Out of a quarantine")`;
    logEvent({ event: "quarantine", ...where, message }, "error");
  }
  if (note !== null) logEvent({ event: "replay", ...where, message: `replica ${core.config.group}/${core.id} ${when}: ${note}` }, "warn");
}
