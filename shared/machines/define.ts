// The extension point: a user's machine is `export const mine = defineMachine({...})` in its own
// file, listed in shared/machines/index.ts (docs/MACHINES.md).
import type { z } from "zod";
import type { ApplyContext, MachineRng, MachineState, StateChecker, StateMachine } from "./types.js";

/** What `{"machine": NAME}` names: lowercase, as group names are. */
export const machineNamePattern = /^[a-z][a-z0-9-]{0,31}$/;

/**
 * A StateMachine whose command and query types come from its schemas alone (NoInfer elsewhere).
 * TypeScript widens a string literal an arrow function returns while those types are still being
 * inferred: give the generator's functions their return type (`: LockCommand`) or write
 * `op: "add" as const`.
 */
export interface MachineDefinition<C, Q> {
  name: string;
  commandSchema: z.ZodType<C>;
  querySchema: z.ZodType<Q>;
  apply(state: MachineState, command: NoInfer<C>, ctx: ApplyContext): unknown;
  query(state: MachineState, query: NoInfer<Q>): unknown;
  keysOf?(command: NoInfer<C>): string[];
  oversized?(command: NoInfer<C>): string | null;
  goesAtQuota?: { test(command: NoInfer<C>): boolean; commands: string };
  checkRow?(key: string, value: unknown): string | null;
  checkState?(): StateChecker;
  generate: { command(rng: MachineRng): NoInfer<C>; query(rng: MachineRng): NoInfer<Q> };
}

/**
 * Checks a machine's definition and returns it typed: apply(), query(), the generator and the
 * client's `machine()` helper all see the types validation accepts.
 */
export function defineMachine<C, Q>(definition: MachineDefinition<C, Q>): StateMachine<C, Q> {
  if (!machineNamePattern.test(definition.name)) throw new Error(`machine name ${JSON.stringify(definition.name)} must match ${machineNamePattern}`);
  return Object.freeze({ ...definition });
}
