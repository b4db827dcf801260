import { describe, expect, it } from "vitest";
import { ApiRequestError, SmrClient } from "../../shared/client/index.js";

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
    const err = await once.submit("g", { op: "put", key: "k", value: 1 }, 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiRequestError);
    expect((err as ApiRequestError).code).toBe("network");
  });
});
