import type { z } from "zod";
import type { StoredJson } from "./output.js";

/** One ordered, sync key-value table: SQLite in a Durable Object, a sorted map in Node. */
export interface RowStore {
  get(key: string): string | null;
  put(key: string, value: string): void;
  delete(key: string): void;
  /**
   * Rows whose key starts with prefix and is > after (if given), in key (code point) order. With
   * bytesMax, it stops after the row that brings the keys' and values' length to bytesMax.
   */
  scan(prefix: string, after: string | null, limit: number, bytesMax?: number): [string, string][];
  /** The greatest key starting with prefix (null: none). */
  lastKey(prefix: string): string | null;
  /** The rows among keys that exist (one statement per page of keys, not one per key). */
  getMany(keys: string[]): Map<string, string>;
  /** Upserts and deletes in as few statements as the store allows. */
  writeMany(puts: [string, string][], deletes: string[]): void;
}

/** What a state machine sees: JSON values under its own key namespace. */
export interface MachineState {
  get<T>(key: string): T | null;
  /**
   * The value's stored JSON text, not parsed, for an output that answers it as it is (a kv get):
   * the output is measured first and parsed only if it is answered (shared/machines/output.ts).
   */
  getStored(key: string): StoredJson | null;
  put(key: string, value: unknown): void;
  delete(key: string): boolean;
  scan<T>(prefix: string, after: string | null, limit: number): [string, T][];
  /** A page bounded in rows and in bytes (stored length of keys and values); `more`: rows may follow. */
  page<T>(prefix: string, after: string | null, limit: number, bytesMax: number): { rows: [string, T][]; more: boolean };
}

export interface ApplyContext {
  seq: number;
  /** The sequencer's timestamp of the entry: the only clock a machine may read. */
  timestamp: string;
}

/**
 * Thrown by a machine's query whose answer would be over queryResultBytesMax: the replica answers
 * `too_large` (HTTP 413) with the message instead of a result.
 */
export class ResultTooLarge extends Error {}

/**
 * Thrown by the view a replica hands a machine's query when the query calls put or delete (a
 * machine's bug, the same at every replica): the replica answers `query_wrote`, a 500, where any
 * other exception is taken for a replica that failed (the next is asked).
 */
export class QueryWrote extends Error {}

/**
 * A deterministic state machine: its output and its next state depend only on its state and the
 * command (no clock, no randomness, no I/O), so every replica that applies the same log agrees.
 */
export interface StateMachine<C = unknown, Q = unknown> {
  readonly name: string;
  readonly commandSchema: z.ZodType<C>;
  readonly querySchema: z.ZodType<Q>;
  apply(state: MachineState, command: C, ctx: ApplyContext): unknown;
  query(state: MachineState, query: Q): unknown;
  /**
   * The keys apply() will read for this command, if the machine knows them up front: a replica
   * reads them for a whole batch of entries in one statement instead of one per get.
   */
  keysOf?(command: C): string[];
  /**
   * The first field of a valid command whose value is too large to store (the router answers 413
   * naming it), or null. A machine declares its own size limits.
   */
  oversized?(command: C): string | null;
  /**
   * The commands that grow no state (kv's delete; a lock's release, and its renew, which rewrites
   * its lease's row at the same size): taken while the group's storage is at its quota, when every
   * other command is refused (SequencerCore.storageRefusal), which names them by `commands`.
   * Without it none is.
   */
  goesAtQuota?: { test(command: C): boolean; commands: string };
  /**
   * What is wrong with one row of this machine's state (key and value as apply() writes them), or
   * null: a restore refuses a file with such a row (400 naming the line), since apply() and query()
   * trust their own rows. `npm run check-machine` checks every row the machine writes passes.
   * Without it a restore accepts any JSON row.
   */
  checkRow?(key: string, value: unknown): string | null;
  /**
   * Rules across rows (a lease's token at most the counter): a restore feeds every row checkRow
   * accepted, in key order, to one checker and refuses the file if `end()` names a problem.
   * `npm run check-machine` checks the state its commands leave passes.
   */
  checkState?(): StateChecker;
  /**
   * Random commands and queries for this machine, drawn only from rng: the simulator's clients and
   * `npm run check-machine` run them (docs/MACHINES.md).
   */
  readonly generate: MachineGenerator<C, Q>;
}

/** The seeded randomness a generator draws from (the simulator's Prng is one). */
export interface MachineRng {
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [0, n). */
  int(n: number): number;
  chance(p: number): boolean;
  pick<T>(items: readonly T[]): T;
}

export interface MachineGenerator<C, Q> {
  command(rng: MachineRng): C;
  query(rng: MachineRng): Q;
}

/** The command and query types of a machine: `CommandOf<typeof lock>`. */
export type CommandOf<M> = M extends StateMachine<infer C, any> ? C : never;
export type QueryOf<M> = M extends StateMachine<any, infer Q> ? Q : never;

/** A restore's check across rows (StateMachine.checkState). */
export interface StateChecker {
  row(key: string, value: unknown): void;
  /** What is wrong with the rows seen, or null. */
  end(): string | null;
}
