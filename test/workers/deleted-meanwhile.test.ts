import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { DirectoryObject } from "../../workers/directory.js";
import type { RegistryObject } from "../../workers/registry.js";
import type { SequencerObject } from "../../workers/sequencer.js";
import { directoryClient } from "../../workers/directory.js";
import { api, createGroup, expectError, waitFor } from "./helpers.js";

const directoryOf = (group: string) => directoryClient(env.DIRECTORY.get(env.DIRECTORY.idFromName(group)) as never);

/**
 * A request that found the group, then met its DELETE (which marked the record "deleting") before
 * its own directory write: the group is gone, a 404 as a moment later, not a 409 that says the
 * group is full of tokens or its sequencer changed meanwhile (a probe: POST tokens and POST
 * sequencer racing DELETE).
 */
async function deleteBefore(group: string, method: "addToken" | "replaceSequencer", after = false) {
  await runInDurableObject(env.DIRECTORY.get(env.DIRECTORY.idFromName(group)), (inst: DirectoryObject) => {
    const core = (inst as any).core;
    const original = core[method].bind(core);
    core[method] = (incarnation: number, ...rest: unknown[]) => {
      if (!after) core.setState(incarnation, "deleting");
      core[method] = original;
      const result = original(incarnation, ...rest);
      if (after) core.setState(incarnation, "deleting");
      return result;
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

  it("moving the sequencer, deleted once the new one is named and before it recovers, answers 404, not the 202 of a move done", async () => {
    await createGroup("moverace2", { machine: "kv", replicas: 1 });
    await deleteBefore("moverace2", "replaceSequencer", true);
    // The DELETE reached the new object first (it destroys every sequencer name up to the next):
    // its recovery stops as "superseded" / "over here".
    await runInDurableObject(env.SEQUENCER.get(env.SEQUENCER.idFromName("moverace2~s1")), (inst: SequencerObject) => void ((inst as any).lifecycle.closedThrough = 1));
    expectError(await api("POST", "/v1/groups/moverace2/sequencer", {}), 404, "not_found");
    expectError(await api("GET", "/v1/groups/moverace2"), 404, "not_found");
  });
});

describe("a PUT whose registry call lands after its group's DELETE finished", () => {
  it("leaves the name unlisted, not listed with no group behind it", async () => {
    const group = "late-list";
    // The PUT's registry call (its first step after the directory's record) is held until a DELETE
    // has destroyed the group and unlisted it: the PUT's listing lands after.
    const g = globalThis as { lateListHeld?: boolean; lateListGo?: boolean };
    g.lateListHeld = g.lateListGo = false;
    let restore = () => {};
    await runInDurableObject(env.REGISTRY.get(env.REGISTRY.idFromName("registry")), (inst: RegistryObject) => {
      // On the class (RPC calls only its methods), put back once held.
      const proto = Object.getPrototypeOf(inst) as RegistryObject;
      const add = proto.add;
      restore = () => void (proto.add = add);
      proto.add = async function (this: RegistryObject, name: string, incarnation?: number) {
        if (name === group) {
          g.lateListHeld = true;
          while (!g.lateListGo) await new Promise((r) => setTimeout(r, 10));
          proto.add = add;
        }
        return add.call(this, name, incarnation);
      };
    });
    const put = api("PUT", `/v1/groups/${group}`, { machine: "kv", replicas: 1 });
    try {
      await waitFor("the PUT's registry call", async () => g.lateListHeld === true, 10);
      expect((await api("DELETE", `/v1/groups/${group}`)).status).toBe(204);
    } finally {
      g.lateListGo = true; // never left holding the PUT, nor the class patched
      restore();
    }
    expectError(await put, 503, "unavailable", /deleted while it was being created/);
    expect((await api("GET", "/v1/groups")).body.groups).not.toContain(group);
    expectError(await api("GET", `/v1/groups/${group}`), 404, "not_found");
    // The name is free, and listed again once created.
    expect((await api("PUT", `/v1/groups/${group}`, { machine: "kv", replicas: 1 })).status).toBe(201);
    expect((await api("GET", "/v1/groups")).body.groups).toContain(group);
  });
});

describe("a PUT whose sequencer init comes after its group's DELETE", () => {
  it("answers 503 (deleted while being created), not 409 'exists with another config'", async () => {
    const group = "late-init";
    const sequencer = env.SEQUENCER.get(env.SEQUENCER.idFromName(group));
    // The PUT's init waits until the DELETE, which found the record "creating", is done.
    await runInDurableObject(sequencer, (inst: SequencerObject) => {
      const lifecycle = (inst as any).lifecycle;
      const init = lifecycle.init.bind(lifecycle);
      lifecycle.init = async (cfg: unknown) => {
        while (!(globalThis as any).lateInitGo) await new Promise((r) => setTimeout(r, 10));
        lifecycle.init = init;
        return init(cfg);
      };
    });
    const put = api("PUT", `/v1/groups/${group}`, { machine: "kv", replicas: 1 });
    await waitFor("the PUT's directory record", async () => (await directoryOf(group).get()) !== null, 10);
    expect((await api("DELETE", `/v1/groups/${group}`)).status).toBe(204);
    (globalThis as any).lateInitGo = true;
    expectError(await put, 503, "unavailable", /deleted while it was being created/);
    expectError(await api("GET", `/v1/groups/${group}`), 404, "not_found");
    expect((await api("GET", "/v1/groups")).body.groups).not.toContain(group);
    expect((await api("PUT", `/v1/groups/${group}`, { machine: "kv", replicas: 1 })).status).toBe(201);
  });
});
