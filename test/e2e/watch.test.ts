// Watch (API.md "Watch") against the real server: Server-Sent Events from the nearest replica,
// catch-up from the log, live events, a reconnect with Last-Event-ID that misses nothing and
// repeats nothing, the prefix filter, and the end of the stream when the replica is quarantined.
import { describe, expect, it } from "vitest";
import { serverFixture } from "../support/fixture.js";

const server = serverFixture("watch", { faults: true });
const { admin, client, call } = server;

interface Sse {
  id: number;
  event: string;
  data: any;
}

/** Opens a watch and collects its events until `enough` says so (or the stream ends); then aborts it. */
async function watch(group: string, query: string, enough: (events: Sse[]) => boolean, headers: Record<string, string> = {}, deadlineMs = 20_000) {
  const abort = new AbortController();
  const res = await fetch(`${server.url()}/v1/groups/${group}/watch${query}`, {
    headers: { authorization: `Bearer ${client}`, ...headers },
    signal: abort.signal,
  });
  const events: Sse[] = [];
  const comments: string[] = [];
  if (res.status !== 200) return { status: res.status, body: (await res.json()) as any, events, comments, ended: true, contentType: res.headers.get("content-type") };
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let ended = false;
  const deadline = setTimeout(() => abort.abort(), deadlineMs);
  try {
    while (!enough(events)) {
      const { value, done } = await reader.read();
      if (done) {
        ended = true;
        break;
      }
      buf += value;
      for (let i = buf.indexOf("\n\n"); i >= 0; i = buf.indexOf("\n\n")) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (block.startsWith(":")) comments.push(block);
        else {
          const f = Object.fromEntries(block.split("\n").map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 2)]));
          events.push({ id: Number(f.id), event: f.event!, data: JSON.parse(f.data!) });
        }
      }
    }
  } finally {
    clearTimeout(deadline);
    abort.abort();
  }
  return { status: res.status, body: null as any, events, comments, ended, contentType: res.headers.get("content-type"), incarnation: res.headers.get("x-smr-incarnation") };
}

let request = 0;
const put = (group: string, key: string, value: unknown) =>
  call("POST", `/v1/groups/${group}/commands`, client, { client: "w", request: ++request, command: { op: "put", key, value } });

describe("watch", () => {
  it("streams catch-up then live events; a reconnect with Last-Event-ID resumes with no gap and no repeat", async () => {
    expect((await call("PUT", "/v1/groups/wa", admin, { machine: "kv" })).status).toBe(201);
    for (let i = 1; i <= 3; i++) expect((await put("wa", `k${i}`, i)).status).toBe(200);

    // From 0: the three puts from the log, then live ones as they are written.
    const writer = (async () => {
      await new Promise((r) => setTimeout(r, 300));
      for (let i = 4; i <= 6; i++) await put("wa", `k${i}`, i);
    })();
    const first = await watch("wa", "?from=0", (e) => e.length >= 5);
    await writer;
    expect(first.status).toBe(200);
    expect(first.contentType).toMatch(/^text\/event-stream/);
    expect(first.events.map((e) => e.id)).toEqual([1, 2, 3, 4, 5]);
    expect(first.events[0]).toMatchObject({ event: "entry", data: { seq: 1, kind: "command", client: "w", command: { op: "put", key: "k1", value: 1 }, output: { previous: null }, changes: [["k1", 1]] } });
    expect(typeof first.events[0]!.data.timestamp).toBe("string");

    // The client dropped after 5; it reconnects with Last-Event-ID: 5 (it overrides from).
    for (let i = 7; i <= 8; i++) await put("wa", `k${i}`, i);
    const again = await watch("wa", "?from=0", (e) => e.length >= 3, { "last-event-id": "5" });
    expect(again.events.map((e) => e.id)).toEqual([6, 7, 8]);
    expect(again.events.map((e) => e.data.changes)).toEqual([[["k6", 6]], [["k7", 7]], [["k8", 8]]]);
  });

  it("filters by prefix on the keys an entry changed (txn, delete) and starts at the applied position by default", async () => {
    expect((await call("PUT", "/v1/groups/wb", admin, { machine: "kv" })).status).toBe(201);
    await put("wb", "other/1", 1);
    const writer = (async () => {
      await new Promise((r) => setTimeout(r, 300));
      await put("wb", "user/a", "x");
      await put("wb", "other/2", 2);
      await call("POST", "/v1/groups/wb/commands", client, {
        client: "w",
        request: ++request,
        command: { op: "txn", compare: [], success: [{ op: "put", key: "other/3", value: 3 }, { op: "delete", key: "user/a" }, { op: "get", key: "user/b" }] },
      });
      await put("wb", "user/c", { deep: [1, 2] });
    })();
    const r = await watch("wb", "?prefix=user/", (e) => e.length >= 3);
    await writer;
    expect(r.events.map((e) => e.data.changes)).toEqual([[["user/a", "x"]], [["other/3", 3], ["user/a", null]], [["user/c", { deep: [1, 2] }]]]);
    // Seqs increase with gaps where entries did not touch the prefix.
    expect(r.events.map((e) => e.id)).toEqual([2, 4, 5]);
  });

  it("with an empty prefix, sends every entry that changes a key and none that changes nothing (a read in the log: an etcd probe found them sent, as with no prefix)", async () => {
    expect((await call("PUT", "/v1/groups/we", admin, { machine: "kv" })).status).toBe(201);
    await put("we", "k", 1);
    expect((await call("POST", "/v1/groups/we/commands", client, { client: "w", request: ++request, command: { op: "get", key: "k" } })).status).toBe(200);
    await put("we", "k", 2);
    const r = await watch("we", "?from=0&prefix=", (e) => e.length >= 2);
    expect(r.events.map((e) => e.id)).toEqual([1, 3]);
  });

  it("serves a read-scoped group token on its own group only", async () => {
    const t = await call("POST", "/v1/groups/wa/tokens", admin, { scope: "read", name: "watcher" });
    expect(t.status).toBe(201);
    const own = await watch("wa", "?from=7", (e) => e.length >= 1, { authorization: `Bearer ${t.body.token}` });
    expect(own.status).toBe(200);
    expect(own.events.map((e) => e.id)).toEqual([8]);
    const other = await watch("wb", "", () => true, { authorization: `Bearer ${t.body.token}` });
    expect(other.status).toBe(403);
  });

  it("ends a group token's watch once the token is revoked: no write after the revoke reaches it (the revoke's router checks before the next event; others within their 2 s cache)", async () => {
    expect((await call("PUT", "/v1/groups/wrv", admin, { machine: "kv" })).status).toBe(201);
    const t = await call("POST", "/v1/groups/wrv/tokens", admin, { scope: "read" });
    expect((await put("wrv", "before", 1)).status).toBe(200);
    const writer = (async () => {
      await new Promise((r) => setTimeout(r, 300));
      expect((await call("DELETE", `/v1/groups/wrv/tokens/${t.body.id}`, admin)).status).toBe(204);
      // Writes go on after the revoke, past the routers' 2 s cache of the token.
      for (let i = 0; i < 8; i++) {
        await new Promise((r) => setTimeout(r, 500));
        await put("wrv", `after${i}`, i);
      }
    })();
    const w = await watch("wrv", "?from=0", () => false, { authorization: `Bearer ${t.body.token}` });
    await writer;
    expect(w.ended).toBe(true);
    const keys = w.events.map((e) => e.data.changes[0][0]);
    expect(keys[0]).toBe("before");
    // Revoked through this same router: none of the writes after it (the writes within its 2 s
    // cache of the token came through, 13 in a second under a busy writer: a probe).
    expect(keys).toEqual(["before"]);
  });

  it("refuses bad input and unknown groups with the API's errors", async () => {
    expect((await watch("no-such-group", "", () => true)).status).toBe(404);
    const bad = await watch("wa", "?from=-1", () => true);
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe("bad_request");
    expect((await watch("wa", "", () => true, { "last-event-id": "abc" })).status).toBe(400);
    // Past 2^53 a number is not exact: refused as such, not as some rounded seq past the end.
    const huge = await watch("wa", "", () => true, { "last-event-id": "9999999999999999" });
    expect(huge.status).toBe(400);
    expect(huge.body.error.message).toBe("Last-Event-ID: a seq (an integer from 0 to 2^53-1)");
  });

  it("refuses a position past the end of the log: a reconnect after the group was deleted and made again", async () => {
    expect((await call("PUT", "/v1/groups/wre", admin, { machine: "kv" })).status).toBe(201);
    for (let i = 1; i <= 4; i++) expect((await put("wre", `k${i}`, i)).status).toBe(200);
    expect((await call("DELETE", "/v1/groups/wre", admin)).status).toBe(204);
    expect((await call("PUT", "/v1/groups/wre", admin, { machine: "kv" })).status).toBe(201);
    expect((await put("wre", "new", 1)).status).toBe(200);
    // The old stream's last id was 4: resuming after it would skip the new group's first entries.
    const resumed = await watch("wre", "", () => true, { "last-event-id": "4" });
    expect(resumed.status).toBe(400);
    expect(resumed.body.error.message).toMatch(/^Last-Event-ID: names seq 4, past the end of wre's log \(seq 1\)/);
    const ahead = await watch("wre", "?from=99", () => true);
    expect(ahead.body.error.message).toMatch(/^query.from: names seq 99/);
    // From the end itself is fine: the next entry arrives.
    const writer = (async () => {
      await new Promise((r) => setTimeout(r, 300));
      await put("wre", "next", 2);
    })();
    const live = await watch("wre", "?from=1", (e) => e.length >= 1);
    await writer;
    expect(live.events.map((e) => e.id)).toEqual([2]);
  });

  it("refuses a reconnect that names the group's earlier life, whose seq the new log holds too (the two were spliced as one stream)", async () => {
    expect((await call("PUT", "/v1/groups/wlife", admin, { machine: "kv" })).status).toBe(201);
    for (let i = 1; i <= 3; i++) expect((await put("wlife", `old${i}`, i)).status).toBe(200);
    const first = await watch("wlife", "?from=0", (e) => e.length >= 3);
    expect(first.events.map((e) => e.id), JSON.stringify([first.status, first.body, first.comments])).toEqual([1, 2, 3]);
    const life = Number(first.incarnation);
    expect(Number.isInteger(life)).toBe(true);
    expect((await call("DELETE", "/v1/groups/wlife", admin)).status).toBe(204);
    expect((await call("PUT", "/v1/groups/wlife", admin, { machine: "kv" })).status).toBe(201);
    for (let i = 1; i <= 5; i++) expect((await put("wlife", `new${i}`, i)).status).toBe(200);
    const resumed = await watch("wlife", "", () => true, { "last-event-id": "3", "x-smr-incarnation": String(life) });
    expect(resumed.status).toBe(404);
    expect(resumed.body.error.message).toMatch(/^group wlife was deleted since this watch began \(the watch followed its incarnation \d+, the group now is incarnation \d+\)/);
    // The new life's own reconnect resumes as ever.
    const next = await watch("wlife", "", (e) => e.length >= 2, { "last-event-id": "3", "x-smr-incarnation": String(life + 1) });
    expect([next.status, next.incarnation, next.events.map((e) => e.data.changes[0][0])]).toEqual([200, String(life + 1), ["new4", "new5"]]);
  });

  it("ends the stream when its replica is quarantined (the client resumes at another replica)", async () => {
    expect((await call("PUT", "/v1/groups/wc", admin, { machine: "kv", replicas: 3, locations: ["wnam", "weur", "apac"] })).status).toBe(201);
    await put("wc", "a", 1);
    // Near weur: served by r2. Quarantining r2 (the operator's repair does it first) ends the stream.
    const watching = watch("wc", "?from=0", () => false, { "x-smr-near": "weur" });
    await new Promise((r) => setTimeout(r, 500));
    await call("POST", "/v1/groups/wc/replicas/r2/repair", admin);
    const r = await watching;
    expect(r.ended).toBe(true);
    expect(r.events.map((e) => e.id)).toEqual([1]);
    // Resuming from the last id works (at whichever replica serves now).
    await put("wc", "b", 2);
    const resumed = await watch("wc", "", (e) => e.length >= 1, { "last-event-id": "1", "x-smr-near": "weur" });
    expect(resumed.events.map((e) => e.id)).toEqual([2]);
  });

  it("ends the stream of a replica cut off from its sequencer; the reconnect resumes at one in contact with no gap", async () => {
    expect((await call("PUT", "/v1/groups/wd", admin, { machine: "kv", replicas: 3, locations: ["wnam", "weur", "apac"] })).status).toBe(201);
    await put("wd", "a", 1);
    // Near weur: served by r2. Then r2 is cut off: the group writes on with r1 and r3.
    const watching = watch("wd", "?from=0", () => false, { "x-smr-near": "weur" }, 40_000);
    await new Promise((r) => setTimeout(r, 500));
    const cutMs = Date.now();
    expect((await call("POST", "/v1/groups/wd/faults", admin, { target: "r2", fault: "unreachable" })).status).toBe(200);
    try {
      for (const [k, v] of [["b", 2], ["c", 3]] as const) expect((await put("wd", k, v)).status).toBe(200);
      const r = await watching;
      expect(r.ended).toBe(true); // it used to carry keepalives as long as the fault lasted
      expect(Date.now() - cutMs).toBeGreaterThanOrEqual(9_000); // watchSilenceMs, not a dropped connection
      expect(r.events.map((e) => e.id)).toEqual([1]);
      expect(r.comments.at(-1)).toMatch(/^: this replica has heard nothing from its sequencer for \d+ s: reconnect with Last-Event-ID/);
      const resumed = await watch("wd", "", (e) => e.length >= 2, { "last-event-id": "1", "x-smr-near": "weur" });
      expect(resumed.events.map((e) => e.id)).toEqual([2, 3]);
      expect(resumed.events.map((e) => e.data.changes)).toEqual([[["b", 2]], [["c", 3]]]);
    } finally {
      await call("POST", "/v1/groups/wd/faults", admin, { target: "r2", fault: "none" });
    }
  }, 60_000);
});
