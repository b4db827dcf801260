// SQLite (ctx.storage.sql) implementations of the protocol's storage interfaces.
import type { RowStore } from "../shared/machines/types.js";
import { compareCodePoints, prefixUpperBound } from "../shared/text.js";
import type { Effect, ReplicaMeta, ReplicaStorage } from "../shared/protocol/replica.js";
import type { SequencerMeta, SequencerStorage } from "../shared/protocol/sequencer.js";
import type { Checkpoint } from "../shared/protocol/types.js";
import type { Entry, EntryKind } from "../shared/api/types.js";

type Sql = SqlStorage;

/** Rows per multi-row INSERT, keeping the bound parameters of one statement under 100. */
const rowsPerInsert = 12;
/** Keys per IN (...) list and rows per two-column upsert: under D1/DO's 100 bound parameters. */
const keysPerStatement = 96;
const rowsPerUpsert = 48;
/** Log rows per query of a byte-bounded read, and what a row's fields other than its command take. */
const logRowsPerQuery = 32;
/** Rows of lengths one query of a cut (SqlLog.cutFor) reads: small rows, so many at once. */
const cutRowsPerQuery = 1024;
const logRowOverheadBytes = 200;
/** Rows per query of a byte-bounded scan. */
const scanRowsPerQuery = 64;
/** Rows per query while a state transfer pages through the frozen copy. */
const snapshotRowsPerQuery = 256;
/** Effect rows per multi-row INSERT (3 bound parameters each). */
const effectsPerInsert = 32;

/**
 * Rows of a (k, v) table after `after`, up to about maxBytes, in bounded queries each consumed to
 * its end: a cursor left open (a loop that breaks early) keeps the table locked, and a DROP of it
 * then fails with SQLITE_LOCKED, leaving the copy behind.
 */
function pageOf(sql: Sql, table: string, after: string | null, maxBytes: number): [string, string][] {
  const out: [string, string][] = [];
  let bytes = 0;
  let from = after;
  while (bytes < maxBytes) {
    const rows = (
      from === null
        ? sql.exec<{ k: string; v: string }>(`SELECT k, v FROM ${table} ORDER BY k LIMIT ?`, snapshotRowsPerQuery)
        : sql.exec<{ k: string; v: string }>(`SELECT k, v FROM ${table} WHERE k > ? ORDER BY k LIMIT ?`, from, snapshotRowsPerQuery)
    ).toArray();
    for (const r of rows) {
      out.push([r.k, r.v]);
      bytes += r.k.length + r.v.length;
    }
    if (rows.length < snapshotRowsPerQuery) break;
    from = rows[rows.length - 1]!.k;
  }
  return out;
}

/** The table of a frozen copy: names are the code's own ("snapshot", "export_<n>"), never input. */
function frozenTable(name: string): string {
  if (!/^[a-z][a-z0-9_]{0,30}$/.test(name)) throw new Error(`bad frozen copy name ${name}`);
  return name === "snapshot" ? "snapshot" : `frozen_${name}`;
}

export function tableExists(sql: Sql, name: string): boolean {
  return sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", name).toArray().length > 0;
}

export function readMeta<T>(sql: Sql, key: string): T | null {
  if (!tableExists(sql, "meta")) return null;
  const row = sql.exec<{ v: string }>("SELECT v FROM meta WHERE k = ?", key).toArray()[0];
  return row ? (JSON.parse(row.v) as T) : null;
}

export function writeMeta(sql: Sql, key: string, value: unknown): void {
  sql.exec("INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v", key, JSON.stringify(value));
}

export class SqlRowStore implements RowStore {
  constructor(private readonly sql: Sql) {}
  static create(sql: Sql): void {
    sql.exec("CREATE TABLE IF NOT EXISTS state (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID");
  }
  get(key: string): string | null {
    const row = this.sql.exec<{ v: string }>("SELECT v FROM state WHERE k = ?", key).toArray()[0];
    return row ? row.v : null;
  }
  put(key: string, value: string): void {
    this.sql.exec("INSERT INTO state (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v", key, value);
  }
  delete(key: string): void {
    this.sql.exec("DELETE FROM state WHERE k = ?", key);
  }
  lastKey(prefix: string): string | null {
    const upper = prefixUpperBound(prefix);
    const row = (
      upper === null
        ? this.sql.exec<{ k: string }>("SELECT k FROM state WHERE k >= ? ORDER BY k DESC LIMIT 1", prefix)
        : this.sql.exec<{ k: string }>("SELECT k FROM state WHERE k >= ? AND k < ? ORDER BY k DESC LIMIT 1", prefix, upper)
    ).toArray()[0];
    return row ? row.k : null;
  }
  getMany(keys: string[]): Map<string, string> {
    const out = new Map<string, string>();
    for (let i = 0; i < keys.length; i += keysPerStatement) {
      const chunk = keys.slice(i, i + keysPerStatement);
      const cursor = this.sql.exec<{ k: string; v: string }>(`SELECT k, v FROM state WHERE k IN (${chunk.map(() => "?").join(", ")})`, ...chunk);
      for (const r of cursor) out.set(r.k, r.v);
    }
    return out;
  }
  writeMany(puts: [string, string][], deletes: string[]): void {
    for (let i = 0; i < puts.length; i += rowsPerUpsert) {
      const chunk = puts.slice(i, i + rowsPerUpsert);
      this.sql.exec(
        `INSERT INTO state (k, v) VALUES ${chunk.map(() => "(?, ?)").join(", ")} ON CONFLICT (k) DO UPDATE SET v = excluded.v`,
        ...chunk.flat(),
      );
    }
    for (let i = 0; i < deletes.length; i += keysPerStatement) {
      const chunk = deletes.slice(i, i + keysPerStatement);
      this.sql.exec(`DELETE FROM state WHERE k IN (${chunk.map(() => "?").join(", ")})`, ...chunk);
    }
  }
  /**
   * With a byte bound the rows are read in bounded queries (each consumed to its end: see
   * snapshotPage), so a page of large values is never read whole into memory.
   */
  scan(prefix: string, after: string | null, limit: number, bytesMax = Infinity): [string, string][] {
    const upper = prefixUpperBound(prefix);
    const out: [string, string][] = [];
    let bytes = 0;
    let lower = after !== null && compareCodePoints(after, prefix) >= 0 ? after : prefix;
    let op = lower === after ? ">" : ">=";
    while (out.length < limit && bytes < bytesMax) {
      const chunk = bytesMax === Infinity ? limit - out.length : Math.min(limit - out.length, scanRowsPerQuery);
      const rows = (
        upper === null
          ? this.sql.exec<{ k: string; v: string }>(`SELECT k, v FROM state WHERE k ${op} ? ORDER BY k LIMIT ?`, lower, chunk)
          : this.sql.exec<{ k: string; v: string }>(`SELECT k, v FROM state WHERE k ${op} ? AND k < ? ORDER BY k LIMIT ?`, lower, upper, chunk)
      ).toArray();
      for (const r of rows) {
        if (bytes >= bytesMax) break;
        out.push([r.k, r.v]);
        bytes += r.k.length + r.v.length;
      }
      if (rows.length < chunk) break;
      lower = rows[rows.length - 1]!.k;
      op = ">";
    }
    return out;
  }
}

interface LogRow {
  seq: number;
  epoch: number;
  kind: string;
  client: string | null;
  request: number | null;
  command: string;
  ts: string;
  hash: string;
  [key: string]: SqlStorageValue;
}

function toEntry(r: LogRow): Entry {
  return {
    seq: r.seq,
    epoch: r.epoch,
    kind: r.kind as EntryKind,
    client: r.client,
    request: r.request,
    command: JSON.parse(r.command),
    timestamp: r.ts,
    hash: r.hash,
  };
}

/** The log table, the same for sequencer and replicas (a co-located replica's has another name). */
export class SqlLog {
  constructor(
    private readonly sql: Sql,
    private readonly table = "log",
  ) {
    if (!/^[a-z_]+$/.test(table)) throw new Error(`bad log table name ${table}`);
  }
  static create(sql: Sql, table = "log"): void {
    sql.exec(
      `CREATE TABLE IF NOT EXISTS ${table} (seq INTEGER PRIMARY KEY, epoch INTEGER NOT NULL, kind TEXT NOT NULL, client TEXT, request INTEGER, command TEXT NOT NULL, ts TEXT NOT NULL, hash TEXT NOT NULL)`,
    );
  }
  append(entries: Entry[]): void {
    // Several rows per statement: the statement count, not the row count, dominates the cost.
    for (let i = 0; i < entries.length; i += rowsPerInsert) {
      const chunk = entries.slice(i, i + rowsPerInsert);
      const values: SqlStorageValue[] = [];
      for (const e of chunk) values.push(e.seq, e.epoch, e.kind, e.client, e.request, JSON.stringify(e.command), e.timestamp, e.hash);
      this.sql.exec(
        `INSERT OR REPLACE INTO ${this.table} (seq, epoch, kind, client, request, command, ts, hash) VALUES ${chunk.map(() => "(?, ?, ?, ?, ?, ?, ?, ?)").join(", ")}`,
        ...values,
      );
    }
  }
  truncateFrom(seq: number): void {
    this.sql.exec(`DELETE FROM ${this.table} WHERE seq >= ?`, seq);
  }
  hashAt(seq: number): string | null {
    const row = this.sql.exec<{ hash: string }>(`SELECT hash FROM ${this.table} WHERE seq = ?`, seq).toArray()[0];
    return row ? row.hash : null;
  }
  /** With a byte bound, read in bounded queries and stop once the commands pass it (at least one entry). */
  read(fromSeq: number, toSeq: number, bytesMax = Infinity): Entry[] {
    if (bytesMax === Infinity) {
      return this.sql.exec<LogRow>(`SELECT * FROM ${this.table} WHERE seq >= ? AND seq <= ? ORDER BY seq`, fromSeq, toSeq).toArray().map(toEntry);
    }
    const out: Entry[] = [];
    let bytes = 0;
    for (let from = fromSeq; from <= toSeq; ) {
      const rows = this.sql
        .exec<LogRow>(`SELECT * FROM ${this.table} WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?`, from, toSeq, logRowsPerQuery)
        .toArray();
      for (const r of rows) {
        bytes += r.command.length + logRowOverheadBytes;
        if (bytes > bytesMax && out.length > 0) return out;
        out.push(toEntry(r));
      }
      if (rows.length < logRowsPerQuery) break;
      from = rows[rows.length - 1]!.seq + 1;
    }
    return out;
  }
  last(): Entry | null {
    const row = this.sql.exec<LogRow>(`SELECT * FROM ${this.table} ORDER BY seq DESC LIMIT 1`).toArray()[0];
    return row ? toEntry(row) : null;
  }
  first(): number | null {
    const row = this.sql.exec<{ seq: number }>(`SELECT seq FROM ${this.table} ORDER BY seq LIMIT 1`).toArray()[0];
    return row ? row.seq : null;
  }
  deleteThrough(seq: number): void {
    this.sql.exec(`DELETE FROM ${this.table} WHERE seq <= ?`, seq);
  }
  /**
   * SequencerStorage.cutFor: read newest first, in bounded queries, and only lengths
   * (octet_length reads a row's header, not its text), so at most the rows within bytesMax and one.
   * `effects`: a replica's effects rows count with their entries.
   */
  cutFor(toSeq: number, bytesMax: number, effects = false): number | null {
    const bytes = effects
      ? `octet_length(l.command) + IFNULL((SELECT octet_length(e.output) + octet_length(e.changes) FROM effects e WHERE e.seq = l.seq), 0)`
      : "octet_length(l.command)";
    let total = 0;
    for (let below = toSeq + 1; ; ) {
      const rows = this.sql
        .exec<{ seq: number; n: number }>(`SELECT l.seq AS seq, ${bytes} AS n FROM ${this.table} l WHERE l.seq < ? ORDER BY l.seq DESC LIMIT ?`, below, cutRowsPerQuery)
        .toArray();
      for (const r of rows) {
        total += r.n + logRowOverheadBytes;
        if (total > bytesMax) return r.seq;
      }
      if (rows.length < cutRowsPerQuery) return null;
      below = rows[rows.length - 1]!.seq;
    }
  }
  clear(): void {
    this.sql.exec(`DELETE FROM ${this.table}`);
  }
}

export class SqlReplicaStorage implements ReplicaStorage {
  readonly rows: SqlRowStore;
  readonly log: SqlLog;
  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly sql: Sql = storage.sql,
    logTable = "log",
    /** The host's own transient bytes in the same database (the sequencer's restore stage), left out of sizeBytes. */
    private readonly hostTransientBytes: () => number = () => 0,
  ) {
    this.rows = new SqlRowStore(sql);
    this.log = new SqlLog(sql, logTable);
  }
  static create(sql: Sql, logTable = "log"): void {
    sql.exec("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)");
    sql.exec("CREATE TABLE IF NOT EXISTS checkpoints (seq INTEGER PRIMARY KEY, digest TEXT NOT NULL, log_hash TEXT NOT NULL)");
    SqlLog.create(sql, logTable);
    SqlRowStore.create(sql);
    SqlReplicaStorage.upgrade(sql);
  }
  /** Tables added since the first release, for a replica created before them (idempotent). */
  static upgrade(sql: Sql): void {
    sql.exec("CREATE TABLE IF NOT EXISTS effects (seq INTEGER PRIMARY KEY, output TEXT NOT NULL, changes TEXT NOT NULL)");
  }
  transaction<T>(fn: () => T): T {
    return this.storage.transactionSync(fn);
  }
  /**
   * The whole database's (for the co-located replica, the sequencer's log and tables too) without
   * its frozen copies (a transfer's source, a download's): a copy lasts as long as its reader, and
   * counted, a download of a group past half its quota refused its writes until it ended (a review).
   * Nor the host's transient tables: a restore's install measured the co-located replica with the
   * staged rows still there, and a 16 MiB group restored with 9 MB refused writes (a review).
   */
  sizeBytes(): number {
    let frozen = this.hostTransientBytes();
    for (const bytes of this.frozenBytes.values()) frozen += bytes;
    return Math.max(0, this.storage.sql.databaseSize - frozen);
  }
  appendEntries(entries: Entry[]): void {
    this.log.append(entries);
  }
  truncateFrom(seq: number): void {
    this.log.truncateFrom(seq);
  }
  entryHash(seq: number): string | null {
    return this.log.hashAt(seq);
  }
  readEntries(fromSeq: number, toSeq: number, bytesMax?: number): Entry[] {
    return this.log.read(fromSeq, toSeq, bytesMax);
  }
  saveMeta(meta: ReplicaMeta): void {
    writeMeta(this.sql, "replica", meta);
  }
  deleteThrough(seq: number): void {
    this.log.deleteThrough(seq);
    this.sql.exec("DELETE FROM effects WHERE seq <= ?", seq);
  }
  cutFor(toSeq: number, bytesMax: number): number | null {
    return this.log.cutFor(toSeq, bytesMax, true);
  }
  /** A frozen copy in the same database: one statement, so it is the state at one position. */
  snapshotRows(name = "snapshot", prefix = ""): number {
    const table = frozenTable(name);
    this.dropSnapshot(name);
    const before = this.storage.sql.databaseSize;
    this.sql.exec(`CREATE TABLE ${table} (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID`);
    const upper = prefixUpperBound(prefix);
    const copy =
      upper === null
        ? this.sql.exec(`INSERT INTO ${table} (k, v) SELECT k, v FROM state WHERE k >= ?`, prefix)
        : this.sql.exec(`INSERT INTO ${table} (k, v) SELECT k, v FROM state WHERE k >= ? AND k < ?`, prefix, upper);
    copy.toArray(); // runs it to its end: rowsWritten counts what it has done so far
    this.frozenBytes.set(name, Math.max(0, this.storage.sql.databaseSize - before));
    return copy.rowsWritten;
  }

  /**
   * Rows of the frozen copy after `after`, up to about maxBytes. Read in bounded queries, each
   * consumed to its end: a cursor left open (a loop that breaks early) keeps the table locked,
   * and the DROP at the end of the transfer then fails with SQLITE_LOCKED, leaving the copy behind.
   */
  snapshotPage(after: string | null, maxBytes: number, name = "snapshot"): [string, string][] {
    const table = frozenTable(name);
    if (!tableExists(this.sql, table)) return [];
    return pageOf(this.sql, table, after, maxBytes);
  }
  dropSnapshot(name = "snapshot"): void {
    this.sql.exec(`DROP TABLE IF EXISTS ${frozenTable(name)}`);
    this.frozenBytes.delete(name);
  }
  /** Bytes each frozen copy added when it was made (sizeBytes leaves them out). */
  private readonly frozenBytes = new Map<string, number>();
  appendEffects(effects: Effect[]): void {
    for (let i = 0; i < effects.length; i += effectsPerInsert) {
      const chunk = effects.slice(i, i + effectsPerInsert);
      const values: SqlStorageValue[] = [];
      for (const f of chunk) values.push(f.seq, f.output, f.changes);
      this.sql.exec(`INSERT OR REPLACE INTO effects (seq, output, changes) VALUES ${chunk.map(() => "(?, ?, ?)").join(", ")}`, ...values);
    }
  }
  readEffects(fromSeq: number, toSeq: number): Effect[] {
    return this.sql.exec<{ seq: number; output: string; changes: string }>("SELECT seq, output, changes FROM effects WHERE seq >= ? AND seq <= ? ORDER BY seq", fromSeq, toSeq).toArray();
  }
  clearAll(): void {
    this.sql.exec("DELETE FROM state");
    this.log.clear();
    this.sql.exec("DELETE FROM effects");
    this.sql.exec("DELETE FROM checkpoints");
  }
  addCheckpoint(cp: Checkpoint, keepMax: number): void {
    this.sql.exec("INSERT OR REPLACE INTO checkpoints (seq, digest, log_hash) VALUES (?, ?, ?)", cp.seq, cp.digest, cp.logHash);
    this.sql.exec(
      "DELETE FROM checkpoints WHERE seq NOT IN (SELECT seq FROM checkpoints ORDER BY seq DESC LIMIT ?)",
      keepMax,
    );
  }
  checkpoints(): Checkpoint[] {
    return this.sql
      .exec<{ seq: number; digest: string; log_hash: string }>("SELECT seq, digest, log_hash FROM checkpoints ORDER BY seq")
      .toArray()
      .map((r) => ({ seq: r.seq, digest: r.digest, logHash: r.log_hash }));
  }
}

export class SqlSequencerStorage implements SequencerStorage {
  readonly log: SqlLog;
  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly sql: Sql = storage.sql,
  ) {
    this.log = new SqlLog(sql);
  }
  static create(sql: Sql): void {
    sql.exec("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)");
    sql.exec("CREATE TABLE IF NOT EXISTS audits (id INTEGER PRIMARY KEY AUTOINCREMENT, report TEXT NOT NULL)");
    SqlLog.create(sql);
  }
  transaction<T>(fn: () => T): T {
    return this.storage.transactionSync(fn);
  }
  appendEntries(entries: Entry[]): void {
    this.log.append(entries);
  }
  readEntries(fromSeq: number, toSeq: number, bytesMax?: number): Entry[] {
    return this.log.read(fromSeq, toSeq, bytesMax);
  }
  lastEntry(): Entry | null {
    return this.log.last();
  }
  deleteThrough(seq: number): void {
    this.log.deleteThrough(seq);
  }
  cutFor(toSeq: number, bytesMax: number): number | null {
    return this.log.cutFor(toSeq, bytesMax);
  }
  recentRequests(limit: number): { client: string; request: number; seq: number }[] {
    return this.sql
      .exec<{ client: string; request: number; seq: number }>(
        "SELECT client, request, seq FROM log WHERE kind = 'command' ORDER BY seq DESC LIMIT ?",
        limit,
      )
      .toArray()
      .map((r) => ({ client: r.client, request: r.request, seq: r.seq }));
  }
  saveMeta(meta: SequencerMeta): void {
    writeMeta(this.sql, "sequencer", meta);
  }
}

/**
 * Erasing one of two tenants of one object's SQLite (the group's first sequencer and the replica
 * it hosts): each drops its own tables and its meta row; `meta` is shared (keys "sequencer" and
 * "replica"). Table names are the code's own.
 */
function dropTables(sql: Sql, tables: string[], metaKeys: string[]): void {
  for (const t of tables) sql.exec(`DROP TABLE IF EXISTS ${t}`);
  if (tableExists(sql, "meta")) for (const k of metaKeys) sql.exec("DELETE FROM meta WHERE k = ?", k);
}

/** The frozen copies a replica keeps (a state transfer's "snapshot", downloads' "frozen_export_<n>"). */
function frozenTables(sql: Sql): string[] {
  return sql
    .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND (name = 'snapshot' OR substr(name, 1, 7) = 'frozen_')")
    .toArray()
    .map((r) => r.name);
}

export function dropReplicaTables(sql: Sql, logTable: string): void {
  dropTables(sql, ["state", logTable, "effects", "checkpoints", ...frozenTables(sql)], ["replica"]);
}

/**
 * A replica's frozen copies at load: each is known only to the life of the object that made it
 * (the transfer or download it serves is tracked in memory), so any found now is left from one
 * that ended with it open (a download never read to its end, an eviction, a deploy). A download's
 * name counts up from export_1 in each life, so one left at another replica, or at a higher
 * number, was never reused: a probe found a 64 MiB copy kept after five later downloads.
 */
export function dropOrphanedFrozenTables(sql: Sql): void {
  for (const t of frozenTables(sql)) sql.exec(`DROP TABLE IF EXISTS ${t}`);
}

/** The meta row of the earlier sequencers a successor has yet to hear from (predecessors.ts); it goes with the log. */
export const predecessorsMetaKey = "predecessors";

export function dropSequencerTables(sql: Sql): void {
  dropTables(sql, ["log", "audits", "restore_rows"], ["sequencer", predecessorsMetaKey]);
}

/**
 * A restore's rows, staged at the sequencer while the file arrives (nothing reaches a replica
 * before the whole file is verified), then read back in pages by each replica's install.
 */
export class RestoreStage {
  constructor(private readonly sql: Sql) {}
  /** What the staged rows added to the database (the co-located replica's size leaves it out). */
  bytes = 0;
  private beganBytes = 0;
  begin(): void {
    this.drop();
    this.beganBytes = this.sql.databaseSize;
    this.sql.exec("CREATE TABLE restore_rows (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID");
  }
  add(rows: [string, string][]): void {
    for (let i = 0; i < rows.length; i += rowsPerUpsert) {
      const chunk = rows.slice(i, i + rowsPerUpsert);
      this.sql.exec(`INSERT OR REPLACE INTO restore_rows (k, v) VALUES ${chunk.map(() => "(?, ?)").join(", ")}`, ...chunk.flat());
    }
    this.bytes = Math.max(0, this.sql.databaseSize - this.beganBytes);
  }
  page(after: string | null, maxBytes: number): [string, string][] {
    return pageOf(this.sql, "restore_rows", after, maxBytes);
  }
  drop(): void {
    this.sql.exec("DROP TABLE IF EXISTS restore_rows");
    this.bytes = 0;
  }
}
