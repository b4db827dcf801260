// A name the client refuses before sending (shared/client groupPath, pathId) is shown cut to its
// start: `smr groups status "$(cat big-file)"` printed all of it in its error line. A base URL or a
// token nothing could be sent with is refused when the client is made.
import { describe, expect, it } from "vitest";
import { ApiRequestError, SmrClient } from "edge-smr/client";

const client = new SmrClient({ baseUrl: "http://smr.test", token: "t", fetch: async () => Response.json({}) });

describe("a refused name in the client's message", () => {
  it("is cut to its first 80 characters, with its length", async () => {
    const err = (await client.group("a".repeat(100_000)).catch((e: unknown) => e)) as ApiRequestError;
    expect(err).toBeInstanceOf(ApiRequestError);
    expect(err.message.length).toBeLessThan(300);
    expect(err.message).toContain(`"${"a".repeat(80)}"… (100000 characters) is not a group name`);
    const id = (await client.removeReplica("demo", "r".repeat(5000)).catch((e: unknown) => e)) as ApiRequestError;
    expect(id.message.length).toBeLessThan(300);
  });

  it("is shown whole when short", async () => {
    const err = (await client.group("Bad_Name").catch((e: unknown) => e)) as ApiRequestError;
    expect(err.message).toBe('400 bad_request: group: "Bad_Name" is not a group name (^[a-z0-9][a-z0-9-]{0,62}$)');
  });
});

describe("a target nothing could be sent to", () => {
  const fetch = async () => {
    throw new Error("nothing may be sent");
  };
  it("is refused when the client is made, not retried as a network failure for the whole budget", () => {
    expect(() => new SmrClient({ baseUrl: "localhost:8787", token: "t", fetch })).toThrow(/baseUrl "localhost:8787": not an http/);
    expect(() => new SmrClient({ baseUrl: "http://smr.test/?x=1", token: "t", fetch })).toThrow(/query or a fragment/);
    expect(() => new SmrClient({ baseUrl: "http://u:p@smr.test", token: "t", fetch })).toThrow(/user name or password/);
    expect(() => new SmrClient({ baseUrl: "http://smr.test", token: "secret\nline", fetch })).toThrow(/token: cannot be sent/);
  });

  it("never names the token", () => {
    let message = "";
    try {
      new SmrClient({ baseUrl: "http://smr.test", token: "s3cr3t-\u00e9", fetch });
    } catch (err) {
      message = String(err);
    }
    expect(message).toMatch(/cannot be sent/);
    expect(message).not.toContain("s3cr3t");
  });
});
