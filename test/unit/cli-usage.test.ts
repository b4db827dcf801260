// `smr`'s own checks before anything is sent (bin/smr.mjs, run as a user runs it; no server): the
// URL before the token, the help's subcommand list, and the log's --from 0 (each from a probe).
import { spawn, spawnSync } from "node:child_process";
import { createServer as createHttpServer } from "node:http";
import { mkdtempSync, writeFileSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const bin = join(__dirname, "../../bin/smr.mjs");
// Outside the project, with neither SMR_URL nor SMR_TOKEN: no .dev.vars token is found.
const away = mkdtempSync(join(tmpdir(), "smr-usage-"));

function bareEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.SMR_URL;
  delete env.SMR_TOKEN;
  delete env.npm_lifecycle_event;
  return env;
}

function smr(...args: string[]): { status: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: away, env: bareEnv(), encoding: "utf8", timeout: 60_000 });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

/** As smr(), without blocking this process (a server in it answers meanwhile). */
function smrAsync(...args: string[]): Promise<{ status: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, [bin, ...args], { cwd: away, env: bareEnv() });
  let out = "";
  let err = "";
  child.stdout.on("data", (d) => (out += String(d)));
  child.stderr.on("data", (d) => (err += String(d)));
  return new Promise((resolve) => child.on("close", (status) => resolve({ status, out, err })));
}

describe("smr before it sends anything", () => {
  it("takes an empty SMR_NEAR for none, and refuses one that is no location (an empty one failed every command: a review)", () => {
    const run = (near: string) => spawnSync(process.execPath, [bin, "config", "--json"], { cwd: away, env: { ...bareEnv(), SMR_NEAR: near }, encoding: "utf8", timeout: 60_000 });
    expect(run("").status).toBe(0);
    const bad = run("mars");
    expect([bad.status, bad.stderr]).toEqual([2, expect.stringMatching(/'mars' from env 'SMR_NEAR' is invalid/)]);
  });

  it("names a URL without a scheme, not a missing token", () => {
    const r = smr("get", "demo", "greeting", "--url", "localhost:9103");
    expect(r.status).toBe(2);
    expect(r.err).toContain('--url "localhost:9103" is not an http:// or https:// URL');
    expect(r.err).not.toContain("no token");
  });

  it("lists `replicas list` and `tokens list` by their usage, without the internal [more...]", () => {
    for (const parent of ["replicas", "tokens"]) {
      const r = smr("help", parent);
      expect(r.status).toBe(0);
      expect(r.out).toMatch(/list <group> \[options\]/);
      expect(r.out).not.toContain("[more...]");
    }
  });

  it("refuses a replica or token id that is not one as a usage error, exit 2: nothing is sent (it was an API error, exit 1, a review)", () => {
    const url = ["--url", "http://127.0.0.1:9", "--token", "t"];
    for (const args of [["replicas", "remove", "demo", "R 1"], ["replicas", "repair", "demo", "r0"], ["replicas", "release", "demo", "../x"]]) {
      const r = smr(...args, ...url);
      expect(r.status, args.join(" ")).toBe(2);
      expect(r.err).toMatch(/invalid for argument 'id'\. not a replica id/);
    }
    const r = smr("tokens", "revoke", "demo", "../x", ...url);
    expect(r.status).toBe(2);
    expect(r.err).toMatch(/invalid for argument 'id'\. not a token id/);
  });

  it("names the --client and --request to repeat a command with after a 500: raised after the sequencer was called, it may have run (a review); exit 3, and under --json the pair in the error document", async () => {
    const server = createHttpServer((_req, res) => {
      res.writeHead(500, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { code: "internal", message: "a bug" } }));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      // Retried with the same pair while --retry-for lasts (one attempt here), then an unknown outcome.
      const r = await smrAsync("put", "demo", "k", "1", "--client", "me", "--request", "7", "--retry-for", "0", "--url", `http://127.0.0.1:${port}`, "--token", "t");
      expect(r.status).toBe(3);
      expect(r.err).toContain("the command may have taken effect; to retry it exactly once, repeat it with --client me --request 7");
      expect(r.err).toContain("500 internal: a bug");
      // Under --json the error is a document on stdout too (it was only the text line: a review).
      const j = await smrAsync("exec", "demo", '{"op":"incr","key":"n","by":1}', "--client", "me", "--request", "8", "--retry-for", "0", "--json", "--url", `http://127.0.0.1:${port}`, "--token", "t");
      expect(j.status).toBe(3);
      expect(JSON.parse(j.out)).toEqual({ error: { status: 504, code: "timeout", message: expect.stringMatching(/^500 internal: a bug; its outcome is unknown/), outcome: "unknown", retry: { client: "me", request: 8 } } });
      // A batch of a file: the pair is the client and the first request id.
      const file = join(away, "two.ndjson");
      writeFileSync(file, '{"op":"put","key":"a","value":1}\n{"op":"put","key":"b","value":2}\n');
      const b = await smrAsync("batch", "demo", file, "--client", "me", "--first-request", "20", "--retry-for", "0", "--json", "--url", `http://127.0.0.1:${port}`, "--token", "t");
      expect(b.status).toBe(3);
      expect(JSON.parse(b.out).error).toMatchObject({ outcome: "unknown", retry: { client: "me", firstRequest: 20 } });
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("a 500 outputs_split is an answer (the command ran, no output vouched for): exit 1, no retry pair (a retry answers the same)", async () => {
    const server = createHttpServer((_req, res) => {
      res.writeHead(500, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { code: "internal", message: "group demo: replicas produced different outputs and no majority agreed: the command ran", reason: "outputs_split" } }));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      const r = await smrAsync("exec", "demo", '{"op":"incr","key":"n","by":1}', "--client", "me", "--request", "9", "--json", "--url", `http://127.0.0.1:${port}`, "--token", "t");
      expect(r.status).toBe(1);
      const doc = JSON.parse(r.out).error;
      expect(doc).toMatchObject({ status: 500, code: "internal" });
      expect(doc.outcome).toBeUndefined();
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("under --json an API error or a usage error is a document on stdout as well as the line on stderr, exit 1 and 2", async () => {
    const server = createHttpServer((_req, res) => {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { code: "not_found", message: "group demo does not exist" } }));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      const r = await smrAsync("get", "demo", "k", "--json", "--url", `http://127.0.0.1:${port}`, "--token", "t");
      expect(r.status).toBe(1);
      expect(JSON.parse(r.out)).toEqual({ error: { status: 404, code: "not_found", message: "group demo does not exist" } });
      expect(r.err).toContain("error: 404 not_found: group demo does not exist");
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    const usage = smr("get", "Bad_Name", "k", "--json", "--url", "http://127.0.0.1:9", "--token", "t");
    expect(usage.status).toBe(2);
    expect(JSON.parse(usage.out).error).toMatchObject({ code: "usage", message: expect.stringMatching(/group/) });
  });

  it("a batch's assigned request ids skip the ids its file gives (they collided under --first-request: a review); an id given twice is a usage error naming both commands", async () => {
    let sent: { request: number }[] = [];
    const server = createHttpServer((req, res) => {
      let body = "";
      req.on("data", (d) => (body += String(d)));
      req.on("end", () => {
        sent = JSON.parse(body).commands;
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ results: sent.map((c, i) => ({ seq: i + 1, output: null, request: c.request })) }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      const file = join(away, "mixed.ndjson");
      writeFileSync(file, '{"op":"put","key":"a","value":1}\n{"command":{"op":"put","key":"b","value":2},"request":2}\n{"op":"put","key":"c","value":3}\n');
      const r = await smrAsync("batch", "demo", file, "--client", "bb", "--first-request", "1", "--json", "--url", `http://127.0.0.1:${port}`, "--token", "t");
      expect(r.status, r.err).toBe(0);
      expect(sent.map((c) => c.request)).toEqual([1, 2, 3]);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    // Items whose outcome is unknown come back as results: the document carries the pair too (a review).
    const timedOut = createHttpServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ results: [{ seq: 1, output: null }, { error: { code: "timeout", message: "outcome unknown" } }] }));
      });
    });
    await new Promise<void>((resolve) => timedOut.listen(0, "127.0.0.1", resolve));
    try {
      const two = join(away, "two-more.ndjson");
      writeFileSync(two, '{"op":"put","key":"a","value":1}\n{"op":"put","key":"b","value":2}\n');
      const r = await smrAsync("batch", "demo", two, "--json", "--retry-for", "0", "--url", `http://127.0.0.1:${(timedOut.address() as AddressInfo).port}`, "--token", "t");
      expect(r.status).toBe(3);
      const doc = JSON.parse(r.out);
      expect(doc).toMatchObject({ outcome: "unknown", retry: { client: expect.any(String), firstRequest: 1 } });
      expect(r.err).toContain(`--client ${doc.retry.client} --first-request 1`);
    } finally {
      await new Promise((resolve) => timedOut.close(resolve));
    }
    const twice = join(away, "twice.ndjson");
    writeFileSync(twice, '{"command":{"op":"put","key":"a","value":1},"request":5}\n{"op":"put","key":"b","value":2}\n{"command":{"op":"put","key":"c","value":3},"request":5}\n');
    const u = smr("batch", "demo", twice, "--url", "http://127.0.0.1:9", "--token", "t");
    expect(u.status).toBe(2);
    expect(u.err).toContain("commands 1 and 3 both give request 5; each command needs its own");
  });

  it("says a restore may have landed when the whole file was sent and no answer came (it said only \"fetch failed\", and the restore was there 15 s later: a review)", async () => {
    const file = join(away, "one.ndjson");
    writeFileSync(file, '{"group":"x","machine":"kv","seq":1,"rows":1,"digest":"00"}\n["a",1]\n');
    // Takes the whole body, then drops the connection without a word.
    const server = createHttpServer((req) => {
      req.resume();
      req.on("end", () => req.socket.destroy());
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      const r = await smrAsync("restore", "demo", file, "--url", `http://127.0.0.1:${port}`, "--token", "t");
      expect(r.status).toBe(3);
      expect(r.err).toContain("the restore may still be applied (the server has what was sent); `smr groups status demo` shows whether it was");
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("a snapshot whose reader closes the pipe before the end exits 1 and says so (it exited 0: a backup cut short, a review)", async () => {
    const rows = Array.from({ length: 20_000 }, (_, i) => JSON.stringify([`key-${i}`, "v".repeat(40)])).join("\n");
    const server = createHttpServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      res.end(`{"group":"demo","machine":"kv","seq":1,"rows":20000,"digest":"00"}\n${rows}\n`);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      const script = `set -o pipefail; "${process.execPath}" "${bin}" snapshot demo --url http://127.0.0.1:${port} --token t | head -c 100 > /dev/null`;
      const r = await new Promise<{ status: number | null; err: string }>((resolve) => {
        const child = spawn("bash", ["-c", script], { cwd: away, env: bareEnv() });
        let err = "";
        child.stderr.on("data", (d) => (err += String(d)));
        child.on("close", (status) => resolve({ status, err }));
      });
      expect(r.status).toBe(1);
      expect(r.err).toContain("the output was closed before the download ended: what its reader took is not a whole snapshot");
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("takes `log --from 0` (0 and 1 both mean the first entry, as the API says)", () => {
    // Port 9 (fetch refuses it at once): the error is the network's, not a usage error about --from.
    const r = smr("log", "demo", "--from", "0", "--url", "http://127.0.0.1:9", "--token", "t", "--retry-for", "0");
    expect(r.err).not.toContain("--from");
    expect(r.status).toBe(1);
  });

  it("says a retry's reason once, then that it is the same", async () => {
    // A port nothing listens on (9 is one fetch refuses outright, without a retry).
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    await new Promise((resolve) => server.close(resolve));
    const r = smr("get", "demo", "k", "--url", `http://127.0.0.1:${port}`, "--token", "t", "--retry-for", "3");
    const lines = r.err.split("\n").filter((l) => l.startsWith("retrying"));
    expect(lines.length).toBeGreaterThan(1);
    expect(lines[0]).toMatch(/ECONNREFUSED|connect/);
    expect(lines.slice(1).every((l) => l.endsWith(": the same"))).toBe(true);
    expect(r.status).toBe(1);
  });
});
