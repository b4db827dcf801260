// The client against a fake fetch. It is imported by its package name (package.json "exports"),
// as a project depending on edge-smr would import it.
import { encodeBookmark, olderForm } from "../../shared/api/bookmark.js";
import { describe, expect, it, vi } from "vitest";
import { ApiRequestError, SmrClient, type CommandRetry, type WatchEvent } from "edge-smr/client";
import { SseParser } from "../../shared/client/sse.js";

type Handler = (url: URL, init: RequestInit & { headers: Record<string, string> }) => Response | Promise<Response>;

function clientWith(handler: Handler, options: Partial<ConstructorParameters<typeof SmrClient>[0]> = {}) {
  const calls: { url: URL; method: string; headers: Record<string, string>; body: unknown }[] = [];
  const client = new SmrClient({
    baseUrl: "http://smr.test",
    token: "t",
    clientId: "c",
    firstRequest: 1,
    retryBaseMs: 1,
    ...options,
    fetch: async (input, init) => {
      const url = new URL(String(input));
      const i = init as RequestInit & { headers: Record<string, string> };
      calls.push({ url, method: String(i.method ?? "GET"), headers: i.headers, body: typeof i.body === "string" ? JSON.parse(i.body) : i.body });
      return handler(url, i);
    },
  });
  return { client, calls };
}

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** A group's status with the fields the client checks an answer by (isGroupStatus). */
const statusOf = (group: string, more: Record<string, unknown> = {}) => ({ group, machine: "kv", epoch: 1, commitSeq: 0, lastSeq: 0, sequencer: { name: group }, replicas: [], ...more });

/** What a call settles to (its error caught) once `ms` of fake time have passed: its retries' pauses run at once. */
async function settledAfter(ms: number, call: () => Promise<unknown>): Promise<unknown> {
  vi.useFakeTimers();
  try {
    const pending = call().catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(ms);
    return await pending;
  } finally {
    vi.useRealTimers();
  }
}
const errorBody = (status: number, code: string, message = code) => Response.json({ error: { code, message } }, { status });

function sse(text: string, end: "close" | "drop" = "close"): Response {
  const bytes = new TextEncoder().encode(text);
  let sent = false;
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      if (!sent) {
        sent = true;
        // Split in two to exercise a chunk boundary inside an event.
        const half = Math.floor(bytes.length / 2);
        c.enqueue(bytes.slice(0, half));
        c.enqueue(bytes.slice(half));
        return;
      }
      if (end === "drop") c.error(new TypeError("terminated"));
      else c.close();
    },
  });
  return new Response(body, { headers: { "content-type": "text/event-stream" } });
}

const entry = (seq: number, key = `k${seq}`): string =>
  `id: ${seq}\nevent: entry\ndata: ${JSON.stringify({ seq, kind: "command", client: "w", request: seq, command: {}, output: {}, timestamp: "t", changes: [[key, seq]] })}\n\n`;

describe("client", () => {
  it("a connection that dies while the answer's body is read is a network error, and is retried", async () => {
    let calls = 0;
    const client = new SmrClient({
      baseUrl: "http://smr.test",
      token: "t",
      clientId: "c",
      attemptsMax: 2,
      fetch: async () => {
        calls++;
        if (calls === 1) {
          const body = new ReadableStream({ pull: (c) => c.error(new TypeError("terminated")) });
          return new Response(body, { status: 200 });
        }
        return Response.json({ seq: 7, output: { previous: null }, bookmark: "b1.1.7" });
      },
    });
    const r = await client.submit("g", { op: "put", key: "k", value: 1 }, 1);
    expect(r.seq).toBe(7);
    expect(calls).toBe(2);

    const once = new SmrClient({
      baseUrl: "http://smr.test",
      token: "t",
      clientId: "c",
      attemptsMax: 1,
      fetch: async () => new Response(new ReadableStream({ pull: (c) => c.error(new TypeError("terminated")) })),
    });
    const err = (await once.submit("g", { op: "put", key: "k", value: 1 }, 1).catch((e: unknown) => e)) as ApiRequestError;
    expect(err).toBeInstanceOf(ApiRequestError);
    // The answer was lost after the request went out: the outcome is unknown, said as API.md says
    // it (a 504 timeout), not a plain network failure (an app took it for a failure: a probe).
    expect([err.status, err.code, err.outcomeUnknown]).toEqual([504, "timeout", true]);
    expect(err.message).toMatch(/terminated; its outcome is unknown/);
    expect((err.cause as ApiRequestError).code).toBe("network");
  });
});

describe("client retries send what the call was given", () => {
  it("sends every attempt the command as it was at the call, whatever the caller changes after (a retry carried the new value, and its 409 was taken as certain for a write that was applied: a client probe)", async () => {
    const sent: unknown[] = [];
    let calls = 0;
    const { client } = clientWith((_url, init) => {
      const body = JSON.parse(init.body as string) as { command?: unknown; commands?: { command: unknown }[] };
      sent.push(body.command ?? body.commands!.map((c) => c.command));
      // The first attempt's answer is lost (its outcome unknown): the client retries.
      if (++calls % 2 === 1) return errorBody(504, "timeout", "not committed within 10 s");
      return body.commands ? Response.json({ results: body.commands.map((_c, i) => ({ seq: i + 1, output: null })), bookmark: "b1.1.2" }) : Response.json({ seq: 1, output: null, bookmark: "b1.1.1" });
    });
    const state = { version: 1 };
    const put = client.kv("g").put("state", state);
    state.version = 2;
    await put;
    expect(sent).toEqual([{ op: "put", key: "state", value: { version: 1 } }, { op: "put", key: "state", value: { version: 1 } }]);
    sent.length = 0;
    const items = [{ command: { op: "put", key: "a", value: { n: 1 } } }];
    const batch = client.submitBatch("g", items);
    items[0]!.command.value.n = 9;
    await batch;
    expect(sent).toEqual([[{ op: "put", key: "a", value: { n: 1 } }], [{ op: "put", key: "a", value: { n: 1 } }]]);
  });
});

describe("client request ids", () => {
  const recording = (ids: number[]) => async (_: unknown, init?: RequestInit) => {
    const body = JSON.parse(init!.body as string) as { request?: number; commands?: { request: number }[] };
    ids.push(...(body.commands ? body.commands.map((c) => c.request) : [body.request!]));
    return body.commands
      ? Response.json({ results: body.commands.map((c) => ({ seq: c.request, output: null })), bookmark: "b1.1.1" })
      : Response.json({ seq: 1, output: null, bookmark: "b1.1.1" });
  };

  it("an app restarted with the same clientId sends ids above the earlier run's, and two instances never share one", async () => {
    const first: number[] = [];
    const run1 = new SmrClient({ baseUrl: "http://smr.test", token: "t", clientId: "app", fetch: recording(first) });
    await run1.kv("g").incr("n", 1);
    await run1.kv("g").batch([{ op: "incr", key: "n", by: 1 }, { op: "incr", key: "n", by: 1 }]);
    // The app restarts: a new instance under the same name, no firstRequest.
    const second: number[] = [];
    const run2 = new SmrClient({ baseUrl: "http://smr.test", token: "t", clientId: "app", fetch: recording(second) });
    await run2.kv("g").incr("n", 1);
    expect(Math.min(...second)).toBeGreaterThan(Math.max(...first));
    // Two instances with one clientId, used at once: every id is new.
    await Promise.all([run1.kv("g").incr("n", 1), run2.kv("g").incr("n", 1), run1.kv("g").put("k", 1), run2.kv("g").put("k", 2)]);
    const all = [...first, ...second];
    expect(new Set(all).size).toBe(all.length);
    for (const id of all) expect(Number.isSafeInteger(id)).toBe(true);
  });

  it("counts from firstRequest when it is given, and from 1 for a random clientId", async () => {
    const given: number[] = [];
    const c = new SmrClient({ baseUrl: "http://smr.test", token: "t", clientId: "app", firstRequest: 7, fetch: recording(given) });
    await c.kv("g").put("a", 1);
    await c.kv("g").put("b", 1);
    expect(given).toEqual([7, 8]);
    const random: number[] = [];
    const r = new SmrClient({ baseUrl: "http://smr.test", token: "t", fetch: recording(random) });
    await r.kv("g").put("a", 1);
    expect(random).toEqual([1]);
  });

  it("newRequest hands out an id the client never uses by itself, for a submit the caller may send again", async () => {
    for (const opts of [{}, { clientId: "app" }, { clientId: "app", firstRequest: 7 }]) {
      const sent: number[] = [];
      const c = new SmrClient({ baseUrl: "http://smr.test", token: "t", ...opts, fetch: recording(sent) });
      const id = c.newRequest();
      await c.submit("g", { op: "incr", key: "n", by: 1 }, id);
      await c.submit("g", { op: "incr", key: "n", by: 1 }, id); // again, to learn its outcome
      await c.kv("g").incr("n", 1);
      expect(sent.slice(0, 2)).toEqual([id, id]);
      expect(sent[2]).toBeGreaterThan(id);
    }
  });
});

describe("client cancellation", () => {
  const refusing = (ac: AbortController, abortAt: number) => {
    let calls = 0;
    const fetch = async (_: unknown, init?: RequestInit) => {
      if (++calls === abortAt) ac.abort();
      if (init?.signal?.aborted) throw init.signal.reason;
      return errorBody(503, "unavailable", "no quorum");
    };
    return { fetch, calls: () => calls };
  };

  it("an aborted command, read or batch ends with the signal's reason, and no retry follows it", async () => {
    for (const [name, call] of [
      ["submit", (c: SmrClient, signal: AbortSignal) => c.submit("g", { op: "incr", key: "n", by: 1 }, undefined, { signal })],
      ["kv", (c: SmrClient, signal: AbortSignal) => c.kv("g", { signal }).incr("n", 1)],
      ["query", (c: SmrClient, signal: AbortSignal) => c.query("g", { op: "get", key: "n" }, "sequential", { signal })],
      ["batch", (c: SmrClient, signal: AbortSignal) => c.submitBatch("g", [{ command: { op: "incr", key: "n", by: 1 } }], { signal })],
    ] as const) {
      const ac = new AbortController();
      const fake = refusing(ac, 3);
      const client = new SmrClient({ baseUrl: "http://smr.test", token: "t", retryBaseMs: 1, retryForMs: 2_000, fetch: fake.fetch });
      const err = await call(client, ac.signal).catch((e: unknown) => e);
      expect(err, name).toBe(ac.signal.reason);
      expect(fake.calls(), name).toBe(3);
    }
  });

  it("an already aborted signal sends nothing", async () => {
    const ac = new AbortController();
    ac.abort();
    const fake = refusing(ac, 0);
    const client = new SmrClient({ baseUrl: "http://smr.test", token: "t", fetch: fake.fetch });
    expect(await client.kv("g", { signal: ac.signal }).put("k", 1).catch((e: unknown) => e)).toBe(ac.signal.reason);
    expect(fake.calls()).toBe(0);
  });
});

describe("client: names, time and retries", () => {
  it("refuses a group or an id that would take its request elsewhere (`..`), sending nothing", async () => {
    const { client, calls } = clientWith(() => new Response(null, { status: 204 }));
    for (const call of [
      () => client.revokeToken("tok", "../../other"),
      () => client.revokeToken("tok", "%2e%2e/%2e%2e/other"),
      () => client.removeReplica("g", "../../victim"),
      () => client.deleteGroup("g/replicas/r3"),
      () => client.submit("../x", { op: "put", key: "k", value: 1 }),
      () => client.query("G", { op: "get", key: "k" }),
    ]) {
      const err = await call().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ApiRequestError);
      expect((err as ApiRequestError).status).toBe(400);
    }
    expect(calls).toEqual([]);
    await client.revokeToken("tok", "0badcafe");
    expect(calls.map((c) => c.url.pathname)).toEqual(["/v1/groups/tok/tokens/0badcafe"]);
  });

  it("does not retry a port fetch refuses to connect to (`:1`): one attempt, an error saying so", async () => {
    let attempts = 0;
    const blocked = () => ((attempts += 1), Promise.reject(new TypeError("fetch failed", { cause: new Error("bad port") })));
    const client = new SmrClient({ baseUrl: "http://smr.test:1", token: "t", retryBaseMs: 1, fetch: blocked });
    const watch = async () => {
      for await (const _ of client.watch("g")) break;
    };
    for (const call of [() => client.query("g", { op: "get", key: "k" }), () => client.submit("g", { op: "put", key: "k", value: 1 }), watch]) {
      attempts = 0;
      const err = (await call().catch((e: unknown) => e)) as ApiRequestError;
      expect(err.code).toBe("network");
      expect(err.message).toMatch(/bad port/);
      expect(err.notSent).toBe(true);
      expect(attempts).toBe(1);
    }
  });

  it("knows a refused connection sent nothing: not an unknown outcome, unless an earlier attempt's was", async () => {
    const refused = () => Promise.reject(new TypeError("fetch failed", { cause: Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:9"), { code: "ECONNREFUSED" }) }));
    const down = new SmrClient({ baseUrl: "http://smr.test", token: "t", attemptsMax: 2, retryBaseMs: 1, fetch: refused });
    const err = (await down.submit("g", { op: "put", key: "k", value: 1 }).catch((e: unknown) => e)) as ApiRequestError;
    expect(err.code).toBe("network");
    expect(err.notSent).toBe(true);
    let first = true;
    const flaky = new SmrClient({
      baseUrl: "http://smr.test",
      token: "t",
      attemptsMax: 2,
      retryBaseMs: 1,
      fetch: async () => (first ? ((first = false), errorBody(504, "timeout", "no answer")) : refused()),
    });
    const unknown = (await flaky.submit("g", { op: "put", key: "k", value: 1 }).catch((e: unknown) => e)) as ApiRequestError;
    expect(unknown.status).toBe(504);
    expect(unknown.message).toMatch(/outcome is unknown/);
  });

  it("retries a request that got no answer in time, and reports a 409 after an unknown outcome as unknown", async () => {
    let calls = 0;
    const hangOnce: typeof fetch = (_input, init) => {
      if (++calls === 1) return new Promise((_, reject) => init?.signal?.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError"))));
      return Promise.resolve(Response.json({ seq: 4, output: {}, bookmark: "b1.1.4" }));
    };
    const hung = new SmrClient({ baseUrl: "http://smr.test", token: "t", retryBaseMs: 1, requestTimeoutMs: 50, retryForMs: 5_000, fetch: hangOnce });
    expect((await hung.submit("g", { op: "put", key: "k", value: 1 })).seq).toBe(4);
    expect(calls).toBe(2);
    const answers = [errorBody(504, "timeout", "no answer"), errorBody(409, "conflict", "request id is at or below the lowest one this client's session window remembers: it may have run already, so it is not run")];
    const { client } = clientWith(() => answers.shift()!, { attemptsMax: 2 });
    const err = (await client.submit("g", { op: "put", key: "k", value: 1 }).catch((e: unknown) => e)) as ApiRequestError;
    expect(err.status).toBe(504);
    expect(err.message).toMatch(/outcome is unknown/);
    // Another 409 (the id used for a different command) is an answer: it did not run.
    const other = [errorBody(504, "timeout", "no answer"), errorBody(409, "conflict", "request 1 of client c was already used for a different command")];
    const reused = clientWith(() => other.shift()!, { attemptsMax: 2 }).client;
    expect(((await reused.submit("g", { op: "put", key: "k", value: 1 }).catch((e: unknown) => e)) as ApiRequestError).status).toBe(409);
  });

  it("takes a base URL ending in a slash", async () => {
    const paths: string[] = [];
    const client = new SmrClient({ baseUrl: "http://smr.test/", token: "t", fetch: async (input) => (paths.push(new URL(String(input)).pathname), Response.json({ result: { value: 1 }, seq: 1, replica: "r1", bookmark: "b1.1.1" })) });
    await client.query("g", { op: "get", key: "k" });
    expect(paths).toEqual(["/v1/groups/g/query"]);
  });

  it("gives a request that gets no answer up after requestTimeoutMs, as a network failure", async () => {
    const hang: typeof fetch = (_input, init) => new Promise((_, reject) => init?.signal?.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError"))));
    const client = new SmrClient({ baseUrl: "http://smr.test", token: "t", requestTimeoutMs: 50, attemptsMax: 1, fetch: hang });
    const err = (await client.query("g", { op: "get", key: "k" }).catch((e: unknown) => e)) as ApiRequestError;
    expect(err.code).toBe("network");
    expect(err.message).toMatch(/no answer within 50 ms/);
  });

  it("retries for retryForMs, not a count of attempts, and waits out a Retry-After", async () => {
    const { client: timed, calls } = clientWith(() => errorBody(504, "timeout"));
    (timed as unknown as { opts: { retryForMs: number } }).opts.retryForMs = 300;
    const started = Date.now();
    await expect(timed.submit("g", { op: "put", key: "k", value: 1 })).rejects.toThrow(/504 timeout/);
    // Pauses of 1, 2, 4, ... ms: nine attempts fit in 300 ms (it was eight, whatever the time).
    expect(calls.length).toBeGreaterThanOrEqual(9);
    expect(Date.now() - started).toBeLessThan(2_000);
    const answers = [new Response(JSON.stringify({ error: { code: "rate_limited", message: "slow down" } }), { status: 429, headers: { "retry-after": "1" } }), Response.json({ seq: 3, output: {}, bookmark: "b1.1.3" })];
    const pauses: number[] = [];
    const limited = new SmrClient({ baseUrl: "http://smr.test", token: "t", retryBaseMs: 1, onCommandRetry: (r) => pauses.push(r.pauseMs), fetch: async () => answers.shift()! });
    expect((await limited.submit("g", { op: "put", key: "k", value: 1 })).seq).toBe(3);
    expect(pauses).toEqual([1_000]);
    // As an HTTP date (a proxy's): waited out too (it was ignored: 50 ms after a 503 asking for 3 s, a probe).
    const dated = [new Response("<html>busy</html>", { status: 503, headers: { "retry-after": new Date(Date.now() + 3_000).toUTCString() } }), Response.json({ seq: 4, output: {}, bookmark: "b1.1.4" })];
    const datedPauses: number[] = [];
    const byDate = new SmrClient({ baseUrl: "http://smr.test", token: "t", retryBaseMs: 1, onCommandRetry: (r) => datedPauses.push(r.pauseMs), fetch: async () => dated.shift()! });
    expect((await byDate.submit("g", { op: "put", key: "k", value: 1 })).seq).toBe(4);
    expect(datedPauses).toHaveLength(1);
    expect(datedPauses[0]).toBeGreaterThanOrEqual(1_000); // a whole second of the date's, at least (it has no fraction)
    expect(datedPauses[0]).toBeLessThanOrEqual(3_000);
  });

  it("retries a read on 503, and drops a bookmark the group says is past its end (deleted and made again)", async () => {
    const sent: unknown[] = [];
    const answers = [
      Response.json({ seq: 20, output: {}, bookmark: "b1.1.20" }),
      errorBody(503, "unavailable"),
      errorBody(400, "bad_request", "bookmark: names seq 20, past the end of g's log (seq 1); it is another group's or an earlier incarnation's"),
      Response.json({ result: { value: 1 }, seq: 1, replica: "r1", bookmark: "b1.1.1" }),
      Response.json({ result: { value: 1 }, seq: 1, replica: "r1", bookmark: "b1.1.1" }),
    ];
    const { client } = clientWith((_url, init) => (sent.push(JSON.parse(init.body as string)), answers.shift()!));
    await client.submit("g", { op: "put", key: "k", value: 1 });
    expect((await client.query("g", { op: "get", key: "k" }, "sequential")).result).toEqual({ value: 1 });
    expect(sent.slice(1).map((b) => (b as { bookmark?: string }).bookmark)).toEqual(["b1.1.20", "b1.1.20", undefined]);
    // Without the bookmark, that read goes linearizable: it still sees this client's own writes.
    expect((sent[3] as { consistency: string }).consistency).toBe("linearizable");
    // The new group's bookmark is kept from then on.
    await client.query("g", { op: "get", key: "k" }, "sequential");
    expect((sent[4] as { bookmark?: string }).bookmark).toBe("b1.1.1");
  });

  it("keeps a newer life's bookmark over an older life's at a higher seq, and drops a kept one the group says is of an earlier life", async () => {
    const [life1, life2] = [encodeBookmark("g", 1, { epoch: 1, seq: 20 }), encodeBookmark("g", 2, { epoch: 1, seq: 2 })];
    const sent: unknown[] = [];
    const answers = [
      Response.json({ seq: 20, output: {}, bookmark: life1 }),
      errorBody(400, "bad_request", "bookmark: given by an earlier life of g (deleted and created again since): the writes it names are not in this one"),
      Response.json({ result: { value: 1 }, seq: 1, replica: "r1", bookmark: encodeBookmark("g", 2, { epoch: 1, seq: 1 }) }),
      Response.json({ seq: 2, output: {}, bookmark: life2 }),
      Response.json({ result: { value: 2 }, seq: 2, replica: "r1", bookmark: life2 }),
      Response.json({ result: { value: 2 }, seq: 2, replica: "r1", bookmark: life2 }),
      Response.json({ result: { value: 2 }, seq: 2, replica: "r1", bookmark: life2 }),
    ];
    const dropped: unknown[] = [];
    const { client } = clientWith((_url, init) => (sent.push(JSON.parse(init.body as string)), answers.shift()!), { onBookmarkDropped: (d) => dropped.push(d) });
    await client.submit("g", { op: "put", key: "k", value: 1 });
    expect((await client.query("g", { op: "get", key: "k" }, "sequential")).result).toEqual({ value: 1 });
    expect(sent.slice(1, 3)).toMatchObject([{ consistency: "sequential", bookmark: life1 }, { consistency: "linearizable" }]);
    // The app is told: its write named by the bookmark is gone with the life that took it.
    expect(dropped).toEqual([{ group: "g", bookmark: life1, reason: expect.stringMatching(/given by an earlier life of g/) }]);
    expect((sent[2] as { bookmark?: string }).bookmark).toBeUndefined();
    // The old life's seq 20 does not outrank the new life's 2: the next read sends the new one.
    client.keepBookmark("g", life1);
    await client.submit("g", { op: "put", key: "k", value: 2 });
    await client.query("g", { op: "get", key: "k" }, "sequential");
    expect((sent[4] as { bookmark?: string }).bookmark).toBe(life2);
    // An older-form bookmark (b1, naming no group) kept from before gives way to any the server
    // gives now, whatever its seq: the server reads a b1 linearizable, and another group's at a
    // high seq stayed for good (a review).
    client.keepBookmark("g", "b1.1.zzzz");
    client.keepBookmark("g", life2);
    await client.query("g", { op: "get", key: "k" }, "sequential");
    expect((sent.at(-1) as { bookmark?: string }).bookmark).toBe(life2);
    client.keepBookmark("g", "b1.1.zzzz"); // and a b2 kept is not replaced by a b1
    await client.query("g", { op: "get", key: "k" }, "sequential");
    expect((sent.at(-1) as { bookmark?: string }).bookmark).toBe(life2);
  });

  it("tells the app when a write's or a read's bookmark of a newer life replaces the kept one (only a sequential read's 400 told it: a client probe)", async () => {
    const [life1, life2] = [encodeBookmark("g", 1, { epoch: 1, seq: 20 }), encodeBookmark("g", 2, { epoch: 1, seq: 1 })];
    const dropped: unknown[] = [];
    const { client } = clientWith(() => Response.json({ seq: 1, output: {}, bookmark: life2 }), { onBookmarkDropped: (d) => dropped.push(d) });
    client.keepBookmark("g", life1);
    await client.submit("g", { op: "put", key: "k", value: 1 });
    expect(dropped).toEqual([{ group: "g", bookmark: life1, reason: expect.stringMatching(/^bookmark: given by an earlier life of g/) }]);
    // Once: the kept one is the new life's now; a later one of that life, or an older life's given again, is no drop.
    await client.submit("g", { op: "put", key: "k", value: 2 });
    client.keepBookmark("g", life1);
    expect(dropped).toHaveLength(1);
  });

  it("sends a server of an earlier version the form it reads (b3, then b2, then b1) and keeps the bookmark: its 400 malformed said the write was gone (a rollout review)", async () => {
    const g = "texf4jbso"; // its b2 tag is ypaetm
    const b3 = encodeBookmark(g, 1, { epoch: 2, seq: 40 });
    const sent: { bookmark?: string; consistency?: string }[] = [];
    const dropped: unknown[] = [];
    const reads = (form: RegExp) => (_url: unknown, init: RequestInit) => {
      const body = JSON.parse(init.body as string) as { bookmark?: string };
      sent.push(body);
      if (body.bookmark !== undefined && !form.test(body.bookmark)) return errorBody(400, "bad_request", "bookmark: malformed");
      return Response.json({ result: { value: 1 }, seq: 40, replica: "r1", bookmark: body.bookmark ?? "" });
    };
    let answer = reads(/^b2\./); // a router of 2026-12-05 to 12-07
    const { client } = clientWith((url, init) => answer(url, init), { onBookmarkDropped: (d) => dropped.push(d) });
    client.keepBookmark(g, b3);
    expect((await client.query(g, { op: "get", key: "k" }, "sequential")).result).toEqual({ value: 1 });
    expect(sent).toEqual([expect.objectContaining({ bookmark: b3 }), expect.objectContaining({ consistency: "sequential", bookmark: "b2.ypaetm.1.2.14" })]);
    expect(dropped, "nothing was dropped").toEqual([]);
    // The position is kept (in the form that router gave back, or the b3): a current router is sent it.
    answer = reads(/^b[123]\./);
    await client.query(g, { op: "get", key: "k" }, "sequential");
    expect([b3, "b2.ypaetm.1.2.14"]).toContain(sent.at(-1)!.bookmark);
    // A router before b2 reads b1 alone.
    const b3at41 = encodeBookmark(g, 1, { epoch: 2, seq: 41 });
    client.keepBookmark(g, b3at41);
    answer = reads(/^b1\./);
    sent.length = 0;
    await client.query(g, { op: "get", key: "k" }, "sequential");
    expect(sent.map((b) => b.bookmark)).toEqual([b3at41, "b2.ypaetm.1.2.15", "b1.2.15"]);
    expect(dropped).toEqual([]);
  });

  it("steps down only a bookmark this group gave, and a stale one found after stepping down is the kept one dropped (a review)", async () => {
    const g = "texf4jbso"; // its b2 tag is ypaetm
    // Another group's b3 is not relabelled with this group's tag (an old server took it for a position of this log).
    expect(olderForm(g, encodeBookmark("other", 1, { epoch: 1, seq: 5 }))).toBeNull();
    expect(olderForm(g, encodeBookmark(g, 1, { epoch: 1, seq: 5 }))).toBe("b2.ypaetm.1.1.5");
    // An old server, and the group made again meanwhile: the kept b3 is dropped, reported once.
    const kept = encodeBookmark(g, 1, { epoch: 1, seq: 40 });
    const sent: { bookmark?: string }[] = [];
    const dropped: { bookmark: string }[] = [];
    const { client } = clientWith((_url, init) => {
      const body = JSON.parse(init.body as string) as { bookmark?: string };
      sent.push(body);
      if (body.bookmark?.startsWith("b3.")) return errorBody(400, "bad_request", "bookmark: malformed");
      if (body.bookmark?.startsWith("b2.")) return errorBody(400, "bad_request", `bookmark: given by an earlier life of ${g} (deleted and created again since): the writes it names are not in this one`);
      return Response.json({ result: { value: 1 }, seq: 1, replica: "r1", bookmark: "" });
    }, { onBookmarkDropped: (d) => dropped.push(d) });
    client.keepBookmark(g, kept);
    await client.query(g, { op: "get", key: "k" }, "sequential");
    expect(sent.map((b) => b.bookmark)).toEqual([kept, "b2.ypaetm.1.1.14", undefined]);
    expect(dropped).toEqual([expect.objectContaining({ bookmark: kept })]);
    sent.length = 0;
    await client.query(g, { op: "get", key: "k" }, "sequential");
    expect(sent.map((b) => b.bookmark), "the kept one is gone").toEqual([undefined]);
    expect(dropped).toHaveLength(1);
  });

  it("keeps the later of a b2 and a b3 of one life by seq: a stale read's b3 replaced a write's later b2 across the upgrade (a review)", async () => {
    const g = "texf4jbso"; // its b2 tag is ypaetm
    const sent: { bookmark?: string }[] = [];
    const { client } = clientWith((_url, init) => (sent.push(JSON.parse(init.body as string)), Response.json({ result: { value: 1 }, seq: 1, replica: "r1", bookmark: "" })));
    const b2at100 = `b2.ypaetm.1.1.${(100).toString(36)}`;
    client.keepBookmark(g, b2at100);
    client.keepBookmark(g, encodeBookmark(g, 1, { epoch: 1, seq: 50 }));
    await client.query(g, { op: "get", key: "k" }, "sequential");
    expect(sent.at(-1)!.bookmark).toBe(b2at100);
    const b3at120 = encodeBookmark(g, 1, { epoch: 1, seq: 120 });
    client.keepBookmark(g, b3at120);
    await client.query(g, { op: "get", key: "k" }, "sequential", { bookmark: b2at100 }); // a given one never lowers the kept one
    expect(sent.at(-1)!.bookmark).toBe(b3at120);
    // A b2 of a later life still outranks a b3 of an earlier one, whatever the seqs.
    const life2 = `b2.ypaetm.2.1.1`;
    client.keepBookmark(g, life2);
    await client.query(g, { op: "get", key: "k" }, "sequential");
    expect(sent.at(-1)!.bookmark).toBe(life2);
  });

  it("sends a bookmark given for one read as it is, and does not drop it when it is past the group's end (the CLI's --bookmark)", async () => {
    const sent: unknown[] = [];
    const answers = [errorBody(400, "bad_request", "bookmark: names seq 99, past the end of g's log (seq 5); it is another group's or an earlier incarnation's")];
    const { client } = clientWith((_url, init) => (sent.push(JSON.parse(init.body as string)), answers.shift()!));
    await expect(client.query("g", { op: "get", key: "k" }, "sequential", { bookmark: "b1.1.99" })).rejects.toThrow(/400 bad_request: bookmark: names seq 99, past the end/);
    expect(sent).toEqual([{ query: { op: "get", key: "k" }, consistency: "sequential", bookmark: "b1.1.99" }]);
  });

  it("a bookmark given for one read older than the one kept sends the kept one: it never undoes read-your-writes", async () => {
    const sent: unknown[] = [];
    const answers = [Response.json({ seq: 20, output: {}, bookmark: "b1.1.20" }), Response.json({ result: { value: 1 }, seq: 20, replica: "r1", bookmark: "b1.1.20" })];
    const { client } = clientWith((_url, init) => (sent.push(JSON.parse(init.body as string)), answers.shift()!));
    await client.submit("g", { op: "put", key: "k", value: 1 });
    await client.query("g", { op: "get", key: "k" }, "sequential", { bookmark: "b1.1.3" });
    expect((sent[1] as { bookmark?: string }).bookmark).toBe("b1.1.20");
  });
});

describe("client: replayed answers", () => {
  it("keeps \"replayed\" for an answer an earlier call ordered, and drops it where this call's own earlier attempt may have (a review: a first run's put read \"nothing ran now\")", async () => {
    const replayed = () => Response.json({ seq: 4, output: { value: 1 }, bookmark: "b", replayed: true });
    const earlier = clientWith(replayed).client;
    expect(await earlier.submit("g", { op: "incr", key: "n", by: 1 })).toMatchObject({ seq: 4, replayed: true });
    let n = 0;
    const own = clientWith(() => (n++ === 0 ? errorBody(504, "timeout", "not confirmed in time") : replayed())).client;
    const r = await own.submit("g", { op: "incr", key: "n", by: 1 });
    expect(r).toEqual({ seq: 4, output: { value: 1 }, bookmark: "b" });
  });

  it("in a batch, drops it only for the items an earlier attempt of this call left unknown", async () => {
    let n = 0;
    const { client } = clientWith(() =>
      n++ === 0
        ? Response.json({ results: [{ seq: 1, output: { a: 1 }, replayed: true }, { error: { code: "timeout", message: "not confirmed" } }], bookmark: "b" })
        : Response.json({ results: [{ seq: 2, output: { b: 1 }, replayed: true }], bookmark: "b" }),
    );
    const r = await client.submitBatch("g", [{ command: { op: "put", key: "a", value: 1 } }, { command: { op: "put", key: "b", value: 1 } }]);
    expect(r.results).toEqual([{ seq: 1, output: { a: 1 }, replayed: true }, { seq: 2, output: { b: 1 } }]);
  });
});

describe("client: a server with no tokens", () => {
  it("is not retried: 503 not_configured stays until the operator sets tokens (commands and reads were retried for 90 s, a review)", async () => {
    const { client, calls } = clientWith(() => errorBody(503, "not_configured", "no tokens configured"));
    await expect(client.submit("g", { op: "put", key: "k", value: 1 })).rejects.toMatchObject({ status: 503, code: "not_configured" });
    expect(calls).toHaveLength(1);
    await expect(client.query("g", { op: "get", key: "k" })).rejects.toMatchObject({ status: 503, code: "not_configured" });
    expect(calls).toHaveLength(2);
    // A watch ends on it too (it reconnected for ever: a review).
    const watching = (async () => {
      for await (const _ of client.watch("g")) break;
    })();
    await expect(watching).rejects.toMatchObject({ status: 503, code: "not_configured" });
    expect(calls).toHaveLength(3);
  });
});

describe("client batches", () => {
  it("sends commands that do not fit one request (256, or 256 KiB) in several, in order", async () => {
    const bodies: { commands: { request: number }[] }[] = [];
    const sizes: number[] = [];
    const { client } = clientWith((_url, init) => {
      sizes.push(new TextEncoder().encode(init.body as string).length);
      const body = JSON.parse(init.body as string) as { commands: { request: number }[] };
      bodies.push(body);
      return Response.json({ results: body.commands.map((c) => ({ seq: c.request, output: null })), bookmark: `b1.1.${body.commands.at(-1)!.request}` });
    });
    const many = await client.submitBatch("g", Array.from({ length: 300 }, (_, i) => ({ command: { op: "incr", key: "n", by: 1 }, request: i + 1 })));
    expect(bodies.map((b) => b.commands.length)).toEqual([256, 44]);
    expect(many.results.map((r) => (r as { seq: number }).seq)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    expect(many.bookmark).toBe("b1.1.300");
    bodies.length = 0;
    sizes.length = 0;
    const big = "x".repeat(2_048);
    await client.submitBatch("g", Array.from({ length: 200 }, (_, i) => ({ command: { op: "put", key: `k${i}`, value: big }, request: 1_000 + i })));
    expect(bodies.length).toBe(2);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(256 * 1024);
    expect(bodies.flatMap((b) => b.commands.map((c) => c.request))).toEqual(Array.from({ length: 200 }, (_, i) => 1_000 + i));
  });

  it("keeps an earlier request's results when a later one of the same batch fails", async () => {
    let n = 0;
    const { client } = clientWith((_url, init) => {
      const body = JSON.parse(init.body as string) as { commands: { request: number }[] };
      return ++n === 1 ? Response.json({ results: body.commands.map((c) => ({ seq: c.request, output: null })), bookmark: "b1.1.256" }) : errorBody(400, "bad_request", "body.commands.3.command.key: required");
    });
    const r = await client.submitBatch("g", Array.from({ length: 260 }, (_, i) => ({ command: { op: "get", key: "k" }, request: i + 1 })));
    expect(r.results.slice(0, 256).every((x) => "seq" in x)).toBe(true);
    // The path counts from the whole batch: command 259, not the second request's 3.
    expect(r.results.slice(256)).toEqual(Array(4).fill({ error: { code: "bad_request", message: "400 bad_request: body.commands.259.command.key: required" } }));
  });

  it("sends no later request while an earlier one left a command not run, or unknown: order holds", async () => {
    const bodies: { commands: { request: number }[] }[] = [];
    const { client } = clientWith((_url, init) => {
      const body = JSON.parse(init.body as string) as { commands: { request: number }[] };
      bodies.push(body);
      return Response.json({ results: body.commands.map((c) => (c.request >= 200 ? { error: { code: "unavailable", message: "queue full" } } : { seq: c.request, output: null })), bookmark: "b1.1.199" });
    }, { attemptsMax: 1 });
    const r = await client.submitBatch("g", Array.from({ length: 300 }, (_, i) => ({ command: { op: "incr", key: "n", by: 1 }, request: i + 1 })));
    expect(bodies).toHaveLength(1);
    expect(r.results[198]).toEqual({ seq: 199, output: null });
    expect(r.results[210]).toEqual({ error: { code: "unavailable", message: "queue full" } });
    expect(r.results[280]).toEqual({ error: { code: "unavailable", message: expect.stringMatching(/^not sent: a command before it/) } });
  });

  it("does not retry a refusal for the storage quota (reason storage_quota), alone or in a batch: no retry mends it (a probe's put retried it for 90 s)", async () => {
    const full = { code: "unavailable", message: "the storage of replica r1 holds 16.2 MiB, at or over the group's quota", reason: "storage_quota" };
    const { client, calls } = clientWith(() => Response.json({ error: full }, { status: 503, headers: { "retry-after": "10" } }));
    const err = (await client.submit("g", { op: "put", key: "k", value: 1 }).catch((e: unknown) => e)) as ApiRequestError;
    expect([err.status, err.code, err.reason]).toEqual([503, "unavailable", "storage_quota"]);
    expect(calls).toHaveLength(1);
    // In a batch, the refused items are returned as they are; another item's plain 503 is still retried.
    const answers = [
      Response.json({ results: [{ error: { code: "unavailable", message: "no quorum" } }, { error: full }], bookmark: "b1.0.0" }),
      Response.json({ results: [{ seq: 4, output: null }], bookmark: "b1.1.4" }),
    ];
    const batch = clientWith(() => answers.shift()!);
    const r = await batch.client.submitBatch("g", [{ command: { op: "incr", key: "n", by: 1 } }, { command: { op: "put", key: "k", value: 1 } }]);
    expect(r.results).toEqual([{ seq: 4, output: null }, { error: full }]);
    expect(batch.calls.map((c) => (c.body as { commands: unknown[] }).commands.length)).toEqual([2, 1]);
  });

  it("waits out a batch's Retry-After before sending its refused commands again (they went again after 50 ms)", async () => {
    const answers = [
      Response.json({ results: [{ error: { code: "unavailable", message: "no quorum" } }], bookmark: "b1.0.0" }, { headers: { "retry-after": "1" } }),
      Response.json({ results: [{ seq: 4, output: null }], bookmark: "b1.1.4" }),
    ];
    const pauses: number[] = [];
    const client = new SmrClient({ baseUrl: "http://smr.test", token: "t", retryBaseMs: 1, onCommandRetry: (r) => pauses.push(r.pauseMs), fetch: async () => answers.shift()! });
    const r = await client.submitBatch("g", [{ command: { op: "incr", key: "n", by: 1 } }]);
    expect(r.results).toEqual([{ seq: 4, output: null }]);
    expect(pauses).toEqual([1_000]);
  });

  it("assigns request ids, resends only the commands that timed out with their ids, and keeps the order", async () => {
    let round = 0;
    const { client, calls } = clientWith((_url, init) => {
      round++;
      const body = JSON.parse(init.body as string) as { commands: { request: number }[] };
      if (round === 1) {
        return Response.json({
          results: [{ seq: 1, output: "a" }, { error: { code: "timeout", message: "?" } }, { error: { code: "bad_request", message: "no" } }, { error: { code: "unavailable", message: "later" } }],
          bookmark: "b1.1.1",
        });
      }
      return Response.json({ results: body.commands.map((c) => ({ seq: 10 + c.request, output: `again ${c.request}` })), bookmark: "b1.1.e" });
    });
    const r = await client.submitBatch("g", [{ command: "a" }, { command: "b" }, { command: "c", request: 50 }, { command: "d" }]);
    expect(calls.map((c) => c.body)).toEqual([
      { client: "c", commands: [{ request: 1, command: "a" }, { request: 2, command: "b" }, { request: 50, command: "c" }, { request: 3, command: "d" }] },
      { client: "c", commands: [{ request: 2, command: "b" }, { request: 3, command: "d" }] },
    ]);
    expect(r.results).toEqual([{ seq: 1, output: "a" }, { seq: 12, output: "again 2" }, { error: { code: "bad_request", message: "no" } }, { seq: 13, output: "again 3" }]);
    expect(r.bookmark).toBe("b1.1.e");
    expect(client.bookmark).toBe("b1.1.e");
    // The next command gets a fresh id.
    await client.submitBatch("g", [{ command: "e" }]).catch(() => {});
    expect((calls[2]!.body as { commands: { request: number }[] }).commands[0]!.request).toBe(4);
  });

  it("reads an item whose output did not fit the batch's answer (too_large, with its seq) by sending it again alone", async () => {
    const { client, calls } = clientWith((_url, init) => {
      const body = JSON.parse(init.body as string) as { request?: number; commands?: { request: number }[] };
      if (body.commands) {
        return Response.json({
          results: [{ seq: 7, output: "small" }, { seq: 8, error: { code: "too_large", message: "executed at seq 8; send it again alone" } }, { error: { code: "bad_request", message: "no" } }],
          bookmark: "b1.1.8",
        });
      }
      return Response.json({ seq: 8, output: `big ${body.request}`, bookmark: "b1.1.9" });
    });
    const r = await client.submitBatch("g", [{ command: "a" }, { command: "b" }, { command: "c" }]);
    expect(calls.map((c) => c.body)).toEqual([
      { client: "c", commands: [{ request: 1, command: "a" }, { request: 2, command: "b" }, { request: 3, command: "c" }] },
      { client: "c", request: 2, command: "b" },
    ]);
    expect(r.results).toEqual([{ seq: 7, output: "small" }, { seq: 8, output: "big 2" }, { error: { code: "bad_request", message: "no" } }]);
    expect(r.bookmark).toBe("b1.1.9");
  });

  it("keeps a too_large item's result when sending it again alone fails: the batch's other results still come back", async () => {
    const { client } = clientWith((_url, init) => {
      const body = JSON.parse(init.body as string) as { commands?: unknown[] };
      if (body.commands) return Response.json({ results: [{ seq: 7, output: "small" }, { seq: 8, error: { code: "too_large", message: "left out" } }], bookmark: "b1.1.8" });
      return errorBody(403, "forbidden");
    });
    const r = await client.submitBatch("g", [{ command: "a" }, { command: "b" }]);
    expect(r.results).toEqual([{ seq: 7, output: "small" }, { seq: 8, error: { code: "too_large", message: "left out" } }]);
  });

  it("keeps a too_large item's result when sending it again alone answers the session's output_not_kept marker: it ran, its output is gone", async () => {
    const marker = { error: "output_not_kept", chars: 459_000, limit: 1_100, succeeded: true };
    const { client } = clientWith((_url, init) => {
      const body = JSON.parse(init.body as string) as { commands?: unknown[] };
      if (body.commands) return Response.json({ results: [{ seq: 7, output: "small" }, { seq: 8, error: { code: "too_large", message: "left out" } }], bookmark: "b2.x.0.1.8" });
      return Response.json({ seq: 8, output: marker, bookmark: "b2.x.0.1.8" });
    });
    const r = await client.submitBatch("g", [{ command: "a" }, { command: "b" }]);
    expect(r.results).toEqual([{ seq: 7, output: "small" }, { seq: 8, error: { code: "too_large", message: "left out" } }]);
  });

  it("a typed helper whose retry answered the output_not_kept marker throws, where it answered value: undefined (a review); submit returns it as it came", async () => {
    const marker = { error: "output_not_kept", chars: 10_012, limit: 1_050 };
    let n = 0;
    const { client } = clientWith(() => (++n % 2 === 1 ? errorBody(504, "timeout") : Response.json({ seq: 4, output: marker, bookmark: "b2.x.0.1.4" })));
    const err = await client.kv("g").getThroughLog("k").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiRequestError);
    expect([(err as ApiRequestError).code, (err as ApiRequestError).message]).toEqual(["output_not_kept", expect.stringMatching(/executed at seq 4, but its output \(10012 characters\) was not kept/)]);
    expect((await client.submit("g", { op: "get", key: "k" })).output).toEqual(marker);
    // A txn's flags are said: which branch ran.
    const txnMarker = { error: "output_not_kept", chars: 9_000, limit: 1_100, succeeded: false };
    let m = 0;
    const { client: txns } = clientWith(() => (++m === 1 ? errorBody(504, "timeout") : Response.json({ seq: 5, output: txnMarker, bookmark: "b2.x.0.1.5" })));
    const first = await txns.kv("g").txn({ compare: [], success: [], failure: [] }).catch((e: unknown) => e);
    expect((first as ApiRequestError).message).toMatch(/executed at seq 5 \(\{"succeeded":false\}\)/);
  });

  it("resends the whole batch with the same ids after a 503, a 504 or a dropped connection, and gives up on a 400", async () => {
    const answers = [() => errorBody(503, "unavailable"), () => errorBody(504, "timeout"), () => { throw new TypeError("fetch failed"); }, () => Response.json({ results: [{ seq: 1, output: 1 }, { seq: 2, output: 2 }], bookmark: "b1.1.2" })];
    const { client, calls } = clientWith(() => answers[calls.length - 1]!());
    const r = await client.kv("g").batch([{ op: "put", key: "a", value: 1 }, { op: "incr", key: "b", by: 1 }]);
    expect(r.results).toHaveLength(2);
    expect(calls).toHaveLength(4);
    for (const c of calls) expect(c.body).toEqual(calls[0]!.body);

    const bad = clientWith(() => errorBody(400, "bad_request", "commands.1.command: unknown op"));
    const err = await bad.client.submitBatch("g", [{ command: 1 }, { command: 2 }]).catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 400, code: "bad_request" });
    expect(bad.calls).toHaveLength(1);
  });

  it("a sequential read sends the latest bookmark of its own group, never another group's", async () => {
    const seqs: Record<string, number> = { a: 5, b: 40 };
    const { client, calls } = clientWith((url, init) => {
      const group = url.pathname.split("/")[3]!;
      if (url.pathname.endsWith("/commands")) {
        const seq = ++seqs[group]!;
        const bookmark = `b1.1.${seq.toString(36)}`;
        return Response.json("commands" in JSON.parse(String(init.body)) ? { results: [{ seq, output: null }], bookmark } : { seq, output: null, bookmark });
      }
      return Response.json({ result: null, seq: 0, replica: "r1", bookmark: "b1.1.0" });
    });
    await client.submit("a", { op: "put", key: "k", value: 1 });
    await client.submit("b", { op: "put", key: "k", value: 1 });
    await client.submitBatch("a", [{ command: { op: "put", key: "k", value: 2 } }]);
    await client.query("a", { op: "get", key: "k" }, "sequential");
    await client.query("b", { op: "get", key: "k" }, "sequential");
    await client.query("c", { op: "get", key: "k" }, "sequential");
    const sent = calls.filter((c) => c.url.pathname.endsWith("/query")).map((c) => (c.body as { bookmark?: string }).bookmark);
    expect(sent).toEqual(["b1.1.7", "b1.1.15", undefined]);
    expect(client.bookmark).toBe("b1.1.0"); // the last one seen: group c's read
  });

  it("a read's bookmark moves the group's on (monotonic reads), by seq whatever its epoch", async () => {
    const answers = [
      { seq: 9, output: null, bookmark: "b1.2.9" }, // a write at epoch 2, seq 9
      { result: 1, seq: 12, replica: "r1", bookmark: "b1.1.c" }, // a read at a replica of epoch 1, seq 12: later
      { result: 1, seq: 12, replica: "r2", bookmark: "b1.3.a" }, // epoch 3 but seq 10: not later
      { result: 1, seq: 12, replica: "r1", bookmark: "b1.1.c" },
    ];
    const { client, calls } = clientWith(() => Response.json(answers.shift()));
    await client.submit("g", { op: "put", key: "k", value: 1 });
    await client.query("g", { op: "get", key: "k" }, "linearizable");
    await client.query("g", { op: "get", key: "k" }, "sequential");
    await client.query("g", { op: "get", key: "k" }, "sequential");
    const sent = calls.filter((c) => c.url.pathname.endsWith("/query")).map((c) => (c.body as { bookmark?: string }).bookmark);
    expect(sent).toEqual([undefined, "b1.1.c", "b1.1.c"]);
  });

  it("deletes a group, with ?force=1 when asked to finish though objects cannot be reached, naming the life its status showed", async () => {
    const { client, calls } = clientWith((_url, init) => (init.method === "GET" ? Response.json({ group: "g", incarnation: 3 }) : new Response(null, { status: 204 })));
    await client.deleteGroup("g");
    await client.deleteGroup("g", { force: true });
    const sent = calls.map((c) => `${c.method} ${c.url.pathname}${c.url.search}`);
    expect(sent).toEqual(["GET /v1/groups/g", "DELETE /v1/groups/g?incarnation=3", "GET /v1/groups/g", "DELETE /v1/groups/g?force=1&incarnation=3"]);
  });

  it("a retried delete names the same life: the server's 409 for a group created again meanwhile is the answer, not a delete of it", async () => {
    let deletes = 0;
    const paths: string[] = [];
    const { client } = clientWith((url, init) => {
      if (init.method === "GET") return Response.json({ group: "g", incarnation: 4 });
      paths.push(`${url.pathname}${url.search}`);
      // The first answer is lost after sending; the retry finds the group made again.
      if (deletes++ === 0) return Promise.reject(new TypeError("fetch failed", { cause: Object.assign(new Error("other side closed"), { code: "UND_ERR_SOCKET" }) }));
      return errorBody(409, "conflict", "group g was deleted and created again (incarnation 5; asked to delete incarnation 4): the new group is left as it is");
    });
    await expect(client.deleteGroup("g")).rejects.toMatchObject({ status: 409, message: expect.stringMatching(/incarnation 5/) });
    expect(paths).toEqual(["/v1/groups/g?incarnation=4", "/v1/groups/g?incarnation=4"]);
  });

  it("retries a create's 503 (the registry not reached: a retry finishes the creation), and tells a 409 at once (the CLI ended on the first 503, and the group stayed out of every list: a probe)", async () => {
    const retries: CommandRetry[] = [];
    const answers = [() => errorBody(503, "unavailable", "the registry cannot list group g yet (Error: x); the group is created once a retry or the next request finishes it"), () => Response.json(statusOf("g"), { status: 201 })];
    let made: boolean | undefined;
    const { client, calls } = clientWith(() => answers.shift()!(), { onReadRetry: (r) => retries.push(r) });
    await expect(client.createGroup("g", { machine: "kv" }, (m) => (made = m))).resolves.toMatchObject({ group: "g" });
    expect(calls.map((c) => c.method)).toEqual(["PUT", "PUT"]);
    expect(retries).toEqual([expect.objectContaining({ attempt: 1, reason: expect.stringMatching(/503.*registry/) })]);
    expect(made).toBe(true);
    const conflict = clientWith(() => errorBody(409, "conflict", "group g exists with another config"));
    await expect(conflict.client.createGroup("g", { machine: "kv" })).rejects.toMatchObject({ status: 409 });
    expect(conflict.calls).toHaveLength(1);
  });

  it("retries a delete's 503 (an object not reached yet), saying so, and takes a retry's 404 for done only once the delete may have begun", async () => {
    const beingDeleted = () => errorBody(503, "unavailable", "group g is being deleted, but not every one of its objects can be reached yet (replica r2: ...)");
    const gone = () => errorBody(404, "not_found", "group g does not exist");
    /** DELETEs answer in turn from `deletes`; a GET (the check before a retry) answers `status`. */
    const deleting = (deletes: (() => Response | Promise<Response>)[], status: () => Response = beingDeleted) => {
      const retries: CommandRetry[] = [];
      let n = 0;
      const c = clientWith((_url, init) => (init.method === "GET" ? status() : deletes[Math.min(n++, deletes.length - 1)]!()), { onReadRetry: (r) => retries.push(r) });
      return { ...c, retries };
    };
    const retried = deleting([beingDeleted, () => new Response(null, { status: 204 })]);
    await retried.client.deleteGroup("g");
    expect(retried.retries).toEqual([expect.objectContaining({ attempt: 1, what: "delete", reason: expect.stringMatching(/503.*being deleted/) })]);
    // The first attempt's answer was lost after sending, or was a 503 "being deleted": the retry's 404 is that delete finished.
    // A proxy's 5xx page too: retried now, its 404 is that delete finished, not "no such group" (a review).
    const page = () => new Response("<html>502 Bad Gateway</html>", { status: 502, headers: { "content-type": "text/html" } });
    for (const first of [() => Promise.reject(new TypeError("fetch failed")), beingDeleted, () => errorBody(504, "timeout", "slow"), page, () => errorBody(500, "internal", "the registry failed")]) {
      await expect(deleting([first, gone], gone).client.deleteGroup("g")).resolves.toBeUndefined();
    }
    // The registry failing after the record is marked deleting (the server's text): begun (a review).
    await expect(deleting([() => errorBody(503, "unavailable", "group g is being deleted: the registry cannot unlist group g yet (Error: x); a retry or the next request finishes the delete"), gone], gone).client.deleteGroup("g")).resolves.toBeUndefined();
    // A group that answers after a lost answer (a socket reset) may be one the delete never reached: deleted, not a 409 (a review).
    const reset = () => Promise.reject(new TypeError("fetch failed", { cause: Object.assign(new Error("other side closed"), { code: "UND_ERR_SOCKET" }) }));
    const resent = deleting([reset, () => new Response(null, { status: 204 })], () => Response.json({ group: "g" }));
    await expect(resent.client.deleteGroup("g")).resolves.toBeUndefined();
    // Nothing begun (a 429, the registry's 503 before a record was found): a retry's 404 is the caller's, no such group (a review).
    for (const first of [() => errorBody(429, "rate_limited", "slow down"), () => errorBody(503, "unavailable", "the registry cannot unlist group g yet (Error: x); a retry or the next request finishes the delete")]) {
      await expect(deleting([first, gone], gone).client.deleteGroup("g")).rejects.toMatchObject({ status: 404 });
    }
    // Begun, then made again meanwhile by another's PUT (it finishes the delete under way): not deleted (a review).
    const remade = deleting([beingDeleted, () => new Response(null, { status: 204 })], () => Response.json({ group: "g" }));
    await expect(remade.client.deleteGroup("g")).rejects.toMatchObject({ status: 409, code: "conflict", message: expect.stringMatching(/created again/) });
    expect(remade.calls.map((c) => c.url.pathname)).toEqual(["/v1/groups/g", "/v1/groups/g", "/v1/groups/g"]); // the status, the DELETE, then the GET: no second DELETE
    // A first attempt's 404 is the caller's: there was no such group.
    await expect(deleting([gone]).client.deleteGroup("g")).rejects.toMatchObject({ status: 404 });
  });

  it("retries a membership change's 503 and 429 (nothing ordered), saying so, but never a 504 or an answer lost after sending (a second add is a second replica)", async () => {
    const added = () => Response.json({ replica: { id: "r4", location: null, status: "joining", lastSeq: 0, appliedSeq: 0, digest: "0".repeat(64), lastContact: null } }, { status: 202 });
    const changing = (first: () => Response | Promise<Response>) => {
      const retries: CommandRetry[] = [];
      let n = 0;
      const c = clientWith(() => (n++ === 0 ? first() : added()), { onReadRetry: (r) => retries.push(r) });
      return { ...c, retries };
    };
    const starting = changing(() => errorBody(503, "unavailable", "the sequencer is starting (reading the group's record in its directory); nothing was ordered, retry"));
    expect((await starting.client.addReplica("g")).replica.id).toBe("r4");
    expect(starting.retries).toEqual([expect.objectContaining({ attempt: 1, what: "membership change", reason: expect.stringMatching(/503.*starting/) })]);
    const limited = changing(() => errorBody(429, "rate_limited", "slow down"));
    expect((await limited.client.removeReplica("g", "r2")).replica.id).toBe("r4");
    expect(limited.calls).toHaveLength(2);
    // Not sent at all (a refused connection): nothing ordered either.
    const refused = changing(() => Promise.reject(new TypeError("fetch failed", { cause: Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }) })));
    expect((await refused.client.addReplica("g")).replica.id).toBe("r4");
    const notOurs = () => new Response("<html><body>503 Service Unavailable</body></html>", { status: 503, headers: { "content-type": "text/html" } });
    const unconfigured = () => errorBody(503, "not_configured", "no tokens configured");
    const lost = () => Promise.reject(new TypeError("fetch failed", { cause: Object.assign(new Error("other side closed"), { code: "UND_ERR_SOCKET" }) }));
    // A proxy's 200 of another shape took the change and may have passed it on (a plain failure before: a review).
    const proxied = () => Response.json({ ok: true });
    for (const first of [() => errorBody(504, "timeout", "the change may or may not take effect"), lost, notOurs, proxied, () => errorBody(500, "internal", "x")]) {
      const unknown = changing(first);
      const err = (await unknown.client.addReplica("g").catch((e: unknown) => e)) as ApiRequestError;
      expect([err.status, err.code, err.outcomeUnknown]).toEqual([504, "timeout", true]);
      expect(unknown.calls).toHaveLength(1);
      expect(unknown.retries).toEqual([]);
    }
    expect(((await changing(proxied).client.removeReplica("g", "r2").catch((e: unknown) => e)) as ApiRequestError).message).toMatch(/not an answer of the API \(application\/json\).*may or may not take effect; look at the group's replicas/);
    const none = changing(unconfigured);
    expect(await none.client.addReplica("g").catch((e: unknown) => e)).toMatchObject({ code: "not_configured", outcomeUnknown: false });
    expect(none.calls).toHaveLength(1);
  });

  it("retries a refusal only objects that answer again can end (reason unreachable: a membership change with replicas down; deleting) for 10 s, not 90 (an operator was blocked 90 s each: a probe)", async () => {
    const refusals = [
      ["unreachable", (c: SmrClient) => c.removeReplica("g", "r2")],
      ["deleting", (c: SmrClient) => c.group("g")],
    ] as const;
    for (const [reason, call] of refusals) {
      const pauses: number[] = [];
      const { client } = clientWith(() => Response.json({ error: { code: "unavailable", message: "objects do not answer", reason } }, { status: 503, headers: { "retry-after": "1" } }), { onReadRetry: (r) => pauses.push(r.pauseMs) });
      expect(((await settledAfter(100_000, () => call(client))) as ApiRequestError).reason, reason).toBe(reason);
      const waitedMs = pauses.reduce((a, b) => a + b, 0);
      expect(waitedMs, reason).toBeGreaterThan(5_000);
      expect(waitedMs, reason).toBeLessThanOrEqual(10_000);
    }
    // The 10 s are of a run of such errors: after a 500 and then 11 s of a failover's 503s, a `deleting` 503 is retried (it ended the call at once: a review).
    let n = 0;
    const mixed = clientWith(() => (++n === 1 ? errorBody(500, "internal") : n <= 12 ? Response.json({ error: { code: "unavailable", message: "failing over" } }, { status: 503, headers: { "retry-after": "1" } }) : n === 13 ? Response.json({ error: { code: "unavailable", message: "deleting", reason: "deleting" } }, { status: 503 }) : Response.json({ seq: 3, output: {}, bookmark: "b" })));
    expect(await settledAfter(60_000, () => mixed.client.submit("g", { op: "put", key: "k", value: 1 }))).toMatchObject({ seq: 3 });
  });

  it("an answer that is not the API's (a proxy's or a login page) says so, without its markup: not a 500 `internal`, not JSON's syntax error, not metrics", async () => {
    const page = '<!DOCTYPE html><html><head><style>p{}</style></head><body><h1>Sign in</h1><p>to continue</p></body></html>';
    const html = (status: number) => () => new Response(page, { status, headers: { "content-type": "text/html" } });
    for (const status of [200, 404, 501]) {
      const { client } = clientWith(html(status), { retryForMs: 0 });
      for (const call of [() => client.listGroups(), () => client.metrics()]) {
        const err = await call().catch((e: unknown) => e);
        expect(err, String(status)).toBeInstanceOf(ApiRequestError);
        expect((err as ApiRequestError).code).toBe("not_api");
        expect((err as ApiRequestError).message).toMatch(/not an answer of the API \(text\/html\): Sign in to continue$/);
      }
    }
    // The API's own metrics (text/plain), even with no group at all, are metrics.
    const { client } = clientWith(() => new Response("", { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } }));
    expect(await client.metrics()).toBe("");
  });

  it("takes another server's `{}` for no answer of the API on every admin and read call, and a 200 to a DELETE too (the CLI said \"deleted group\" and printed `{}` for audits: a probe)", async () => {
    const { client } = clientWith(() => Response.json({}), { retryForMs: 0 });
    const calls: [string, () => Promise<unknown>][] = [
      ["createGroup", () => client.createGroup("g", { machine: "kv", replicas: 3 })],
      ["listGroups", () => client.listGroups()],
      ["group", () => client.group("g")],
      ["deleteGroup", () => client.deleteGroup("g", { incarnation: 1 })],
      ["replicas", () => client.replicas("g")],
      ["setQuota", () => client.setQuota("g", 64)],
      ["repairReplica", () => client.repairReplica("g", "r2")],
      ["releaseReplica", () => client.releaseReplica("g", "r2")],
      ["moveSequencer", () => client.moveSequencer("g")],
      ["log", () => client.log("g")],
      ["audit", () => client.audit("g")],
      ["audits", () => client.audits("g")],
      ["events", () => client.events("g")],
      ["createToken", () => client.createToken("g", "read")],
      ["tokens", () => client.tokens("g")],
      ["revokeToken", () => client.revokeToken("g", "0123abcd")],
      ["snapshot", () => client.snapshot("g")],
      ["restore", () => client.restore("g", '{"format":"smr-snapshot"}\n')],
    ];
    for (const [name, call] of calls) {
      const err = await call().catch((e: unknown) => e);
      expect(err, name).toBeInstanceOf(ApiRequestError);
      expect([(err as ApiRequestError).code, (err as ApiRequestError).status], name).toEqual(["not_api", 200]);
    }
    // A page's HTML to a snapshot or a restore: not_api, not JSON's syntax error.
    const html = clientWith(() => new Response("<html><body>Sign in</body></html>", { headers: { "content-type": "text/html" } }), { retryForMs: 0 });
    for (const call of [() => html.client.snapshot("g"), () => html.client.snapshotRows("g"), () => html.client.restore("g", "{}\n")]) {
      expect(await call().catch((e: unknown) => e)).toMatchObject({ code: "not_api", message: expect.stringMatching(/\(text\/html\): Sign in$/) });
    }
    // A snapshot whose first line is not its header.
    const odd = clientWith(() => new Response("<html>\n", { headers: { "content-type": "application/x-ndjson" } }));
    expect(await odd.client.snapshotRows("g").catch((e: unknown) => e)).toMatchObject({ code: "not_api", message: expect.stringMatching(/not a snapshot \(its first line: "<html>"\)$/) });
    // The API's own answers pass: a repair whose replica was removed meanwhile says null.
    const gone = clientWith(() => Response.json({ replica: null }));
    expect(await gone.client.repairReplica("g", "r2")).toEqual({ replica: null });
    const deleted = clientWith(() => new Response(null, { status: 204 }));
    expect(await deleted.client.revokeToken("g", "0123abcd")).toBeUndefined();
  });

  it("a restore answered before its whole file was sent stops reading the file and arms no wait after the answer (`smr restore` printed another server's answer, then hung 5 minutes: a probe)", async () => {
    let cancelled = false;
    let pulls = 0;
    const source = new ReadableStream<Uint8Array>({
      pull: (c) => void (pulls++ < 1_000 ? c.enqueue(new Uint8Array(1_024)) : c.close()),
      cancel: () => void (cancelled = true),
    });
    let reading: Promise<void> = Promise.resolve();
    const { client } = clientWith(
      (_url, init) => {
        // Answers at once, then reads the rest of the body (as Node's server does after req.resume()).
        const body = (init.body as ReadableStream<Uint8Array>).getReader();
        reading = (async () => {
          while (!(await body.read()).done);
        })();
        return Response.json({}, { status: 200 });
      },
      { streamUploads: true },
    );
    const timers = new Set<unknown>();
    const realSet = globalThis.setTimeout;
    const realClear = globalThis.clearTimeout;
    globalThis.setTimeout = ((fn: () => void, ms?: number) => {
      const t = realSet(() => (timers.delete(t), fn()), ms);
      timers.add(t);
      return t;
    }) as typeof setTimeout;
    globalThis.clearTimeout = ((t: ReturnType<typeof setTimeout>) => (timers.delete(t), realClear(t))) as typeof clearTimeout;
    try {
      expect(await client.restore("g", source).catch((e: unknown) => e)).toMatchObject({ code: "not_api" });
      await reading;
      expect(cancelled).toBe(true);
      expect(pulls).toBeLessThan(1_000);
      expect(timers.size, "a timer left armed").toBe(0);
    } finally {
      globalThis.setTimeout = realSet;
      globalThis.clearTimeout = realClear;
    }
  });

  it("refuses a value JSON cannot hold before sending anything (NaN was stored as null: a probe), and names its error ApiRequestError", async () => {
    const { client, calls } = clientWith(() => Response.json({ seq: 1, output: {}, bookmark: "b1.1.1" }));
    for (const [value, why] of [[NaN, /^400 bad_request: value: NaN has no JSON form/], [Infinity, /value: Infinity has no JSON form/], [{ deep: [1, -Infinity] }, /1: -Infinity has no JSON form/], [10n, /value: 10n: a bigint has no JSON form/]] as const) {
      const err = (await client.kv("g").put("k", value).catch((e: unknown) => e)) as ApiRequestError;
      expect(err, String(value)).toBeInstanceOf(ApiRequestError);
      expect(err.message).toMatch(why);
      expect([err.name, err.outcomeUnknown]).toEqual(["ApiRequestError", false]);
    }
    const batch = (await client.kv("g").batch([{ op: "put", key: "a", value: NaN }]).catch((e: unknown) => e)) as ApiRequestError;
    expect(batch.message).toMatch(/NaN has no JSON form/);
    const big = (await client.kv("g").batch([{ op: "put", key: "a", value: 1n as unknown as number }]).catch((e: unknown) => e)) as ApiRequestError;
    expect([big.name, big.message]).toEqual(["ApiRequestError", expect.stringMatching(/1n: a bigint has no JSON form/)]);
    expect(calls).toHaveLength(0);
  });

  it("takes another server's JSON for no answer of the API: a command, a batch and a query whose 200 is not of their shape (a proxy's `{}` made put resolve undefined: a probe)", async () => {
    for (const body of [{}, { seq: "1", output: {}, bookmark: "b" }, { seq: 1, bookmark: "b" }, [1]]) {
      const { client, calls } = clientWith(() => Response.json(body));
      const err = (await client.kv("g").put("k", 1).catch((e: unknown) => e)) as ApiRequestError;
      // Something took the command (a proxy may have passed it on): its outcome is unknown.
      expect([err.code, err.status, err.outcomeUnknown], JSON.stringify(body)).toEqual(["timeout", 504, true]);
      expect((err.cause as ApiRequestError).code).toBe("not_api");
      expect(err.message).toMatch(/not an answer of the API \(application\/json\)/);
      expect(calls).toHaveLength(1); // a wrong URL: not retried
    }
    const short = clientWith(() => Response.json({ results: [{ seq: 1, output: {} }], bookmark: "b" }));
    const batch = (await short.client.kv("g").batch([{ op: "put", key: "a", value: 1 }, { op: "put", key: "b", value: 2 }]).catch((e: unknown) => e)) as ApiRequestError;
    expect([batch.outcomeUnknown, (batch.cause as ApiRequestError).code]).toEqual([true, "not_api"]); // one result for two commands
    const query = clientWith(() => Response.json({ value: 1 }));
    expect(((await query.client.kv("g").get("k").catch((e: unknown) => e)) as ApiRequestError).code).toBe("not_api");
    // The API's own answers pass.
    const ok = clientWith((url) => Response.json(url.pathname.endsWith("/query") ? { result: { value: null }, bookmark: "b" } : { seq: 2, output: { previous: null }, bookmark: "b" }));
    expect(await ok.client.kv("g").put("k", 1)).toEqual({ previous: null });
    expect(await ok.client.kv("g").get("k")).toEqual({ value: null });
  });

  it("sends the nearest-replica hint with reads and watches, the client's or the call's; refuses an unknown one at once", async () => {
    const { client, calls } = clientWith((url) => (url.pathname.endsWith("/watch") ? sse(entry(1)) : Response.json({ result: { value: null }, bookmark: "" })), { near: "weur" });
    await client.kv("g").get("k", "stale");
    await client.query("g", { op: "get", key: "k" }, "sequential", { near: "apac" });
    for await (const _e of client.watch("g")) break;
    for await (const _e of client.watch("g", { near: "oc" })) break;
    expect(calls.map((c) => c.headers["x-smr-near"])).toEqual(["weur", "apac", "weur", "oc"]);
    expect(() => new SmrClient({ baseUrl: "http://smr.test", token: "t", near: "mars" })).toThrow(/near "mars": one of wnam, enam/);
    // A call's own hint is refused as the API refuses it, a 400 (it was a TypeError: a probe).
    await expect(client.query("g", { op: "get", key: "k" }, "stale", { near: "mars" })).rejects.toMatchObject({ status: 400, code: "bad_request", message: expect.stringMatching(/near "mars"/) });
    expect(() => client.watch("g", { near: "Weur" })).toThrow(ApiRequestError);
    expect(() => client.watch("g", { near: "Weur" })).toThrow(/400 bad_request: near "Weur"/);
    expect(calls).toHaveLength(4); // nothing sent for them
    const plain = clientWith(() => Response.json({ result: null, bookmark: "" }));
    await plain.client.query("g", { op: "get", key: "k" });
    expect(plain.calls[0]!.headers["x-smr-near"]).toBeUndefined();
  });

  it("keeps a 500's request id as a field, to find it in the server's logs", async () => {
    const { client } = clientWith(() => Response.json({ error: { code: "internal", message: "internal error (request id r-42)", requestId: "r-42" } }, { status: 500 }), { retryForMs: 0 });
    const err = (await client.query("g", { op: "get", key: "k" }).catch((e: unknown) => e)) as ApiRequestError;
    expect([err.code, err.requestId]).toEqual(["internal", "r-42"]);
  });

  it("offers the lock machine's commands and reads, typed", async () => {
    const { client, calls } = clientWith((url) =>
      Response.json(url.pathname.endsWith("/query") ? { result: { holder: "a", token: 3, expiresAt: "2026-01-01T00:00:00.000Z" }, bookmark: "" } : { seq: 4, output: { ok: true, token: 3, expiresAt: "2026-01-01T00:00:00.000Z" }, bookmark: "b" }),
    );
    const locks = client.lock("locks");
    const got = await locks.acquire("l", "a", 5000);
    expect(got.ok && got.token).toBe(3);
    await locks.renew("l", "a", 3, 5000);
    await locks.release("l", "a", 3);
    expect((await locks.get("l", "sequential"))?.holder).toBe("a");
    expect(calls.map((c) => (c.body as { command?: unknown; query?: unknown }).command ?? (c.body as { query: unknown }).query)).toEqual([
      { op: "acquire", lock: "l", owner: "a", ttlMs: 5000 },
      { op: "renew", lock: "l", owner: "a", token: 3, ttlMs: 5000 },
      { op: "release", lock: "l", owner: "a", token: 3 },
      { op: "get", lock: "l" },
    ]);
    // @ts-expect-error: a token is a number (npm test's typecheck holds this)
    const wrong = () => locks.release("l", "a", "3");
    expect(wrong).toBeTypeOf("function");
  });

  it("sends a kv txn as one command with both branches", async () => {
    const { client, calls } = clientWith(() => Response.json({ seq: 3, output: { succeeded: true, results: [{ previous: null }] }, bookmark: "b1.1.3" }));
    const out = await client.kv("g").txn({ compare: [{ key: "a", value: null }], success: [{ op: "put", key: "a", value: 1 }] });
    expect(out).toEqual({ succeeded: true, results: [{ previous: null }] });
    expect(calls[0]!.body).toMatchObject({ command: { op: "txn", compare: [{ key: "a", value: null }], success: [{ op: "put", key: "a", value: 1 }], failure: [] } });
    // A txn in a txn, which the API refuses, does not compile (it did, then got a 400: a probe). `npm test`'s typecheck holds this.
    // @ts-expect-error: a branch holds single-key commands only
    const nested: Parameters<ReturnType<typeof client.kv>["txn"]>[0] = { compare: [], success: [{ op: "txn", compare: [], success: [], failure: [] }] };
    expect(nested.success).toHaveLength(1);
  });
});

describe("client watch", () => {
  it("ends on a 200 that is not an event stream (a proxy's login page), as any command does: it reconnected to it for ever (a review)", async () => {
    const { client, calls } = clientWith(() => new Response("<html><body><h1>Sign in</h1></body></html>", { headers: { "content-type": "text/html" } }));
    const retries: unknown[] = [];
    const ended = (async () => {
      for await (const _ of client.watch("g", { onRetry: (r) => retries.push(r) })) break;
    })();
    await expect(ended).rejects.toMatchObject({ code: "not_api", status: 200, message: expect.stringMatching(/not an answer of the API \(text\/html\): Sign in$/) });
    expect(calls).toHaveLength(1);
    expect(retries).toEqual([]);
    // One whose body never ends is not waited for past idleMs.
    const endless = () => new Response(new ReadableStream<Uint8Array>({ start: (c) => c.enqueue(new TextEncoder().encode("<p>wait")) }), { headers: { "content-type": "text/html" } });
    const stuck = clientWith(endless).client;
    const gaveUp = (async () => {
      for await (const _ of stuck.watch("g", { idleMs: 50 })) break;
    })();
    await expect(gaveUp).rejects.toMatchObject({ code: "not_api", message: expect.stringMatching(/\(text\/html\): wait$/) });
  });

  it("throw(err) ends the watch and rejects with err (thrown into the feed, it was taken for a dropped connection: a review)", async () => {
    const { client, calls } = clientWith(() => sse(entry(1)));
    const it = client.watch("g");
    expect((await it.next()).value).toMatchObject({ seq: 1 });
    const boom = new Error("the app's own");
    await expect(it.throw(boom)).rejects.toBe(boom);
    expect(await it.next()).toEqual({ done: true, value: undefined });
    expect(calls).toHaveLength(1);
  });

  it("return() while a next() waits for an event ends the watch and its stream at once (it waited behind the next() for good: a probe)", async () => {
    let cancelled = false;
    const { client } = clientWith((_url, init) => {
      // A quiet stream, which ends as a real fetch's body does when its signal aborts.
      const body = new ReadableStream<Uint8Array>({
        start: (c) => {
          c.enqueue(new TextEncoder().encode(": hello\n\n"));
          init.signal?.addEventListener("abort", () => c.error(init.signal!.reason));
        },
        cancel: () => void (cancelled = true),
      });
      init.signal?.addEventListener("abort", () => (cancelled = true));
      return new Response(body, { headers: { "content-type": "text/event-stream" } });
    });
    const it = client.watch("g", { idleMs: 60_000 });
    const pending = it.next();
    await tick(20);
    const returned = await Promise.race([it.return(undefined), tick(1_000).then(() => "still waiting")]);
    expect(returned).toEqual({ done: true, value: undefined });
    expect(await pending).toEqual({ done: true, value: undefined });
    expect(cancelled).toBe(true);
  });

  it("yields each entry once, and after a dropped stream resumes with Last-Event-ID set to the last one it yielded", async () => {
    const streams = [
      () => sse(`: hello\n\nretry: 1\n\n${entry(1)}${entry(2)}id: 3\nevent: entry\ndata: {"seq":3`, "drop"), // drops inside event 3
      () => errorBody(503, "unavailable"),
      () => sse(`: keepalive\n\n${entry(3)}${entry(4)}`), // the replica ends the stream
      () => sse(entry(5, "user/x")),
    ];
    const { client, calls } = clientWith(() => streams[Math.min(calls.length - 1, streams.length - 1)]!());
    const seen: WatchEvent[] = [];
    const ctl = new AbortController();
    for await (const ev of client.watch("g", { prefix: "user/", signal: ctl.signal })) {
      seen.push(ev);
      if (ev.seq === 5) ctl.abort();
    }
    expect(seen.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(seen[4]!.changes).toEqual([["user/x", 5]]);
    expect(calls.map((c) => c.headers["last-event-id"])).toEqual([undefined, "2", "2", "4"]);
    expect(calls.map((c) => c.url.searchParams.get("prefix"))).toEqual(["user/", "user/", "user/", "user/"]);
    expect(calls[0]!.url.searchParams.has("from")).toBe(false);
    expect(calls[3]!.url.searchParams.get("from")).toBe("4");
  });

  it("reconnects saying which life of the group it followed, and ends on the 404 of a group deleted and made again", async () => {
    const withIncarnation = (res: Response) => (res.headers.set("x-smr-incarnation", "4"), res);
    const streams = [() => withIncarnation(sse(entry(1))), () => errorBody(503, "unavailable"), () => errorBody(404, "not_found", "group g was deleted since this watch began")];
    const { client, calls } = clientWith(() => streams[Math.min(calls.length - 1, streams.length - 1)]!());
    const seen: number[] = [];
    const ended = (async () => {
      for await (const ev of client.watch("g")) seen.push(ev.seq);
    })();
    await expect(ended).rejects.toMatchObject({ status: 404 });
    expect(seen).toEqual([1]);
    expect(calls.map((c) => c.headers["x-smr-incarnation"])).toEqual([undefined, "4", "4"]);
  });

  it("tells onRetry why it reconnects and when (a server that is down is not retried silently)", async () => {
    const streams = [
      () => Promise.reject(new TypeError("fetch failed")),
      () => errorBody(503, "unavailable", "no replica"),
      () => sse(entry(1), "drop"),
      () => sse(entry(2)),
    ];
    const { client, calls } = clientWith(() => streams[Math.min(calls.length - 1, streams.length - 1)]!());
    const retries: { reason: string; pauseMs: number; after?: string }[] = [];
    const it = client.watch("g", { onRetry: (r) => retries.push(r) });
    expect((await it.next()).value).toMatchObject({ seq: 1 });
    expect((await it.next()).value).toMatchObject({ seq: 2 });
    await it.return(undefined);
    expect(retries.map((r) => r.reason)).toEqual([expect.stringMatching(/fetch failed/), expect.stringMatching(/503.*no replica/), expect.stringMatching(/connection dropped/)]);
    expect(retries.every((r) => r.pauseMs >= 1)).toBe(true);
    expect(retries[2]!.after).toBe("1");
  });

  it("waits a stream's retry: before the reconnect after that stream only, not before every later one (7 s each, a probe)", async () => {
    // Nor does it feed the backoff: keepalive-only streams after it back off from the base pause
    // (doubled from the server's, a quiet group's watch reconnected at the 5 s bound: a review).
    const streams = [() => sse(`retry: 30\n\n${entry(1)}`), () => sse(": keepalive\n\n"), () => sse(": keepalive\n\n"), () => sse(entry(2)), () => sse(entry(3))];
    const { client, calls } = clientWith(() => streams[Math.min(calls.length - 1, streams.length - 1)]!());
    const retries: { pauseMs: number }[] = [];
    const it = client.watch("g", { onRetry: (r) => retries.push(r) });
    for (const seq of [1, 2, 3]) expect((await it.next()).value).toMatchObject({ seq });
    await it.return(undefined);
    expect(retries.map((r) => r.pauseMs)).toEqual([30, 1, 2, 1]);
  });

  it("says a retry follows an open stream only if it brought something: a keepalive counts, a 200 with nothing does not (watch --retry-for)", async () => {
    const streams = [() => sse(""), () => sse(": keepalive\n\n"), () => sse(entry(1))];
    const { client, calls } = clientWith(() => streams[Math.min(calls.length - 1, streams.length - 1)]!());
    const retries: { opened: boolean }[] = [];
    const it = client.watch("g", { onRetry: (r) => retries.push(r) });
    expect((await it.next()).value).toMatchObject({ seq: 1 });
    await it.return(undefined);
    expect(retries.map((r) => r.opened)).toEqual([false, true]);
  });

  it("waits out a refusal's Retry-After before it reconnects (503 from a replica full of watchers, 429)", async () => {
    const refusal = (status: number, code: string) => new Response(JSON.stringify({ error: { code, message: "busy" } }), { status, headers: { "retry-after": "1" } });
    const streams = [() => refusal(503, "unavailable"), () => refusal(429, "rate_limited"), () => sse(entry(1))];
    const { client, calls } = clientWith(() => streams[Math.min(calls.length - 1, streams.length - 1)]!());
    const retries: { reason: string; pauseMs: number }[] = [];
    const it = client.watch("g", { onRetry: (r) => retries.push(r) });
    expect((await it.next()).value).toMatchObject({ seq: 1 });
    await it.return(undefined);
    expect(retries.map((r) => r.pauseMs)).toEqual([1000, 2000]);
  });

  it("takes a stream that brings nothing, not even a keepalive, for idleMs for dead, and resumes after its last event", async () => {
    const silentAfter = (text: string) => {
      const bytes = new TextEncoder().encode(text);
      let sent = false;
      // Sends its event, then nothing and no close: a connection cut without a word.
      return new Response(new ReadableStream<Uint8Array>({ pull: (c) => void (sent ? new Promise(() => {}) : ((sent = true), c.enqueue(bytes))) }), { headers: { "content-type": "text/event-stream" } });
    };
    const streams = [() => silentAfter(entry(1)), () => sse(entry(2))];
    const { client, calls } = clientWith(() => streams[Math.min(calls.length - 1, streams.length - 1)]!());
    const retries: { reason: string; after?: string }[] = [];
    const it = client.watch("g", { idleMs: 20, onRetry: (r) => retries.push(r) });
    expect((await it.next()).value).toMatchObject({ seq: 1 });
    expect((await it.next()).value).toMatchObject({ seq: 2 });
    await it.return(undefined);
    expect(retries[0]).toMatchObject({ reason: expect.stringMatching(/no byte .* for 20 ms/), after: "1" });
    expect(calls[1]!.headers["last-event-id"]).toBe("1");
  });

  it("gives up a watch request whose answer does not come within idleMs, and asks again", async () => {
    const hang = (init: RequestInit) => new Promise<Response>((_, reject) => init.signal?.addEventListener("abort", () => reject(init.signal!.reason)));
    const { client, calls } = clientWith((_, init) => (calls.length === 1 ? hang(init) : sse(entry(1))));
    const retries: { reason: string }[] = [];
    const it = client.watch("g", { idleMs: 20, onRetry: (r) => retries.push(r) });
    expect((await it.next()).value).toMatchObject({ seq: 1 });
    await it.return(undefined);
    expect(retries.map((r) => r.reason)).toEqual([expect.stringMatching(/no answer within 20 ms/)]);
  });

  it("resumes from an id the server set without an event (an `id:` block with no data)", async () => {
    const streams = [() => sse(`id: 40\n\n: keepalive\n\n`, "drop"), () => sse(entry(41))];
    const { client, calls } = clientWith(() => streams[calls.length - 1]!());
    const it = client.watch("g", { prefix: "user/" });
    expect((await it.next()).value).toMatchObject({ seq: 41 });
    await it.return(undefined);
    expect(calls.map((c) => c.headers["last-event-id"])).toEqual([undefined, "40"]);
  });

  it("starts after `from`, and ends with the API's error on 410 compacted, 401, 403 and 404", async () => {
    for (const [status, code] of [[410, "compacted"], [401, "unauthorized"], [403, "forbidden"], [404, "not_found"]] as const) {
      const { client, calls } = clientWith(() => errorBody(status, code, "no"));
      const it = client.watch("g", { from: 7 });
      const err = await it.next().catch((e: unknown) => e);
      expect(err).toMatchObject({ status, code });
      expect(calls).toHaveLength(1);
      expect(calls[0]!.url.searchParams.get("from")).toBe("7");
      // The first request asks `from` only: a refusal then names `from`, not Last-Event-ID.
      expect(calls[0]!.headers["last-event-id"]).toBeUndefined();
    }
  });

  it("ends quietly when the loop is left", async () => {
    const { client, calls } = clientWith(() => sse(entry(1) + entry(2) + entry(3)));
    const seen: number[] = [];
    for await (const ev of client.watch("g")) {
      seen.push(ev.seq);
      if (ev.seq === 2) break;
    }
    expect(seen).toEqual([1, 2]);
    expect(calls).toHaveLength(1);
  });
});

describe("event-stream parsing", () => {
  it("reads fields, multi-line data, comments, and CRLF, CR and LF line ends across chunk boundaries", () => {
    const p = new SseParser();
    const text = ": comment\r\nid: 1\r\nevent: entry\r\ndata: a\r\ndata:b\r\n\r\nid: 2\rdata: c\r\rdata: d\n\nretry: 250\nevent: x\n";
    const frames = [];
    // One character at a time: every boundary, including between a CR and its LF.
    for (const ch of text) frames.push(...p.push(ch));
    expect(frames).toEqual([
      { comment: true },
      { event: { id: "1", event: "entry", data: "a\nb" } },
      { event: { id: "2", event: "message", data: "c" } },
      { event: { id: "2", event: "message", data: "d" } },
      { retryMs: 250 },
    ]);
    // An id with no data moves the resume position once; a repeat of it is nothing new.
    expect([...p.push("\nid: 9\n\n"), ...p.push("id: 9\n\n: c\n\n")]).toEqual([{ lastId: "9" }, { comment: true }]);
  });
});

describe("client snapshot and restore", () => {
  it("reads a snapshot's header and rows, and streams a restore body", async () => {
    const file = `${JSON.stringify({ group: "g", machine: "kv", seq: 9, rows: 2, digest: "ab" })}\n["a",1]\r\n["b",{"x":[2]}]\n`;
    let restored = "";
    const { client, calls } = clientWith(async (url, init) => {
      if (url.pathname.endsWith("/snapshot")) return new Response(file, { headers: { "content-type": "application/x-ndjson" } });
      restored = await new Response(init.body).text();
      return Response.json(statusOf("h"));
    });
    const { header, rows } = await client.snapshotRows("g");
    expect(header).toEqual({ group: "g", machine: "kv", seq: 9, rows: 2, digest: "ab" });
    const all = [];
    for await (const row of rows) all.push(row);
    expect(all).toEqual([["a", 1], ["b", { x: [2] }]]);

    async function* parts() {
      for (const piece of [file.slice(0, 10), file.slice(10)]) yield new TextEncoder().encode(piece);
    }
    expect(await client.restore("h", parts())).toMatchObject({ group: "h" });
    expect(restored).toBe(file);
    expect(calls[1]!.headers["content-type"]).toBe("application/x-ndjson");
    expect(calls[1]!.body).toBeInstanceOf(ReadableStream); // in Node: part by part
  });

  it("sends a restore's file as one body where streams cannot go (a browser over HTTP/1.1 failed every restore: a probe)", async () => {
    const bodies: unknown[] = [];
    const client = new SmrClient({ baseUrl: "http://smr.test", token: "t", streamUploads: false, fetch: async (_i, init) => (bodies.push(init?.body), Response.json(statusOf("h"))) });
    async function* parts() {
      for (const piece of ['{"group":"g"}\n', '["a",1]\n']) yield new TextEncoder().encode(piece);
    }
    for (const file of ['{"group":"g"}\n["a",1]\n', new TextEncoder().encode('{"group":"g"}\n["a",1]\n'), parts()]) {
      expect(await client.restore("h", file)).toMatchObject({ group: "h" });
      const sent = bodies.at(-1);
      expect(sent).toBeInstanceOf(Uint8Array);
      expect(new TextDecoder().decode(sent as Uint8Array)).toBe('{"group":"g"}\n["a",1]\n');
    }
  });

  it("keeps a restore's bookmark: the group's next sequential read waits for the restored position", async () => {
    const bodies: any[] = [];
    const answers = [Response.json(statusOf("h", { commitSeq: 1, bookmark: "b1.1.1" })), Response.json({ result: { value: 1 }, seq: 1, replica: "r1", bookmark: "b1.1.1" })];
    const client = new SmrClient({ baseUrl: "http://smr.test", token: "t", fetch: async (_i, init) => (bodies.push(init?.body), answers.shift()!) });
    await client.restore("h", "{}\n");
    await client.query("h", { op: "get", key: "a" }, "sequential");
    expect(JSON.parse(bodies[1] as string).bookmark).toBe("b1.1.1");
  });

  it("bounds a snapshot's answer and each part of it, and a restore's upload and answer, by requestTimeoutMs (a probe: 300 s and for good)", async () => {
    const hang = (init?: RequestInit) => new Promise<Response>((_, reject) => init?.signal?.addEventListener("abort", () => reject(init.signal!.reason)));
    const silent = new SmrClient({ baseUrl: "http://smr.test", token: "t", requestTimeoutMs: 50, fetch: (_i, init) => hang(init) });
    await expect(silent.snapshot("g")).rejects.toMatchObject({ code: "network", message: expect.stringMatching(/snapshot: nothing within 50 ms/) });
    await expect(silent.restore("g", "{}\n")).rejects.toMatchObject({ code: "network", message: expect.stringMatching(/restore: nothing within/) });
    // The header comes, then nothing: the download fails instead of waiting for ever.
    const stalled = new SmrClient({
      baseUrl: "http://smr.test",
      token: "t",
      requestTimeoutMs: 50,
      fetch: async (_i, init) => {
        const body = new ReadableStream<Uint8Array>({ start: (c) => c.enqueue(new TextEncoder().encode('{"rows":1}\n')) });
        init?.signal?.addEventListener("abort", () => undefined);
        return new Response(body, { headers: { "content-type": "application/x-ndjson" } });
      },
    });
    const reader = (await stalled.snapshot("g")).getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('{"rows":1}\n');
    await expect(reader.read()).rejects.toMatchObject({ code: "network", message: expect.stringMatching(/nothing within 50 ms/) });
    // A server that reads the whole file and then never answers: refused once clientRestoreAnswerMs passes, not before the file is taken.
    let taken = "";
    const reads = new SmrClient({
      baseUrl: "http://smr.test",
      token: "t",
      requestTimeoutMs: 50,
      fetch: async (_i, init) => {
        taken = await new Response(init!.body).text();
        return Response.json(statusOf("g"));
      },
    });
    const big = "x".repeat(200_000);
    expect(await reads.restore("g", big)).toMatchObject({ group: "g" });
    expect(taken).toBe(big);
  });

  it("counts only the server's silence: a slow reader of a snapshot is not failed, and a download cut off leaves no timer running (a review)", async () => {
    const enc = new TextEncoder();
    let sentSignal: AbortSignal | undefined;
    /** A client whose server answers with this body (50 ms bound), keeping the signal it was given. */
    const serving = (body: () => ReadableStream<Uint8Array>) =>
      new SmrClient({ baseUrl: "http://smr.test", token: "t", requestTimeoutMs: 50, fetch: async (_i, init) => ((sentSignal = init?.signal ?? undefined), new Response(body(), { headers: { "content-type": "application/x-ndjson" } })) });
    const quick = serving(() => new ReadableStream<Uint8Array>({ start: (c) => (["h\n", "a\n", "b\n"].forEach((l) => c.enqueue(enc.encode(l))), c.close()) }));
    const reader = (await quick.snapshot("g")).getReader();
    const got: string[] = [];
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      got.push(new TextDecoder().decode(r.value));
      await tick(120); // longer than requestTimeoutMs between reads
    }
    expect(got.join("")).toBe("h\na\nb\n");
    // Cut off after the header: the error comes at once, and no timer aborts anything later.
    let n = 0;
    const cut = serving(() => new ReadableStream<Uint8Array>({ pull: (c) => (n++ === 0 ? c.enqueue(enc.encode("h\n")) : c.error(new Error("terminated"))) }));
    const cutReader = (await cut.snapshot("g")).getReader();
    await cutReader.read();
    await expect(cutReader.read()).rejects.toThrow(/terminated/);
    await tick(120);
    expect(sentSignal!.aborted).toBe(false);
  });

  it("retries status, log, audits and an audit on 503 and network failures, as it retries queries (a probe: smr log ended on the first 503 of a failover)", async () => {
    const answers = [errorBody(503, "unavailable", "failing over"), Response.json(statusOf("g"))];
    const retried: unknown[] = [];
    const client = new SmrClient({ baseUrl: "http://smr.test", token: "t", retryBaseMs: 1, onReadRetry: (r) => retried.push(r), fetch: async () => answers.shift()! });
    expect(await client.group("g")).toEqual(statusOf("g"));
    expect(retried).toHaveLength(1);
    const reads: [(c: SmrClient) => Promise<unknown>, unknown][] = [
      [(c) => c.log("g"), { firstSeq: 1, lastSeq: 0, commitSeq: 0, entries: [] }],
      [(c) => c.audit("g"), { verdict: "consistent", replicas: [] }],
      [(c) => c.audits("g"), { audits: [] }],
      [(c) => c.events("g"), { events: [] }],
    ];
    for (const [call, answer] of reads) {
      const again = [errorBody(503, "unavailable", "failing over"), Response.json(answer)];
      const c = new SmrClient({ baseUrl: "http://smr.test", token: "t", retryBaseMs: 1, fetch: async () => again.shift()! });
      expect(await call(c)).toEqual(answer);
    }
    // A 404 is an answer, not retried.
    let asked = 0;
    const gone = new SmrClient({ baseUrl: "http://smr.test", token: "t", retryBaseMs: 1, fetch: async () => (asked++, errorBody(404, "not_found", "no such group")) });
    await expect(gone.group("g")).rejects.toMatchObject({ status: 404 });
    expect(asked).toBe(1);
  });

  it("retries a query on a 504 (no replica reached its position in time) within retryForMs, as a command", async () => {
    const answers = [errorBody(504, "timeout", "replica r2 did not reach the requested position in 2000 ms (it is at 7); retry"), Response.json({ result: { value: 1 }, seq: 8, replica: "r1", bookmark: "b1.1.8" })];
    const retried: unknown[] = [];
    const client = new SmrClient({ baseUrl: "http://smr.test", token: "t", retryBaseMs: 1, onReadRetry: (r) => retried.push(r), fetch: async () => answers.shift()! });
    expect(await client.query("g", { op: "get", key: "k" }, "linearizable")).toMatchObject({ result: { value: 1 }, seq: 8 });
    expect(retried).toHaveLength(1);
  });

  it("ends a status, log, audit or metrics read when its signal aborts, whether waiting on an answer or between retries (they took no signal: a probe)", async () => {
    const hung = clientWith((_url, init) => new Promise<Response>((_, reject) => init.signal?.addEventListener("abort", () => reject(init.signal!.reason))));
    const busy = clientWith(() => errorBody(503, "unavailable", "recovering"), { retryBaseMs: 60_000 });
    for (const { client } of [hung, busy]) {
      const calls: ((call: { signal: AbortSignal }) => Promise<unknown>)[] = [
        (call) => client.group("g", call),
        (call) => client.replicas("g", call),
        (call) => client.log("g", 1, 10, call),
        (call) => client.audit("g", call),
        (call) => client.audits("g", 5, call),
        (call) => client.events("g", 5, call),
        (call) => client.tokens("g", call),
        (call) => client.listGroups({}, call),
        (call) => client.metrics("g", {}, call),
      ];
      for (const read of calls) {
        const ctl = new AbortController();
        const pending = read({ signal: ctl.signal }).catch((e: unknown) => e);
        await tick(20);
        ctl.abort(new Error("the caller's"));
        expect(await Promise.race([pending, tick(2_000).then(() => "still waiting")])).toMatchObject({ message: "the caller's" });
      }
    }
  });

  it("reads metrics as text", async () => {
    const { client, calls } = clientWith(() => new Response('smr_group_commit_seq{group="g"} 3\n', { headers: { "content-type": "text/plain; version=0.0.4" } }));
    expect(await client.metrics("g")).toContain("smr_group_commit_seq");
    expect(calls[0]!.url.search).toBe("?group=g");
    // Retried as a read on a 503 (smr groups status ended on a registry's first 503: a probe).
    const again = [errorBody(503, "unavailable", "the registry could not be reached"), new Response("smr_groups 1\n")];
    const retried: unknown[] = [];
    const c = new SmrClient({ baseUrl: "http://smr.test", token: "t", retryBaseMs: 1, onReadRetry: (r) => retried.push(r), fetch: async () => again.shift()! });
    expect(await c.metrics()).toBe("smr_groups 1\n");
    expect(retried).toHaveLength(1);
    // A server that takes the request and never answers: each attempt ends at requestTimeoutMs (it waited Node's 300 s: a probe).
    const silent = clientWith((_url, init) => new Promise<Response>((_, reject) => init.signal?.addEventListener("abort", () => reject(init.signal!.reason))), { requestTimeoutMs: 50, attemptsMax: 2 });
    await expect(silent.client.metrics()).rejects.toMatchObject({ code: "network", message: expect.stringMatching(/nothing within 50 ms$/) });
    expect(silent.calls).toHaveLength(2);
  });

  it("retries a command after a proxy's 5xx page or the API's 500 with the same id, and reports an unknown outcome as one (a 502 was a plain failure after one attempt that had run: a probe)", async () => {
    const html = (status: number) => new Response(`<html>${status} Bad Gateway</html>`, { status, headers: { "content-type": "text/html" } });
    // A 502, then the answer: the same request id, one result.
    const answers = [html(502), errorBody(500, "internal", "a bug"), Response.json({ seq: 3, output: { value: 1 }, bookmark: "b1.1.3" })];
    const { client, calls } = clientWith(() => answers.shift()!);
    expect((await client.submit("g", { op: "incr", key: "n", by: 1 })).seq).toBe(3);
    expect(calls.map((c) => (c.body as { request: number }).request)).toEqual([1, 1, 1]);
    // Every attempt a 524: a 504 `timeout` with outcomeUnknown, the last page its cause.
    const pages = clientWith(() => html(524), { attemptsMax: 2 });
    const err = (await pages.client.kv("g").incr("n", 1).catch((e: unknown) => e)) as ApiRequestError;
    expect([err.status, err.code, err.outcomeUnknown]).toEqual([504, "timeout", true]);
    expect((err.cause as ApiRequestError).status).toBe(524);
    expect(pages.calls).toHaveLength(2);
    // After an unknown attempt, a 401 (a token revoked meanwhile) says nothing of it: unknown. A 400 is about the command: as it is.
    for (const [last, unknown] of [[errorBody(401, "unauthorized"), true], [errorBody(403, "forbidden"), true], [errorBody(404, "not_found"), true], [errorBody(400, "bad_request"), false]] as const) {
      const seq = [errorBody(504, "timeout"), last];
      const after = clientWith(() => seq.shift()!);
      const e = (await after.client.submit("g", { op: "incr", key: "n", by: 1 }).catch((x: unknown) => x)) as ApiRequestError;
      expect([e.status === 504, e.outcomeUnknown], `after a 504, ${last.status}`).toEqual([unknown, unknown]);
    }
    // The API's 500 on every attempt (a bug): retried for 10 s, not the whole 90 s, nor three attempts (150 ms ended a blip: reviews).
    const pauses: number[] = [];
    const bug = clientWith(() => errorBody(500, "internal", "a bug"), { onCommandRetry: (r) => pauses.push(r.pauseMs) });
    const buggy = (await settledAfter(30_000, () => bug.client.submit("g", { op: "incr", key: "n", by: 1 }))) as ApiRequestError;
    expect([buggy.status, buggy.outcomeUnknown]).toEqual([504, true]);
    const waitedMs = pauses.reduce((a, b) => a + b, 0);
    expect(waitedMs).toBeGreaterThan(5_000);
    expect(waitedMs).toBeLessThanOrEqual(10_000);
    // Those 10 s count from the first 500: one after 20 s of 503s (a failover) is retried too (it ended the call at once: a review).
    let n = 0;
    const afterFailover = clientWith(() => (++n <= 14 ? errorBody(503, "unavailable", "failing over") : n === 15 ? errorBody(500, "internal", "a blip") : Response.json({ seq: 5, output: {}, bookmark: "b1.1.5" })));
    expect(await settledAfter(60_000, () => afterFailover.client.submit("g", { op: "incr", key: "n", by: 1 }))).toMatchObject({ seq: 5 });
    // A 500 for outputs that split ran: answered at once, as it is (every retry answers the same).
    const split = () => Response.json({ error: { code: "internal", message: "group g: replicas produced different outputs and no majority agreed: the command ran", reason: "outputs_split" } }, { status: 500 });
    const ran = clientWith(split);
    const known = (await ran.client.submit("g", { op: "incr", key: "n", by: 1 }).catch((e: unknown) => e)) as ApiRequestError;
    expect([known.status, known.code, known.reason, known.outcomeUnknown, ran.calls.length]).toEqual([500, "internal", "outputs_split", false, 1]);
    // A 400 for a body an attempt did not deliver whole says nothing of the command: sent again, it is answered.
    const late = [errorBody(504, "timeout"), errorBody(400, "bad_request", "body: not received in full within 10000 ms"), Response.json({ seq: 9, output: { value: 2 }, bookmark: "b1.1.9" })];
    const lateRetry = clientWith(() => late.shift()!);
    expect((await lateRetry.client.submit("g", { op: "incr", key: "n", by: 1 })).seq).toBe(9);
    expect(lateRetry.calls).toHaveLength(3);
    // A read's 500 is the API's bug, shown at once; a proxy's page is retried.
    const reads = [errorBody(500, "internal", "a bug")];
    const r500 = clientWith(() => reads.shift()!);
    expect(((await r500.client.query("g", { op: "get", key: "k" }).catch((e: unknown) => e)) as ApiRequestError).code).toBe("internal");
    const readPages = [html(502), Response.json({ result: { value: 1 }, seq: 1, replica: "r1", bookmark: "b1.1.1" })];
    const r502 = clientWith(() => readPages.shift()!);
    expect((await r502.client.query("g", { op: "get", key: "k" })).result).toEqual({ value: 1 });
  });

  it("reports a last 503 after another server's 503 (a worker stopped after it called the sequencer) as a 504", async () => {
    const answers = [new Response("<html>503 Service Unavailable</html>", { status: 503, headers: { "content-type": "text/html" } }), errorBody(503, "unavailable", "recovering")];
    const { client } = clientWith(() => answers.shift()!, { attemptsMax: 2 });
    const err = (await client.submit("g", { op: "incr", key: "n", by: 1 }, 1).catch((e: unknown) => e)) as ApiRequestError;
    expect([err.status, err.code]).toEqual([504, "timeout"]);
    expect(err.message).toMatch(/recovering; an earlier attempt's outcome is unknown/);
  });

  it("reports a last 503 after an earlier 504 as a 504: the first attempt may still be ordered", async () => {
    const answers = [errorBody(504, "timeout"), errorBody(503, "unavailable", "recovering")];
    const { client } = clientWith(() => answers.shift()!, { attemptsMax: 2 });
    const err = (await client.submit("g", { op: "incr", key: "n", by: 1 }, 1).catch((e: unknown) => e)) as ApiRequestError;
    expect(err).toBeInstanceOf(ApiRequestError);
    expect(err.status).toBe(504);
    expect(err.code).toBe("timeout");
    expect(err.message).toMatch(/recovering; an earlier attempt's outcome is unknown/);
    // 503s only: certainly not ordered, reported as such.
    const refusals = [errorBody(503, "unavailable"), errorBody(503, "unavailable")];
    const only503 = clientWith(() => refusals.shift()!, { attemptsMax: 2 });
    expect(((await only503.client.submit("g", { op: "incr", key: "n", by: 1 }, 1).catch((e: unknown) => e)) as ApiRequestError).status).toBe(503);
  });

  it("in a batch, an item answered 503 after an earlier timeout is reported as a timeout", async () => {
    const answers = [
      Response.json({ results: [{ error: { code: "timeout", message: "t" } }, { error: { code: "unavailable", message: "u" } }], bookmark: "b1.0.0" }),
      Response.json({ results: [{ error: { code: "unavailable", message: "recovering" } }, { error: { code: "unavailable", message: "recovering" } }], bookmark: "b1.0.0" }),
    ];
    const { client } = clientWith(() => answers.shift()!, { attemptsMax: 2 });
    const r = await client.submitBatch("g", [{ command: { op: "incr", key: "a", by: 1 } }, { command: { op: "incr", key: "b", by: 1 } }]);
    expect(r.results[0]).toEqual({ error: { code: "timeout", message: expect.stringMatching(/^recovering; an earlier attempt's outcome is unknown/) } });
    expect(r.results[1]).toEqual({ error: { code: "unavailable", message: "recovering" } });
  });

  it("after an unknown outcome, a last 429 or 500 is a 504 too, and a batch whose last request fails keeps the results it had", async () => {
    const answers = [errorBody(504, "timeout"), errorBody(429, "rate_limited")];
    const { client } = clientWith(() => answers.shift()!, { attemptsMax: 2 });
    expect(((await client.submit("g", { op: "incr", key: "n", by: 1 }, 1).catch((e: unknown) => e)) as ApiRequestError).status).toBe(504);
    const batch = [
      Response.json({ results: [{ seq: 5, output: { value: 1 } }, { error: { code: "timeout", message: "t" } }], bookmark: "b1.1.5" }),
      errorBody(503, "unavailable", "no quorum"),
    ];
    const b = clientWith(() => batch.shift()!, { attemptsMax: 2 });
    const r = await b.client.submitBatch("g", [{ command: { op: "incr", key: "a", by: 1 } }, { command: { op: "incr", key: "b", by: 1 } }]);
    expect(r.results[0]).toEqual({ seq: 5, output: { value: 1 } }); // it ran: not lost with the failed request
    expect(r.results[1]).toEqual({ error: { code: "timeout", message: expect.stringMatching(/no quorum; an earlier attempt's outcome is unknown/) } });
  });
});
