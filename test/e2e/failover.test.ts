// Automatic sequencer failover against the real server (ALLOW_FAULTS=1): the sequencer is cut off;
// once a quorum of voters has heard nothing from it for sequencerTimeoutMs, the next request
// starts a new one at a higher epoch; writes resume and nothing acknowledged is lost.
import { describe, expect, it } from "vitest";
import { cutOffConfirmMs, sequencerTimeoutMs } from "../../shared/limits.js";
import { serverFixture } from "../support/fixture.js";
import { type Operation, checkHistory } from "../sim/linearizability.js";

const server = serverFixture("fo", { faults: true });
const { admin, client, call } = server;

/**
 * Writes of distinct keys, each retried with its request id while refused or unknown (exactly-once),
 * each followed by a linearizable read of it from another "client"; `write` resolves when acknowledged.
 */
function writer(group: string) {
  const acked = new Map<string, number>();
  const history: Operation[] = [];
  let request = 0;
  const write = async () => {
    const r = ++request;
    const callMs = Date.now();
    for (let attempt = 0; attempt < 200; attempt++) {
      const w = await call("POST", `/v1/groups/${group}/commands`, client, { client: "w", request: r, command: { op: "put", key: `k${r}`, value: r } });
      if (w.status === 200) {
        acked.set(`k${r}`, r);
        history.push({ client: 0, call: callMs, return: Date.now(), input: { op: "put", key: `k${r}`, value: r }, output: w.body.output });
        const readMs = Date.now();
        const q = await call("POST", `/v1/groups/${group}/query`, client, { query: { op: "get", key: `k${r}` } });
        if (q.status === 200) history.push({ client: 1, call: readMs, return: Date.now(), input: { op: "get", key: `k${r}` }, output: q.body.result });
        return Date.now();
      }
      expect([503, 504]).toContain(w.status);
      await new Promise((res) => setTimeout(res, 100));
    }
    throw new Error(`write ${r} never succeeded`);
  };
  return { write, acked, history };
}

/** Nothing acknowledged is lost, the replicas agree, and the history is linearizable. */
async function checkAfter(group: string, acked: Map<string, number>, history: Operation[]) {
  const list = await call("POST", `/v1/groups/${group}/query`, client, { query: { op: "list", limit: 1000 } });
  const got = new Map<string, number>(list.body.result.items);
  for (const [k, v] of acked) expect(got.get(k), k).toBe(v);
  expect((await call("POST", `/v1/groups/${group}/audit`, admin)).body.verdict).toBe("consistent");
  expect(history.filter((o) => o.input.op === "get").length).toBeGreaterThan(10);
  expect(checkHistory({ model: "kv", operations: history }).linearizable).toBe(true);
}

describe("automatic sequencer failover", () => {
  it("an unreachable sequencer is replaced; writes resume with nothing acknowledged lost; the event says why and how long", async () => {
    const group = "fo";
    expect((await call("PUT", `/v1/groups/${group}`, admin, { machine: "kv", replicas: 3, sequencerLocations: ["wnam", "weur"] })).status).toBe(201);
    const { write, acked, history } = writer(group);
    for (let i = 0; i < 10; i++) await write();
    const before = (await call("GET", `/v1/groups/${group}`, client)).body;
    expect(before.sequencer).toMatchObject({ name: group, location: "wnam", epoch: 1 });

    const cut = await call("POST", `/v1/groups/${group}/faults`, admin, { target: "sequencer", fault: "unreachable" });
    expect(cut.body.faults).toEqual([{ target: "sequencer", name: group, fault: "unreachable", ms: 0 }]);
    const cutAt = Date.now();
    const resumedAt = await write();
    const resumeMs = resumedAt - cutAt;
    expect(resumeMs).toBeGreaterThanOrEqual(sequencerTimeoutMs - 500);
    expect(resumeMs).toBeLessThan(sequencerTimeoutMs + 15_000);
    for (let i = 0; i < 10; i++) await write();

    const after = (await call("GET", `/v1/groups/${group}`, client)).body;
    expect(after.sequencer.name).toBe(`${group}~s1`);
    expect(after.sequencer.location).toBe("weur");
    expect(after.sequencer.epoch).toBeGreaterThan(1);
    const events = (await call("GET", `/v1/groups/${group}/events`, client)).body.events;
    const fo = events.find((e: any) => e.kind === "failover");
    expect(fo).toMatchObject({ from: group, to: `${group}~s1`, epoch: after.sequencer.epoch });
    expect(fo.cause).toMatch(/unreachable/);
    expect(fo.downMs).toBeGreaterThanOrEqual(sequencerTimeoutMs - 1_000);
    console.log(`failover: first write acknowledged by the new sequencer ${resumeMs} ms after the cut; event downMs ${fo.downMs}`);

    // The old sequencer comes back: it acknowledges nothing (fenced), and clients are not sent to it.
    await call("POST", `/v1/groups/${group}/faults`, admin, { target: "sequencer", fault: "none" });
    await new Promise((res) => setTimeout(res, 2_000));
    for (let i = 0; i < 5; i++) await write();
    expect((await call("GET", `/v1/groups/${group}`, client)).body.sequencer.name).toBe(`${group}~s1`);

    await checkAfter(group, acked, history);
  }, 90_000);

  it("a sequencer too slow to reach its replicas in time, though they hear it, is replaced on its own report of no quorum", async () => {
    const group = "fo-slow";
    expect((await call("PUT", `/v1/groups/${group}`, admin, { machine: "kv", replicas: 3 })).status).toBe(201);
    const { write, acked, history } = writer(group);
    for (let i = 0; i < 10; i++) await write();
    // Every call to or from it waits 4 s first: each append outlives its 3 s timeout, while the
    // replicas still get every one, late (the probe that found the group stuck for as long as it lasted).
    await call("POST", `/v1/groups/${group}/faults`, admin, { target: "sequencer", fault: "slow", ms: 4_000 });
    const slowAt = Date.now();
    const resumedAt = await write();
    for (let i = 0; i < 10; i++) await write();
    const after = (await call("GET", `/v1/groups/${group}`, client)).body;
    expect(after.sequencer.name).toBe(`${group}~s1`);
    const fo = (await call("GET", `/v1/groups/${group}/events`, client)).body.events.find((e: any) => e.kind === "failover");
    expect(fo).toMatchObject({ from: group, to: `${group}~s1`, cause: expect.stringMatching(/no quorum/) });
    expect(fo.downMs).toBeGreaterThanOrEqual(sequencerTimeoutMs + cutOffConfirmMs / 2);
    console.log(`cut-off failover: first write acknowledged by the new sequencer ${resumedAt - slowAt} ms after the slowdown; event downMs ${fo.downMs}`);
    await call("POST", `/v1/groups/${group}/faults`, admin, { target: "sequencer", fault: "none" });
    await checkAfter(group, acked, history);
  }, 120_000);

  it("a sequencer that the replicas still hear is not replaced (no churn): a request that cannot reach it gets 503", async () => {
    const group = "fo-healthy";
    expect((await call("PUT", `/v1/groups/${group}`, admin, { machine: "kv" })).status).toBe(201);
    expect((await call("POST", `/v1/groups/${group}/commands`, client, { client: "c", request: 1, command: { op: "put", key: "k", value: 1 } })).status).toBe(200);
    // Slow, not cut off: it answers late, and nobody fails it over.
    await call("POST", `/v1/groups/${group}/faults`, admin, { target: "sequencer", fault: "slow", ms: 200 });
    for (let i = 2; i <= 6; i++) expect((await call("POST", `/v1/groups/${group}/commands`, client, { client: "c", request: i, command: { op: "put", key: "k", value: i } })).status).toBe(200);
    await call("POST", `/v1/groups/${group}/faults`, admin, { target: "sequencer", fault: "none" });
    const s = (await call("GET", `/v1/groups/${group}`, client)).body;
    expect(s.sequencer.name).toBe(group);
    expect(s.epoch).toBe(1);
    expect((await call("GET", `/v1/groups/${group}/events`, client)).body.events.filter((e: any) => e.kind === "failover")).toEqual([]);
  }, 60_000);
});
