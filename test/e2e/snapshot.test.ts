// Snapshot and restore (API.md) against the real server: 100,000 keys round-trip, the restored
// group's replicas hold the file's digest and the audit agrees, reads see the rows, writes go on
// from there; a corrupted or malformed file, or one with rows its machine could never write, is
// refused naming the line, and nothing is restored.
import { describe, expect, it } from "vitest";
import { bytesToHex, xorInto } from "../../shared/protocol/hash.js";
import { rowHash } from "../../shared/protocol/state.js";
import { serverFixture } from "../support/fixture.js";

const server = serverFixture("snapshot");
const { admin, client, call } = server;

async function raw(method: string, path: string, body?: string) {
  const res = await fetch(server.url() + path, { method, headers: { authorization: `Bearer ${admin}`, "content-type": "application/x-ndjson" }, body, signal: AbortSignal.timeout(120_000) });
  return { status: res.status, text: await res.text(), headers: res.headers };
}

const keys = 100_000;

/** A snapshot file of these rows (in key order), its digest computed as the replicas compute theirs. */
function fileOf(machine: string, rows: [string, unknown][]): string {
  const acc = new Uint8Array(32);
  const lines: string[] = [];
  for (const [key, v] of rows) {
    const value = JSON.stringify(v);
    xorInto(acc, rowHash(`m/${key}`, value));
    lines.push(`[${JSON.stringify(key)},${value}]`);
  }
  return [JSON.stringify({ group: "made", machine, seq: 0, rows: rows.length, digest: bytesToHex(acc) }), ...lines].join("\n") + "\n";
}

/** A kv snapshot file of n keys. */
function madeFile(n: number): string {
  return fileOf("kv", Array.from({ length: n }, (_, i) => [`key/${String(i).padStart(6, "0")}`, { n: i }]));
}

describe("snapshot and restore", () => {
  it("round-trips 100,000 keys: digests equal the file's everywhere, the audit agrees, reads and writes work", async () => {
    // The source group is loaded by a restore of a made-up file (loading 100,000 keys by commands
    // takes minutes here), then written to, then snapshotted: the round trip under test.
    expect((await call("PUT", "/v1/groups/snap-src", admin, { machine: "kv" })).status).toBe(201);
    const made = madeFile(keys);
    const loaded = await raw("POST", "/v1/groups/snap-src/restore", made);
    expect(loaded.status, loaded.text).toBe(200);
    for (let i = 0; i < 3; i++) {
      const w = await call("POST", "/v1/groups/snap-src/commands", client, { client: "w", request: i + 1, command: { op: "put", key: `key/${String(i).padStart(6, "0")}`, value: { n: i, again: true } } });
      expect(w.status).toBe(200);
    }

    // Writes go on while the snapshot is taken: they are not in it (it is the state at its seq).
    const snap = raw("GET", "/v1/groups/snap-src/snapshot");
    const during = call("POST", "/v1/groups/snap-src/commands", client, { client: "late", request: 1, command: { op: "put", key: "zz-late", value: 1 } });
    const [file] = await Promise.all([snap, during]);
    expect(file.status).toBe(200);
    expect(file.headers.get("content-type")).toBe("application/x-ndjson");
    const lines = file.text.trimEnd().split("\n");
    const header = JSON.parse(lines[0]!);
    expect(header).toMatchObject({ group: "snap-src", machine: "kv", rows: lines.length - 1 });
    // The state at header.seq exactly: the late write is in it if and only if it was ordered by then.
    const late = (await during).body;
    expect(Number.isSafeInteger(late.seq)).toBe(true);
    const lateIn = late.seq <= header.seq;
    expect(header.rows).toBe(lateIn ? keys + 1 : keys);
    expect(lines.some((l) => l.startsWith('["zz-late",'))).toBe(lateIn);
    expect(header.seq).toBeGreaterThanOrEqual(4);
    expect(JSON.parse(lines[1]!)).toEqual(["key/000000", { n: 0, again: true }]);
    expect(JSON.parse(lines[4]!)).toEqual(["key/000003", { n: 3 }]);

    expect((await call("PUT", "/v1/groups/snap-dst", admin, { machine: "kv" })).status).toBe(201);
    const restored = await raw("POST", "/v1/groups/snap-dst/restore", file.text);
    expect(restored.status, restored.text).toBe(200);
    expect(JSON.parse(restored.text)).toMatchObject({ group: "snap-dst", machine: "kv" });
    expect(JSON.parse(restored.text).replicas.map((r: any) => [r.digest, r.appliedSeq])).toEqual(Array(3).fill([header.digest, 1]));

    const replicas = (await call("GET", "/v1/groups/snap-dst/replicas", client)).body.replicas;
    expect(replicas.map((r: any) => r.digest)).toEqual([header.digest, header.digest, header.digest]);
    const audit = await call("POST", "/v1/groups/snap-dst/audit", admin);
    expect(audit.body.verdict).toBe("consistent");
    expect((await call("POST", "/v1/groups/snap-dst/query", client, { query: { op: "get", key: "key/054321" } })).body.result).toEqual({ value: { n: 54321 } });
    expect((await call("POST", "/v1/groups/snap-dst/query", client, { query: { op: "get", key: "key/000002" } })).body.result).toEqual({ value: { n: 2, again: true } });
    const page = await call("POST", "/v1/groups/snap-dst/query", client, { query: { op: "list", prefix: "key/09999", limit: 1000 }, consistency: "sequential" });
    expect(page.body.result.items).toHaveLength(10);

    // The group goes on from the restored state, and a second restore into it is a conflict.
    const w = await call("POST", "/v1/groups/snap-dst/commands", client, { client: "after", request: 1, command: { op: "incr", key: "key/000001", by: 1 } });
    expect(w.body.output).toEqual({ error: "not_integer" });
    const put = await call("POST", "/v1/groups/snap-dst/commands", client, { client: "after", request: 2, command: { op: "put", key: "new", value: true } });
    expect(put.status).toBe(200);
    expect((await raw("POST", "/v1/groups/snap-dst/restore", file.text)).status).toBe(409);
  }, 180_000);

  it("refuses a corrupted or malformed file naming the line, and restores nothing", async () => {
    expect((await call("PUT", "/v1/groups/snap-a", admin, { machine: "kv" })).status).toBe(201);
    for (let i = 0; i < 5; i++) expect((await call("POST", "/v1/groups/snap-a/commands", client, { client: "c", request: i + 1, command: { op: "put", key: `k${i}`, value: i } })).status).toBe(200);
    // HEADs (a monitor's, a proxy's) take no frozen copy: each replica allows two at a time, and
    // the HEADs' copies were never released, so the GET after them answered 503 for a minute.
    for (let i = 0; i < 8; i++) {
      const head = await raw("HEAD", "/v1/groups/snap-a/snapshot");
      expect([head.status, head.headers.get("content-type")]).toEqual([200, "application/x-ndjson"]);
    }
    const file = (await raw("GET", "/v1/groups/snap-a/snapshot")).text;
    expect((await call("PUT", "/v1/groups/snap-b", admin, { machine: "kv" })).status).toBe(201);

    const lines = file.trimEnd().split("\n");
    const tampered = [...lines.slice(0, 3), '["k2",999]', ...lines.slice(4)].join("\n");
    const digest = await raw("POST", "/v1/groups/snap-b/restore", tampered);
    expect(digest.status).toBe(400);
    expect(JSON.parse(digest.text).error.message).toMatch(/^line 1: header\.digest/);
    // After a blank first line the header is line 2, and the message says so (it said line 1).
    expect(JSON.parse((await raw("POST", "/v1/groups/snap-b/restore", "\n" + tampered)).text).error.message).toMatch(/^line 2: header\.digest/);

    const broken = [...lines.slice(0, 4), '["k3", 3', ...lines.slice(5)].join("\n");
    const malformed = JSON.parse((await raw("POST", "/v1/groups/snap-b/restore", broken)).text);
    expect(malformed.error).toEqual({ code: "bad_request", message: "line 5: malformed JSON" });

    const unordered = [lines[0], lines[2], lines[1], ...lines.slice(3)].join("\n");
    expect(JSON.parse((await raw("POST", "/v1/groups/snap-b/restore", unordered)).text).error.message).toMatch(/^line 3: keys must be in increasing/);

    const short = lines.slice(0, 4).join("\n");
    expect(JSON.parse((await raw("POST", "/v1/groups/snap-b/restore", short)).text).error.message).toMatch(/announces 5 rows, the file has 3/);

    expect((await call("PUT", "/v1/groups/snap-bank", admin, { machine: "bank" })).status).toBe(201);
    expect((await raw("POST", "/v1/groups/snap-bank/restore", file)).status).toBe(409);

    // Nothing was restored by the refused files; the group is still empty and takes the good one.
    expect((await call("POST", "/v1/groups/snap-b/query", client, { query: { op: "list" } })).body.result.items).toEqual([]);
    // With blank lines after the last row (an editor's or `echo`'s newline): skipped, not malformed JSON.
    expect((await raw("POST", "/v1/groups/snap-b/restore", file + "\n\r\n")).status).toBe(200);
    expect((await call("POST", "/v1/groups/snap-b/query", client, { query: { op: "list" } })).body.result.items).toEqual([0, 1, 2, 3, 4].map((i) => [`k${i}`, i]));
    // The restored state stands in for the log before it: a read from seq 1 is 410, naming where the log starts.
    const log = await call("GET", "/v1/groups/snap-b/log?from=1", admin);
    expect(log.status).toBe(410);
    expect(log.body.error.message).toMatch(/firstSeq \(\d+\)$/);
    const first = Number(/firstSeq \((\d+)\)$/.exec(log.body.error.message)![1]);
    // With no entry after the restored state yet, a read from there (or with no from) is an empty page, not a 503.
    for (const q of ["", `?from=${first}`]) {
      const empty = await call("GET", `/v1/groups/snap-b/log${q}`, admin);
      expect(empty.status, JSON.stringify(empty.body)).toBe(200);
      expect(empty.body).toMatchObject({ firstSeq: first, lastSeq: first - 1, entries: [] });
    }
    expect((await call("POST", "/v1/groups/snap-b/commands", client, { client: "w", request: 1, command: { op: "put", key: "after", value: 1 } })).status).toBe(200);
    const next = await call("GET", "/v1/groups/snap-b/log", admin);
    expect(next.body).toMatchObject({ firstSeq: first, lastSeq: first });
    expect(next.body.entries.map((e: { seq: number }) => e.seq)).toEqual([first]);
  });

  it("refuses rows the machine could never have written, naming the line, and restores the good ones", async () => {
    // Each file is well formed and its digest matches: only the machine's own rules refuse it.
    // Before, a bank balance "lots" restored with a 200 and every balances query then answered 503.
    const refused: [string, [string, unknown][], RegExp][] = [
      ["bank", [["a", 10], ["b", "lots"]], /^line 3: the balance of "b": a safe integer >= 0$/],
      ["bank", [["a", -5]], /^line 2: the balance of "a"/],
      ["bank", [["a", 1.5]], /^line 2: the balance of "a"/],
      ["bank", [["x".repeat(129), 1]], /^line 2: account: longer than 128 characters$/],
      ["kv", [["k".repeat(600), 1]], /^line 2: key: longer than 512 bytes$/],
      ["kv", [["k", "v".repeat(70_000)]], /^line 2: value: larger than 65536 bytes serialized$/],
      ["kv", [["k", 1]], /^line 2 value: the number 1e309 is out of range/], // 1e309 in the file (below): it parses as Infinity
      ["lock", [["l/door", { holder: "ann", token: 0, expiresAt: "2026-01-01T00:00:00.000Z" }]], /^line 2: the lease of "l\/door"\.token/],
      ["lock", [["l/door", { holder: "ann", token: 1, expiresAt: "soon" }]], /^line 2: the lease of "l\/door"\.expiresAt/],
      ["lock", [["other", 1]], /^line 2: key: "token" or "l\/"/],
      // Across rows: a lease's token above the counter, so the next grant would repeat it (fencing).
      ["lock", [["l/door", { holder: "ann", token: 9, expiresAt: "2026-01-01T00:00:00.000Z" }], ["token", 3]], /^the file: the counter "token" \(3\) is below the token 9 of "l\/door"/],
      ["lock", [["l/a", { holder: "ann", token: 1, expiresAt: "2026-01-01T00:00:00.000Z" }]], /^the file: the counter "token" \(0\) is below the token 1 of "l\/a"/],
      // Two leases with one token: tokens strictly increase across all grants (a fencing token names one grant).
      ["lock", [["l/a", { holder: "ann", token: 2, expiresAt: "2026-01-01T00:00:00.000Z" }], ["l/b", { holder: "bob", token: 2, expiresAt: "2026-01-01T00:00:00.000Z" }], ["token", 5]], /^the file: the token 2 is held by both "l\/a" and "l\/b"/],
    ];
    for (const [i, [machine, rows, message]] of refused.entries()) {
      const group = `snap-bad-${i}`;
      expect((await call("PUT", `/v1/groups/${group}`, admin, { machine })).status).toBe(201);
      const file = fileOf(machine, rows);
      const r = await raw("POST", `/v1/groups/${group}/restore`, message.source.includes("out of range") ? file.replace('["k",1]', '["k",1e309]') : file);
      expect(r.status, r.text).toBe(400);
      expect(JSON.parse(r.text).error.message).toMatch(message);
    }
    // The refused bank group is still empty, answers its query and takes a good file.
    const query = await call("POST", "/v1/groups/snap-bad-0/query", client, { query: { op: "balances" } });
    expect(query.body.result).toEqual({ accounts: {}, total: 0 });
    const good = await raw("POST", "/v1/groups/snap-bad-0/restore", fileOf("bank", [["a", 10], ["b", 32]]));
    expect(good.status, good.text).toBe(200);
    const after = await call("POST", "/v1/groups/snap-bad-0/query", client, { query: { op: "balances" } });
    expect(after.body.result).toEqual({ accounts: { a: 10, b: 32 }, total: 42 });
    const lease = { holder: "ann", token: 7, expiresAt: "2026-01-01T00:00:00.000Z" };
    const locks = await raw("POST", "/v1/groups/snap-bad-7/restore", fileOf("lock", [["l/door", lease], ["token", 7]]));
    expect(locks.status, locks.text).toBe(200);
    expect((await call("POST", "/v1/groups/snap-bad-7/query", client, { query: { op: "get", lock: "door" } })).body.result).toEqual(lease);
  });

  it("a restore whose group is deleted while it uploads ends with 404 (or 409 that says the name was created again meanwhile: its 503 'start again' sent the file into the new group), not a 500; the re-created group holds none of it", async () => {
    expect((await call("PUT", "/v1/groups/snap-del", admin, { machine: "kv" })).status).toBe(201);
    const text = fileOf("kv", Array.from({ length: 3_000 }, (_, i): [string, unknown] => [`k${String(i).padStart(5, "0")}`, "z".repeat(100)]));
    const cut = text.indexOf("\n", Math.floor(text.length / 2)) + 1; // past the first page of 1,000 rows
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const encoder = new TextEncoder();
    const body = new ReadableStream<Uint8Array>({
      async start(c) {
        c.enqueue(encoder.encode(text.slice(0, cut)));
        await held;
        c.enqueue(encoder.encode(text.slice(cut)));
        c.close();
      },
    });
    const upload = fetch(server.url() + "/v1/groups/snap-del/restore", {
      method: "POST",
      headers: { authorization: `Bearer ${admin}`, "content-type": "application/x-ndjson" },
      body,
      duplex: "half",
      signal: AbortSignal.timeout(60_000),
    } as RequestInit);
    // The first half is staged (commands wait for a restore: a write answers 503 meanwhile).
    const deadline = Date.now() + 20_000;
    while ((await call("POST", "/v1/groups/snap-del/commands", client, { client: "c", request: 1, command: { op: "put", key: "x", value: 1 } })).status !== 503) {
      if (Date.now() > deadline) throw new Error("the restore never started");
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 500));
    expect((await call("DELETE", "/v1/groups/snap-del", admin)).status).toBe(204);
    expect((await call("PUT", "/v1/groups/snap-del", admin, { machine: "kv" })).status).toBe(201);
    release();
    const res = await upload;
    const answer = await res.text();
    expect([404, 409], answer).toContain(res.status);
    if (res.status === 409) expect(answer).toMatch(/was deleted and created again during the restore: nothing was restored/);
    expect((await call("POST", "/v1/groups/snap-del/query", client, { query: { op: "list" } })).body.result.items).toEqual([]);
    expect((await call("POST", "/v1/groups/snap-del/audit", admin)).body.verdict).toBe("consistent");
  });
});
