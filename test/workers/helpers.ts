import { SELF, env } from "cloudflare:test";
import type { ReplicaObject } from "../../workers/replica.js";

export const adminToken = "test-admin-token";
export const clientToken = "test-client-token";
/** API.md "Events": the only kinds an event may have (written out here, not imported: the contract's list). */
export const apiEventKinds = ["failover", "move", "recovery", "quarantine", "repair", "replica-added", "replica-removed"];

export interface Answer<T = any> {
  status: number;
  body: T;
  headers: Headers;
}

export async function api<T = any>(method: string, path: string, body?: unknown, token: string | null = adminToken): Promise<Answer<T>> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const res = await SELF.fetch(`http://smr.test${path}`, {
    method,
    headers,
    ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null, headers: res.headers };
}

/**
 * The Durable Object that holds replica `id`: its own (`group/id`), or, for the co-located one
 * (r1 of a group created without sequencerLocations), the group's first sequencer object. Both
 * keep the replica in a `replica` field (ReplicaHost).
 */
export function replicaObject(group: string, id: string, colocated: string | null = "r1"): DurableObjectStub<ReplicaObject> {
  return id === colocated
    ? (env.SEQUENCER.get(env.SEQUENCER.idFromName(group)) as unknown as DurableObjectStub<ReplicaObject>)
    : env.REPLICA.get(env.REPLICA.idFromName(`${group}/${id}`));
}

export async function createGroup(name: string, spec: Record<string, unknown> = { machine: "kv" }) {
  const r = await api("PUT", `/v1/groups/${name}`, spec);
  if (r.status !== 201) throw new Error(`create ${name}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

let request = 0;
export function command(group: string, cmd: unknown, client = "tester", req = ++request, token = clientToken) {
  return api("POST", `/v1/groups/${group}/commands`, { client, request: req, command: cmd }, token);
}

export function query(group: string, q: unknown, consistency?: string, bookmark?: string, token = clientToken) {
  const body: Record<string, unknown> = { query: q };
  if (consistency) body.consistency = consistency;
  if (bookmark) body.bookmark = bookmark;
  return api("POST", `/v1/groups/${group}/query`, body, token);
}

export function expectError(r: Answer, status: number, code: string, messageMatch?: RegExp): void {
  if (r.status !== status || r.body?.error?.code !== code || (messageMatch && !messageMatch.test(r.body.error.message))) {
    throw new Error(`expected ${status} ${code} ${messageMatch ?? ""}, got ${r.status} ${JSON.stringify(r.body)}`);
  }
}

/** The group's replicas by id, as GET /v1/groups/{g}/replicas reports them. */
export async function replicaStatuses(group: string): Promise<Record<string, any>> {
  const r = await api("GET", `/v1/groups/${group}/replicas`, undefined, clientToken);
  return Object.fromEntries(r.body.replicas.map((x: any) => [x.id, x]));
}

/**
 * Polls until check() holds, for up to 10 s, pausing pauseMs between rounds. In this pool the two
 * kinds of wait behave differently: under a write load through SELF a test's own setTimeout was
 * seen never to fire (so poll with pauseMs 0: each round is an HTTP call), while without a load the
 * objects' own timers (a send loop's backoff, a held-back commit) only fired while the test itself
 * paused on a timer (so pause).
 */
export async function waitFor(what: string, check: () => Promise<boolean>, pauseMs = 0): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (await check()) return;
    if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
  }
  throw new Error(`timed out waiting for ${what}`);
}
