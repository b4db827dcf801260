// Sessions that expire (GroupConfig.sessionIdleMs, `sessionIdleSeconds` in the PUT body): a
// client idle past the group's window is forgotten on every replica.
import { describe, expect, it } from "vitest";
import { api, command, createGroup, expectError, replicaStatuses, waitFor } from "./helpers.js";

describe("sessions that expire", () => {
  it("a new group has the default window (7 days), shown in its status; the PUT body may set another", async () => {
    await createGroup("sess-default");
    expect((await api("GET", "/v1/groups/sess-default")).body.sessionIdleSeconds).toBe(7 * 24 * 3600);
    await createGroup("sess-day", { machine: "kv", sessionIdleSeconds: 86_400 });
    expect((await api("GET", "/v1/groups/sess-day")).body.sessionIdleSeconds).toBe(86_400);
    const bad = await api("PUT", "/v1/groups/sess-bad", { machine: "kv", sessionIdleSeconds: 0 });
    expectError(bad, 400, "bad_request", /sessionIdleSeconds/);
  });

  it("forgets a client idle past the window: its retry then finds nothing remembered (409, never run twice), while an active client's retry is answered", async () => {
    await createGroup("sess-short", { machine: "kv", sessionIdleSeconds: 1 });
    expect((await command("sess-short", { op: "incr", key: "n", by: 1 }, "idle", 1)).body.output).toEqual({ value: 1 });
    // Remembered within the window.
    const again = await command("sess-short", { op: "incr", key: "n", by: 1 }, "idle", 1);
    expect(again.status).toBe(200);
    expect(again.body.output).toEqual({ value: 1 });
    await new Promise((r) => setTimeout(r, 1_400));
    // Another client's command, past the window, forgets the idle one on every replica.
    expect((await command("sess-short", { op: "incr", key: "n", by: 10 }, "active", 1)).body.output).toEqual({ value: 11 });
    expect((await command("sess-short", { op: "incr", key: "n", by: 10 }, "active", 1)).body.output).toEqual({ value: 11 });
    // The sequencer knows idle/1 was ordered; its output is gone: a conflict, not a second run.
    expectError(await command("sess-short", { op: "incr", key: "n", by: 1 }, "idle", 1), 409, "conflict", /may have run already/);
    const n = await command("sess-short", { op: "get", key: "n" }, "active", 2);
    expect(n.body.output).toEqual({ value: 11 });
    // Every replica forgot alike (equal digests at the same position).
    await waitFor("every replica at the last seq", async () => Object.values(await replicaStatuses("sess-short")).every((r: any) => r.appliedSeq === n.body.seq), 50);
    const replicas = Object.values(await replicaStatuses("sess-short"));
    expect(new Set(replicas.map((r: any) => r.digest)).size).toBe(1);
  });
});
