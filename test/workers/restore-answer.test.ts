// A restore that was adopted answers 200 (API.md "Snapshot and restore"), even when its group's
// status cannot come from the sequencer just then: a 503 says it certainly did not happen.
import { SELF, env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { setFault } from "../../workers/faults.js";
import type { SequencerObject } from "../../workers/sequencer.js";
import { adminToken, command, createGroup, query } from "./helpers.js";

function restore(group: string, file: string) {
  return SELF.fetch(`http://smr.test/v1/groups/${group}/restore`, { method: "POST", headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/x-ndjson" }, body: file });
}

describe("the sequencer cut off just after it adopted a restore", () => {
  it("the restore answers 200 with the group's status, not 503", async () => {
    await createGroup("ra-src");
    expect((await command("ra-src", { op: "put", key: "a", value: 1 })).status).toBe(200);
    const file = await (await SELF.fetch("http://smr.test/v1/groups/ra-src/snapshot", { headers: { authorization: `Bearer ${adminToken}` } })).text();
    await createGroup("ra-dst", { machine: "kv", replicas: 3 });
    // The fault lands once endRestore has answered (RPC methods are the prototype's).
    await runInDurableObject(env.SEQUENCER.get(env.SEQUENCER.idFromName("ra-dst")), (inst: SequencerObject) => {
      const proto = Object.getPrototypeOf(inst);
      const end = proto.endRestore;
      proto.endRestore = async function (this: SequencerObject, ...args: Parameters<SequencerObject["endRestore"]>) {
        proto.endRestore = end;
        const answer = await end.apply(this, args);
        setFault("ra-dst", "sequencer", "unreachable", 0, "ra-dst");
        return answer;
      };
    });
    try {
      const res = await restore("ra-dst", file);
      const body = (await res.json()) as any;
      expect(res.status, JSON.stringify(body)).toBe(200);
      expect(body.group).toBe("ra-dst");
      expect(body.replicas.length).toBe(3);
    } finally {
      setFault("ra-dst", "sequencer", "none", 0);
    }
    expect((await query("ra-dst", { op: "list" })).body.result.items).toEqual([["a", 1]]);
    expect((await restore("ra-dst", file)).status).toBe(409);
  });
});
