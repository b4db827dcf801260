// Reads where the reader is: sequential, stale and linearizable queries go to the healthy replica
// nearest the caller (x-smr-near overrides where the request came from), and fall back to the next
// nearest when it cannot answer.
import { SELF, env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { ReplicaObject } from "../../workers/replica.js";
import { decodeBookmark } from "../../shared/api/bookmark.js";
import { api, clientToken, command, createGroup, expectError, replicaObject } from "./helpers.js";

async function read(group: string, near: string | null, consistency: string, key = "k", bookmark?: string) {
  const headers: Record<string, string> = { "content-type": "application/json", authorization: `Bearer ${clientToken}` };
  if (near !== null) headers["x-smr-near"] = near;
  const res = await SELF.fetch(`http://smr.test/v1/groups/${group}/query`, { method: "POST", headers, body: JSON.stringify({ query: { op: "get", key }, consistency, ...(bookmark ? { bookmark } : {}) }) });
  return { status: res.status, body: (await res.json()) as any };
}

describe("nearest reads", () => {
  it("x-smr-near picks the replica in that location, for every consistency; the nearest other one when none is there", async () => {
    const created = await createGroup("near", { machine: "kv", replicas: 3, locations: ["wnam", "weur", "apac"] });
    // Its sequencer runs in r1's object, so at r1's place: the status said null, `@ any` (a location probe).
    expect(created.sequencer.location).toBe("wnam");
    expect((await command("near", { op: "put", key: "k", value: 1 })).status).toBe(200);
    for (const consistency of ["linearizable", "sequential", "stale"]) {
      for (let i = 0; i < 5; i++) {
        expect((await read("near", "weur", consistency)).body.replica).toBe("r2");
        expect((await read("near", "apac", consistency)).body.replica).toBe("r3");
        expect((await read("near", "wnam", consistency)).body.replica).toBe("r1");
      }
    }
    // The linearizable read at the nearest replica sees the write acknowledged before it.
    expect((await command("near", { op: "put", key: "k", value: 2 })).status).toBe(200);
    const lin = await read("near", "apac", "linearizable");
    expect(lin.body).toMatchObject({ result: { value: 2 }, replica: "r3" });
    // No replica in eeur: the nearest one (weur) answers; from oc, apac's.
    expect((await read("near", "eeur", "stale")).body.replica).toBe("r2");
    expect((await read("near", "oc", "stale")).body.replica).toBe("r3");
    expectError({ ...(await read("near", "mars", "stale")), headers: new Headers() }, 400, "bad_request", /x-smr-near/);
  });

  it("an unknown location hint is a 400 wherever a location is given, as for x-smr-near", async () => {
    expectError(await api("PUT", "/v1/groups/near-bad", { machine: "kv", replicas: 2, locations: ["wnam", "mars"] }), 400, "bad_request", /^body\.locations\.1: .*wnam/);
    expectError(await api("PUT", "/v1/groups/near-bad", { machine: "kv", sequencerLocations: ["WEUR"] }), 400, "bad_request", /^body\.sequencerLocations\.0:/);
    expectError(await api("GET", "/v1/groups/near-bad"), 404, "not_found");
    await createGroup("near-ok", { machine: "kv", replicas: 2, locations: ["wnam", null], sequencerLocations: ["enam"] });
    expectError(await api("POST", "/v1/groups/near-ok/replicas", { location: "moon" }), 400, "bad_request", /^body\.location:/);
    expectError(await api("POST", "/v1/groups/near-ok/sequencer", { location: "moon" }), 400, "bad_request", /^body\.location:/);
    const added = await api("POST", "/v1/groups/near-ok/replicas", { location: "me" });
    expect(added.status).toBe(202);
    expect(added.body.replica.location).toBe("me");
  });

  it("falls back to the next nearest when the nearest cannot answer", async () => {
    await createGroup("near-down", { machine: "kv", replicas: 3, locations: ["wnam", "weur", "apac"] });
    expect((await command("near-down", { op: "put", key: "k", value: 1 })).status).toBe(200);
    const r2 = replicaObject("near-down", "r2");
    await runInDurableObject(r2, (inst: ReplicaObject) => {
      const driver = (inst as any).replica.driver;
      driver.query = () => {
        throw new Error("injected: replica unreachable");
      };
    });
    const r = await read("near-down", "weur", "stale");
    expect(r.status).toBe(200);
    expect(r.body.replica).toBe("r1"); // weur -> wnam is nearer than weur -> apac
  });

  /** Every query at these replicas takes `ms` first; each counts the queries it got (`queries`). */
  async function sluggish(group: string, ids: string[], ms: number) {
    for (const id of ids) {
      await runInDurableObject(replicaObject(group, id), (inst: ReplicaObject) => {
        const driver = (inst as any).replica.driver;
        const query = driver.query.bind(driver);
        (inst as any).queries = 0;
        driver.query = async (...args: unknown[]) => {
          (inst as any).queries++;
          await new Promise((resolve) => setTimeout(resolve, ms));
          return query(...args);
        };
      });
    }
  }

  it("a nearest replica that answers slowly is overtaken by the next after 1 s, and asked last by the next reads", async () => {
    await createGroup("near-sluggish", { machine: "kv", replicas: 3, locations: ["wnam", "weur", "apac"] });
    expect((await command("near-sluggish", { op: "put", key: "k", value: 1 })).status).toBe(200);
    await sluggish("near-sluggish", ["r2"], 4_000);
    for (const consistency of ["stale", "sequential", "stale", "linearizable"]) {
      const r = await read("near-sluggish", "weur", consistency);
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(r.body).toMatchObject({ result: { value: 1 }, replica: "r1" });
    }
    // Asked once: the reads after the first went to the others first, and they answered.
    expect(await runInDurableObject(replicaObject("near-sluggish", "r2"), (inst: ReplicaObject) => (inst as any).queries)).toBe(1);
  });

  it("a read without a position to wait for (sequential without a bookmark) overtakes a slow nearest replica after 1 s, not the 3 s of a read that may wait (an operator's probe)", async () => {
    await createGroup("near-nowait", { machine: "kv", replicas: 3, locations: ["wnam", "weur", "apac"] });
    expect((await command("near-nowait", { op: "put", key: "k", value: 1 })).status).toBe(200);
    await sluggish("near-nowait", ["r2"], 6_000);
    const startMs = Date.now();
    const r = await read("near-nowait", "weur", "sequential");
    expect(r.body).toMatchObject({ result: { value: 1 }, replica: "r1" });
    // Overtaken at readAnswerSlackMs (1 s); it waited readWaitMs (2 s) more for nothing.
    expect(Date.now() - startMs).toBeLessThan(2_500);
  });

  it("when every replica is slow, the first to answer serves: no 503 (a group of three, and a group of one)", async () => {
    await createGroup("near-all-slow", { machine: "kv", replicas: 3, locations: ["wnam", "weur", "apac"] });
    expect((await command("near-all-slow", { op: "put", key: "k", value: 1 })).status).toBe(200);
    await sluggish("near-all-slow", ["r1", "r2", "r3"], 1_500);
    // weur's own replica, asked first, answers first (then r1 and r3, asked after it, go on).
    const first = await read("near-all-slow", "weur", "stale");
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    expect(first.body).toMatchObject({ result: { value: 1 }, replica: "r2" });
    // It answered past its 1 s, so it is asked last now: the next nearest serves, as slowly.
    const next = await read("near-all-slow", "weur", "stale");
    expect(next.status, JSON.stringify(next.body)).toBe(200);
    expect(next.body).toMatchObject({ result: { value: 1 }, replica: "r1" });
    await createGroup("near-one-slow", { machine: "kv", replicas: 1 });
    expect((await command("near-one-slow", { op: "put", key: "k", value: 2 })).status).toBe(200);
    await sluggish("near-one-slow", ["r1"], 1_500);
    for (const consistency of ["stale", "sequential", "linearizable"]) {
      const r = await read("near-one-slow", null, consistency);
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(r.body.result).toEqual({ value: 2 });
    }
  }, 30_000);

  /** r2 (weur) stops applying: it drops every append, and answers reads from where it stopped. */
  async function stall(group: string) {
    await runInDurableObject(replicaObject(group, "r2"), (inst: ReplicaObject) => {
      (inst as any).replica.driver.append = async () => {
        throw new Error("injected: appends lost on the way");
      };
    });
  }

  it("a nearest replica that refuses (quarantined, rebuilding) or does not reach the position is asked last by the next reads: each read paid its delay (a probe)", async () => {
    await createGroup("near-refuses", { machine: "kv", replicas: 3, locations: ["wnam", "weur", "apac"] });
    expect((await command("near-refuses", { op: "put", key: "k", value: 1 })).status).toBe(200);
    await runInDurableObject(replicaObject("near-refuses", "r2"), (inst: ReplicaObject) => {
      (inst as any).queries = 0;
      (inst as any).replica.driver.query = async () => {
        (inst as any).queries++;
        await new Promise((resolve) => setTimeout(resolve, 300));
        return { kind: "quarantined", replica: "r2" };
      };
    });
    for (const consistency of ["stale", "sequential", "linearizable", "stale"]) {
      const r = await read("near-refuses", "weur", consistency);
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(r.body).toMatchObject({ result: { value: 1 }, replica: "r1" });
    }
    expect(await runInDurableObject(replicaObject("near-refuses", "r2"), (inst: ReplicaObject) => (inst as any).queries)).toBe(1);
  });

  it("a nearest replica that cannot reach the position in time hands the read to the next nearest (it was a 504)", async () => {
    await createGroup("near-slow", { machine: "kv", replicas: 3, locations: ["wnam", "weur", "apac"] });
    expect((await command("near-slow", { op: "put", key: "k", value: 1 })).status).toBe(200);
    await stall("near-slow");
    expect((await command("near-slow", { op: "put", key: "k", value: 2 })).status).toBe(200);
    await sluggish("near-slow", ["r2"], 0); // counts r2's queries
    const r = await read("near-slow", "weur", "linearizable");
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toMatchObject({ result: { value: 2 }, replica: "r1" });
    // r2 waited the read's whole wait and did not get there: the next reads go to r1 first and do
    // not pay that wait again (r2 is asked last for 10 s).
    const startedMs = Date.now();
    for (let i = 0; i < 3; i++) expect((await read("near-slow", "weur", "linearizable")).body).toMatchObject({ result: { value: 2 }, replica: "r1" });
    expect(Date.now() - startedMs).toBeLessThan(1_500);
    expect(await runInDurableObject(replicaObject("near-slow", "r2"), (inst: ReplicaObject) => (inst as any).queries)).toBe(1);
  });

  it("a read's bookmark keeps the next sequential read from going back to an older state", async () => {
    await createGroup("near-mono", { machine: "kv", replicas: 3, locations: ["wnam", "weur", "apac"] });
    expect((await command("near-mono", { op: "put", key: "k", value: 1 })).status).toBe(200);
    await stall("near-mono");
    const written = await command("near-mono", { op: "put", key: "k", value: 2 });
    expect(written.status).toBe(200);
    const first = await read("near-mono", "wnam", "sequential", "k", written.body.bookmark);
    expect(first.body).toMatchObject({ result: { value: 2 }, replica: "r1" });
    expect(decodeBookmark(first.body.bookmark)?.seq).toBe(first.body.seq);
    // Without the read's bookmark, r2 answers the state it stopped at.
    expect((await read("near-mono", "weur", "sequential")).body).toMatchObject({ result: { value: 1 }, replica: "r2" });
    const next = await read("near-mono", "weur", "sequential", "k", first.body.bookmark);
    expect(next.status, JSON.stringify(next.body)).toBe(200);
    expect(next.body.seq).toBeGreaterThanOrEqual(first.body.seq);
    expect(next.body.result).toEqual({ value: 2 });
  });
});

describe("a watch at a replica cut off from its sequencer", () => {
  /** r<id> stops hearing from the sequencer (appends dropped), and has heard nothing for a minute. */
  async function silence(group: string, id: string) {
    await runInDurableObject(replicaObject(group, id), (inst: ReplicaObject) => {
      const driver = (inst as any).replica.driver;
      driver.append = async () => {
        throw new Error("injected: appends lost on the way");
      };
      driver.heardMs -= 60_000;
    });
  }

  async function watchAt(group: string, near: string) {
    const res = await SELF.fetch(`http://smr.test/v1/groups/${group}/watch?from=0`, { headers: { authorization: `Bearer ${clientToken}`, "x-smr-near": near } });
    await res.body?.cancel();
    return { status: res.status, replica: res.headers.get("x-smr-replica") };
  }

  it("goes to the nearest replica in contact; to a silent one only when none is (API.md: the healthy replica nearest the caller)", async () => {
    await createGroup("near-watch", { machine: "kv", replicas: 3, locations: ["wnam", "weur", "apac"] });
    expect((await command("near-watch", { op: "put", key: "k", value: 1 })).status).toBe(200);
    expect(await watchAt("near-watch", "weur")).toEqual({ status: 200, replica: "r2" });
    await silence("near-watch", "r2");
    // r2 answers the router, but its stream would carry only keepalives: weur -> wnam is next.
    expect(await watchAt("near-watch", "weur")).toEqual({ status: 200, replica: "r1" });
    await silence("near-watch", "r1");
    await silence("near-watch", "r3");
    // None in contact (the whole group is failing over): the nearest serves what it has.
    expect(await watchAt("near-watch", "weur")).toEqual({ status: 200, replica: "r2" });
  });

  it("a nearest replica slow to open the stream is overtaken by the next after readAnswerSlackMs, as a read is", async () => {
    await createGroup("near-watch-slow", { machine: "kv", replicas: 3, locations: ["wnam", "weur", "apac"] });
    expect((await command("near-watch-slow", { op: "put", key: "k", value: 1 })).status).toBe(200);
    // Slower than a read's slack (1 s), well within a call's timeout (3 s): the watch waited it out.
    await api("POST", "/v1/groups/near-watch-slow/faults", { target: "r2", fault: "slow", ms: 2_000 });
    expect(await watchAt("near-watch-slow", "weur")).toEqual({ status: 200, replica: "r1" });
    // Every replica slow: the calls go on, and the first to answer serves.
    for (const target of ["r1", "r2", "r3"]) await api("POST", "/v1/groups/near-watch-slow/faults", { target, fault: "slow", ms: 2_000 });
    expect((await watchAt("near-watch-slow", "weur")).status).toBe(200);
  });

  it("a slow replica's late answer still serves when the replicas after it refuse at once", async () => {
    await createGroup("near-watch-late", { machine: "kv", replicas: 3, locations: ["wnam", "weur", "apac"] });
    expect((await command("near-watch-late", { op: "put", key: "k", value: 1 })).status).toBe(200);
    for (const id of ["r1", "r3"]) {
      await runInDurableObject(replicaObject("near-watch-late", id), (inst: ReplicaObject) => {
        (inst as any).replica.driver.watches.open = () => "busy";
      });
    }
    await api("POST", "/v1/groups/near-watch-late/faults", { target: "r2", fault: "slow", ms: 1_500 });
    expect(await watchAt("near-watch-late", "weur")).toEqual({ status: 200, replica: "r2" });
  });

  it("when no replica can take a watch, the 503 gives their reasons (a full replica is not a down one)", async () => {
    await createGroup("near-full", { machine: "kv", replicas: 3, locations: ["wnam", "weur", "apac"] });
    expect((await command("near-full", { op: "put", key: "k", value: 1 })).status).toBe(200);
    for (const id of ["r1", "r2", "r3"]) {
      await runInDurableObject(replicaObject("near-full", id), (inst: ReplicaObject) => {
        (inst as any).replica.driver.watches.open = () => "busy";
      });
    }
    const res = await SELF.fetch("http://smr.test/v1/groups/near-full/watch", { headers: { authorization: `Bearer ${clientToken}` } });
    expectError({ status: res.status, body: await res.json(), headers: res.headers }, 503, "unavailable", /^no replica can serve this watch now: replica r\d serves as many watches as it may \(1000\)/);
    expect(res.headers.get("retry-after")).toBe("1");
  });

  it("counts, at the co-located replica, how long its host sequencer has been cut off: it hears the heartbeats, the others do not", async () => {
    await createGroup("near-host", { machine: "kv", replicas: 3 });
    expect((await command("near-host", { op: "put", key: "k", value: 1 })).status).toBe(200);
    for (const id of ["r2", "r3"]) {
      await runInDurableObject(replicaObject("near-host", id), (inst: ReplicaObject) => {
        (inst as any).replica.driver.append = async () => {
          throw new Error("injected: appends lost on the way");
        };
      });
    }
    await new Promise((r) => setTimeout(r, 11_000));
    await runInDurableObject(replicaObject("near-host", "r1"), (inst: ReplicaObject) => {
      const driver = (inst as any).replica.driver;
      expect(Date.now() - driver.heardMs).toBeLessThan(3_000); // its host's heartbeats
      expect(driver.silentMs()).toBeGreaterThanOrEqual(10_000); // the host's cut-off
    });
  }, 30_000);
});

describe("a watch resumed while the sequencer is slow", () => {
  it("is served by a replica without waiting out the sequencer's call (the log's end is asked for 1 s at most)", async () => {
    await createGroup("watch-slow", { machine: "kv", replicas: 3, colocate: false });
    for (let i = 1; i <= 3; i++) expect((await command("watch-slow", { op: "put", key: `k${i}`, value: i })).status).toBe(200);
    await api("POST", "/v1/groups/watch-slow/faults", { target: "sequencer", fault: "slow", ms: 20_000 });
    const startedMs = Date.now();
    const res = await SELF.fetch("http://smr.test/v1/groups/watch-slow/watch", { headers: { authorization: `Bearer ${clientToken}`, "last-event-id": "1" } });
    const tookMs = Date.now() - startedMs;
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    let text = "";
    // Entry 2 (3's commit may reach the replicas only with the slowed next append).
    while (!text.includes("id: 2\nevent: entry\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the watch ended before entry 2: ${text}`);
      text += new TextDecoder().decode(value);
    }
    await reader.cancel();
    expect(text).toMatch(/id: 2\nevent: entry\n/);
    // The sequencer's call would have answered after 15 s (its timeout): far sooner, it did not wait.
    expect(tookMs).toBeLessThan(10_000);
    await api("POST", "/v1/groups/watch-slow/faults", { target: "sequencer", fault: "none" });
  }, 30_000);
});
