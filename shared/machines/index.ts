// The one list of machines a group may run. The router's validation, the group creation schema
// (machineNames), the replicas, the simulator and the auditor all look machines up here.
import type { MachineName } from "../api/types.js";
import { bank } from "./bank.js";
import { kv } from "./kv.js";
import { lock } from "./lock.js";
import type { StateMachine } from "./types.js";

const listed: StateMachine<any, any>[] = [kv, bank, lock];

export const machines: Record<MachineName, StateMachine<any, any>> = Object.fromEntries(listed.map((m) => [m.name, m]));
export const machineNames: MachineName[] = listed.map((m) => m.name);
if (new Set(machineNames).size !== listed.length) throw new Error(`two machines share a name: ${machineNames.join(", ")}`);

export function machineFor(name: MachineName): StateMachine<any, any> {
  const m = Object.hasOwn(machines, name) ? machines[name] : undefined;
  if (!m) throw new Error(`unknown machine ${name}`);
  return m;
}
