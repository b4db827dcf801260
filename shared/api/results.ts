import type { ErrorCode, ErrorReason } from "./errors.js";
import type { Entry, EntryKind } from "./types.js";

// Response shapes of the public API (API.md), shared by the router and the client.
export interface CommandResult {
  seq: number;
  output: unknown;
  bookmark: string;
  /**
   * An extra field (free under API.md): the answer recorded when an earlier attempt of this
   * (client, request) ran; this one ran nothing. A rerun under a client id that reused request
   * ids looked like new work done (a review).
   */
  replayed?: true;
}
export interface QueryResult {
  result: unknown;
  seq: number;
  replica: string;
  /** The answering replica's position (an extra field, free under API.md): a later sequential read that passes it sees no older state. */
  bookmark: string;
  /** Served by a replica whose rows failed their last scrub, as no other could serve: the result may hold its damage. */
  damaged?: true;
}
export interface LogPage {
  firstSeq: number;
  lastSeq: number;
  commitSeq: number;
  entries: Entry[];
  /** The `from` of the next page, when this one ended before lastSeq (its limit, or 4 MiB of entries). */
  next?: number;
}

/** One command's result in a batch: its outcome, or the error it alone met (the others are unaffected). */
/** An item's result; an error with a seq (too_large) was executed at that seq: its output did not fit the answer. */
export type BatchItemResult = { seq: number; output: unknown; replayed?: true } | { seq?: number; error: { code: ErrorCode; message: string; reason?: ErrorReason }; replayed?: true };
export interface BatchResult {
  results: BatchItemResult[];
  /** The position of the highest seq in the batch: read-your-writes for all of them. */
  bookmark: string;
}

/** One watch event's data (API.md "Watch"): an applied, committed entry and what it changed. */
export interface WatchEvent {
  seq: number;
  kind: EntryKind;
  client: string | null;
  request: number | null;
  command: unknown;
  output: unknown;
  timestamp: string;
  /** The machine's keys the entry wrote, and their new values (null: deleted), in key order. */
  changes: [string, unknown][];
}

/** The first line of a snapshot file (API.md "Snapshot and restore"); `rows` lines of [key, value] follow. */
export interface SnapshotHeader {
  group: string;
  machine: string;
  seq: number;
  rows: number;
  /** XOR over the rows of sha256(key NUL value), the replicas' own digest of a state holding only these rows. */
  digest: string;
  /**
   * Not in API.md (an extra field): the PUT body that makes a group shaped like the source now
   * (its voters and their locations, outputs, checkpoints, sequencer locations, co-location,
   * storage quota), so
   * `smr restore --create` keeps them. A restore ignores it.
   */
  spec?: SnapshotSpec;
}

export interface SnapshotSpec {
  replicas: number;
  locations?: (string | null)[];
  outputs: "first" | "majority";
  checkpointEvery: number;
  sessionIdleSeconds?: number;
  sequencerLocations?: string[];
  colocate?: false;
  storageQuotaMiB?: number;
}
