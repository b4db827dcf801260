// Automatic failover inside workerd: the sequencer is cut off (fault injection); once a quorum of
// voters has not heard from it for sequencerTimeoutMs, a write fails it over to a successor at a
// higher epoch, and nothing acknowledged is lost.
import { describe, expect, it } from "vitest";
import { failoverHoldDownMs, sequencerTimeoutMs } from "../../shared/limits.js";
import { api, clientToken, command, createGroup, query } from "./helpers.js";

describe("automatic failover (workerd)", () => {
  it("replaces an unreachable sequencer; writes resume; a second failover waits for the hold-down", async () => {
    await createGroup("wfo", { machine: "kv", replicas: 3 });
    for (let i = 1; i <= 5; i++) expect((await command("wfo", { op: "put", key: `k${i}`, value: i }, "w", i)).status).toBe(200);
    expect((await api("POST", "/v1/groups/wfo/faults", { target: "sequencer", fault: "unreachable" })).status).toBe(200);
    const cutAt = Date.now();
    let status = 0;
    let answer: any = null;
    while (Date.now() - cutAt < sequencerTimeoutMs + 20_000) {
      const r = await command("wfo", { op: "put", key: "k6", value: 6 }, "w", 6);
      status = r.status;
      answer = r.body;
      if (status === 200) break;
      expect([503, 504]).toContain(status);
      await new Promise((res) => setTimeout(res, 250));
    }
    expect(status, JSON.stringify(answer)).toBe(200);
    expect(Date.now() - cutAt).toBeGreaterThanOrEqual(sequencerTimeoutMs - 500);
    const s = (await api("GET", "/v1/groups/wfo", undefined, clientToken)).body;
    expect(s.sequencer.name).toBe("wfo~s1");
    expect(s.epoch).toBeGreaterThan(1);
    for (let i = 1; i <= 6; i++) expect((await query("wfo", { op: "get", key: `k${i}` })).body.result).toEqual({ value: i });
    const events = (await api("GET", "/v1/groups/wfo/events", undefined, clientToken)).body.events;
    expect(events.find((e: any) => e.kind === "failover")).toMatchObject({ from: "wfo", to: "wfo~s1" });
    // The successor cut off too, at once: within the hold-down no second failover (503s, not a new sequencer).
    expect(failoverHoldDownMs).toBeGreaterThan(sequencerTimeoutMs);
    await api("POST", "/v1/groups/wfo/faults", { target: "sequencer", fault: "unreachable" });
    const r = await command("wfo", { op: "put", key: "k7", value: 7 }, "w", 7);
    expect(r.status).toBe(504); // a command whose outcome the router cannot know
    expect(r.body.error.message).toMatch(/hold-down|lost the sequencer/);
    await api("POST", "/v1/groups/wfo/faults", { target: "sequencer", fault: "none" });
    expect((await api("GET", "/v1/groups/wfo", undefined, clientToken)).body.sequencer.name).toBe("wfo~s1");
  });
});
