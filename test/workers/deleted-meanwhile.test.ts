import { env, runInDurableObject } from "cloudflare:test";
import { describe, it } from "vitest";
import type { DirectoryObject } from "../../workers/directory.js";
import { api, createGroup, expectError } from "./helpers.js";

/**
 * A request that found the group, then met its DELETE (which marked the record "deleting") before
 * its own directory write: the group is gone, a 404 as a moment later, not a 409 that says the
 * group is full of tokens or its sequencer changed meanwhile (a probe: POST tokens and POST
 * sequencer racing DELETE).
 */
async function deleteBefore(group: string, method: "addToken" | "replaceSequencer") {
  await runInDurableObject(env.DIRECTORY.get(env.DIRECTORY.idFromName(group)), (inst: DirectoryObject) => {
    const core = (inst as any).core;
    const original = core[method].bind(core);
    core[method] = (incarnation: number, ...rest: unknown[]) => {
      core.setState(incarnation, "deleting");
      core[method] = original;
      return original(incarnation, ...rest);
    };
  });
}

describe("a request racing the group's DELETE", () => {
  it("creating a token answers 404, not 409", async () => {
    await createGroup("tokrace", { machine: "kv", replicas: 1 });
    await deleteBefore("tokrace", "addToken");
    expectError(await api("POST", "/v1/groups/tokrace/tokens", { scope: "read" }), 404, "not_found");
    expectError(await api("GET", "/v1/groups/tokrace"), 404, "not_found");
  });

  it("moving the sequencer answers 404, not 409", async () => {
    await createGroup("moverace", { machine: "kv", replicas: 1 });
    await deleteBefore("moverace", "replaceSequencer");
    expectError(await api("POST", "/v1/groups/moverace/sequencer", {}), 404, "not_found");
    expectError(await api("GET", "/v1/groups/moverace"), 404, "not_found");
  });
});
