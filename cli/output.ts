// Output: tables for people (cli-table3), one JSON document per answer for scripts (--json).
import Table from "cli-table3";

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + "\n");
}

/** A value as one line of JSON, cut to maxChars for a table cell. */
export function brief(value: unknown, maxChars = 60): string {
  const text = value === undefined ? "" : JSON.stringify(value);
  return text.length > maxChars ? text.slice(0, maxChars - 1) + "…" : text;
}

type Cell = string | number | boolean | null | undefined;

function cell(v: Cell): string {
  return v === null || v === undefined ? "-" : String(v);
}

// No colours: the tables are read in terminals and in logs alike.
const plain = { head: [] as string[], border: [] as string[] };

export function printTable(head: string[], rows: Cell[][]): void {
  const t = new Table({ head, style: plain });
  for (const r of rows) t.push(r.map(cell));
  process.stdout.write(t.toString() + "\n");
}

/** One record as a two-column table of its fields. */
export function printRecord(record: Record<string, Cell>): void {
  const t = new Table({ style: plain });
  for (const [k, v] of Object.entries(record)) t.push({ [k]: cell(v) });
  process.stdout.write(t.toString() + "\n");
}

export function note(text: string): void {
  process.stderr.write(text + "\n");
}

/** A hash cut to its first 12 digits: enough to compare replicas by eye. */
export function hashPrefix(hash: string | null | undefined): string {
  return hash ? hash.slice(0, 12) : "-";
}
