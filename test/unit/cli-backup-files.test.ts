// `smr snapshot -o` and `smr restore --create` against a stand-in server (no workerd): the file's
// mode, a closed terminal's SIGHUP, and a refused file's group (each from a review).
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const bin = join(__dirname, "../../bin/smr.mjs");
const dir = mkdtempSync(join(tmpdir(), "smr-files-"));
const header = '{"group":"demo","machine":"kv","seq":2,"rows":1,"digest":"00","spec":{"machine":"kv","replicas":3}}\n';
const deleted: string[] = [];
let server: Server;
let url = "";

function route(req: IncomingMessage, res: ServerResponse): void {
  const answer = (status: number, body?: unknown) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(body === undefined ? undefined : JSON.stringify(body));
  };
  const path = req.url ?? "";
  if (path === "/v1/groups/demo/snapshot") {
    res.writeHead(200, { "content-type": "application/x-ndjson" });
    res.end(`${header}["a",1]\n`);
  } else if (path === "/v1/groups/cut/snapshot") {
    res.writeHead(200, { "content-type": "application/x-ndjson" });
    res.write(header);
    setTimeout(() => res.socket?.destroy(), 50);
  } else if (path === "/v1/groups/hang/snapshot") {
    res.writeHead(200, { "content-type": "application/x-ndjson" });
    res.write(header); // and never the rest
  } else if (req.method === "GET" && /^\/v1\/groups\/(made|made409|same|again|gone)$/.test(path)) answer(404, { error: { code: "not_found", message: "group made does not exist" } });
  // `same`: another made the same group between the CLI's look and its PUT (200, not 201).
  else if (req.method === "PUT" && /^\/v1\/groups\/(made|made409|same|again|gone)$/.test(path)) answer(path.endsWith("same") ? 200 : 201, { group: "made", machine: "kv", epoch: 1, commitSeq: 0, lastSeq: 0, sequencer: { name: "made" }, replicas: [], incarnation: 4 });
  else if (req.method === "POST" && /^\/v1\/groups\/(made|same|again|gone)\/restore$/.test(path)) {
    req.resume();
    req.on("end", () => answer(413, { error: { code: "too_large", message: "the file unpacks to more than 64 MiB" } }));
  } else if (req.method === "POST" && path === "/v1/groups/made409/restore") {
    req.resume();
    req.on("end", () => answer(409, { error: { code: "conflict", message: "group made409 was deleted and created again during the restore: nothing was restored; the new group is left as it is" } }));
  } else if (req.method === "DELETE" && path.startsWith("/v1/groups/gone")) {
    answer(404, { error: { code: "not_found", message: "group gone does not exist" } });
  } else if (req.method === "DELETE" && path.startsWith("/v1/groups/again")) {
    answer(409, { error: { code: "conflict", message: "group again was deleted and created again" } });
  } else if (req.method === "DELETE") {
    deleted.push(path);
    answer(204);
  } else answer(404, { error: { code: "not_found", message: "no such route" } });
}

/** smr with these arguments against the stand-in server; `umask`: run under it (a shell sets it). */
function run(...args: string[]) {
  return runUnder(null, ...args);
}

function runUnder(umask: string | null, ...args: string[]) {
  const argv = [bin, ...args, "--url", url, "--token", "t"];
  const env = { ...process.env, SMR_URL: "", SMR_TOKEN: "" };
  const child = umask === null ? spawn(process.execPath, argv, { cwd: dir, env }) : spawn("sh", ["-c", `umask ${umask} && exec "$0" "$@"`, process.execPath, ...argv], { cwd: dir, env });
  let err = "";
  let out = "";
  child.stderr.on("data", (d) => (err += String(d)));
  child.stdout.on("data", (d) => (out += String(d)));
  const exited = new Promise<{ code: number | null; signal: string | null; err: string; out: string }>((resolve) => child.on("close", (code, signal) => resolve({ code, signal, err, out })));
  return { child, exited };
}

beforeAll(async () => {
  server = createServer(route);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

describe("smr's backup files", () => {
  it("a snapshot file is made readable by its owner only, and one written over keeps the mode it had (the rename gave a 0600 backup 0644)", async () => {
    const fresh = join(dir, "fresh.ndjson");
    expect((await run("snapshot", "demo", "-o", fresh).exited).code).toBe(0);
    expect(statSync(fresh).mode & 0o777).toBe(0o600);
    const kept = join(dir, "kept.ndjson");
    writeFileSync(kept, "an earlier backup");
    chmodSync(kept, 0o640);
    expect((await run("snapshot", "demo", "-o", kept).exited).code).toBe(0);
    expect(statSync(kept).mode & 0o777).toBe(0o640);
    // Under a umask of 077 too: the mode given at creation passes through it, so it is set again.
    chmodSync(kept, 0o644);
    expect((await runUnder("077", "snapshot", "demo", "-o", kept).exited).code).toBe(0);
    expect(statSync(kept).mode & 0o777).toBe(0o644);
  });

  it("under --json, an error after a snapshot began on stdout is not added to it (it was appended to the file), and help is no error document", async () => {
    const r = await run("snapshot", "cut", "--json").exited;
    expect(r.code).toBe(1);
    expect(r.out).toBe(header);
    expect(r.err).toMatch(/cut off|not a whole snapshot/);
    const help = await run("--json").exited;
    expect(help.out).not.toContain('"error"');
    // A watch refused before any event is an error document like any other (it was none: a review).
    const watch = await run("watch", "nosuch", "--json").exited;
    expect(watch.code).toBe(1);
    expect(JSON.parse(watch.out)).toMatchObject({ error: { status: 404, code: "not_found" } });
  });

  it("a closed terminal (SIGHUP) during snapshot -o leaves no partial file, as Ctrl-C does", async () => {
    const file = join(dir, "hup.ndjson");
    const r = run("snapshot", "hang", "-o", file);
    const deadline = Date.now() + 20_000;
    while (!readdirSync(dir).some((n) => n.startsWith("hup.ndjson.partial-")) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
    expect(readdirSync(dir).filter((n) => n.startsWith("hup.ndjson.partial-"))).toHaveLength(1);
    r.child.kill("SIGHUP");
    expect((await r.exited).signal).toBe("SIGHUP");
    expect(readdirSync(dir).filter((n) => n.startsWith("hup.ndjson"))).toEqual([]);
  });

  it("restore --create deletes the life of the group it made when the file is refused (a 413 left it), and leaves a 409's group alone (another's writes, or a group made again)", async () => {
    const file = join(dir, "restore.ndjson");
    writeFileSync(file, `${header}["a",1]\n`);
    const r = await run("restore", "made", file, "--create").exited;
    expect(r.code).toBe(1);
    expect(r.err).toContain("413 too_large");
    expect(r.err).toContain("the file was refused; group made, made by --create, was deleted again");
    expect(deleted).toEqual(["/v1/groups/made?incarnation=4"]);
    expect(existsSync(file)).toBe(true);
    const conflict = await run("restore", "made409", file, "--create").exited;
    expect(conflict.code).toBe(1);
    expect(conflict.err).toContain("409 conflict");
    expect(deleted).toEqual(["/v1/groups/made?incarnation=4"]);
    // Made by another between the look and the PUT (200): theirs, not deleted (a review).
    expect((await run("restore", "same", file, "--create").exited).code).toBe(1);
    expect(deleted).toEqual(["/v1/groups/made?incarnation=4"]);
    // Deleted and made again by another before the CLI's delete (its 409): said so, not "smr groups delete" (a review).
    const again = await run("restore", "again", file, "--create").exited;
    expect(again.err).toContain("was deleted and made again by someone else meanwhile: that group is left alone");
    // Deleted by another before the CLI's delete (its 404): said so, not "smr groups delete deletes it".
    expect((await run("restore", "gone", file, "--create").exited).err).toContain("the file was refused; group gone, made by --create, was deleted meanwhile");
  });
});
