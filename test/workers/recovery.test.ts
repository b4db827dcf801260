import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { SequencerObject } from "../../workers/sequencer.js";
import { api, clientToken, command, createGroup, query } from "./helpers.js";

function sequencer(group: string) {
  return env.SEQUENCER.get(env.SEQUENCER.idFromName(group));
}

/** The sequencer loses its storage and its memory (ctx.storage.deleteAll()). */
async function wipeSequencer(group: string) {
  await runInDurableObject(sequencer(group), async (inst: SequencerObject, state) => {
    (inst as any).driver?.stop();
    (inst as any).driver = null;
    await state.storage.deleteAll();
  });
}

describe("sequencer failover after storage loss", () => {
  it("starts a new epoch from a replica majority: nothing acknowledged is lost, reordered or executed twice", async () => {
    await createGroup("lost");
    const acked = [];
    for (let i = 1; i <= 20; i++) acked.push((await command("lost", { op: "incr", key: "n", by: 1 }, "c", i)).body);
    await wipeSequencer("lost");

    // The next request finds the sequencer empty; the router has it recover, then serves it.
    const next = await command("lost", { op: "incr", key: "n", by: 1 }, "c", 21);
    expect(next.status).toBe(200);
    expect(next.body.output).toEqual({ value: 21 });
    expect(next.body.seq).toBe(22); // 20 commands, the new epoch's no-op at 21, then this one.

    const status = (await api("GET", "/v1/groups/lost", undefined, clientToken)).body;
    expect(status.epoch).toBe(2);
    expect(status.commitSeq).toBe(22);

    const log = (await api("GET", "/v1/groups/lost/log?limit=100")).body;
    expect(log.entries.map((e: any) => [e.seq, e.kind, e.request])).toEqual([
      ...acked.map((a, i) => [a.seq, "command", i + 1]),
      [21, "noop", null],
      [22, "command", 21],
    ]);
    expect(log.entries[20].epoch).toBe(2);

    // A retry of an old request is answered with its original seq and output, not executed again.
    const retry = await command("lost", { op: "incr", key: "n", by: 1 }, "c", 5);
    expect(retry.body).toMatchObject({ seq: acked[4].seq, output: acked[4].output });
    expect((await query("lost", { op: "get", key: "n" })).body.result).toEqual({ value: 21 });

    const audit = (await api("POST", "/v1/groups/lost/audit")).body;
    expect(audit.verdict).toBe("consistent");
  });

  it("a PUT of an existing group whose sequencer lost its storage recovers instead of starting again at seq 1", async () => {
    await createGroup("lost-put");
    await command("lost-put", { op: "put", key: "k", value: "v" }, "c", 1);
    await wipeSequencer("lost-put");
    const again = await api("PUT", "/v1/groups/lost-put", { machine: "kv" });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ epoch: 2, lastSeq: 2 });
    expect(again.body.commitSeq).toBeGreaterThanOrEqual(1);
    expect((await query("lost-put", { op: "get", key: "k" })).body.result).toEqual({ value: "v" });
  });
});
