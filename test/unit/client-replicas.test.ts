// The client's (and so the CLI's `smr replicas repair|release`) calls out of a quarantine
// (docs/OPERATIONS.md, "Out of a quarantine"): they had none, so an operator needed curl for them.
import { describe, expect, it } from "vitest";
import { ApiRequestError, SmrClient } from "edge-smr/client";

function clientWith(answer: () => Response) {
  const calls: { method: string; path: string; body: unknown }[] = [];
  const client = new SmrClient({
    baseUrl: "http://smr.test",
    token: "t",
    fetch: async (input, init) => {
      const url = new URL(String(input));
      calls.push({ method: String(init?.method), path: url.pathname, body: typeof init?.body === "string" ? JSON.parse(init.body) : init?.body });
      return answer();
    },
  });
  return { client, calls };
}

const replica = { id: "r2", location: null, status: "healthy", lastSeq: 1, appliedSeq: 1, digest: "ab".repeat(32), lastContact: null };

describe("repairReplica and releaseReplica", () => {
  it("POST the repair and the release (with rebase only when asked) and answer the replica", async () => {
    const { client, calls } = clientWith(() => Response.json({ replica }));
    expect(await client.repairReplica("demo", "r2")).toEqual({ replica });
    expect(await client.releaseReplica("demo", "r2")).toEqual({ replica });
    await client.releaseReplica("demo", "r2", { rebase: true });
    expect(calls).toEqual([
      { method: "POST", path: "/v1/groups/demo/replicas/r2/repair", body: {} },
      { method: "POST", path: "/v1/groups/demo/replicas/r2/release", body: {} },
      { method: "POST", path: "/v1/groups/demo/replicas/r2/release", body: { rebase: true } },
    ]);
  });

  it("refuses an id that is not a replica's before sending anything, and reports the API's 409", async () => {
    const { client, calls } = clientWith(() => Response.json({ error: { code: "conflict", message: "its rows do not hash to its digest" } }, { status: 409 }));
    await expect(client.repairReplica("demo", "../../other")).rejects.toThrow(/replica id/);
    expect(calls).toEqual([]);
    const err = await client.releaseReplica("demo", "r2").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiRequestError);
    expect((err as ApiRequestError).status).toBe(409);
  });
});
