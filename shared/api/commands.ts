// The one validation of a command (and of a query) against its machine, shared by the router and
// by the simulator's fuzzing of the cores, so both see exactly the inputs production accepts.
import { valueBytesMax } from "../limits.js";
import type { StateMachine } from "../machines/types.js";
import { describeZodError } from "./schemas.js";

export type Checked<T> = { ok: true; value: T } | { ok: false; code: "bad_request" | "too_large"; message: string };

export function validateCommand(machine: StateMachine<any, any>, command: unknown, field = "body.command"): Checked<unknown> {
  const r = machine.commandSchema.safeParse(command);
  if (!r.success) return { ok: false, code: "bad_request", message: describeZodError(r.error, field, command) };
  const big = machine.oversized?.(r.data) ?? null;
  if (big !== null) return { ok: false, code: "too_large", message: `${field}.${big}: larger than ${valueBytesMax} bytes serialized` };
  // The command as sent, not the schema's copy of it: zod's json() rebuilds objects and drops an
  // own "__proto__" key, so a value was silently changed (found by the fuzzer). The schemas are
  // strict and transform nothing, so what passed them is exactly what was sent.
  return { ok: true, value: command };
}

export function validateQuery(machine: StateMachine<any, any>, query: unknown, field = "body.query"): Checked<unknown> {
  const r = machine.querySchema.safeParse(query);
  if (!r.success) return { ok: false, code: "bad_request", message: describeZodError(r.error, field, query) };
  return { ok: true, value: r.data };
}
