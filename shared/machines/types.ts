import type { z } from "zod";

/** One ordered, sync key-value table: SQLite in a Durable Object, a sorted map in Node. */
export interface RowStore {
  get(key: string): string | null;
  put(key: string, value: string): void;
  delete(key: string): void;
  /** Rows whose key starts with prefix and is > after (if given), in key (code point) order. */
  scan(prefix: string, after: string | null, limit: number): [string, string][];
}

/** What a state machine sees: JSON values under its own key namespace. */
export interface MachineState {
  get<T>(key: string): T | null;
  put(key: string, value: unknown): void;
  delete(key: string): boolean;
  scan<T>(prefix: string, after: string | null, limit: number): [string, T][];
}

export interface ApplyContext {
  seq: number;
  /** The sequencer's timestamp of the entry: the only clock a machine may read. */
  timestamp: string;
}

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
}
