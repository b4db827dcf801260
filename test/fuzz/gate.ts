// The router's checks on a command or query body, step for step (workers/router.ts: jsonBody,
// then the body schema, then the machine's validation), built from the same shared functions, so
// the fuzz harness submits to the cores exactly what production would accept, and predicts the
// answer production must give. No Node imports: the workerd fuzz test uses it too.
import { type Checked, validateCommand, validateQuery } from "../../shared/api/commands.js";
import { checkJson, parseJson, repeatedKey } from "../../shared/api/input.js";
import { commandBody, describeZodError, queryBody } from "../../shared/api/schemas.js";
import { bodyBytesMax } from "../../shared/limits.js";
import { machineFor } from "../../shared/machines/index.js";
import { decodeBookmark } from "../../shared/api/bookmark.js";
import type { MachineName } from "./arbitraries.js";

export type RefusalCode = "bad_request" | "too_large";
/** Where the router refuses: reading the body, its JSON, checkJson, the body schema, the machine. */
export type Stage = "size" | "empty" | "json" | "checkJson" | "schema" | "bookmark" | "machine";

export type Refused = { ok: false; code: RefusalCode; stage: Stage; message: string };
export type CommandGate = { ok: true; client: string; request: number; command: unknown; raw: unknown } | Refused;
export type QueryGate = { ok: true; query: unknown; consistency: string; bookmarkSeq: number | null; raw: unknown } | Refused;

const refuse = (code: RefusalCode, stage: Stage, message: string): Refused => ({ ok: false, code, stage, message });

/** jsonBody: size, then strict UTF-8, then JSON.parse, then checkJson (depth, well-formed strings, numbers kept as written), then repeated keys. */
export function gateJson(bytes: Uint8Array, withCheckJson = true): { ok: true; value: unknown } | Refused {
  if (bytes.byteLength > bodyBytesMax) return refuse("too_large", "size", `body: larger than ${bodyBytesMax} bytes`);
  if (bytes.byteLength === 0) return refuse("bad_request", "empty", "body: a JSON body is required");
  let value: unknown;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
    // parseJson marks the numbers JSON.parse would change, which checkJson refuses.
    value = withCheckJson ? parseJson(text) : JSON.parse(text);
  } catch {
    return refuse("bad_request", "json", "body: malformed JSON");
  }
  const problem = withCheckJson ? (checkJson(value, "body") ?? repeatedKey(text, value, "body")) : null;
  if (problem !== null) return refuse("bad_request", "checkJson", problem);
  return { ok: true, value };
}

function fromChecked(r: Checked<unknown>): { ok: true; value: unknown } | Refused {
  return r.ok ? r : refuse(r.code, "machine", r.message);
}

/** withCheckJson false: the router as it was before checkJson (to show the harness finds that bug). */
export function gateCommand(machine: MachineName, bytes: Uint8Array, withCheckJson = true): CommandGate {
  const j = gateJson(bytes, withCheckJson);
  if (!j.ok) return j;
  const b = commandBody.safeParse(j.value);
  if (!b.success) return refuse("bad_request", "schema", describeZodError(b.error, "body", j.value));
  const c = fromChecked(validateCommand(machineFor(machine), b.data.command));
  if (!c.ok) return c;
  return { ok: true, client: b.data.client, request: b.data.request, command: c.value, raw: b.data.command };
}

export function gateQuery(machine: MachineName, bytes: Uint8Array, withCheckJson = true): QueryGate {
  const j = gateJson(bytes, withCheckJson);
  if (!j.ok) return j;
  const b = queryBody.safeParse(j.value);
  if (!b.success) return refuse("bad_request", "schema", describeZodError(b.error, "body", j.value));
  const given = b.data.bookmark === undefined ? null : decodeBookmark(b.data.bookmark);
  if (b.data.bookmark !== undefined && given === null) return refuse("bad_request", "bookmark", "bookmark: malformed");
  // The older form names no group: a sequential read with one is linearizable (workers/routes/commands.ts).
  const older = given !== null && !given.life;
  const consistency = older && b.data.consistency === "sequential" ? "linearizable" : b.data.consistency;
  const q = fromChecked(validateQuery(machineFor(machine), b.data.query));
  if (!q.ok) return q;
  return { ok: true, query: q.value, consistency, bookmarkSeq: older ? null : (given?.seq ?? null), raw: b.data.query };
}
