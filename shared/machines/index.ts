import type { MachineName } from "../api/types.js";
import { bank } from "./bank.js";
import { kv } from "./kv.js";
import type { StateMachine } from "./types.js";

export const machines: Record<MachineName, StateMachine<any, any>> = { kv, bank };
export const machineNames = Object.keys(machines) as MachineName[];

export function machineFor(name: MachineName): StateMachine<any, any> {
  const m = machines[name];
  if (!m) throw new Error(`unknown machine ${name}`);
  return m;
}

