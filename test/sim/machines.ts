// The simulator's lookup of machines: the listed ones, and a machine under trial (a definition
// check-machine or a test passes in, listed nowhere) for the duration of one run.
import { machineFor } from "../../shared/machines/index.js";
import type { StateMachine } from "../../shared/machines/types.js";

const trials = new Map<string, StateMachine<any, any>>();

export function simMachineFor(name: string): StateMachine<any, any> {
  return trials.get(name) ?? machineFor(name);
}

/** Runs fn with machine resolvable by its name (it shadows a listed machine of the same name). */
export async function withTrial<T>(machine: StateMachine<any, any>, fn: () => Promise<T>): Promise<T> {
  const before = trials.get(machine.name);
  trials.set(machine.name, machine);
  try {
    return await fn();
  } finally {
    if (before) trials.set(machine.name, before);
    else trials.delete(machine.name);
  }
}
