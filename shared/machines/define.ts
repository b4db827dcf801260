// The extension point: a user's machine is `export const mine = defineMachine({...})` in its own
// file, listed in shared/machines/index.ts (docs/MACHINES.md).
import type { z } from "zod";
import type { ApplyContext, MachineRng, MachineState, StateMachine } from "./types.js";

/** What `{"machine": NAME}` names: lowercase, as group names are. */
export const machineNamePattern = /^[a-z][a-z0-9-]{0,31}$/;

/**
 * A StateMachine whose command and query types come from its schemas alone:
 * a generator returning `{ op: "add" }` is checked against the schema, not widened to string.
 */
export interface MachineDefinition<CS extends z.ZodType, QS extends z.ZodType, C = z.output<CS>, Q = z.output<QS>> {
  name: string;
  commandSchema: CS;
  querySchema: QS;
  apply(state: MachineState, command: C, ctx: ApplyContext): unknown;
  query(state: MachineState, query: Q): unknown;
  keysOf?(command: C): string[];
  oversized?(command: C): string | null;
  generate: { command(rng: MachineRng): C; query(rng: MachineRng): Q };
}

/**
 * Checks a machine's definition and returns it typed: apply(), query(), the generator and the
 * client's `machine()` helper all see the types validation accepts.
 */
export function defineMachine<CS extends z.ZodType, QS extends z.ZodType>(definition: MachineDefinition<CS, QS>): StateMachine<z.output<CS>, z.output<QS>> {
  if (!machineNamePattern.test(definition.name)) throw new Error(`machine name ${JSON.stringify(definition.name)} must match ${machineNamePattern}`);
  // A schema parses to its own output type; TypeScript cannot see that for a generic CS.
  return Object.freeze({ ...definition }) as unknown as StateMachine<z.output<CS>, z.output<QS>>;
}
