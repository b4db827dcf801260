import { registryCallTimeoutMs, sleepAfterMsDefault } from "../shared/limits.js";
import type { CronFigures } from "../shared/api/metrics.js";
import { type Clock, withTimeout } from "../shared/protocol/io.js";
import { type GroupConfig, isColocated } from "../shared/protocol/types.js";
import { guarded } from "./faults.js";
import { type DirectoryClient, type DirectoryObject, directoryClient } from "./directory.js";
import type { RegistryObject, SleepNoted } from "./registry.js";
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
  /** "1" enables fault injection (tests only; never in wrangler.toml). */
  ALLOW_FAULTS?: string;
  /** Seconds without client work before a group sleeps (shared/limits.ts, sleepAfterMsDefault); "0": never. */
  SLEEP_AFTER_SECONDS?: string;
  /** Origins whose browser pages may call the API (comma-separated, or "*"); none by default (workers/cors.ts). */
  CORS_ORIGINS?: string;
}

/** How long a group goes without client work before it sleeps; undefined: never (SLEEP_AFTER_SECONDS "0"). */
export function sleepAfterMs(env: Env): number | undefined {
  const raw = env.SLEEP_AFTER_SECONDS;
  if (raw === undefined || raw.trim() === "") return sleepAfterMsDefault;
  const seconds = Number(raw);
  if (!Number.isFinite(seconds) || seconds < 0) {
    console.warn(`SLEEP_AFTER_SECONDS=${JSON.stringify(raw)} is not a number of seconds: ${sleepAfterMsDefault / 1000} s it is`);
    return sleepAfterMsDefault;
  }
  return seconds === 0 ? undefined : seconds * 1000;
}

/**
 * A replica's stub; `fromSequencer` names the calling sequencer object, so an injected fault of
 * either side applies. The co-located replica (config.colocated) lives in the group's first
 * sequencer object, which answers the same replica methods: a fault of that object cuts it off too.
 */
export function replicaStub(env: Env, config: Pick<GroupConfig, "group" | "colocated">, id: string, location?: string | null, fromSequencer?: string) {
  const group = config.group;
  const hint = location ? { locationHint: location as DurableObjectLocationHint } : undefined;
  const colocated = isColocated(config, id);
  const stub = colocated
    ? (env.SEQUENCER.get(env.SEQUENCER.idFromName(group), hint) as unknown as DurableObjectStub<ReplicaObject>)
    : env.REPLICA.get(env.REPLICA.idFromName(`${group}/${id}`), hint);
  const parties = [id, ...(colocated ? [`sequencer:${group}`] : []), ...(fromSequencer ? [`sequencer:${fromSequencer}`] : [])];
  return guarded(env, stub, group, parties);
}

/** The sequencer Durable Object by its name (the group's name, or a later one after a move: group~sN). */
export function sequencerStub(env: Env, name: string, location?: string | null) {
  const id = env.SEQUENCER.idFromName(name);
  const stub = location ? env.SEQUENCER.get(id, { locationHint: location as DurableObjectLocationHint }) : env.SEQUENCER.get(id);
  return guarded(env, stub, name.split("~")[0]!, [`sequencer:${name}`]);
}

/** The registry's calls (workers/registry.ts), each bounded by registryCallTimeoutMs. */
export interface RegistryClient {
  add(name: string, incarnation?: number): Promise<void>;
  remove(name: string, incarnation?: number): Promise<boolean>;
  /** The incarnation the name is listed with, or null. */
  incarnationOf(name: string): Promise<number | null>;
  /** The group's sequencer asleep since asleepSinceMs, or awake again (null), as of `noted`: RegistryObject.noteSleep. */
  noteSleep(name: string, incarnation: number, asleepSinceMs: number | null, noted: SleepNoted): Promise<void>;
  /** The cron's audit of the name failed: taken again next lap (RegistryObject.unclaim). */
  unclaim(name: string): Promise<void>;
  list(after: string | null, limit: number): Promise<{ groups: string[]; next?: string }>;
  /** list() with the fresh kept figures of asleep groups (RegistryObject.listForScrape). */
  listForScrape(after: string | null, limit: number): Promise<{ groups: string[]; next?: string; kept: Record<string, string> }>;
  /** Asleep groups' figures a scrape asked, for the next ones within freshMs (RegistryObject.keepFigures). */
  keepFigures(items: { name: string; incarnation: number; askedMs: number; figures: string }[], freshMs: number): Promise<void>;
  claim(limit: number, withinLap?: number, claimedBeforeMs?: number): Promise<{ groups: string[]; lapEnd: boolean; lap: number }>;
  finishRun(run: { audited: number; failed: number; startedMs: number; endedMs: number }, lapEnded?: boolean): Promise<void>;
  cron(): Promise<CronFigures>;
}

/**
 * The registry, every call within registryCallTimeoutMs (a TimeoutError past it, which callers
 * answer as 503). Every group list, scrape, create, delete and cron run goes through this one
 * object; unbounded, a slow one held them all (a probe: scrapes of 62 s, a PUT of 32 s, with the
 * registry slowed by 30 to 60 s, while each group's own routes answered in 0.15 s).
 */
export function registryStub(env: Env): RegistryClient {
  const stub = guarded(env, env.REGISTRY.get(env.REGISTRY.idFromName("registry")), "", ["registry"]);
  const bounded = <T>(what: string, call: Promise<T>): Promise<T> => withTimeout(realClock, call, registryCallTimeoutMs, `the registry's ${what}`);
  return {
    add: (name, incarnation) => bounded("add", Promise.resolve(stub.add(name, incarnation))),
    remove: (name, incarnation) => bounded("remove", Promise.resolve(stub.remove(name, incarnation))),
    incarnationOf: (name) => bounded("incarnationOf", Promise.resolve(stub.incarnationOf(name))),
    noteSleep: (name, incarnation, asleepSinceMs, noted) => bounded("noteSleep", Promise.resolve(stub.noteSleep(name, incarnation, asleepSinceMs, noted))),
    list: (after, limit) => bounded("list", Promise.resolve(stub.list(after, limit))),
    listForScrape: (after, limit) => bounded("listForScrape", Promise.resolve(stub.listForScrape(after, limit))),
    keepFigures: (items, freshMs) => bounded("keepFigures", Promise.resolve(stub.keepFigures(items, freshMs))),
    claim: (limit, withinLap, claimedBeforeMs) => bounded("claim", Promise.resolve(stub.claim(limit, withinLap, claimedBeforeMs))),
    finishRun: (run, lapEnded) => bounded("finishRun", Promise.resolve(stub.finishRun(run, lapEnded))),
    cron: () => bounded("cron", Promise.resolve(stub.cron()) as Promise<CronFigures>),
    unclaim: (name) => bounded("unclaim", Promise.resolve(stub.unclaim(name))),
  };
}

/** A group's directory object (its control-plane record), named like the group, through its one adapter. */
export function directoryStub(env: Env, group: string): DirectoryClient {
  return directoryClient(env.DIRECTORY.get(env.DIRECTORY.idFromName(group)) as never);
}

/**
 * The env with every call made through its Durable Object stubs counted in `calls.n` (each one is
 * a subrequest of the invocation making it), for a caller that must stay within their limit.
 */
export function countingEnv(env: Env, calls: { n: number }): Env {
  const stubOf = (stub: object): object =>
    new Proxy(stub, {
      get(target, prop) {
        const v = Reflect.get(target, prop);
        if (typeof prop !== "string" || prop === "then" || typeof v !== "function") return v;
        return (...args: unknown[]) => {
          calls.n++;
          return (target as Record<string, (...a: unknown[]) => unknown>)[prop]!(...args);
        };
      },
    });
  // Typed loosely: the namespaces' stub types are too deep for the checker to follow through a Proxy.
  const namespaceOf = <N>(ns: N): N =>
    new Proxy(ns as DurableObjectNamespace, {
      get(target, prop) {
        if (prop === "get") return (id: DurableObjectId, opts?: DurableObjectNamespaceGetDurableObjectOptions) => stubOf(target.get(id, opts));
        const v = Reflect.get(target, prop);
        return typeof v === "function" ? v.bind(target) : v;
      },
    }) as N;
  return { ...env, SEQUENCER: namespaceOf(env.SEQUENCER), REPLICA: namespaceOf(env.REPLICA), REGISTRY: namespaceOf(env.REGISTRY), DIRECTORY: namespaceOf(env.DIRECTORY) };
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
