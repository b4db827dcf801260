import { SELF, env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../../workers/index.js";
import type { SequencerObject } from "../../workers/sequencer.js";
import { thrownByObjectCode } from "../../workers/groups.js";
import { bodyDrainBytesMax } from "../../shared/limits.js";
import { adminToken, api, clientToken, command, createGroup, expectError, query } from "./helpers.js";

async function direct(path: string, init: RequestInit, envOverride: Record<string, unknown>) {
  const res = await worker.fetch(new Request(`http://smr.test${path}`, init), { ...env, ...envOverride } as any, {} as any);
  return { status: res.status, body: (await res.json()) as any, headers: res.headers };
}

describe("authentication", () => {
  it("GET /healthz needs no token", async () => {
    const r = await api("GET", "/healthz", undefined, null);
    expect(r).toMatchObject({ status: 200, body: { ok: true } });
  });

  it("no token or an unknown token is 401; a client token on an admin route is 403", async () => {
    expectError(await api("GET", "/v1/groups", undefined, null), 401, "unauthorized");
    expectError(await api("GET", "/v1/groups", undefined, "wrong-token"), 401, "unauthorized");
    // A header that is there but not `Bearer <one word>` is said to be malformed, not missing.
    expectError(await api("GET", "/v1/groups", undefined, null), 401, "unauthorized", /^missing Authorization/);
    expectError(await api("GET", "/v1/groups", undefined, "tok en"), 401, "unauthorized", /^malformed Authorization: expected Bearer <token>/);
    // Whitespace is spaces and tabs (a form feed or a vertical tab around the token was taken: a probe).
    for (const header of [`Bearer ${adminToken}\f`, `Bearer\v${adminToken}`, `Bearer ${adminToken}\u00a0`]) {
      const r = await SELF.fetch("http://smr.test/v1/groups", { headers: { authorization: header } });
      expect(r.status, JSON.stringify(header)).toBe(401);
    }
    expect((await SELF.fetch("http://smr.test/v1/groups", { headers: { authorization: `bearer \t${adminToken}\t ` } })).status).toBe(200);
    expectError(await api("GET", "/v1/groups", undefined, clientToken), 403, "forbidden");
    expectError(await api("PUT", "/v1/groups/x", { machine: "kv" }, clientToken), 403, "forbidden");
    expect((await api("GET", "/v1/groups", undefined, "test-client-token-2")).status).toBe(403);
  });

  it("fails closed with 503 not_configured when no tokens are configured", async () => {
    const r = await direct("/v1/groups", { headers: { authorization: "Bearer anything" } }, { ADMIN_TOKEN: undefined, CLIENT_TOKENS: "" });
    expect(r.status).toBe(503);
    expect(r.body.error.code).toBe("not_configured");
    const health = await worker.fetch(new Request("http://smr.test/healthz"), { ...env, ADMIN_TOKEN: undefined } as any, {} as any);
    expect(health.status).toBe(200);
  });

  it("rate limits per token with 429 and Retry-After", async () => {
    const limited = { RATE_LIMIT_PER_SEC: "1", RATE_LIMIT_BURST: "3" };
    const init = { headers: { authorization: `Bearer ${clientToken}` } };
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await direct("/v1/groups/nope", init, limited)).status);
    expect(statuses.slice(0, 3)).toEqual([404, 404, 404]);
    const r = await direct("/v1/groups/nope", init, limited);
    expect(r.status).toBe(429);
    expect(r.body.error.code).toBe("rate_limited");
    expect(Number(r.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    // Another token has its own bucket.
    const other = await direct("/v1/groups/nope", { headers: { authorization: "Bearer test-client-token-2" } }, limited);
    expect(other.status).toBe(404);
  });
});

describe("bad input", () => {
  it("unknown routes and groups are 404 with the error body", async () => {
    expectError(await api("GET", "/v1/nothing"), 404, "not_found");
    expectError(await api("GET", "/v1/groups/ghost", undefined, clientToken), 404, "not_found", /ghost/);
    expectError(await command("ghost", { op: "get", key: "k" }), 404, "not_found");
    expectError(await query("ghost", { op: "get", key: "k" }), 404, "not_found");
    expectError(await api("GET", "/v1/groups/ghost/log"), 404, "not_found");
    expectError(await api("POST", "/v1/groups/ghost/audit"), 404, "not_found");
    expectError(await api("GET", "/v1/groups/ghost/audits", undefined, clientToken), 404, "not_found");
    expectError(await api("GET", "/v1/groups/ghost/replicas", undefined, clientToken), 404, "not_found");
    // Looking at a group that does not exist does not create it.
    expect((await api("GET", "/v1/groups")).body.groups).not.toContain("ghost");
  });

  it("every malformed command is a 400 naming the field, and nothing is ordered", async () => {
    await createGroup("bad-input");
    const cases: [unknown, RegExp][] = [
      [{ client: "c", request: 1 }, /command/],
      [{ client: "", request: 1, command: { op: "get", key: "k" } }, /client/],
      [{ client: "x".repeat(129), request: 1, command: { op: "get", key: "k" } }, /client/],
      [{ client: "c", request: 0, command: { op: "get", key: "k" } }, /request/],
      [{ client: "c", request: 1.5, command: { op: "get", key: "k" } }, /request/],
      [{ client: "c", request: "1", command: { op: "get", key: "k" } }, /request/],
      [{ client: "c", request: 1, command: { op: "explode", key: "k" } }, /command\.op/],
      [{ client: "c", request: 1, command: { op: "put", key: "", value: 1 } }, /command\.key/],
      [{ client: "c", request: 1, command: { op: "put", key: "k" } }, /command\.value/],
      [{ client: "c", request: 1, command: { op: "incr", key: "k", by: "1" } }, /command\.by/],
      [{ client: "c", request: 1, command: { op: "transfer", from: "a", to: "b", amount: 1 } }, /command\.op/],
    ];
    for (const [body, field] of cases) {
      expectError(await api("POST", "/v1/groups/bad-input/commands", body, clientToken), 400, "bad_request", field);
    }
    expectError(await api("POST", "/v1/groups/bad-input/commands", "{", clientToken), 400, "bad_request", /malformed JSON/);
    expectError(await api("POST", "/v1/groups/bad-input/commands", "", clientToken), 400, "bad_request", /body/);
    expectError(await query("bad-input", { op: "balances" }), 400, "bad_request", /query\.op/);
    expectError(await query("bad-input", { op: "get", key: "k" }, "eventual"), 400, "bad_request", /consistency/);
    expectError(await query("bad-input", { op: "get", key: "k" }, "sequential", "not-a-bookmark"), 400, "bad_request", /bookmark/);
    expectError(await query("bad-input", { op: "list", limit: 1001 }), 400, "bad_request", /query\.limit/);
    expectError(await api("GET", "/v1/groups/bad-input/log?limit=0"), 400, "bad_request", /limit/);
    expectError(await api("GET", "/v1/groups/bad_input", undefined, clientToken), 400, "bad_request", /group/);
    const log = await api("GET", "/v1/groups/bad-input/log");
    expect(log.body.entries).toEqual([]);
  });

  it("a body over 256 KiB or a value over 64 KiB is 413", async () => {
    await createGroup("big");
    const huge = { client: "c", request: 1, command: { op: "put", key: "k", value: "x".repeat(300 * 1024) } };
    expectError(await api("POST", "/v1/groups/big/commands", huge, clientToken), 413, "too_large", /body/);
    const large = { client: "c", request: 1, command: { op: "put", key: "k", value: "x".repeat(65 * 1024) } };
    expectError(await api("POST", "/v1/groups/big/commands", large, clientToken), 413, "too_large", /value/);
    const ok = { client: "c", request: 1, command: { op: "put", key: "k", value: "x".repeat(60 * 1024) } };
    expect((await api("POST", "/v1/groups/big/commands", ok, clientToken)).status).toBe(200);
  });

  it("a chunked body (no Content-Length) is a 413 once past 256 KiB, not read to its end first (nor held: read on, kept nowhere, to bodyDrainBytesMax)", async () => {
    await createGroup("big-chunked");
    // Read whole before the check, 600 MB took a server from 0.8 to 1.95 GB (a probe).
    const chunk = new TextEncoder().encode("x".repeat(64 * 1024));
    let sentBytes = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(ctrl) {
        if (sentBytes >= 32 * 1024 * 1024) return ctrl.close();
        sentBytes += chunk.byteLength;
        ctrl.enqueue(chunk);
      },
    });
    const init = { method: "POST", headers: { authorization: `Bearer ${clientToken}`, "content-type": "application/json" }, body };
    const res = await worker.fetch(new Request("http://smr.test/v1/groups/big-chunked/commands", init), env as any, {} as any);
    expect(res.status).toBe(413);
    expect(((await res.json()) as any).error.message).toBe("body: larger than 262144 bytes");
    // Read on past the bound (a sender still sending gets the answer), to the drain's bound only.
    expect(sentBytes).toBeGreaterThan(bodyDrainBytesMax);
    expect(sentBytes).toBeLessThan(bodyDrainBytesMax + 1024 * 1024);
  });

  it("a body over 256 KiB is a 413 its sender hears: a chunked one, or one declared up to 8 MiB, is read on to its end (kept nowhere), one declared larger is left to the runtime's own drain, untouched; cancelled, a sender still sending got a reset or EPIPE instead (a review: a 5 MB put, a 70 MB restore)", async () => {
    await createGroup("big-declared");
    /** `bytes` in 64 KiB parts, then the end (with `hang`, no end), and what the server did with it. */
    const body = (bytes: number, hang = false) => {
      let sent = 0;
      let cancelled = false;
      const stream = new ReadableStream<Uint8Array>({
        pull(ctrl) {
          if (sent >= bytes) return hang ? new Promise(() => {}) : ctrl.close();
          sent += 64 * 1024;
          ctrl.enqueue(new Uint8Array(64 * 1024).fill(120));
        },
        cancel() {
          cancelled = true;
        },
      });
      return { stream, sent: () => sent, cancelled: () => cancelled };
    };
    const post = async (path: string, headers: Record<string, string>, token: string, stream: ReadableStream<Uint8Array>): Promise<Response> =>
      worker.fetch(new Request(`http://smr.test${path}`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...headers }, body: stream }), env as any, {} as any);
    const mib5 = 5 * 1024 * 1024;
    for (const [path, headers, token, status, read] of [
      ["/v1/groups/big-declared/commands", {}, clientToken, 413, mib5], // chunked: read to its end
      ["/v1/groups/big-declared/commands", { "content-length": String(mib5) }, clientToken, 413, mib5], // declared within 8 MiB: the same
      ["/v1/groups/big-declared/commands", { "content-length": String(9 * 1024 * 1024) }, clientToken, 413, 0], // declared past it: untouched
      ["/v1/groups/big-declared/commands", { "content-encoding": "gzip" }, clientToken, 400, 0],
      ["/v1/groups/big-declared/restore", { "content-length": String(65 * 1024 * 1024) }, adminToken, 413, 0],
    ] as const) {
      const sent = body(mib5);
      const res = await post(path, headers, token, sent.stream);
      const what = `${path} ${JSON.stringify(headers)}`;
      expect(res.status, what).toBe(status);
      expect(sent.cancelled(), what).toBe(false);
      if (read > 0) expect(sent.sent(), what).toBe(read);
      else expect(sent.sent(), what).toBeLessThanOrEqual(64 * 1024); // a stream may pull one part ahead
    }
    // Declared within 8 MiB and never sent in full: a 413 once the read's 10 s bound cancels it (it
    // got no answer: a review), whether more than 256 KiB came or not (its declared length is past
    // the bound: a slow 5 MB upload was told "not received in full", a review).
    for (const came of [320 * 1024, 64 * 1024]) {
      const never = body(came, true);
      const res = await post("/v1/groups/big-declared/commands", { "content-length": String(400_000) }, clientToken, never.stream);
      expect(res.status, `${came} bytes came`).toBe(413);
      expect(never.cancelled()).toBe(true);
    }
    // One declared within the bound that stops coming is a 400; one the client cuts off, a 400 too (it was a 500: a review).
    const stalled = body(64 * 1024, true);
    expectError(await post("/v1/groups/big-declared/commands", { "content-length": String(100_000) }, clientToken, stalled.stream).then(async (r: Response) => ({ status: r.status, body: await r.json(), headers: r.headers }) as any), 400, "bad_request", /^body: not received in full within 10000 ms$/);
    let pulled = false;
    const broken = new ReadableStream<Uint8Array>({
      pull(ctrl) {
        if (pulled) return ctrl.error(new Error("Network connection lost."));
        pulled = true;
        ctrl.enqueue(new Uint8Array(1000));
      },
    });
    expectError(await post("/v1/groups/big-declared/commands", { "content-length": String(100_000) }, clientToken, broken).then(async (r: Response) => ({ status: r.status, body: await r.json(), headers: r.headers }) as any), 400, "bad_request", /^body: the upload was cut off \(.*Network connection lost/);
  }, 60_000);

  it("a compressed body is refused as such, not called malformed JSON", async () => {
    await createGroup("gz-body");
    const r = await direct("/v1/groups/gz-body/commands", { method: "POST", headers: { authorization: `Bearer ${clientToken}`, "content-encoding": "gzip" }, body: new Uint8Array([0x1f, 0x8b, 8, 0]) }, {});
    expect(r.status).toBe(400);
    expect(r.body.error.message).toBe("body: Content-Encoding gzip is not taken here; send the JSON as it is");
  });
});

describe("internal errors", () => {
  it("an unexpected failure is a 500 internal with a request id to find it in the logs", async () => {
    const r = await direct("/v1/groups/any", { headers: { authorization: "Bearer test-admin-token" } }, { DIRECTORY: undefined });
    expect(r.status).toBe(500);
    expect(r.body.error.code).toBe("internal");
    expect(r.body.error.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.body.error.message).toContain(r.body.error.requestId);
  });
});

describe("fault injection is off without ALLOW_FAULTS", () => {
  it("the faults route is a 404", async () => {
    await createGroup("no-faults");
    const r = await direct("/v1/groups/no-faults/faults", { method: "POST", headers: { authorization: "Bearer test-admin-token", "content-type": "application/json" }, body: JSON.stringify({ target: "r1", fault: "unreachable" }) }, { ALLOW_FAULTS: undefined });
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe("not_found");
  });
});

describe("an exception thrown by the sequencer's own code (a bug)", () => {
  it("is a 500 (a 504 for a command: it may have been ordered), not a failover round that calls the sequencer unreachable", async () => {
    await createGroup("buggy");
    expect((await command("buggy", { op: "put", key: "k", value: 1 })).status).toBe(200);
    const before = (await api("GET", "/v1/groups/buggy", undefined, clientToken)).body;
    await runInDurableObject(env.SEQUENCER.get(env.SEQUENCER.idFromName("buggy")), (inst: SequencerObject) => {
      const driver = (inst as any).driver;
      driver.submit = () => {
        throw new Error("bug in submit");
      };
      driver.readIndex = () => {
        throw new Error("bug in readIndex");
      };
      driver.hearUnheard = () => {
        throw new Error("bug in status");
      };
    });
    expectError(await command("buggy", { op: "put", key: "k", value: 2 }), 504, "timeout", /internal error; the command may or may not take effect/);
    const read = await query("buggy", { op: "get", key: "k" });
    expect(read.status).toBe(500);
    expect(read.body.error).toMatchObject({ code: "internal", message: expect.stringMatching(/request id/) });
    // The status still comes, from the replicas, and says what failed.
    const status = await api("GET", "/v1/groups/buggy", undefined, clientToken);
    expect(status.status).toBe(200);
    expect(JSON.stringify(status.body)).toMatch(/internal error \(Error: bug in status\)/);
    expect(status.body.replicas.map((r: any) => r.status)).toEqual(["healthy", "healthy", "healthy"]);
    expect(Math.max(...status.body.replicas.map((r: any) => r.appliedSeq))).toBe(1);
    // No failover was tried: the same sequencer at the same epoch, and no failover event.
    expect(status.body.epoch).toBe(before.epoch);
    expect(status.body.sequencer.name).toBe(before.sequencer.name);
    const events = (await api("GET", "/v1/groups/buggy/events", undefined, clientToken)).body.events;
    expect(events.filter((e: any) => e.kind === "failover")).toEqual([]);
  });

  it("is told apart from the platform's failures, which still start a failover round", () => {
    const error = (fields: Record<string, unknown>) => Object.assign(new Error("e"), fields);
    expect(thrownByObjectCode(error({ remote: true }))).toBe(true);
    expect(thrownByObjectCode(error({ remote: true, retryable: true }))).toBe(false);
    expect(thrownByObjectCode(error({ remote: true, overloaded: true }))).toBe(false);
    expect(thrownByObjectCode(error({}))).toBe(false); // a lost connection, an injected fault, a timeout
    expect(thrownByObjectCode("remote")).toBe(false);
    expect(thrownByObjectCode(null)).toBe(false);
  });
});
