// The status's noQuorumSide (workers/http.ts statusForReaders, workers/replica-view.ts): asked
// within the status's own 5 s, kept 10 s per group, not asked by /replicas, and of every
// membership in force (a review).
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { sequencerTimeoutMs, statusReadMs } from "../../shared/limits.js";
import { directoryClient } from "../../workers/directory.js";
import { noQuorumSide } from "../../workers/replica-view.js";
import { api, command, createGroup, waitFor } from "./helpers.js";

const timed = async (path: string) => {
  const startMs = Date.now();
  const r = await api("GET", path);
  return { body: r.body, status: r.status, ms: Date.now() - startMs };
};

describe("the side of a sequencer with no quorum", () => {
  it("is asked within the status's own bound (statusReadMs): a sequencer answering in 4 s held the status 7 s, r1 (co-located, slowed with it) waited its 3 s", async () => {
    const g = "nqs-bound";
    await createGroup(g);
    expect((await command(g, { op: "put", key: "k", value: 1 })).status).toBe(200);
    await api("POST", `/v1/groups/${g}/faults`, { target: "sequencer", fault: "slow", ms: 4_000 });
    try {
      await new Promise((r) => setTimeout(r, sequencerTimeoutMs + 1_500));
      const first = await timed(`/v1/groups/${g}`);
      expect(first.body.sequencer.noQuorumMs).toBeGreaterThanOrEqual(sequencerTimeoutMs);
      expect(first.ms, "the status's answer time").toBeLessThan(statusReadMs + 500);
      // The side comes all the same (asked on past the answer, kept for the next reads).
      await waitFor("the side", async () => (await api("GET", `/v1/groups/${g}`)).body.sequencer.noQuorumSide === "sequencer", 200);
    } finally {
      await api("POST", `/v1/groups/${g}/faults`, { target: "sequencer", fault: "none" });
    }
  }, 60_000);

  it("costs a poll (the dashboard's, every 2 s) no voter round each time, and GET /replicas, which shows no side, none", async () => {
    const g = "nqs-cost";
    await createGroup(g);
    expect((await command(g, { op: "put", key: "k", value: 1 })).status).toBe(200);
    // r2 and r3 hang (a location gone silent): every call to them waits 20 s, or its own timeout.
    for (const r of ["r2", "r3"]) await api("POST", `/v1/groups/${g}/faults`, { target: r, fault: "slow", ms: 20_000 });
    try {
      await new Promise((r) => setTimeout(r, sequencerTimeoutMs + 1_500));
      const first = await timed(`/v1/groups/${g}`);
      expect(first.body.sequencer.noQuorumSide).toBe("replicas");
      expect(first.body.sequencer.silentVoters).toEqual(["r2", "r3"]);
      const again = await timed(`/v1/groups/${g}`);
      expect(again.body.sequencer.noQuorumSide).toBe("replicas");
      expect(again.ms, "a second read 0 s later").toBeLessThan(1_500);
      const replicas = await timed(`/v1/groups/${g}/replicas`);
      expect(replicas.status).toBe(200);
      expect(replicas.ms, "GET /replicas").toBeLessThan(1_500);
    } finally {
      for (const r of ["r2", "r3"]) await api("POST", `/v1/groups/${g}/faults`, { target: r, fault: "none" });
    }
  }, 60_000);

  it("asks every voter of the memberships in force: a removal in flight needs the removed voter for the old membership's quorum", async () => {
    const g = "nqs-inflight";
    await createGroup(g, { machine: "kv", replicas: 4 });
    expect((await command(g, { op: "put", key: "k", value: 1 })).status).toBe(200);
    await api("POST", `/v1/groups/${g}/faults`, { target: "r4", fault: "unreachable" });
    try {
      // The directory's record as a removal of r3 in flight leaves it: members r1 r2 r4, and both memberships.
      const config = (await directoryClient(env.DIRECTORY.get(env.DIRECTORY.idFromName(g)) as never).get())!.config;
      const all = [1, 2, 3, 4].map((n) => ({ id: `r${n}`, location: null, voter: true }));
      const after = all.filter((m) => m.id !== "r3");
      const removing = { ...config, members: after, inFlight: [all, after] };
      // r1, r2, r3 answer: 3 of the old 4, 2 of the new 3, a quorum of both; r4 alone is silent.
      expect(await noQuorumSide(env as never, removing)).toEqual({ noQuorumSide: "sequencer", silentVoters: ["r4"] });
    } finally {
      await api("POST", `/v1/groups/${g}/faults`, { target: "r4", fault: "none" });
    }
  });
});
