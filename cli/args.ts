// Argument parsers for commander: a bad value is a usage error (exit 2) that names the argument.
import { readFileSync, statSync } from "node:fs";
import { InvalidArgumentError } from "commander";
import { checkJson, parseJson, repeatedKey } from "../shared/api/input.js";
import { groupNamePattern, replicaIdPattern, tokenIdPattern } from "../shared/api/names.js";
import { isLocationHint, locationHints } from "../shared/geo.js";

/** A mistake in how the CLI was called (exit 2), as opposed to an error the API answered (exit 1). */
export class UsageError extends Error {}

/**
 * A JSON argument. A number JSON.parse would change is refused, named by its field: 1e400 became
 * Infinity and was sent as null, 12345678901234567890 was sent as 12345678901234567000 (a probe:
 * both exit 0).
 */
export function jsonArg(text: string): unknown {
  let doc: unknown;
  try {
    doc = parseJson(text, "sent");
  } catch (err) {
    throw new InvalidArgumentError(`not JSON (${(err as Error).message}); quote strings as '"text"'`);
  }
  const problem = checkJson(doc, "the value") ?? repeatedKey(text, doc, "the value");
  if (problem) throw new InvalidArgumentError(problem);
  return doc;
}


export function intArg(text: string): number {
  const n = Number(text);
  if (!/^-?[0-9]+$/.test(text)) throw new InvalidArgumentError("not an integer");
  // An integer all the same: 9007199254740993 was "not an integer" (a probe).
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`too large: at most ${Number.MAX_SAFE_INTEGER} (2^53 - 1) either way`);
  return n;
}

/** A log position: an integer >= 0. */
export function seqArg(text: string): number {
  const n = intArg(text);
  if (n < 0) throw new InvalidArgumentError("must be at least 0");
  return n;
}

/** An integer of 0 or more (`--retry-for 0`: no retries). */
export function nonNegativeArg(text: string): number {
  const n = intArg(text);
  if (n < 0) throw new InvalidArgumentError("must be at least 0");
  return n;
}

export function positiveArg(text: string): number {
  const n = intArg(text);
  if (n < 1) throw new InvalidArgumentError("must be at least 1");
  return n;
}

/** An integer from 1 to max: a limit the server would refuse past its maximum is a usage error here (it was an API error, exit 1). */
export function upToArg(max: number): (text: string) => number {
  return (text) => {
    const n = positiveArg(text);
    if (n > max) throw new InvalidArgumentError(`must be at most ${max}`);
    return n;
  };
}

/** An integer from min to max. */
export function betweenArg(min: number, max: number): (text: string) => number {
  return (text) => {
    const n = upToArg(max)(text);
    if (n < min) throw new InvalidArgumentError(`must be at least ${min}`);
    return n;
  };
}

/** A group's name (API.md's pattern): checked before anything is sent, so a bad one is a usage error. */
export function groupArg(text: string): string {
  if (!groupNamePattern.test(text)) throw new InvalidArgumentError(`not a group name (${groupNamePattern.source})`);
  return text;
}

/** A replica id (r1, r2, ...): checked before anything is sent, as a group's name is (a probe: `'R 1'` was an API error, exit 1). */
export function replicaIdArg(text: string): string {
  if (!replicaIdPattern.test(text)) throw new InvalidArgumentError(`not a replica id (${replicaIdPattern.source}, e.g. r2)`);
  return text;
}

/** A token id (8 hex digits, as `smr tokens` lists them): checked before anything is sent. */
export function tokenIdArg(text: string): string {
  if (!tokenIdPattern.test(text)) throw new InvalidArgumentError(`not a token id (${tokenIdPattern.source}, as \`smr tokens <group>\` lists them)`);
  return text;
}

/** A location hint (the server's 400 was an API error, exit 1: a probe's `--location mars`). */
export function locationArg(text: string): string {
  if (!isLocationHint(text)) throw new InvalidArgumentError(`not a location hint (${locationHints.join(" ")})`);
  return text;
}

/** Comma-separated location hints. */
export function locationListArg(text: string): string[] {
  const items = listArg(text);
  const bad = items.find((s) => !isLocationHint(s));
  if (bad !== undefined) throw new InvalidArgumentError(`${JSON.stringify(bad)} is not a location hint (${locationHints.join(" ")})`);
  return items;
}

/** Comma-separated values; an empty one is refused (`--locations weur,,apac` made a group of two, a probe). */
export function listArg(text: string): string[] {
  const items = text.split(",").map((s) => s.trim());
  if (items.some((s) => s.length === 0)) throw new InvalidArgumentError("an empty item in the list (two commas, or one at an end)");
  return items;
}

/** A value that must not be empty: `--token ""` fell back to .dev.vars' admin token, `--client ""` to a random id (a probe). */
export function nonEmptyArg(text: string): string {
  if (text.length === 0) throw new InvalidArgumentError("empty");
  return text;
}

/**
 * A file the command reads: one that is missing, or a folder, is a usage error (exit 2), not a
 * stack of ENOENT. `regular`: it must be a plain file (a restore reads its start, then streams
 * it again); otherwise a pipe (`/dev/stdin`, `<(...)`) is fine. Its size (0 for a pipe).
 */
export function inputFile(file: string, regular = false): number {
  let size: number;
  try {
    const st = statSync(file);
    if (st.isDirectory()) throw new UsageError(`${file}: a directory, not a file`);
    // `smr snapshot a | smr restore b /dev/stdin` was refused as "not a file": say why, and what to do.
    if (regular && !st.isFile()) throw new UsageError(`${file}: not a regular file (a pipe or a device): it is read twice, its header first, so save it to a file and give that`);
    size = st.size;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`${file}: cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  return size;
}

/** A file of JSON: one document, or NDJSON (one document per non-empty line); `-` is stdin. A leading byte order mark is skipped. */
export function readJsonFile(file: string): unknown[] {
  const path = file === "-" ? "/dev/stdin" : file;
  inputFile(path);
  const text = readFileSync(path, "utf8").replace(/^\uFEFF/, "");
  const checked = (doc: unknown, where: string, source?: string) => {
    const problem = checkJson(doc, where) ?? (source === undefined ? null : repeatedKey(source, doc, where));
    if (problem) throw new UsageError(problem);
    return doc;
  };
  let whole: unknown;
  try {
    // One document (pretty-printed, perhaps) holding a number it would change is said of the file
    // (it was read again as NDJSON, and the error was of its first line's JSON, a review).
    whole = parseJson(text, "sent");
  } catch {
    whole = undefined; // not a single document: NDJSON
  }
  if (whole !== undefined && !Array.isArray(whole)) return [checked(whole, file, text)];
  if (whole !== undefined) {
    // Named as the items are (file[1].command), not file.1.command.
    const repeated = repeatedKey(text, whole, file);
    if (repeated) throw new UsageError(file + repeated.slice(file.length).replace(/^\.(\d+)/, "[$1]"));
    return whole.map((doc, i) => checked(doc, `${file}[${i}]`));
  }
  const docs: unknown[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === "") return;
    let doc: unknown;
    try {
      doc = parseJson(line, "sent");
    } catch (err) {
      throw new UsageError(`${file}:${i + 1}: not JSON (${(err as Error).message})`);
    }
    docs.push(checked(doc, `${file}:${i + 1}`, line));
  });
  return docs;
}
