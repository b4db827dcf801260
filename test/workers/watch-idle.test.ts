// A watch on an idle group: its sequencer's object is evicted (nothing calls it) and its heartbeats
// stop. The replica serving the watch wakes it (groups.wakeSequencer) before its silence ends the
// stream as if it were cut off (a probe: every watch on a group idle for a minute or more ended
// after 10 s, with no keepalive).
import { SELF, env, evictDurableObject, runInDurableObject } from "cloudflare:test";
import type { SequencerObject } from "../../workers/sequencer.js";
import { describe, expect, it } from "vitest";
import { watchKeepaliveMs, watchSilenceMs } from "../../shared/limits.js";
import { clientToken, command, createGroup } from "./helpers.js";

describe("a watch on an idle group whose sequencer was evicted", () => {
  it("stays open with keepalives: the replica wakes the sequencer, which heartbeats again", async () => {
    await createGroup("idlewatch", { machine: "kv", colocate: false });
    expect((await command("idlewatch", { op: "put", key: "a", value: 1 }, "w", 1)).status).toBe(200);
    // Evicted as workerd evicts an object nothing calls (its timers stopped first: the test's
    // eviction waits for in-flight work, the platform's does not).
    const sequencer = env.SEQUENCER.get(env.SEQUENCER.idFromName("idlewatch"));
    await runInDurableObject(sequencer, (inst: SequencerObject) => void (inst as any).lifecycle.stop());
    await evictDurableObject(sequencer as never);
    // Its teardown ends once its last call drains: the watch opens after it (the router calls no
    // sequencer for a watch), so nothing but the replica's wake starts the next instance.
    await new Promise((r) => setTimeout(r, 2_000));
    const res = await SELF.fetch("http://smr.test/v1/groups/idlewatch/watch?from=0", { headers: { authorization: `Bearer ${clientToken}` } });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = "";
    let ended = false;
    const reading = (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return void (ended = true);
        text += decoder.decode(value, { stream: true });
      }
    })();
    // Past the silence that ended streams (watchSilenceMs), and a keepalive's longest gap after it.
    await new Promise((r) => setTimeout(r, watchSilenceMs + watchKeepaliveMs + 1_000));
    expect(text).not.toMatch(/heard nothing from its sequencer/);
    expect(ended).toBe(false);
    expect(text).toMatch(/: keepalive/);
    // And it still carries the group's writes (a write wakes the sequencer by itself, too).
    expect((await command("idlewatch", { op: "put", key: "b", value: 2 }, "w", 2)).status).toBe(200);
    for (let i = 0; i < 50 && !/"b"/.test(text); i++) await new Promise((r) => setTimeout(r, 100));
    expect(text).toMatch(/"b"/);
    await reader.cancel();
    await reading.catch(() => undefined);
  }, 60_000);
});
