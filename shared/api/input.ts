// The edge's checks on a parsed JSON body, before any schema sees it: nesting depth, and strings
// that are well-formed Unicode. Both close a class of bug, not one instance:
// - a string with a lone surrogate (valid JSON: "\ud800") does not survive UTF-8 storage (SQLite
//   stores it as replacement characters), so the rows a replica stored differed from the rows it
//   hashed, the scrub found every replica "diverged" and one request bricked its group;
// - recursive code (zod, canonical JSON) overflows the stack on deep input: a 500;
// - a number JSON.parse changes (12345678901234567890 stored as 12345678901234567000, 1e-400 as 0)
//   was taken and stored changed, with a 200 (a probe): parseJson marks it, and the walk refuses it.
// The walk is iterative, so no input can overflow it, and it checks object keys as well as values.
import { jsonDepthMax } from "../limits.js";

/** A lone surrogate: a high one not followed by a low one, or a low one not preceded by a high one. */
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** A number whose text JSON.parse would change, left in the parsed value so checkJson says where it was. */
export class ChangedNumber {
  constructor(readonly problem: string) {}
}

/**
 * Could the text hold a number JSON.parse changes? Such a number has an exponent or 16 digits in a
 * row (past 2^53, past a double's range, or below its smallest all need one or the other), so the
 * usual body, without either, skips the reviver (which costs about as much as the parse again).
 */
const mayChangeNumbers = /\d{16}|\d[eE]/;

/**
 * JSON.parse, with each number it would change as a ChangedNumber (see numberChanged); `as`: what
 * would happen to it ("stored" at the server, "sent" by the CLI).
 */
export function parseJson(text: string, as = "stored"): unknown {
  if (!mayChangeNumbers.test(text)) return JSON.parse(text) as unknown;
  if (!sourceGiven) return scannedJson(text, as);
  return JSON.parse(text, function (_key: string, value: unknown, context?: { source?: string }) {
    const source = context?.source;
    if (typeof value !== "number" || source === undefined) return value;
    const problem = numberChanged(source, value, as);
    return problem === null ? value : new ChangedNumber(problem);
  } as (key: string, value: unknown) => unknown) as unknown;
}

/**
 * Whether this engine's JSON.parse hands a reviver each value's source text (workerd, Node 22; not
 * Node 20, where the CLI run as `node bin/smr.mjs` stored 12345678901234567890 changed and exited 0:
 * a probe).
 */
const sourceGiven = (() => {
  let given = false;
  JSON.parse("1", (_key: string, value: unknown, context?: { source?: string }) => ((given = context?.source === "1"), value));
  return given;
})();

/**
 * parseJson without source text: the numbers found in the text (outside its strings), each checked
 * against what JSON.parse reads it as; the first one changed makes the whole value a ChangedNumber
 * (checkJson then names the root, not the field).
 */
export function scannedJson(text: string, as: string): unknown {
  const doc = JSON.parse(text) as unknown;
  // Unrolled (one step per run of plain characters): the alternation overflowed V8's stack on a
  // string of 10 million characters (a review).
  const numbers = text.replace(/"[^"\\]*(?:\\.[^"\\]*)*"/g, '""').match(/-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g) ?? [];
  for (const source of numbers) {
    const problem = numberChanged(source, Number(source), as);
    if (problem !== null) return new ChangedNumber(problem);
  }
  return doc;
}

/**
 * Why a JSON number's value is not what its text says, or null: beyond a double's range, below its
 * smallest (1e-400 read as 0), or an integer beyond 2^53 whose digits the double does not keep,
 * however written (12345678901234567890, 12345678901234567890.0, 1.2345678901234567890e19,
 * 9007199254740993e0: a review). Its digits are compared with the double's shortest form's, so
 * 1.5e300 and 1e20 pass. Fractions are approximate by nature: let be. `as`: what would happen to
 * it ("sent" by the CLI, "stored" by the server).
 */
export function numberChanged(source: string, value: number, as: string): string | null {
  if (!Number.isFinite(value)) return `the number ${source} is out of range (beyond a double's)`;
  const m = /^-?(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(source);
  if (!m) return null;
  const digits = m[1]! + (m[2] ?? "");
  if (value === 0) return /^0*$/.test(digits) ? null : `the number ${source} is too small for a double (it would be ${as} as 0)`;
  if (Math.abs(value) <= Number.MAX_SAFE_INTEGER) return null;
  // Not an integer (a fraction left after its exponent): approximate, let be.
  const shift = Number(m[3] ?? "0") - (m[2]?.length ?? 0);
  if (shift < 0 && !/^0*$/.test(digits.slice(shift))) return null;
  if (significant(digits) === significant(String(Math.abs(value)).replace(/e.*$/, ""))) return null;
  return `the integer ${source} is beyond 2^53 and would be ${as} as ${value}: quote it as a string`;
}

/** A number's digits without its point and its leading and trailing zeros. */
function significant(digits: string): string {
  return digits.replace(".", "").replace(/^0+/, "").replace(/0+$/, "");
}

export function wellFormed(text: string): boolean {
  return !loneSurrogate.test(text);
}

interface Frame {
  value: unknown;
  depth: number;
  parent: Frame | null;
  key: string | number | null;
}

function pathOf(root: string, frame: Frame, last?: string): string {
  const parts: (string | number)[] = [];
  for (let f: Frame | null = frame; f && f.key !== null; f = f.parent) parts.push(f.key);
  parts.reverse();
  if (last !== undefined) parts.push(last);
  return [root, ...parts.map(String)].join(".");
}

/** "field: problem" for the first string that is not well-formed or the first value nested too deep; null if fine. */
export function checkJson(value: unknown, root: string, depthMax = jsonDepthMax): string | null {
  const stack: Frame[] = [{ value, depth: 0, parent: null, key: null }];
  while (stack.length > 0) {
    const f = stack.pop()!;
    const v = f.value;
    if (typeof v === "string") {
      if (!wellFormed(v)) return `${pathOf(root, f)}: not well-formed Unicode (a lone surrogate)`;
      continue;
    }
    // JSON.parse reads 1e309 as Infinity, which JSON.stringify then writes as null: refused, not changed.
    if (typeof v === "number" && !Number.isFinite(v)) return `${pathOf(root, f)}: a number out of range (beyond a double's)`;
    if (v instanceof ChangedNumber) return `${pathOf(root, f)}: ${v.problem}`;
    if (v === null || typeof v !== "object") continue;
    if (f.depth >= depthMax) return `${pathOf(root, f)}: nested deeper than ${depthMax} levels`;
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ value: v[i], depth: f.depth + 1, parent: f, key: i });
      continue;
    }
    for (const k of Object.keys(v)) {
      if (!wellFormed(k)) return `${pathOf(root, f, "(a key)")}: not well-formed Unicode (a lone surrogate)`;
      stack.push({ value: (v as Record<string, unknown>)[k], depth: f.depth + 1, parent: f, key: k });
    }
  }
  return null;
}

/** A JSON string token (its escapes included), then whether a colon follows: a key. */
const stringToken = /"[^"\\]*(?:\\.[^"\\]*)*"\s*(:?)/g;

/**
 * "field: problem" if an object in the JSON text repeats a key, else null. JSON.parse keeps the
 * last of `{"op":"delete","op":"get"}` without a word, so a body could mean one command to a proxy
 * that reads the first and another here, and the exactly-once pair could be the second `client`
 * (a probe). The check counts the keys in the text against those parsed (one scan, about as costly
 * as the parse), and only when they differ looks for the object and key to name. `value`: the text
 * parsed.
 */
export function repeatedKey(text: string, value: unknown, root: string): string | null {
  let inText = 0;
  stringToken.lastIndex = 0;
  for (let m = stringToken.exec(text); m !== null; m = stringToken.exec(text)) if (m[1]) inText++;
  if (inText === keysOf(value)) return null;
  const found = findRepeated(text);
  if (found === null) return null;
  // A long key is cut in the message (a 5,000-character key was quoted whole: a probe).
  const key = found.key.length > 100 ? `${found.key.slice(0, 100)}…` : found.key;
  return `${[root, ...found.path.map(String)].join(".")}: the key ${JSON.stringify(key)} appears more than once`;
}

function keysOf(value: unknown): number {
  let n = 0;
  const stack = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (v === null || typeof v !== "object") continue;
    // One push each: a spread of a 130,000-item array overflowed the stack (a 500, a review).
    if (Array.isArray(v)) for (const x of v as unknown[]) stack.push(x);
    else for (const k of Object.keys(v)) (n++, stack.push((v as Record<string, unknown>)[k]));
  }
  return n;
}

/** The first repeated key of well-formed JSON text, with the path of its object. */
function findRepeated(text: string): { path: (string | number)[]; key: string } | null {
  const token = /"[^"\\]*(?:\\.[^"\\]*)*"|[{}[\],:]/g;
  // An object's keys so far and the last one (its child's place); an array's index.
  const scopes: { keys: Set<string> | null; at: string | number }[] = [];
  let expectKey = false;
  for (let m = token.exec(text); m !== null; m = token.exec(text)) {
    const t = m[0];
    const top = scopes[scopes.length - 1];
    if (t === "{" || t === "[") {
      scopes.push(t === "{" ? { keys: new Set(), at: "" } : { keys: null, at: 0 });
      expectKey = t === "{";
    } else if (t === "}" || t === "]") {
      scopes.pop();
      expectKey = false;
    } else if (t === ",") {
      if (top?.keys) expectKey = true;
      else if (top) top.at = (top.at as number) + 1;
    } else if (t !== ":" && expectKey && top?.keys) {
      const key = JSON.parse(t) as string;
      if (top.keys.has(key)) return { path: scopes.slice(0, -1).map((s) => s.at), key };
      top.keys.add(key);
      top.at = key;
      expectKey = false;
    }
  }
  return null;
}
