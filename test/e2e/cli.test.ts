// The CLI (bin/smr.mjs, `npx smr`) run as a child process against the built worker: groups,
// reads and writes, audits, replicas, tables and --json, exit codes, and where it finds its
// URL and token (--url/--token, SMR_URL/SMR_TOKEN, the project's .dev.vars).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serverFixture } from "../support/fixture.js";
import { downUrl, smr, smrOk } from "../support/smr.js";

/** Every step starts a CLI process (about a second of tsx start-up on a busy machine). */
const cliTestMs = 240_000;
const f = serverFixture("cli");
let dir: string;
/** A directory outside any project: no .dev.vars is found from it. */
let bare: string;
const admin = () => ({ cwd: bare, env: { SMR_URL: f.url(), SMR_TOKEN: f.admin } });
const client = () => ({ cwd: bare, env: { SMR_URL: f.url(), SMR_TOKEN: f.client } });
const json = async (args: string[], opts: { cwd: string; env?: Record<string, string> } = admin()) => JSON.parse(await smrOk([...args, "--json"], opts));

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "smr-cli-"));
  bare = join(dir, "bare");
  mkdirSync(bare);
  writeFileSync(join(bare, "package.json"), "{}\n"); // the search for .dev.vars stops here
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("smr groups", () => {
  it("creates, lists, shows and deletes groups, as tables and as JSON", async () => {
    const created = await json(["groups", "create", "cli-a", "--machine", "kv", "--replicas", "3"]);
    expect(created).toMatchObject({ group: "cli-a", machine: "kv", created: true, replicas: [{ id: "r1" }, { id: "r2" }, { id: "r3" }] });
    // The same again: said to be there already, not printed as a creation (a probe).
    expect((await json(["groups", "create", "cli-a", "--machine", "kv", "--replicas", "3"])).created).toBe(false);
    expect((await smr(["groups", "create", "cli-a", "--machine", "kv", "--replicas", "3"], admin())).stderr).toContain("group cli-a exists with this config: nothing changed");
    await smrOk(["groups", "create", "cli-b", "--machine", "bank", "--replicas", "1", "--outputs", "majority"], admin());

    expect((await json(["groups", "list"])).groups).toEqual(expect.arrayContaining(["cli-a", "cli-b"]));
    const table = await smrOk(["groups", "list"], admin());
    expect(table).toMatch(/│ group +│/);
    expect(table).toMatch(/│ cli-a +│/);
    expect(table).toMatch(/│ cli-b +│/);

    const status = await json(["groups", "status", "cli-b"]);
    expect(status).toMatchObject({ group: "cli-b", machine: "bank", outputs: "majority", replicas: [{ id: "r1" }] });
    const shown = await smrOk(["groups", "status", "cli-a"], admin());
    expect(shown).toMatch(/│ machine +│ kv +│/);
    for (const id of ["r1", "r2", "r3"]) expect(shown).toMatch(new RegExp(`│ ${id} +│ - +│ (healthy|joining) +│`));

    expect(await smrOk(["groups", "delete", "cli-b"], admin())).toContain("deleted group cli-b");
    expect((await json(["groups", "list"])).groups).not.toContain("cli-b");
  }, cliTestMs);
});

describe("smr put, get, list, exec, query", () => {
  it("writes and reads kv values, with tables for people and JSON for scripts", async () => {
    await smrOk(["groups", "create", "cli-kv"], admin());
    const put = await json(["put", "cli-kv", "greeting", '"hello"'], client());
    expect(put).toMatchObject({ seq: 1, output: { previous: null } });
    expect(put.bookmark).toEqual(expect.any(String));
    expect(await smrOk(["put", "cli-kv", "user/1", '{"name":"ada","n":[1,2]}'], client())).toMatch(/│ seq +│ 2 +│/);

    expect(await json(["get", "cli-kv", "greeting"], client())).toMatchObject({ result: { value: "hello" }, replica: expect.stringMatching(/^r[0-9]$/) });
    expect(JSON.parse(await smrOk(["get", "cli-kv", "user/1", "--consistency", "stale"], client()))).toEqual({ name: "ada", n: [1, 2] });
    expect((await smrOk(["get", "cli-kv", "absent"], client())).trim()).toBe("null");

    const incr = await json(["exec", "cli-kv", '{"op":"incr","key":"visits","by":5}'], client());
    expect(incr.output).toEqual({ value: 5 });
    // The same --client and --request is the same command: answered again, not executed again.
    const once = ["exec", "cli-kv", '{"op":"incr","key":"visits","by":1}', "--client", "script-1", "--request", "7"];
    const first = await json(once, client());
    expect(await json(once, client())).toEqual({ ...first, replayed: true });
    expect(first.replayed).toBeUndefined();
    expect(first.output).toEqual({ value: 6 });
    // Under --client without --request, each run is a new command (its id was 1 for every run:
    // the second incr was answered the first's output and not run).
    const named = ["exec", "cli-kv", '{"op":"incr","key":"visits","by":1}', "--client", "script-2"];
    expect((await json(named, client())).output).toEqual({ value: 7 });
    expect((await json(named, client())).output).toEqual({ value: 8 });
    // And another command under that client is not a 409 (a reused id with another command).
    expect((await json(["exec", "cli-kv", '{"op":"incr","key":"visits","by":-2}', "--client", "script-2"], client())).output).toEqual({ value: 6 });

    const listed = await json(["list", "cli-kv", "--prefix", "user/"], client());
    expect(listed.result).toEqual({ items: [["user/1", { name: "ada", n: [1, 2] }]] });
    const table = await smrOk(["list", "cli-kv", "--limit", "2"], client());
    expect(table).toMatch(/│ key +│ value +│/);
    expect(table).toMatch(/│ greeting +│ "hello" +│/);
    expect(table).not.toContain("visits");
    const more = await smr(["list", "cli-kv", "--limit", "2"], client());
    expect(more.stderr).toContain("more: --after=user/1");

    const q = await json(["query", "cli-kv", '{"op":"get","key":"visits"}', "--consistency", "linearizable"], client());
    expect(q.result).toEqual({ value: 6 });
    expect((await json(["del", "cli-kv", "greeting"], client())).output).toEqual({ deleted: true });
    expect((await json(["get", "cli-kv", "greeting"], client())).result).toEqual({ value: null });
  }, cliTestMs);
});

describe("smr audit, audits, replicas, events, sequencer", () => {
  it("audits the replicas, lists audits and events, and adds and removes a replica", async () => {
    await smrOk(["groups", "create", "cli-ops"], admin());
    await smrOk(["put", "cli-ops", "k", "1"], client());
    const audit = await json(["audit", "cli-ops"]);
    expect(audit).toMatchObject({ group: "cli-ops", verdict: "consistent" });
    expect(await smrOk(["audit", "cli-ops"], admin())).toMatch(/│ verdict +│ consistent +│/);
    const audits = await json(["audits", "cli-ops", "--limit", "1"], client());
    expect(audits.audits).toHaveLength(1);
    expect(await smrOk(["audits", "cli-ops"], client())).toMatch(/│ consistent +│ r1:agrees r2:agrees r3:agrees +│/);

    const replicas = await json(["replicas", "cli-ops"], client());
    expect(replicas.replicas.map((r: { id: string }) => r.id)).toEqual(["r1", "r2", "r3"]);
    const listed = await smrOk(["replicas", "list", "cli-ops"], client());
    expect(listed).toMatch(/│ replica +│ location +│ status +│.*│ rows +│ size +│/);
    // Rows and size from the audit above (every replica answered it).
    for (const id of ["r1", "r2", "r3"]) expect(listed).toMatch(new RegExp(`│ ${id} +│[^\n]*│ \\d+ +│ \\d+(\\.\\d)? (B|KiB|MiB) +│`));

    const added = await json(["replicas", "add", "cli-ops"]);
    expect(added.replica.id).toBe("r4");
    const removed = await json(["replicas", "remove", "cli-ops", "r4"]);
    expect(removed.replica.id).toBe("r4");
    const events = await json(["events", "cli-ops"], client());
    expect(events.events.map((e: { kind: string }) => e.kind)).toEqual(expect.arrayContaining(["replica-added", "replica-removed"]));
    expect(await smrOk(["events", "cli-ops", "--limit", "5"], client())).toMatch(/│ replica-added +│/);

    const moved = await json(["sequencer", "move", "cli-ops"]);
    expect(moved.sequencer).toMatchObject({ name: "cli-ops~s1", epoch: expect.any(Number) });
    expect(moved.sequencer.epoch).toBeGreaterThan(1);
    expect((await json(["get", "cli-ops", "k"], client())).result).toEqual({ value: 1 });
  }, cliTestMs);
});

describe("smr errors and exit codes", () => {
  it("prints the API's status, code and message and exits 1; a usage error exits 2; an outcome unknown 3", async () => {
    const missing = await smr(["groups", "status", "cli-nope"], admin());
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim()).toBe("error: 404 not_found: group cli-nope does not exist");
    expect(missing.stdout).toBe("");

    const forbidden = await smr(["groups", "create", "cli-x"], client());
    expect(forbidden.code).toBe(1);
    expect(forbidden.stderr).toMatch(/^error: 403 forbidden: /);

    const unknownToken = await smr(["groups", "list"], { cwd: bare, env: { SMR_URL: f.url(), SMR_TOKEN: "wrong" } });
    expect(unknownToken.code).toBe(1);
    expect(unknownToken.stderr).toMatch(/^error: 401 unauthorized: /);

    const badJson = await smr(["put", "cli-kv", "k", "{not json"], client());
    expect(badJson.code).toBe(2);
    expect(badJson.stderr).toContain("not JSON");
    const noArgs = await smr(["put", "cli-kv"], client());
    expect(noArgs.code).toBe(2);
    expect(noArgs.stderr).toContain("missing required argument");
    // A mistyped subcommand before a group is named as one (it said "too many arguments for 'list'").
    const typo = await smr(["replicas", "ad", "cli-kv"], admin());
    expect([typo.code, typo.stderr.trim()]).toEqual([2, "error: unknown command 'replicas ad' (replicas list | add | remove | repair | release)"]);
    // A mistyped subcommand with an option of the right one: the command is named, not the option
    // (it said "unknown option '--scope'"); an option no command has is named as one.
    const typoWithOption = await smr(["tokens", "creat", "cli-kv", "--scope", "read"], admin());
    expect([typoWithOption.code, typoWithOption.stderr.trim()]).toEqual([2, "error: unknown command 'tokens creat' (tokens list | create | revoke)"]);
    const badOption = await smr(["tokens", "list", "cli-kv", "--bogus"], admin());
    expect([badOption.code, badOption.stderr.trim()]).toEqual([2, "error: unknown option '--bogus'"]);
    // help at any depth; a word naming no command is an error (it showed the whole help, exit 0).
    const nestedHelp = await smr(["help", "groups", "create"], admin());
    expect([nestedHelp.code, nestedHelp.stdout.split("\n")[0]]).toEqual([0, "Usage: smr groups create [options] <group>"]);
    const helpTypo = await smr(["help", "groups", "bogus"], admin());
    expect([helpTypo.code, helpTypo.stderr.trim()]).toEqual([2, "error: unknown command 'groups bogus' (groups list | create | status | quota | delete)"]);
    // Named "list" and given too much: too many arguments, not a mistyped command.
    const extra = await smr(["replicas", "list", "cli-kv", "extra"], admin());
    expect([extra.code, extra.stderr.trim()]).toEqual([2, "error: too many arguments: replicas list <group>"]);
    // A value JSON.parse would change is refused before anything is sent (1e400 was stored as null).
    const huge = await smr(["put", "cli-kv", "k", "1e400"], client());
    expect(huge.code).toBe(2);
    expect(huge.stderr).toMatch(/1e400 is out of range/);
    // No txn at all: said so (it said "not both", though neither was given).
    const noTxn = await smr(["txn", "cli-kv"], client());
    expect([noTxn.code, noTxn.stderr.trim()]).toEqual([2, "error: give the txn as an argument or with --file"]);
    const badLevel = await smr(["get", "cli-kv", "k", "--consistency", "eventual"], client());
    expect(badLevel.code).toBe(2);
    const unknown = await smr(["frobnicate"], client());
    expect(unknown.code).toBe(2);

    const url = await downUrl();
    const down = await smr(["groups", "list"], { cwd: bare, env: { SMR_URL: url, SMR_TOKEN: "x" } });
    expect(down.code).toBe(1);
    // A read is retried as a command is (a restart), each retry said, then the error.
    expect(down.stderr).toMatch(/^retrying the read \(attempt 2\) in 50 ms: network: /);
    expect(down.stderr).toContain(`\nerror: network: GET ${url}/v1/groups: `);
    // Nothing listening: retried for a few seconds (a restart), then the error; nothing was sent,
    // so no "may have taken effect".
    const refused = await smr(["put", "cli-kv", "k", "1", "--client", "me", "--request", "7"], { cwd: bare, env: { SMR_URL: url, SMR_TOKEN: "x" } });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^retrying \(attempt 2\) in 50 ms: network: /);
    expect(refused.stderr).toContain(`error: network: POST ${url}/v1/groups/cli-kv/commands: `);
    expect(refused.stderr).not.toContain("may have taken effect");
    // A port fetch will not connect to (9, "bad port"): no retry can mend it, the error at once.
    const blocked = await smr(["put", "cli-kv", "k", "1"], { cwd: bare, env: { SMR_URL: "http://127.0.0.1:9", SMR_TOKEN: "x" } });
    expect([blocked.code, blocked.stderr]).toEqual([1, "error: network: POST http://127.0.0.1:9/v1/groups/cli-kv/commands: TypeError: fetch failed (bad port)\n"]);
    // A command whose outcome is unknown (the connection dropped once the request was sent): each
    // retry is reported, and the pair to repeat it exactly once is named.
    const dropper = createServer((socket) => socket.once("data", () => socket.destroy()));
    await new Promise<void>((resolve) => dropper.listen(0, "127.0.0.1", resolve));
    const lost = await smr(["put", "cli-kv", "k", "1", "--client", "me", "--request", "7", "--retry-for", "1"], { cwd: bare, env: { SMR_URL: `http://127.0.0.1:${(dropper.address() as AddressInfo).port}`, SMR_TOKEN: "x" } });
    dropper.close();
    // Exit 3: the outcome unknown, told apart from a refusal's 1 (a review).
    expect(lost.code).toBe(3);
    expect(lost.stderr).toMatch(/^retrying \(attempt 2\) in 50 ms: network: /);
    expect(lost.stderr).toContain("to retry it exactly once, repeat it with --client me --request 7\n");
    expect(lost.stderr).toMatch(/^error: 504 timeout: network: /m);
    expect(lost.stderr, "a network failure has no status").not.toMatch(/\b0 network/);
    // --timeout bounds each attempt: against a server that never answers, --retry-for 0 took 40 s (a probe).
    const hole = createServer(() => undefined);
    await new Promise<void>((resolve) => hole.listen(0, "127.0.0.1", resolve));
    const startedMs = Date.now();
    const waited = await smr(["get", "cli-kv", "k", "--retry-for", "0", "--timeout", "1"], { cwd: bare, env: { SMR_URL: `http://127.0.0.1:${(hole.address() as AddressInfo).port}`, SMR_TOKEN: "x" } });
    const tookMs = Date.now() - startedMs;
    hole.close();
    expect(waited.code).toBe(1);
    expect(waited.stderr).toMatch(/no answer within 1000 ms|timed out|1000 ms/);
    expect(tookMs, "one attempt of 1 s (and the CLI's start)").toBeLessThan(20_000);
    // A batch whose items came back unknown (no quorum: 504s per item) is not said to have failed
    // ("2 of 2 commands failed" followed the hint that they may have run, and they had: a probe).
    const unknowns = createServer((socket) =>
      socket.once("data", () => {
        const body = JSON.stringify({ results: [1, 2].map(() => ({ error: { code: "timeout", message: "no quorum" } })) });
        socket.end(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
      }),
    );
    await new Promise<void>((resolve) => unknowns.listen(0, "127.0.0.1", resolve));
    const file = join(dir, "two.ndjson");
    writeFileSync(file, '{"op":"put","key":"a","value":1}\n{"op":"put","key":"b","value":2}\n');
    const unsure = await smr(["batch", "cli-kv", file, "--client", "bq", "--retry-for", "0"], { cwd: bare, env: { SMR_URL: `http://127.0.0.1:${(unknowns.address() as AddressInfo).port}`, SMR_TOKEN: "x" } });
    unknowns.close();
    expect(unsure.code).toBe(3);
    expect(unsure.stderr).toContain("repeat the batch with --client bq --first-request 1\n");
    expect(unsure.stderr).toContain("error: of 2 commands, 2 may or may not have taken effect\n");
    expect(unsure.stderr).not.toContain("failed");
  }, cliTestMs);
});

describe("smr's URL and token", () => {
  it("reads the project's .dev.vars (ADMIN_TOKEN, else the first client token) and defaults the URL to the dev server", async () => {
    const project = join(dir, "project");
    mkdirSync(join(project, "sub"), { recursive: true });
    writeFileSync(join(project, "package.json"), "{}\n");
    writeFileSync(join(project, ".dev.vars"), `ADMIN_TOKEN=${f.admin}\nCLIENT_TOKENS=${f.client},other\n`);
    // From a subdirectory: the search goes up to the project's root.
    const sub = join(project, "sub");
    expect(await json(["config"], { cwd: sub, env: {} })).toEqual({ url: "http://localhost:8787", urlFrom: "default", tokenFrom: `${join(project, ".dev.vars")} (ADMIN_TOKEN)` });
    // The admin token from .dev.vars works on admin routes.
    expect(await json(["groups", "create", "cli-vars"], { cwd: sub, env: { SMR_URL: f.url() } })).toMatchObject({ group: "cli-vars" });

    writeFileSync(join(project, ".dev.vars"), `# only clients\nCLIENT_TOKENS="${f.client},other"\n`);
    expect((await json(["config"], { cwd: project, env: {} })).tokenFrom).toBe(`${join(project, ".dev.vars")} (CLIENT_TOKENS)`);
    expect(await json(["groups", "status", "cli-vars"], { cwd: project, env: { SMR_URL: f.url() } })).toMatchObject({ group: "cli-vars" });
    expect((await smr(["groups", "delete", "cli-vars"], { cwd: project, env: { SMR_URL: f.url() } })).stderr).toMatch(/^error: 403 forbidden/);

    // SMR_URL / SMR_TOKEN win over .dev.vars, and --url / --token over them.
    expect(await json(["config"], { cwd: project, env: { SMR_URL: "http://env.test/", SMR_TOKEN: "t" } })).toEqual({ url: "http://env.test", urlFrom: "SMR_URL", tokenFrom: "SMR_TOKEN" });
    expect(await json(["config", "--url", "http://flag.test", "--token", "t2"], { cwd: project, env: { SMR_URL: "http://env.test", SMR_TOKEN: "t" } })).toEqual({ url: "http://flag.test", urlFrom: "--url", tokenFrom: "--token" });
    expect(await json(["groups", "delete", "cli-vars", "--url", f.url(), "--token", f.admin], { cwd: project, env: { SMR_URL: "http://127.0.0.1:9", SMR_TOKEN: "wrong" } })).toEqual({ deleted: "cli-vars" });

    // Outside a project, with no token anywhere: a usage error that says where a token can come from.
    const none = await smr(["groups", "list"], { cwd: bare, env: {} });
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("no token");
  }, cliTestMs);
});
