import type { Entry } from "./types.js";

// Response shapes of the public API (API.md), shared by the router and the client.
export interface CommandResult {
  seq: number;
  output: unknown;
  bookmark: string;
}
export interface QueryResult {
  result: unknown;
  seq: number;
  replica: string;
}
export interface LogPage {
  firstSeq: number;
  lastSeq: number;
  commitSeq: number;
  entries: Entry[];
}
