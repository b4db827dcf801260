import { DurableObject } from "cloudflare:workers";
import { machineFor } from "../shared/machines/index.js";
import { type ReadAnswer, type ReplicaArgs, type ReplicaMethod, type ReplicaResult, type SessionAnswer, serve } from "../shared/protocol/io.js";
import { ReplicaCore, newReplicaMeta, type ReplicaMeta } from "../shared/protocol/replica.js";
import { ReplicaDriver } from "../shared/protocol/replica-driver.js";
import type { AppendResponse, ReplicaPosition } from "../shared/protocol/types.js";
import type { MachineName } from "../shared/api/types.js";
import { type Env, realClock } from "./env.js";
import { SqlReplicaStorage, readMeta } from "./sqlite.js";
import { decodeAppend } from "./wire.js";
import { watchersPerReplicaMax } from "../shared/limits.js";
import type { WatchSink } from "../shared/protocol/watch.js";
import type { ErrorCode } from "../shared/api/errors.js";

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
        this.queuedBytes -= bytes.length;
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
}

export type { ReadAnswer, SessionAnswer };

export interface ReplicaInit {
  group: string;
  incarnation: number;
  id: string;
  machine: MachineName;
  checkpointEvery: number;
}

/** Answers for a caller of another incarnation: as if this replica did not exist. */
const empty = new ReplicaDriver(null, realClock);

/**
 * A replica: a thin shell around ReplicaDriver/ReplicaCore over SQLite. Every call names the
 * group's incarnation, and a call of another one is answered as if this replica did not exist: to
 * an older caller (a deleted group's late RPC) its group is gone; to a newer one this replica's
 * state is a deleted group's leftover, until an init of that incarnation replaces it. (Answers,
 * not exceptions: a late message is an expected condition.)
 */
export class ReplicaObject extends DurableObject<Env> {
  private readonly store: SqlReplicaStorage;
  private readonly driver = new ReplicaDriver(null, realClock);

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.store = new SqlReplicaStorage(ctx.storage);
    ctx.blockConcurrencyWhile(async () => {
      const meta = readMeta<ReplicaMeta>(ctx.storage.sql, "replica");
      if (meta) {
        SqlReplicaStorage.upgrade(ctx.storage.sql);
        this.driver.core = new ReplicaCore(this.store, meta, machineFor(meta.machine));
      }
    });
  }

  private get core(): ReplicaCore | null {
    return this.driver.core;
  }

  private get incarnation(): number | null {
    return this.core ? (this.core.config.incarnation ?? 0) : null;
  }

  /** The driver that serves a call of that incarnation. */
  private of(incarnation: number): ReplicaDriver {
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
      await this.ctx.storage.deleteAll();
    }
    if (!this.core) {
      const meta = newReplicaMeta(cfg.group, cfg.id, cfg.machine, cfg.checkpointEvery, cfg.incarnation);
      this.ctx.storage.transactionSync(() => {
        SqlReplicaStorage.create(this.ctx.storage.sql);
        this.store.saveMeta(meta);
      });
      this.driver.core = new ReplicaCore(this.store, meta, machineFor(meta.machine));
    }
    const c = this.core!.config;
    if (c.group !== cfg.group || c.id !== cfg.id || c.machine !== cfg.machine) {
      throw new Error(`replica ${c.group}/${c.id} (${c.machine}) asked to be ${cfg.group}/${cfg.id} (${cfg.machine})`);
    }
    return this.core!.position();
  }

  /** An append message, as JSON (see wire.ts): each entry serialized once for every replica. */
  async appendText(incarnation: number, text: string): Promise<AppendResponse> {
    return this.of(incarnation).append(decodeAppend(text));
  }

  /** Every other call of the replica's API (ReplicaApi, declared once in shared/protocol/io.ts). */
  async call<K extends ReplicaMethod>(incarnation: number, method: K, args: ReplicaArgs<K>): Promise<ReplicaResult<K>> {
    if (method === "append") throw new Error("append goes through appendText");
    return serve(this.of(incarnation), method, args) as ReplicaResult<K>;
  }

  /**
   * A watch stream (the router passes the request on): GET /watch?incarnation=&from=&prefix=,
   * answered with text/event-stream, or an API error (404, 410 compacted, 503 busy or quarantined).
   */
  override async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname !== "/watch") return apiError(404, "not_found", "no such replica route");
    const incarnation = Number(url.searchParams.get("incarnation"));
    const core = this.core;
    if (!core || this.incarnation !== incarnation) return apiError(404, "not_found", "no such replica");
    if (core.quarantined) return apiError(503, "unavailable", `replica ${core.id} is quarantined`, 1);
    const fromText = url.searchParams.get("from");
    const sink = new StreamSink(() => this.driver.watches.pump());
    // The first bytes at once (headers reach the client now), before any catch-up events.
    sink.write(`: watching ${core.config.group} at ${core.id} from ${fromText ?? core.appliedSeq}\n\n`);
    const opened = this.driver.watches.open(sink, fromText === null ? null : Number(fromText), url.searchParams.get("prefix"));
    if (opened !== "ok") sink.close();
    if (opened === "busy") return apiError(503, "unavailable", `replica ${core.id} serves as many watches as it may (${watchersPerReplicaMax})`, 5);
    if (opened === "compacted") {
      return apiError(410, "compacted", `entries after ${fromText} were compacted at ${core.id}; read the state, then watch from its seq`);
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
  async corrupt(incarnation: number): Promise<string | null> {
    const core = this.of(incarnation).core;
    if (!core) return null;
    core.saveState();
    const sql = this.ctx.storage.sql;
    // Machine rows are "m/<key>" ("m0" is the next string after the prefix).
    const row = sql.exec<{ k: string; v: string }>("SELECT k, v FROM state WHERE k >= 'm/' AND k < 'm0' ORDER BY k LIMIT 1").toArray()[0];
    if (!row) return null;
    const value: unknown = JSON.parse(row.v);
    // Still a value the machine can read: a number (a bank balance) stays a number.
    const changed = typeof value === "number" ? value + 1 : { corrupted: value };
    sql.exec("UPDATE state SET v = ? WHERE k = ?", JSON.stringify(changed), row.k);
    return row.k;
  }

  /** Destroys this replica's storage, unless it already belongs to a newer incarnation. */
  async destroy(incarnation: number): Promise<void> {
    const mine = this.incarnation;
    if (mine !== null && mine > incarnation) return;
    this.driver.detach();
    await this.ctx.storage.deleteAll();
  }
}
