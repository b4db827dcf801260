// A command's output, measured before its stored values are parsed. A kv get answers a stored
// value as it is (MachineState.getStored): the output's JSON text is put together from the stored
// texts, and only an output within outputCharsMax is parsed into the value it answers. Parsing
// first made one request of 150 txns of 64 gets of large values cost seconds on every replica (a
// probe: a 250 KB batch held every other write of its group for 7 s), only for each output to be
// replaced by output_too_large. The text is the one JSON.stringify gives the parsed output: a
// stored text is JSON.stringify's own, a fixed point of parse-then-stringify, so no replica, on
// this version or an older one, answers or stores anything different.
import { effectOutputCharsMax, outputCharsMax } from "../limits.js";

/** A stored value's JSON text, not parsed (see MachineState.getStored). */
export class StoredJson {
  constructor(readonly text: string) {}
}

/** JSON.stringify(output) with every StoredJson parsed, without parsing them: their texts as they are. */
export function outputJson(output: unknown): string {
  return jsonOf(output) ?? "null";
}

function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** JSON.stringify's text of v (undefined where it gives undefined: a member it leaves out). */
function jsonOf(v: unknown): string | undefined {
  if (v instanceof StoredJson) return v.text;
  if (typeof v !== "object" || v === null) return JSON.stringify(v);
  if (Array.isArray(v)) {
    const items: string[] = [];
    for (let i = 0; i < v.length; i++) items.push(jsonOf(v[i]) ?? "null");
    return `[${items.join(",")}]`;
  }
  if (!isPlainObject(v) || typeof (v as { toJSON?: unknown }).toJSON === "function") return JSON.stringify(v);
  const members: string[] = [];
  for (const k of Object.keys(v)) {
    const text = jsonOf((v as Record<string, unknown>)[k]);
    if (text !== undefined) members.push(`${JSON.stringify(k)}:${text}`);
  }
  return `{${members.join(",")}}`;
}

/**
 * The output with every StoredJson parsed: the value apply would have answered had it parsed them.
 * What holds none is returned as it is (not copied).
 */
export function materialized(output: unknown): unknown {
  if (output instanceof StoredJson) return JSON.parse(output.text);
  if (typeof output !== "object" || output === null) return output;
  if (Array.isArray(output)) {
    let copy: unknown[] | null = null;
    for (let i = 0; i < output.length; i++) {
      const item = materialized(output[i]);
      if (item !== output[i]) (copy ??= output.slice())[i] = item;
    }
    return copy ?? output;
  }
  if (!isPlainObject(output)) return output;
  const members = Object.entries(output);
  let changed = false;
  for (const m of members) {
    const value = materialized(m[1]);
    if (value !== m[1]) [m[1], changed] = [value, true];
  }
  // fromEntries defines each member: a "__proto__" member stays a member (assigning it would set the prototype).
  return changed ? Object.fromEntries(members) : output;
}

/**
 * The boolean and number members at an output's top level (a txn's `succeeded`), kept in its
 * output_too_large marker: the command ran, and without them the client could not tell how (a probe's
 * txn of 63 large gets answered only the marker, and which branch ran was lost). The marker's
 * own fields win.
 */
function flags(output: unknown): Record<string, boolean | number> {
  if (typeof output !== "object" || output === null || Array.isArray(output) || output instanceof StoredJson) return {};
  const kept: [string, boolean | number][] = [];
  for (const [k, v] of Object.entries(output)) {
    // Bounded: a machine's output may be a map of 300,000 counters, and a marker as large as the
    // output it replaces would stop every replica at the entry, as the output would have.
    if (kept.length >= markerFlagsMax) break;
    if (k === "error" || k === "chars" || k === "limit" || k.length > markerFlagCharsMax) continue;
    if (typeof v === "boolean" || (typeof v === "number" && Number.isFinite(v))) kept.push([k, v]);
  }
  return Object.fromEntries(kept);
}

/** At most this many flags, of names at most this long, in a marker (in the output's member order). */
const markerFlagsMax = 8;
const markerFlagCharsMax = 64;

/** An output's text whole up to limitChars, else a marker with its length, the limit and its flags. */
function keptUpTo(text: string, output: unknown, limitChars: number): string {
  if (text.length <= limitChars) return text;
  return JSON.stringify({ error: "output_not_kept", chars: text.length, limit: limitChars, ...flags(output) });
}

/** The watch's copy of an output (see effectOutputCharsMax): whole, or a marker with its length and flags. */
export function keptForWatch(text: string, output: unknown): string {
  return keptUpTo(text, output, effectOutputCharsMax);
}

/**
 * The session's copy of an output (a retry's answer; see sessionOutputFreeCharsDefault): whole
 * when at most freeChars longer than what its entry brought (its command's JSON and the old values
 * of the rows it overwrote or deleted), else the marker. Deterministic: the output, the entry,
 * the state before it and the group's setting only.
 */
export function keptForSession(text: string, output: unknown, broughtChars: number, freeChars: number): string {
  return keptUpTo(text, output, broughtChars + freeChars);
}

/**
 * An applied command's output and its JSON text (as stored in its session row). An output over
 * outputCharsMax characters is replaced, on every replica alike, by
 * {"error":"output_too_large","chars":n,"limit":outputCharsMax} and its top-level flags. `stored`: the output may hold
 * StoredJson values (the machine called getStored).
 */
export function measuredOutput(output: unknown, stored: boolean): { output: unknown; text: string } {
  const text = stored ? outputJson(output) : (JSON.stringify(output) ?? "null");
  if (text.length > outputCharsMax) {
    const marker = { error: "output_too_large", chars: text.length, limit: outputCharsMax, ...flags(output) };
    return { output: marker, text: JSON.stringify(marker) };
  }
  return { output: stored ? materialized(output) : output, text };
}
