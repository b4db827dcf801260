// What a replica keeps of each entry for the watch (its effects row): a probe's batch of txns of
// large gets stored each ~459 KB output twice per replica (with the entry, and in the client's
// session). The watch's copy of an output larger than one value's keeps a marker instead; the
// session's (a retry's answer, in the digest) is kept as it was.
import { describe, expect, it } from "vitest";
import { effectOutputCharsMax, valueBytesMax } from "../../shared/limits.js";
import { directGroup } from "../support/direct.js";

const config = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "first" as const, checkpointEvery: 50 };

describe("the watch's copy of an output", () => {
  it("is kept whole up to one value's size, and a marker with its length past it; the command's own answer and a retry's are whole", async () => {
    expect(effectOutputCharsMax).toBeGreaterThan(valueBytesMax);
    const g = directGroup(config, { entries: 100_000, slack: 1_000 });
    const big = "x".repeat(60_000);
    expect((await g.driver.submit("c", 1, { op: "put", key: "b", value: big })).kind).toBe("ok");
    const overwrite = await g.driver.submit("c", 2, { op: "put", key: "b", value: big });
    expect(overwrite).toMatchObject({ kind: "ok", output: { previous: big } });
    const txn = { op: "txn", success: Array.from({ length: 7 }, () => ({ op: "get", key: "b" })) };
    const read = await g.driver.submit("c", 3, txn);
    expect(read.kind).toBe("ok");
    const whole = JSON.stringify((read as { output: unknown }).output);
    expect(whole.length).toBeGreaterThan(400_000);
    expect(await g.driver.submit("c", 3, txn)).toMatchObject({ kind: "ok", output: (read as { output: unknown }).output }); // a retry: whole
    for (let i = 0; i < 100 && [...g.stores.values()].some((s) => !s.effects.has(3)); i++) await new Promise((r) => setTimeout(r, 5));
    for (const [id, store] of g.stores) {
      expect(JSON.parse(store.effects.get(2)!.output), id).toEqual({ previous: big }); // one value's output: whole
      expect(JSON.parse(store.effects.get(3)!.output), id).toEqual({ error: "output_not_kept", chars: whole.length, limit: effectOutputCharsMax, succeeded: true });
    }
    // The watch's event carries the marker.
    const events = g.replicas.get("r2")!.core!.readEvents(2, 1); // the entries after seq 2
    expect(events).not.toBe("compacted");
    expect((events as { text: string }[])[0]!.text).toContain(`"output":{"error":"output_not_kept","chars":${whole.length}`);
    g.driver.stop();
  });
});
