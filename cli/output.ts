// Output: tables for people (cli-table3), one JSON document per answer for scripts (--json).
import Table from "cli-table3";

/**
 * Characters a terminal acts on rather than shows: C0 and C1 controls (escape sequences, line
 * breaks), DEL, and the bidirectional marks and overrides that reorder what is shown.
 */
const unsafeChars = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;
const hasUnsafe = new RegExp(unsafeChars.source); // the same set, without /g's lastIndex state

/** The ones JSON.stringify leaves as they are (it escapes C0 controls inside strings). */
const unsafeInJson = /[\u007f-\u009f\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;

/** Text with the characters a terminal acts on escaped (`\u001b`), the rest as it is. */
export function escapeUnsafe(text: string, which: RegExp = unsafeChars): string {
  return text.replace(which, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/**
 * Text from the server (a key, a client name, a message) as a person's output shows it: as it is,
 * or JSON-quoted with its control characters escaped. Any writer chooses the keys: one holding
 * ESC sequences cleared the operator's screen and retitled the terminal through `smr list` and
 * `smr watch`, and one holding a line break looked like two (a probe).
 */
export function printable(text: string): string {
  return hasUnsafe.test(text) ? escapeUnsafe(JSON.stringify(text)) : text;
}

/**
 * `--<option>=<value>` as a POSIX shell takes it back as one argument: the value as it is when
 * only safe characters, else single-quoted. Null for a value no command line can carry (a
 * control character: a NUL cannot be in an argument, and the others would act on the terminal).
 * `more: --after -b c` pasted back was three arguments (a probe).
 */
export function shellOption(option: string, value: string): string | null {
  if (hasUnsafe.test(value)) return null;
  if (/^[A-Za-z0-9_./:@%+,=-]+$/.test(value)) return `--${option}=${value}`;
  return `--${option}='${value.replace(/'/g, "'\\''")}'`;
}

/** JSON for a person's output: JSON.stringify's, with the controls it leaves as they are (C1, DEL, bidi) escaped too. Still valid JSON. */
export function safeJson(value: unknown, indent?: number): string {
  const text = JSON.stringify(value, null, indent);
  // Only inside strings can such characters be (JSON's own layout is spaces and line breaks).
  return text === undefined ? "undefined" : escapeUnsafe(text, unsafeInJson);
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + "\n");
}

/** Text cut to maxChars characters (code points: a cut inside an emoji printed "�", a probe), "…" marking the cut. */
function cut(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  const chars = Array.from(text);
  return chars.length > maxChars ? chars.slice(0, maxChars - 1).join("") + "…" : text;
}

/** A value as one line of JSON, cut to maxChars for a table cell. */
export function brief(value: unknown, maxChars = 60): string {
  return cut(value === undefined ? "" : safeJson(value), maxChars);
}

type Cell = string | number | boolean | null | undefined;

/**
 * Characters a table cell shows at most: a 300-character key made rows 300 columns wide (a probe).
 * `--json` has everything whole.
 */
const cellCharsMax = 100;

function cell(v: Cell): string {
  return v === null || v === undefined ? "-" : cut(printable(String(v)), cellCharsMax);
}

// No colours: the tables are read in terminals and in logs alike.
const plain = { head: [] as string[], border: [] as string[] };
// No line between two rows (cli-table3 draws one by default): a list of 100 groups took 200 lines.
const compact = { mid: "", "left-mid": "", "mid-mid": "", "right-mid": "" };

export function printTable(head: string[], rows: Cell[][]): void {
  const t = new Table({ head, style: plain, chars: compact });
  for (const r of rows) t.push(r.map(cell));
  // The head keeps its line: the top border's, with the joints of a middle line (cells are one line each).
  const lines = t.toString().split("\n");
  if (rows.length > 0) lines.splice(2, 0, lines[0]!.replace("┌", "├").replaceAll("┬", "┼").replace("┐", "┤"));
  process.stdout.write(lines.join("\n") + "\n");
}

/** One record as a two-column table of its fields. */
export function printRecord(record: Record<string, Cell>): void {
  const t = new Table({ style: plain, chars: compact });
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

/**
 * What a reader closing stdout early (EPIPE) means: nothing (`smr watch | head`: the command ends,
 * exit 0), or, once a command sets `cutShort`, that its output is incomplete (`smr snapshot g |
 * head` exited 0, a backup cut short: a review).
 */
export const stdoutClosed: { cutShort: string | null } = { cutShort: null };

/**
 * Set once a command's stdout carries its data as a stream (a snapshot, a watch's events): an error
 * under --json is not added to it as a document (it was appended to a snapshot file: a review).
 */
export const stdoutCarries: { stream: boolean } = { stream: false };
