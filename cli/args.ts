// Argument parsers for commander: a bad value is a usage error (exit 2) that names the argument.
import { readFileSync, statSync } from "node:fs";
import { InvalidArgumentError } from "commander";
import { groupNamePattern } from "../shared/api/names.js";

/** A mistake in how the CLI was called (exit 2), as opposed to an error the API answered (exit 1). */
export class UsageError extends Error {}

export function jsonArg(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new InvalidArgumentError(`not JSON (${(err as Error).message}); quote strings as '"text"'`);
  }
}

export function intArg(text: string): number {
  const n = Number(text);
  if (!/^-?[0-9]+$/.test(text) || !Number.isSafeInteger(n)) throw new InvalidArgumentError("not an integer");
  return n;
}

/** A log position: an integer >= 0. */
export function seqArg(text: string): number {
  const n = intArg(text);
  if (n < 0) throw new InvalidArgumentError("must be at least 0");
  return n;
}

export function positiveArg(text: string): number {
  const n = intArg(text);
  if (n < 1) throw new InvalidArgumentError("must be at least 1");
  return n;
}

/** A group's name (API.md's pattern): checked before anything is sent, so a bad one is a usage error. */
export function groupArg(text: string): string {
  if (!groupNamePattern.test(text)) throw new InvalidArgumentError(`not a group name (${groupNamePattern.source})`);
  return text;
}

export function listArg(text: string): string[] {
  return text.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
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

/** A file of JSON: one document, or NDJSON (one document per non-empty line). */
export function readJsonFile(file: string): unknown[] {
  inputFile(file);
  const text = readFileSync(file, "utf8");
  try {
    const doc = JSON.parse(text) as unknown;
    return Array.isArray(doc) ? doc : [doc];
  } catch {
    // not a single document: NDJSON
  }
  const docs: unknown[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === "") return;
    try {
      docs.push(JSON.parse(line));
    } catch (err) {
      throw new UsageError(`${file}:${i + 1}: not JSON (${(err as Error).message})`);
    }
  });
  return docs;
}
