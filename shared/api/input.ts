// The edge's checks on a parsed JSON body, before any schema sees it: nesting depth, and strings
// that are well-formed Unicode. Both close a class of bug, not one instance:
// - a string with a lone surrogate (valid JSON: "\ud800") does not survive UTF-8 storage (SQLite
//   stores it as replacement characters), so the rows a replica stored differed from the rows it
//   hashed, the scrub found every replica "diverged" and one request bricked its group;
// - recursive code (zod, canonical JSON) overflows the stack on deep input: a 500.
// The walk is iterative, so no input can overflow it, and it checks object keys as well as values.
import { jsonDepthMax } from "../limits.js";

/** A lone surrogate: a high one not followed by a low one, or a low one not preceded by a high one. */
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

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
