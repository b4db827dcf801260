import type { Clock } from "../shared/protocol/io.js";
import { type DirectoryClient, type DirectoryObject, directoryClient } from "./directory.js";
import type { RegistryObject } from "./registry.js";
import type { ReplicaObject } from "./replica.js";
import type { SequencerObject } from "./sequencer.js";

export interface Env {
  SEQUENCER: DurableObjectNamespace<SequencerObject>;
  REPLICA: DurableObjectNamespace<ReplicaObject>;
  REGISTRY: DurableObjectNamespace<RegistryObject>;
  DIRECTORY: DurableObjectNamespace<DirectoryObject>;
  ADMIN_TOKEN?: string;
  CLIENT_TOKENS?: string;
  /** Per-token request rate (token bucket, per isolate). */
  RATE_LIMIT_PER_SEC?: string;
  RATE_LIMIT_BURST?: string;
}

export function replicaStub(env: Env, group: string, id: string, location?: string | null) {
  const ns = env.REPLICA;
  const doId = ns.idFromName(`${group}/${id}`);
  return location ? ns.get(doId, { locationHint: location as DurableObjectLocationHint }) : ns.get(doId);
}

/** The sequencer Durable Object by its name (the group's name, or a later one after a move). */
export function sequencerStub(env: Env, name: string, location?: string | null) {
  const id = env.SEQUENCER.idFromName(name);
  return location ? env.SEQUENCER.get(id, { locationHint: location as DurableObjectLocationHint }) : env.SEQUENCER.get(id);
}

export function registryStub(env: Env) {
  return env.REGISTRY.get(env.REGISTRY.idFromName("registry"));
}

/** A group's directory object (its control-plane record), named like the group, through its one adapter. */
export function directoryStub(env: Env, group: string): DirectoryClient {
  return directoryClient(env.DIRECTORY.get(env.DIRECTORY.idFromName(group)) as never);
}

/** Real time for the drivers (in a Durable Object, Date.now() advances with I/O). */
export const realClock: Clock = {
  nowMs: () => Date.now(),
  setTimer: (ms, fn) => {
    const t = setTimeout(fn, ms);
    return () => clearTimeout(t);
  },
};

/**
 * Typed view of an RPC result. workers-types maps RPC return types through Rpc.Serializable,
 * which turns union members holding `unknown` (machine outputs are arbitrary JSON) into never;
 * the values are plain structured-cloneable data, so the declared type is the real one.
 */
export function rpc<T>(call: unknown): Promise<T> {
  return call as Promise<T>;
}
