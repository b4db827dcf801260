// Automatic sequencer failover against the real server (ALLOW_FAULTS=1): the sequencer is cut off;
// once a quorum of voters has heard nothing from it for sequencerTimeoutMs, the next request
// starts a new one at a higher epoch; writes resume and nothing acknowledged is lost.
import { describe, expect, it } from "vitest";
import { sequencerTimeoutMs } from "../../shared/limits.js";
import { serverFixture } from "../support/fixture.js";
import { type Operation, checkHistory } from "../sim/linearizability.js";

const server = serverFixture("fo", { faults: true });
const { admin, client, call } = server;

describe("automatic sequencer failover", () => {
  it("an unreachable sequencer is replaced; writes resume with nothing acknowledged lost; the event says why and how long", async () => {
    const group = "fo";
    expect((await call("PUT", `/v1/groups/${group}`, admin, { machine: "kv", replicas: 3, sequencerLocations: ["wnam", "weur"] })).status).toBe(201);
    const acked = new Map<string, number>();
    const history: Operation[] = [];
    let request = 0;
    const write = async () => {
      const r = ++request;
      const callMs = Date.now();
      // Retried with the same request id while the outcome is unknown or refused (exactly-once).
      for (let attempt = 0; attempt < 200; attempt++) {
        const w = await call("POST", `/v1/groups/${group}/commands`, client, { client: "w", request: r, command: { op: "put", key: `k${r}`, value: r } });
        if (w.status === 200) {
          acked.set(`k${r}`, r);
          history.push({ client: 0, call: callMs, return: Date.now(), input: { op: "put", key: `k${r}`, value: r }, output: w.body.output });
          // A linearizable read of it, from another "client", at once: it must see the write.
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

    // Nothing acknowledged is lost: every acked key reads back, and the replicas agree.
    const list = await call("POST", `/v1/groups/${group}/query`, client, { query: { op: "list", limit: 1000 } });
    const got = new Map<string, number>(list.body.result.items);
    for (const [k, v] of acked) expect(got.get(k), k).toBe(v);
    expect((await call("POST", `/v1/groups/${group}/audit`, admin)).body.verdict).toBe("consistent");
    // The history of writes and linearizable reads across the failover is linearizable.
    expect(history.filter((o) => o.input.op === "get").length).toBeGreaterThan(10);
    expect(checkHistory({ model: "kv", operations: history }).linearizable).toBe(true);
  }, 90_000);

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
