// The CLI's watch, batch, txn, snapshot/restore and metrics, run as a child process against the
// built worker (API.md "Batches", "Transactions", "Watch", "Snapshot and restore", "Metrics").
import { closeSync, existsSync, lstatSync, mkdirSync, openSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serverFixture } from "../support/fixture.js";
import { downUrl, smr, smrBin, smrEnv, smrOk, smrSpawn } from "../support/smr.js";
import { execFile, spawn } from "node:child_process";

/** Every step starts a CLI process (about a second of tsx start-up on a busy machine). */
const cliTestMs = 240_000;
const f = serverFixture("cli-features", { faults: true }); // faults: a replica cut off for the groups' health
let dir: string;
let bare: string;
type RunOpts = { cwd: string; env?: Record<string, string> };
const admin = (): RunOpts => ({ cwd: bare, env: { SMR_URL: f.url(), SMR_TOKEN: f.admin } });
const client = (): RunOpts => ({ cwd: bare, env: { SMR_URL: f.url(), SMR_TOKEN: f.client } });
const json = async (args: string[], opts: RunOpts = admin()) => JSON.parse(await smrOk([...args, "--json"], opts));

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "smr-cli-features-"));
  bare = join(dir, "bare");
  mkdirSync(bare);
  writeFileSync(join(bare, "package.json"), "{}\n");
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function appliedEverywhere(group: string, seq: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const { body } = await f.call("GET", `/v1/groups/${group}/replicas`, f.admin);
    if (body.replicas.every((r: { appliedSeq: number }) => r.appliedSeq >= seq)) return;
    if (Date.now() > deadline) throw new Error(`replicas of ${group} did not apply ${seq}: ${JSON.stringify(body)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("smr watch", () => {
  it("prints each committed entry after --from as it happens, one JSON line per event, until interrupted", async () => {
    await smrOk(["groups", "create", "cli-watch"], admin());
    await smrOk(["put", "cli-watch", "before", "0"], client());
    const { commitSeq } = await json(["groups", "status", "cli-watch"], client());
    const watch = smrSpawn(["watch", "cli-watch", "--from", String(commitSeq), "--json"], client());
    try {
      for (const [i, key] of ["a", "b", "c"].entries()) await smrOk(["put", "cli-watch", key, String(i + 1)], client());
      const events = (await watch.waitLines(3)).map((l) => JSON.parse(l));
      expect(events.map((e) => e.changes)).toEqual([[["a", 1]], [["b", 2]], [["c", 3]]]);
      expect(events.map((e) => e.seq)).toEqual([commitSeq + 1, commitSeq + 2, commitSeq + 3]);
      expect(events[0]).toMatchObject({ kind: "command", command: { op: "put", key: "a", value: 1 }, output: { previous: null } });
    } finally {
      watch.child.kill("SIGINT");
    }
    // It dies by the signal, as every command does, so a shell loop stops (it exited 0: a probe).
    expect(await watch.exited).toBe(null);
    expect(watch.child.signalCode).toBe("SIGINT");
  }, cliTestMs);

  it("with --prefix prints only the entries that change such a key, as `seq  key=value` lines", async () => {
    await smrOk(["groups", "create", "cli-watch-p"], admin());
    await smrOk(["put", "cli-watch-p", "user/1", '"ada"'], client());
    await smrOk(["put", "cli-watch-p", "other", "1"], client());
    await smrOk(["put", "cli-watch-p", "user/2", '{"n":2}'], client());
    await smrOk(["del", "cli-watch-p", "user/1"], client());
    const watch = smrSpawn(["watch", "cli-watch-p", "--from", "0", "--prefix", "user/"], client());
    try {
      expect(await watch.waitLines(3)).toEqual(["1  user/1=\"ada\"", "3  user/2={\"n\":2}", "4  user/1=null"]);
    } finally {
      watch.child.kill("SIGTERM");
    }
    expect(await watch.exited).toBe(null);
    expect(watch.child.signalCode).toBe("SIGTERM");
  }, cliTestMs);

  it("says on stderr when it cannot reach the server and keeps trying until interrupted", async () => {
    const url = await downUrl();
    const watch = smrSpawn(["watch", "cli-watch-down"], { cwd: bare, env: { SMR_URL: url, SMR_TOKEN: f.client } });
    const deadline = Date.now() + 30_000;
    while ((watch.output().stderr.match(/reconnecting/g) ?? []).length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    watch.child.kill("SIGINT");
    expect(await watch.exited).toBe(null);
    expect(watch.child.signalCode).toBe("SIGINT");
    expect(watch.output().stderr).toMatch(new RegExp(`^watch: .*${url.replace(/\./g, "\\.")}.*; reconnecting in \\d+ ms\nwatch: `));
    expect(watch.output().stdout).toBe("");
  }, cliTestMs);

  it("with --retry-for gives up after failing to connect that long, exit 1 (it retried for ever, the flag ignored: a probe)", async () => {
    const startMs = Date.now();
    const url = await downUrl();
    const r = await smr(["watch", "cli-watch-down", "--retry-for", "2"], { cwd: bare, env: { SMR_URL: url, SMR_TOKEN: f.client } });
    expect(r.code).toBe(1);
    // It says how long it failed and why it stopped there, not that it failed for the whole 2 s (a probe).
    expect(r.stderr).toMatch(/error: network: watch: no stream for (0|1)\.\d s, and the next try, in \d+ ms, would come after --retry-for's 2 s: /);
    expect(r.stderr).toContain(url);
    expect(Date.now() - startMs).toBeLessThan(30_000);
    // No pause goes past the 2 s (it paused once more, as long as all before it, then gave up).
    const pausesMs = [...r.stderr.matchAll(/reconnecting in (\d+) ms/g)].map((m) => Number(m[1]));
    expect(pausesMs.length).toBeGreaterThan(1);
    expect(pausesMs.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(2000);
  }, cliTestMs);

  it("with --retry-for and --json gives up with a network failure's document (it was `\"code\": \"error\"` with no status: a probe)", async () => {
    const url = await downUrl();
    const r = await smr(["watch", "cli-watch-down", "--retry-for", "1", "--json"], { cwd: bare, env: { SMR_URL: url, SMR_TOKEN: f.client } });
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toEqual({ error: { status: 0, code: "network", message: expect.stringMatching(/^watch: no stream for /) } });
  }, cliTestMs);

  it("ends with the API's error for a group that does not exist", async () => {
    const r = await smr(["watch", "cli-watch-none"], client());
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: 404 not_found: /);
  }, cliTestMs);
});

describe("smr batch and txn", () => {
  it("submits the commands of an NDJSON file in one request, in order, each exactly once", async () => {
    await smrOk(["groups", "create", "cli-batch"], admin());
    const file = join(dir, "five.ndjson");
    const commands = [
      { op: "put", key: "a", value: 1 },
      { op: "put", key: "b", value: 2 },
      { op: "incr", key: "c", by: 3 },
      { op: "get", key: "a" },
      { op: "delete", key: "b" },
    ];
    writeFileSync(file, commands.map((c) => JSON.stringify(c)).join("\n") + "\n");
    const args = ["batch", "cli-batch", file, "--client", "batch-1"];
    const r = await json(args, client());
    expect(r.results.map((x: { output: unknown }) => x.output)).toEqual([{ previous: null }, { previous: null }, { value: 3 }, { value: 1 }, { deleted: true }]);
    const seqs = r.results.map((x: { seq: number }) => x.seq);
    expect([...seqs].sort((x: number, y: number) => x - y)).toEqual(seqs);
    expect(new Set(seqs).size).toBe(5);
    expect(r.bookmark).toEqual(expect.any(String));
    // The same file with the same client: the same request ids, so answered again, executed once,
    // and each answer says it ran before (a rerun printed old answers as new work: a review).
    expect(await json(args, client())).toMatchObject({ results: r.results.map((x: object) => ({ ...x, replayed: true })) });
    expect((await json(["get", "cli-batch", "c"], client())).result).toEqual({ value: 3 });
    const rerun = await smr(["batch", "cli-batch", file, "--client", "batch-1"], client());
    expect(rerun.code).toBe(0);
    expect(rerun.stdout).toMatch(/│ 3 +│ 3 +│ \d+ +│ \(replayed: ran before\) \{"value":3\} +│/);
    expect(rerun.stderr).toContain("5 of 5 commands had run before under this client and request id: their recorded answers, nothing ran now");
    const putAgain = await smrOk(["exec", "cli-batch", JSON.stringify(commands[0]), "--client", "batch-1", "--request", "1"], client());
    expect(putAgain).toMatch(/replayed +│ yes: this client and request ran before \(seq \d+\); its recorded answer, nothing ran now/);

    // A JSON array of {request, command} items, shown as a table.
    const items = join(dir, "items.json");
    writeFileSync(items, JSON.stringify([{ request: 10, command: { op: "incr", key: "c", by: 1 } }, { command: { op: "put", key: "d", value: "x" } }]));
    const table = await smrOk(["batch", "cli-batch", items], client());
    expect(table).toMatch(/│ 1 +│ 10 +│ \d+ +│ \{"value":4\} +│/);
    expect(table).toMatch(/│ 2 +│ 11 +│ \d+ +│ \{"previous":null\} +│/);

    // A request id reused with another command is that command's own 409; the others run; exit 1.
    const mixed = join(dir, "mixed.ndjson");
    writeFileSync(mixed, [JSON.stringify({ request: 1, command: { op: "put", key: "a", value: "other" } }), JSON.stringify({ request: 6, command: { op: "put", key: "f", value: 6 } })].join("\n"));
    const partly = await smr(["batch", "cli-batch", mixed, "--client", "batch-1", "--json"], client());
    expect(partly.code).toBe(1);
    expect(JSON.parse(partly.stdout).results).toMatchObject([{ error: { code: "conflict" } }, { output: { previous: null } }]);
    expect(partly.stderr).toContain("error: of 2 commands, 1 failed");
    // Only a conflict: no bookmark line (it printed one at position 0, before any write).
    writeFileSync(mixed, JSON.stringify({ request: 1, command: { op: "put", key: "a", value: "other" } }));
    const none = await smr(["batch", "cli-batch", mixed, "--client", "batch-1"], client());
    expect([none.code, none.stdout]).toEqual([1, expect.stringContaining("conflict")]);
    expect(none.stdout).not.toMatch(/bookmark/);

    // More than one request's worth (256): several requests, in order, each command once (it was refused, a probe).
    const many = join(dir, "many.ndjson");
    writeFileSync(many, Array.from({ length: 600 }, (_, i) => JSON.stringify({ op: "incr", key: "many", by: 1 + (i % 2) })).join("\n"));
    const big = await json(["batch", "cli-batch", many, "--client", "batch-many"], client());
    expect(big.results).toHaveLength(600);
    const bigSeqs = big.results.map((x: { seq: number }) => x.seq);
    expect(bigSeqs.every((seq: number, i: number) => i === 0 || seq > bigSeqs[i - 1])).toBe(true);
    expect(big.results.at(-1).output).toEqual({ value: 900 });
    expect((await json(["batch", "cli-batch", many, "--client", "batch-many"], client())).results.every((x: { replayed?: boolean }) => x.replayed)).toBe(true);
    expect((await json(["get", "cli-batch", "many"], client())).result).toEqual({ value: 900 });

    // One invalid command: a 400 and nothing ordered.
    writeFileSync(file, [JSON.stringify({ op: "put", key: "e", value: 1 }), JSON.stringify({ op: "nope" })].join("\n"));
    const bad = await smr(["batch", "cli-batch", file], client());
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^error: 400 bad_request: /);
    // The API counts its commands from 0; the file's from 1 (the second read as ".1", a probe).
    expect(bad.stderr).toContain("body.commands.1.command");
    expect(bad.stderr).toContain("(the file's command 2)");
    expect((await json(["get", "cli-batch", "e"], client())).result).toEqual({ value: null });
  }, cliTestMs);

  it("runs a txn's success branch when its compares hold and its failure branch otherwise", async () => {
    await smrOk(["groups", "create", "cli-txn"], admin());
    const txn = JSON.stringify({
      compare: [{ key: "lock", value: null }],
      success: [{ op: "put", key: "lock", value: "me" }, { op: "incr", key: "n", by: 1 }],
      failure: [{ op: "get", key: "lock" }],
    });
    const first = await json(["txn", "cli-txn", txn], client());
    expect(first.output).toEqual({ succeeded: true, results: [{ previous: null }, { value: 1 }] });
    const file = join(dir, "txn.json");
    writeFileSync(file, txn);
    const second = await smrOk(["txn", "cli-txn", "--file", file], client());
    expect(second).toMatch(/│ succeeded +│ false +│/);
    expect(second).toMatch(/│ 1 +│ \{"value":"me"\} +│/);
    expect((await json(["get", "cli-txn", "n"], client())).result).toEqual({ value: 1 });
    // A command given as a txn by mistake is refused, not run as an empty txn that "succeeded".
    const mistaken = await smr(["txn", "cli-txn", JSON.stringify({ op: "put", key: "k", value: 3 })], client());
    expect(mistaken.code).toBe(2);
    expect(mistaken.stderr).toMatch(/a txn is an object \{compare, success, failure\}.*got "op", "key", "value"/);
    expect((await json(["get", "cli-txn", "k"], client())).result).toEqual({ value: null });
    // `list` is kv's; on another machine it says so instead of failing on the answer's shape.
    await smrOk(["groups", "create", "cli-locks", "--machine", "lock"], admin());
    const locks = await smr(["list", "cli-locks"], client());
    expect(locks.code).toBe(2);
    expect(locks.stderr).toMatch(/cli-locks is not a kv group/);
    // A name that cannot be a group's is a usage error (exit 2) of every command taking one: nothing was sent.
    for (const args of [["groups", "status", "BAD"], ["get", "Bad_name", "k"], ["watch", "x_y"]]) {
      const bad = await smr(args, client());
      expect(bad.code, args.join(" ")).toBe(2);
      expect(bad.stderr, args.join(" ")).toMatch(/invalid for argument 'group'\. not a group name/);
    }
  }, cliTestMs);
});

describe("smr snapshot and restore", () => {
  it("saves a snapshot to a file and restores it into a new, empty group that then reads the same values", async () => {
    const created = await smrOk(["groups", "create", "cli-snap", "--outputs", "majority", "--checkpoint-every", "50", "--session-idle", "3600", "--storage-quota", "64"], admin());
    expect(created).toMatch(/sessionIdle +│ 1 h /);
    const values: Record<string, unknown> = { a: 1, "b/c": { x: [1, 2] }, d: "text", e: true };
    for (const [k, v] of Object.entries(values)) await smrOk(["put", "cli-snap", k, JSON.stringify(v)], client());
    const { seq: lastSeq } = await json(["del", "cli-snap", "d"], client());
    delete values.d;
    // A snapshot is taken at one healthy replica's applied position: wait until every replica has
    // applied the writes, so the snapshot holds all of them whichever replica serves it.
    await appliedEverywhere("cli-snap", lastSeq);

    const file = join(dir, "cli-snap.ndjson");
    const saved = await json(["snapshot", "cli-snap", "-o", file]);
    expect(saved.header).toMatchObject({ group: "cli-snap", machine: "kv", rows: expect.any(Number), digest: expect.stringMatching(/^[0-9a-f]+$/) });
    expect(saved.header.seq).toBeGreaterThanOrEqual(lastSeq);
    const lines = readFileSync(file, "utf8").split("\n").filter((l) => l.length > 0);
    expect(lines).toHaveLength(saved.header.rows + 1);
    expect(saved.bytes).toBe(readFileSync(file).length);
    // On a terminal (script(1) gives it one), -o shows the rows downloaded against the header's
    // count (it showed nothing for minutes on a large group, a probe); the file is the same.
    const shown = join(dir, "cli-snap-shown.ndjson");
    const tty = await new Promise<string>((resolve) =>
      execFile("script", ["-qec", `"${process.execPath}" "${smrBin}" snapshot cli-snap -o "${shown}"`, "/dev/null"], { cwd: bare, env: smrEnv(admin().env), encoding: "utf8" }, (_err, stdout) => resolve(stdout)),
    );
    expect(tty).toMatch(new RegExp(`snapshot \\|.*\\| 100% ${saved.header.rows}/${saved.header.rows} rows`));
    expect(readFileSync(shown, "utf8").split("\n").slice(1)).toEqual(readFileSync(file, "utf8").split("\n").slice(1));
    // To stdout: the same state.
    const out = (await smrOk(["snapshot", "cli-snap"], admin())).split("\n").filter((l) => l.length > 0);
    expect(out.slice(1)).toEqual(lines.slice(1));
    // A failed snapshot leaves an earlier backup of that name as it was, and no partial file.
    const before = readFileSync(file, "utf8");
    const missing = await smr(["snapshot", "no-such-group", "-o", file], admin());
    expect(missing.code).toBe(1);
    expect(readFileSync(file, "utf8")).toBe(before);
    // A 200 that is not a snapshot (a proxy's login page), or one cut inside its last row, does
    // not replace it either.
    for (const [answer, type, why] of [
      // Not the API's answer (no NDJSON type): refused before anything is written.
      ["<html>login page</html>\n", "text/html", /200 not_api: not an answer of the API \(text\/html\): login page/],
      ["<html>login page</html>\n", "application/x-ndjson", /the download is not a snapshot/],
      ['{"group":"x","machine":"kv","seq":2,"rows":2,"digest":"00"}\n["a",1]\n["b",{"x":', "application/x-ndjson", /ends inside a line/],
      ['{"group":"x","machine":"kv","seq":2,"rows":3,"digest":"00"}\n["a",1]\n', "application/x-ndjson", /has 1 rows where its header says 3/],
    ] as const) {
      const other = createServer((_req, res) => (res.setHeader("content-type", type), res.end(answer)));
      await new Promise<void>((resolve) => other.listen(0, "127.0.0.1", resolve));
      const env = { SMR_URL: `http://127.0.0.1:${(other.address() as AddressInfo).port}`, SMR_TOKEN: "x" };
      const r = await smr(["snapshot", "cli-snap", "-o", file], { cwd: bare, env });
      // To stdout (`> file`) it is written as it comes, then said and exit 1: it exited 0 (a review).
      const piped = await smr(["snapshot", "cli-snap"], { cwd: bare, env });
      other.close();
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(why);
      expect(readFileSync(file, "utf8")).toBe(before);
      expect(piped.code).toBe(1);
      expect(piped.stderr).toMatch(why);
      if (type !== "text/html") expect(piped.stderr).toMatch(/what was written to stdout is not a whole snapshot: do not keep it/);
      else expect(piped.stdout).toBe("");
    }
    // One cut off by the server before its end (as a replica whose rows do not match its digest
    // is): the error says so, and the earlier file stays.
    const cutter = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      res.write('{"group":"x","machine":"kv","seq":2,"rows":2,"digest":"00"}\n["a",1]\n');
      setTimeout(() => res.socket?.destroy(), 50);
    });
    await new Promise<void>((resolve) => cutter.listen(0, "127.0.0.1", resolve));
    const cutOff = await smr(["snapshot", "cli-snap", "-o", file], { cwd: bare, env: { SMR_URL: `http://127.0.0.1:${(cutter.address() as AddressInfo).port}`, SMR_TOKEN: "x" } });
    cutter.close();
    expect(cutOff.code).toBe(1);
    expect(cutOff.stderr).toMatch(/the download was cut off after \d+ bytes .*download it again/);
    expect(readFileSync(file, "utf8")).toBe(before);
    // One over what a restore takes (64 MiB) is kept, with a warning that it cannot be restored
    // (a probe's 80 MB bank snapshot was refused only at its restore).
    const value = "v".repeat(64 * 1024);
    const rows = 1_030;
    const large = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      res.write(`{"group":"x","machine":"kv","seq":${rows},"rows":${rows},"digest":"00"}\n`);
      let i = 0;
      const more = (): void => {
        while (i < rows) if (!res.write(`["k${i++}","${value}"]\n`)) return void res.once("drain", more);
        res.end();
      };
      more();
    });
    await new Promise<void>((resolve) => large.listen(0, "127.0.0.1", resolve));
    const largeFile = join(dir, "large.ndjson");
    const tooLarge = await smr(["snapshot", "x", "-o", largeFile], { cwd: bare, env: { SMR_URL: `http://127.0.0.1:${(large.address() as AddressInfo).port}`, SMR_TOKEN: "x" } });
    large.close();
    expect(tooLarge.code, tooLarge.stderr).toBe(0);
    expect(tooLarge.stderr).toMatch(/warning: the snapshot in .*large\.ndjson is 64\.\d MiB, over the 64 MiB a restore takes: it can be kept and read, not restored/);
    rmSync(largeFile);
    const toDir = await smr(["snapshot", "cli-snap", "-o", dir], admin());
    expect(toDir.code).toBe(2);
    expect(toDir.stderr).toMatch(/is a directory/);
    expect(readdirSync(dir).filter((n) => n.includes(".partial-"))).toEqual([]);
    // A file whose first line is not a header is a usage error naming what a header holds.
    const headless = join(dir, "headless.ndjson");
    writeFileSync(headless, "null\n");
    const noHeader = await smr(["restore", "cli-snap-x", headless, "--create"], admin());
    expect(noHeader.code).toBe(2);
    expect(noHeader.stderr).toMatch(/its first line is not a snapshot header/);
    // A missing file, and --replicas without --create, are usage errors (exit 2), not stack traces.
    const missingFile = await smr(["restore", "cli-snap-x", join(dir, "nothing.ndjson")], admin());
    expect(missingFile.code).toBe(2);
    expect(missingFile.stderr).toMatch(/nothing\.ndjson: cannot be read \(ENOENT\)/);
    const replicasAlone = await smr(["restore", "cli-snap-x", file, "--replicas", "3"], admin());
    expect(replicasAlone.code).toBe(2);
    expect(replicasAlone.stderr).toMatch(/--replicas is for a group --create makes/);
    // A group that does not exist: the 404, and the way to make it.
    const noGroup = await smr(["restore", "cli-snap-x", file], admin());
    expect(noGroup.code).toBe(1);
    expect(noGroup.stderr).toMatch(/group cli-snap-x does not exist: --create makes it with the snapshot's machine \(kv\)\nerror: 404 not_found: /);

    await smrOk(["groups", "create", "cli-snap-2"], admin());
    const status = await json(["restore", "cli-snap-2", file]);
    expect(status).toMatchObject({ group: "cli-snap-2", machine: "kv" });
    for (const [k, v] of Object.entries(values)) expect((await json(["get", "cli-snap-2", k], client())).result).toEqual({ value: v });
    expect((await json(["get", "cli-snap-2", "d"], client())).result).toEqual({ value: null });
    expect((await json(["audit", "cli-snap-2"])).verdict).toBe("consistent");

    // A gzipped file (the API takes one): sent as it is, with Content-Encoding: gzip. It was
    // "its first line is not a snapshot header" (a probe).
    const packed = join(dir, "cli-snap.ndjson.gz");
    writeFileSync(packed, gzipSync(readFileSync(file)));
    expect(await json(["restore", "cli-snap-7", packed, "--create"])).toMatchObject({ group: "cli-snap-7", machine: "kv" });
    expect((await json(["list", "cli-snap-7"], client())).result.items).toEqual((await json(["list", "cli-snap"], client())).result.items);
    const notGzip = join(dir, "not.gz");
    writeFileSync(notGzip, Buffer.from([0x1f, 0x8b, 0, 0, 1, 2, 3]));
    const unpacked = await smr(["restore", "cli-snap-8", notGzip, "--create"], admin());
    expect([unpacked.code, unpacked.stderr]).toEqual([2, expect.stringMatching(/starts as gzip does, but does not unpack/)]);

    // --create makes the group from the file's header; a group with entries refuses a restore.
    // A file saved with a byte order mark and a blank line first reads as the server reads it.
    const marked = join(dir, "marked.ndjson");
    writeFileSync(marked, "\uFEFF\n" + readFileSync(file, "utf8"));
    // Shaped like the source (its header's spec): outputs, checkpoints, session window and quota kept, not the defaults.
    expect(await json(["restore", "cli-snap-3", marked, "--create"])).toMatchObject({ group: "cli-snap-3", machine: "kv", outputs: "majority", checkpointEvery: 50, sessionIdleSeconds: 3600, storageQuotaMiB: 64 });
    expect((await json(["restore", "cli-snap-6", file, "--create", "--replicas", "1"])).replicas).toHaveLength(1);
    expect((await json(["list", "cli-snap-3"], client())).result.items).toEqual((await json(["list", "cli-snap"], client())).result.items);
    const again = await smr(["restore", "cli-snap-2", file], admin());
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^error: 409 conflict: /);

    // A malformed file: a 400 that names the line, and the group stays empty.
    const bad = join(dir, "bad.ndjson");
    writeFileSync(bad, [lines[0], lines[1], '["a",', ...lines.slice(3)].join("\n") + "\n");
    await smrOk(["groups", "create", "cli-snap-4"], admin());
    const refused = await smr(["restore", "cli-snap-4", bad], admin());
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^error: 400 bad_request: .*line/i);
    expect((await json(["list", "cli-snap-4"], client())).result.items).toEqual([]);
    // With --create, a refused file leaves no group behind; a group that existed before stays.
    const made = await smr(["restore", "cli-snap-5", bad, "--create"], admin());
    expect(made.code).toBe(1);
    expect(made.stderr).toMatch(/group cli-snap-5, made by --create, was deleted again\nerror: 400 bad_request: /);
    expect((await f.call("GET", "/v1/groups/cli-snap-5", f.admin)).status).toBe(404);
    const kept = await smr(["restore", "cli-snap-4", bad, "--create"], admin());
    expect(kept.stderr).not.toMatch(/deleted again/);
    expect((await f.call("GET", "/v1/groups/cli-snap-4", f.admin)).status).toBe(200);
  }, cliTestMs);
});

describe("smr metrics", () => {
  it("prints the Prometheus text, of one group with --group, and its samples with --json", async () => {
    await smrOk(["groups", "create", "cli-metrics"], admin());
    await smrOk(["put", "cli-metrics", "k", "1"], client());
    const text = await smrOk(["metrics", "--group", "cli-metrics"], admin());
    expect(text).toMatch(/^smr_group_commit_seq\{[^}]*group="cli-metrics"[^}]*\} \d+$/m);
    expect(text).toMatch(/^smr_replica_applied_seq\{[^}]*replica="r1"[^}]*\} \d+$/m);
    // Only that group: every sample's group label is cli-metrics.
    expect([...text.matchAll(/group="([^"]*)"/g)].map((m) => m[1]).filter((g) => g !== "cli-metrics")).toEqual([]);
    const { samples } = await json(["metrics", "--group", "cli-metrics"]);
    const commit = samples.find((s: { name: string }) => s.name === "smr_group_commit_seq");
    expect(commit).toMatchObject({ labels: { group: "cli-metrics" } });
    expect(commit.value).toBeGreaterThanOrEqual(1);
    const forbidden = await smr(["metrics"], client());
    expect(forbidden.code).toBe(1);
    expect(forbidden.stderr).toMatch(/^error: 403 forbidden: /);
  }, cliTestMs);
});

describe("smr groups quota", () => {
  it("sets the group's storage quota from now on; out of range is a usage error; a client token is refused", async () => {
    await smrOk(["groups", "create", "cli-quota", "--storage-quota", "16"], admin());
    expect(await smrOk(["groups", "quota", "cli-quota", "64"], admin())).toBe("group cli-quota: storage quota 64 MiB\n");
    expect((await json(["groups", "status", "cli-quota"])).storageQuotaMiB).toBe(64);
    expect((await json(["groups", "quota", "cli-quota", "128"])).storageQuotaMiB).toBe(128);
    const low = await smr(["groups", "quota", "cli-quota", "15"], admin());
    expect(low.code).toBe(2);
    expect(low.stderr).toMatch(/must be at least 16/);
    const notAdmin = await smr(["groups", "quota", "cli-quota", "64"], client());
    expect(notAdmin.code).toBe(1);
    expect(notAdmin.stderr).toMatch(/403/);
    expect((await json(["groups", "status", "cli-quota"])).storageQuotaMiB).toBe(128);
  }, cliTestMs);
});

describe("smr groups status (no group)", () => {
  it("shows every group's health from one scrape: ok, or degraded naming the replica that is not healthy, with the last audit", async () => {
    // The last notes: the CLI had no view across groups; an operator ran `groups status` per group.
    await smrOk(["groups", "create", "cli-health-a"], admin());
    await smrOk(["groups", "create", "cli-health-b"], admin());
    await smrOk(["put", "cli-health-a", "k", "1"], client());
    await smrOk(["put", "cli-health-b", "k", "1"], client());
    await appliedEverywhere("cli-health-a", 1);
    expect(JSON.parse(await smrOk(["audit", "cli-health-a", "--json"], admin())).verdict).toBe("consistent");
    expect((await f.call("POST", "/v1/groups/cli-health-b/faults", f.admin, { target: "r3", fault: "unreachable" })).status).toBe(200);
    try {
      // Heartbeats find r3 gone within a few seconds.
      const deadline = Date.now() + 30_000;
      let health: { groups: { group: string; health: string; replicas: { id: string; status: string }[]; lastAudit: { verdict: string } | null }[] };
      for (;;) {
        health = await json(["groups", "status"]);
        const b = health.groups.find((g) => g.group === "cli-health-b");
        if (b?.replicas.find((r) => r.id === "r3")?.status !== "healthy") break;
        if (Date.now() > deadline) throw new Error(`r3 of cli-health-b still healthy: ${JSON.stringify(b)}`);
        await new Promise((r) => setTimeout(r, 500));
      }
      const a = health.groups.find((g) => g.group === "cli-health-a")!;
      expect(a).toMatchObject({ health: "ok", commitSeq: expect.any(Number), lastAudit: { verdict: "consistent" } });
      expect(a.replicas.map((r) => r.status)).toEqual(["healthy", "healthy", "healthy"]);
      const b = health.groups.find((g) => g.group === "cli-health-b")!;
      expect(b).toMatchObject({ health: "degraded", lastAudit: null });
      expect(b.replicas.find((r) => r.id === "r3")!.status).toMatch(/suspect|down/);

      await f.cron();
      const table = await smr(["groups", "status"], admin());
      expect(table.code).toBe(0);
      // The cron's last run and lap, from the same scrape.
      expect(table.stderr).toMatch(/cron: last run (\d+|under 1) s ago, [1-9]\d* audited, \d+ failed; the last whole lap took (\d+|under 1) s/);
      expect(table.stdout).toMatch(/│ cli-health-a +│ ok +│ 1 +│ \d+ +│ 3\/3 healthy +│ 0 +│ consistent, (\d+|under 1) s ago +│ 0 +│/);
      expect(table.stdout).toMatch(/│ cli-health-b +│ degraded +│ 1 +│ \d+ +│ 2\/3 healthy; r3 (suspect|down) +│/);
      expect(table.stderr).toMatch(/groups: \d+ ok, [1-9]\d* degraded, \d+ down/);
      // Only those not ok (the summary still counts every group).
      // It exits 1 when it lists any: an alert can run it.
      const listed = await smr(["groups", "status", "--unhealthy", "--json"], admin());
      expect(listed.code).toBe(1);
      const unhealthy = JSON.parse(listed.stdout);
      const names = unhealthy.groups.map((g: { group: string }) => g.group);
      expect(names).toContain("cli-health-b");
      expect(names).not.toContain("cli-health-a");
      expect(unhealthy.groups.every((g: { health: string }) => g.health !== "ok")).toBe(true);
      // A page of them; --limit without a group only.
      const page = await json(["groups", "status", "--after", "cli-health-a", "--limit", "1"]);
      expect(page.groups.map((g: { group: string }) => g.group)).toEqual(["cli-health-b"]);
      const misuse = await smr(["groups", "status", "cli-health-a", "--limit", "1"], admin());
      expect(misuse.code).toBe(2);
      // The metrics are the admin's.
      expect((await smr(["groups", "status"], client())).stderr).toMatch(/^error: 403 forbidden: /);
    } finally {
      await f.call("POST", "/v1/groups/cli-health-b/faults", f.admin, { target: "r3", fault: "none" });
    }
  }, cliTestMs);
});

describe("the CLI interrupted, and its output's edges", () => {
  it("Ctrl-C while a command is under way names the --client and --request to retry it with exactly once (it ended in silence, and the command had run)", async () => {
    await smrOk(["groups", "create", "cli-int"], admin());
    expect((await f.call("POST", "/v1/groups/cli-int/faults", f.admin, { target: "sequencer", fault: "slow", ms: 4_000 })).status).toBe(200);
    try {
      const run = smrSpawn(["put", "cli-int", "k", "1", "--client", "int-1", "--request", "5"], client());
      await new Promise((r) => setTimeout(r, 1_500));
      run.child.kill("SIGINT");
      // Killed by the signal (not an exit of 130): a shell loop stops on it.
      expect(await run.exited).toBeNull();
      expect(run.child.signalCode).toBe("SIGINT");
      expect(run.output().stderr).toMatch(/interrupted: the command may have taken effect; to retry it exactly once, repeat it with --client int-1 --request 5/);
    } finally {
      await f.call("POST", "/v1/groups/cli-int/faults", f.admin, { target: "sequencer", fault: "none" });
    }
    // The retry it names is answered once, whatever the interrupted one did.
    const again = await json(["put", "cli-int", "k", "1", "--client", "int-1", "--request", "5"], client());
    expect(again.seq).toBeGreaterThanOrEqual(1);
  }, cliTestMs);

  it("snapshot -o through a symbolic link writes the file it names, and the link stays (it was replaced by a file)", async () => {
    await smrOk(["groups", "create", "cli-link"], admin());
    await smrOk(["put", "cli-link", "k", '"v"'], client());
    const real = join(dir, "real.ndjson");
    writeFileSync(real, "old");
    const link = join(dir, "latest.ndjson");
    symlinkSync(real, link);
    const saved = await json(["snapshot", "cli-link", "-o", link]);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readFileSync(real, "utf8").split("\n")[0]).toBe(JSON.stringify(saved.header));
    expect(readdirSync(dir).filter((n) => n.includes(".partial-"))).toEqual([]);
    // A link to a file not there yet (relative): the file is made, the link stays.
    const dangling = join(dir, "next.ndjson");
    symlinkSync("made-later.ndjson", dangling);
    await json(["snapshot", "cli-link", "-o", dangling]);
    expect(lstatSync(dangling).isSymbolicLink()).toBe(true);
    expect(readFileSync(join(dir, "made-later.ndjson"), "utf8").split("\n")[0]).toBe(JSON.stringify(saved.header));
    // `..` after a linked folder is the real folder's parent, as the kernel reads it (a review).
    mkdirSync(join(dir, "real", "deep"), { recursive: true });
    symlinkSync(join(dir, "real", "deep"), join(dir, "lnk"));
    await json(["snapshot", "cli-link", "-o", `${dir}/lnk/../via-dotdot.ndjson`]); // not join(): it would take the `..` away
    expect(existsSync(join(dir, "via-dotdot.ndjson"))).toBe(false);
    expect(readFileSync(join(dir, "real", "via-dotdot.ndjson"), "utf8").split("\n")[0]).toBe(JSON.stringify(saved.header));
    // /dev/stdout appended to a file is that stdout, not a file to replace (a review: the log was lost).
    const log = join(dir, "backups.log");
    writeFileSync(log, "earlier line\n");
    await new Promise<void>((resolve) => execFile("sh", ["-c", `"${process.execPath}" "${smrBin}" snapshot cli-link -o /dev/stdout >> "${log}"`], { cwd: bare, env: smrEnv(admin().env) }, () => resolve()));
    expect(readFileSync(log, "utf8").split("\n").slice(0, 2)).toEqual(["earlier line", JSON.stringify(saved.header)]);
    // A pipe named through /proc (/dev/stdout into a shell's pipe): written as it is.
    // And /dev/stdout (or /dev/stderr) when it is a socket (as here): this process's own, not opened again (ENXIO).
    const toSocket = await smr(["snapshot", "cli-link", "-o", "/dev/stdout"], admin());
    expect(toSocket.code, toSocket.stderr).toBe(0);
    expect(JSON.parse(toSocket.stdout.split("\n")[0]!)).toMatchObject({ group: "cli-link", rows: saved.header.rows });
    const toStderr = await smr(["snapshot", "cli-link", "-o", "/dev/stderr"], admin());
    expect(toStderr.code, toStderr.stderr).toBe(0);
    expect(JSON.parse(toStderr.stderr.split("\n")[0]!)).toMatchObject({ group: "cli-link", rows: saved.header.rows });
    const piped = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile("sh", ["-c", `"${process.execPath}" "${smrBin}" snapshot cli-link -o /dev/stdout | cat`], { cwd: bare, env: smrEnv(admin().env), encoding: "utf8" }, (err, stdout, stderr) => resolve({ code: err ? 1 : 0, stdout, stderr })),
    );
    expect(piped.code, piped.stderr).toBe(0);
    expect(JSON.parse(piped.stdout.split("\n")[0]!)).toMatchObject({ group: "cli-link", rows: saved.header.rows });
    // A folder that cannot be written to is said before the download, naming the file asked for.
    const bad = await smr(["snapshot", "cli-link", "-o", join(dir, "none", "x.ndjson")], admin());
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/x\.ndjson: cannot be written \(ENOENT for its folder\)/);
  }, cliTestMs);

  it("Ctrl-C during snapshot -o leaves no partial file, and an earlier backup as it was", async () => {
    await smrOk(["groups", "create", "cli-int-snap"], admin());
    await smrOk(["put", "cli-int-snap", "k", '"v"'], client());
    const file = join(dir, "int-snap.ndjson");
    writeFileSync(file, "earlier backup");
    // Every replica slow: the download's pages come a second apart, so the interrupt lands mid-way.
    for (const r of ["r1", "r2", "r3"]) await f.call("POST", "/v1/groups/cli-int-snap/faults", f.admin, { target: r, fault: "slow", ms: 1_000 });
    try {
      const run = smrSpawn(["snapshot", "cli-int-snap", "-o", file], admin());
      const deadline = Date.now() + 20_000;
      while (!readdirSync(dir).some((n) => n.startsWith("int-snap.ndjson.partial-")) && run.child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(readdirSync(dir).filter((n) => n.startsWith("int-snap.ndjson.partial-"))).toHaveLength(1);
      run.child.kill("SIGINT");
      // Killed by the signal (not an exit of 130): a shell loop stops on it.
      expect(await run.exited).toBeNull();
      expect(run.child.signalCode).toBe("SIGINT");
      expect(readdirSync(dir).filter((n) => n.startsWith("int-snap.ndjson.partial-"))).toEqual([]);
      expect(readFileSync(file, "utf8")).toBe("earlier backup");
    } finally {
      for (const r of ["r1", "r2", "r3"]) await f.call("POST", "/v1/groups/cli-int-snap/faults", f.admin, { target: r, fault: "none" });
    }
  }, cliTestMs);

  it("output that cannot be written (a full disk) is an error line and exit 1, not a stack trace", async () => {
    const out = openSync("/dev/full", "w");
    try {
      const child = spawn(process.execPath, [smrBin, "config", "--json"], { cwd: bare, env: smrEnv({ SMR_URL: f.url(), SMR_TOKEN: f.admin }), stdio: ["ignore", out, "pipe"] });
      let stderr = "";
      child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
      const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
      expect(code).toBe(1);
      expect(stderr).toMatch(/^error: cannot write the output: ENOSPC\n$/);
    } finally {
      closeSync(out);
    }
  }, cliTestMs);

  it("a sequential read with --bookmark sees the write it names; --bookmark with another level is a usage error", async () => {
    await smrOk(["groups", "create", "cli-bm"], admin());
    const w = await json(["put", "cli-bm", "k", '"seen"'], client());
    const r = await json(["get", "cli-bm", "k", "--consistency", "sequential", "--bookmark", w.bookmark], client());
    expect(r.result).toEqual({ value: "seen" });
    expect(r.seq).toBeGreaterThanOrEqual(w.seq);
    expect((await smr(["get", "cli-bm", "k", "--bookmark", w.bookmark], client())).code).toBe(2);
    const bad = await smr(["get", "cli-bm", "k", "--consistency", "sequential", "--bookmark", "nonsense"], client());
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^error: 400 bad_request: /);
  }, cliTestMs);

  it("--near (or SMR_NEAR) reads from the replica in that location; an unknown location is a usage error", async () => {
    await smrOk(["groups", "create", "cli-near", "--locations", "wnam,weur,apac"], admin());
    const w = await json(["put", "cli-near", "k", "1"], client());
    await appliedEverywhere("cli-near", w.seq);
    const { body } = await f.call("GET", "/v1/groups/cli-near/replicas", f.admin);
    const idIn = (loc: string) => body.replicas.find((r: { location: string }) => r.location === loc).id;
    expect((await json(["get", "cli-near", "k", "--consistency", "stale", "--near", "apac"], client())).replica).toBe(idIn("apac"));
    expect((await json(["get", "cli-near", "k", "--consistency", "stale"], { ...client(), env: { ...client().env, SMR_NEAR: "weur" } })).replica).toBe(idIn("weur"));
    const bad = await smr(["get", "cli-near", "k", "--near", "mars"], client());
    expect([bad.code, bad.stderr]).toEqual([2, expect.stringMatching(/--near <location>' argument 'mars' is invalid/)]);
  }, cliTestMs);

  it("an error line shows escape sequences from a client id or a file as text (they recoloured and retitled the terminal)", async () => {
    await smrOk(["groups", "create", "cli-esc"], admin());
    const evil = "ev\u001b[31mil\u001b]0;T\u0007";
    await smrOk(["put", "cli-esc", "a", "1", "--client", evil, "--request", "1"], client());
    const r = await smr(["put", "cli-esc", "b", "2", "--client", evil, "--request", "1"], client());
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: 409 conflict: /);
    expect(r.stderr).not.toMatch(/[\u0000-\u0009\u000b-\u001f]/);
    expect(r.stderr).toContain("\\u001b[31m");
  }, cliTestMs);
});
