// A name the client refuses before sending (shared/client groupPath, pathId) is shown cut to its
// start: `smr groups status "$(cat big-file)"` printed all of it in its error line.
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
