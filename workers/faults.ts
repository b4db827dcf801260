// Fault injection for tests (API.md, "Fault injection"): only with the var ALLOW_FAULTS = "1",
// never set in wrangler.toml. A fault makes one object of a group (its sequencer, a replica) or the
// registry unreachable in both directions, or slow, until cleared. The table lives in the worker's
// isolate, which under wrangler dev and Miniflare holds the router and every object alike.
export type FaultKind = "unreachable" | "slow";

export interface Fault {
  target: string;
  /** For the sequencer: which object (the one in office when the fault was set; a successor is not cut off). */
  name?: string;
  fault: FaultKind;
  ms: number;
}

/** group (or "" for the registry) -> target -> fault */
const table = new Map<string, Map<string, Fault>>();

export function faultsAllowed(env: { ALLOW_FAULTS?: string }): boolean {
  return env.ALLOW_FAULTS === "1";
}

/** `name`: the sequencer object's name, for target "sequencer" (the party key is `sequencer:<name>`). */
export function setFault(group: string, target: string, fault: FaultKind | "none", ms: number, name?: string): Fault[] {
  const key = target === "registry" ? "" : group;
  const forGroup = table.get(key) ?? new Map<string, Fault>();
  const party = target === "sequencer" ? `sequencer:${name}` : target;
  if (fault === "none") {
    for (const [k, f] of forGroup) if (f.target === target) forGroup.delete(k);
  } else {
    forGroup.set(party, { target, ...(target === "sequencer" ? { name } : {}), fault, ms });
  }
  table.set(key, forGroup);
  return listFaults(group);
}

/** Forgets a group's faults: a deleted group's must not cut off the objects of one re-created under its name. */
export function clearFaults(group: string): void {
  table.delete(group);
}

export function listFaults(group: string): Fault[] {
  return [...(table.get(group)?.values() ?? []), ...(table.get("")?.values() ?? [])];
}

function faultOf(group: string, parties: string[]): Fault | null {
  let slow: Fault | null = null;
  for (const p of parties) {
    const f = (p === "registry" ? table.get("") : table.get(group))?.get(p);
    if (f?.fault === "unreachable") return f;
    if (f?.fault === "slow") slow = f;
  }
  return slow;
}

/**
 * The stub, or (faults allowed) one whose every call first checks the parties' faults: a call
 * between a group's objects where either is unreachable fails like a lost connection; a slow one
 * waits its ms first.
 */
export function guarded<T extends object>(env: { ALLOW_FAULTS?: string }, stub: T, group: string, parties: string[]): T {
  if (!faultsAllowed(env)) return stub;
  return new Proxy(stub, {
    get(target, prop) {
      if (typeof prop !== "string" || prop === "then") return (target as Record<string | symbol, unknown>)[prop];
      return async (...args: unknown[]) => {
        const f = faultOf(group, parties);
        if (f?.fault === "unreachable") throw new Error(`injected fault: ${group ? `${f.target} of ${group}` : f.target} is unreachable`);
        if (f?.fault === "slow") await new Promise((r) => setTimeout(r, f.ms));
        return (target as Record<string, (...a: unknown[]) => unknown>)[prop]!(...args);
      };
    },
  });
}
