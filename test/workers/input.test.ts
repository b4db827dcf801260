// Hostile and edge inputs (issue 10): each of these once made a group unusable, answered 500, or
// broke the key order. Every one is now a documented 4xx, or a committed entry after which the
// audit's scrub agrees on every replica.
import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { pageBytesMax } from "../../shared/limits.js";
import { adminToken, api, clientToken, command, createGroup, expectError, query } from "./helpers.js";

async function consistent(group: string) {
  const audit = await api("POST", `/v1/groups/${group}/audit`);
  expect(audit.status).toBe(200);
  expect(audit.body.verdict, JSON.stringify(audit.body)).toBe("consistent");
  const status = await api("GET", `/v1/groups/${group}`, undefined, clientToken);
  expect(status.body.replicas.every((r: any) => r.status === "healthy" || r.status === "lagging")).toBe(true);
}

describe("strings that are not well-formed Unicode are refused at the edge, naming the field", () => {
  it("a lone surrogate in a key, a value, a client id, an account name or an object key is a 400, and the group stays healthy", async () => {
    await createGroup("surrogate");
    await createGroup("surrogate-bank", { machine: "bank" });
    const cases: [string, unknown, RegExp][] = [
      ["surrogate", { client: "c", request: 1, command: { op: "put", key: "\ud800", value: 1 } }, /body\.command\.key: not well-formed/],
      ["surrogate", { client: "c", request: 2, command: { op: "put", key: "k", value: { a: ["x\udc00"] } } }, /body\.command\.value\.a\.0: not well-formed/],
      ["surrogate", { client: "\ud800c", request: 3, command: { op: "get", key: "k" } }, /body\.client: not well-formed/],
      ["surrogate", { client: "c", request: 4, command: { op: "put", key: "k", value: { "\udfff": 1 } } }, /body\.command\.value\.\(a key\): not well-formed/],
      ["surrogate-bank", { client: "c", request: 1, command: { op: "open", account: "a\ud83d", balance: 5 } }, /body\.command\.account: not well-formed/],
    ];
    for (const [group, body, field] of cases) {
      // Sent as JSON text with the escape itself: JSON.stringify would write the lone surrogate as "\ud800" too.
      expectError(await api("POST", `/v1/groups/${group}/commands`, JSON.stringify(body), clientToken), 400, "bad_request", field);
    }
    expectError(await query("surrogate", { op: "list", prefix: "\ud800" }), 400, "bad_request", /body\.query\.prefix/);
    // A surrogate pair is well-formed: stored, listed and scrubbed like any key.
    expect((await command("surrogate", { op: "put", key: "emoji-😀", value: "\ud83d\ude00" })).status).toBe(200);
    const list = await query("surrogate", { op: "list" });
    expect(list.body.result.items).toEqual([["emoji-😀", "😀"]]);
    await consistent("surrogate");
    await consistent("surrogate-bank");
  });

  it("NUL and every plane survive storage: listed back exactly, and the scrub agrees", async () => {
    await createGroup("planes");
    const keys = ["a\u0000b", "\u0001", "\u007f", "\u00ff", "\u0800", "\uffff", "\u{10000}", "\u{10ffff}", "x\u0000"];
    let req = 100;
    for (const key of keys) expect((await command("planes", { op: "put", key, value: key }, "planes", ++req)).status).toBe(200);
    // Enough entries that every replica stores its rows (a save), then the scrub reads them back.
    const list = await query("planes", { op: "list", limit: 100 }, "linearizable");
    const sorted = [...keys].sort((a, b) => (String.fromCodePoint(...[...a].map((c) => c.codePointAt(0)!)) < b ? -1 : 1));
    expect(list.body.result.items.map(([k]: [string]) => k).sort()).toEqual(sorted.sort());
    for (const [k, v] of list.body.result.items) expect(v).toBe(k);
    await consistent("planes");
  });
});

describe("numbers JSON.parse would change are refused, naming the field", () => {
  it("an integer past 2^53 whose digits a double drops, one past a double's range or below its smallest: 400; others stored as written", async () => {
    await createGroup("numbers");
    const body = (request: number, value: string) => `{"client":"c","request":${request},"command":{"op":"put","key":"k","value":{"n":[${value}]}}}`;
    // It was a 200, and 12345678901234567890 read back as 12345678901234567000 (a probe).
    const refused: [string, RegExp][] = [
      ["12345678901234567890", /body\.command\.value\.n\.0: the integer 12345678901234567890 is beyond 2\^53 and would be stored as 12345678901234567000/],
      ["9007199254740993e0", /body\.command\.value\.n\.0: the integer 9007199254740993e0 is beyond 2\^53/],
      ["1e400", /body\.command\.value\.n\.0: .*out of range/],
      ["1e-400", /body\.command\.value\.n\.0: the number 1e-400 is too small for a double/],
    ];
    for (const [i, [value, problem]] of refused.entries()) expectError(await api("POST", "/v1/groups/numbers/commands", body(i + 1, value), clientToken), 400, "bad_request", problem);
    const kept = ["9007199254740991", "1e20", "1.5e300", "0.1", "-2.5E-3", "12345678901234567890.5e-10"];
    for (const [i, value] of kept.entries()) {
      expect((await api("POST", "/v1/groups/numbers/commands", body(100 + i, value), clientToken)).status).toBe(200);
      const read = await query("numbers", { op: "get", key: "k" }, "linearizable");
      expect(read.body.result.value.n[0]).toBe(Number(value));
    }
  });
});

describe("limits that used to be 500s", () => {
  it("a value nested deeper than the limit is a 400 naming the depth (10,000 nested arrays used to overflow the stack)", async () => {
    await createGroup("deep");
    const nested = (n: number) => "[".repeat(n) + "]".repeat(n);
    const body = (n: number) => `{"client":"c","request":${n},"command":{"op":"put","key":"k","value":${nested(n)}}}`;
    expectError(await api("POST", "/v1/groups/deep/commands", body(10_000), clientToken), 400, "bad_request", /nested deeper than 100/);
    expectError(await api("POST", "/v1/groups/deep/commands", body(99), clientToken), 400, "bad_request", /nested deeper/);
    expect((await api("POST", "/v1/groups/deep/commands", body(97), clientToken)).status).toBe(200);
    await consistent("deep");
  });

  it("a client token's client id in group tokens' form is a 400 naming body.client", async () => {
    await createGroup("reserved-client");
    const r = await api("POST", "/v1/groups/reserved-client/commands", { client: "0badcafe~me", request: 1, command: { op: "put", key: "k", value: 1 } }, clientToken);
    expectError(r, 400, "bad_request", /^body\.client: "<8 hex digits>~\.\.\." is reserved/);
  });

  it("a cas whose expected value is too large is a 413 naming command.expected", async () => {
    await createGroup("cas-big");
    const big = "x".repeat(65 * 1024);
    expectError(await command("cas-big", { op: "cas", key: "k", expected: big, value: 1 }), 413, "too_large", /command\.expected/);
    expectError(await command("cas-big", { op: "cas", key: "k", expected: null, value: big }), 413, "too_large", /command\.value/);
  });

  it("list and log pages are bounded in bytes: fewer items with next, never a 500 or a 503", async () => {
    await createGroup("fat");
    const value = "v".repeat(60 * 1024);
    const n = 100; // 6 MB of values: more than one page
    for (let i = 0; i < n; i++) {
      const r = await command("fat", { op: "put", key: `k${String(i).padStart(3, "0")}`, value }, "fat", i + 1);
      expect(r.status).toBe(200);
    }
    for (const consistency of ["linearizable", "sequential", "stale"]) {
      const seen: string[] = [];
      let after: string | undefined;
      for (let page = 0; page < 10; page++) {
        const r = await query("fat", { op: "list", limit: 1000, ...(after ? { after } : {}) }, consistency);
        expect(r.status, JSON.stringify(r.body).slice(0, 300)).toBe(200);
        const items: [string, string][] = r.body.result.items;
        const bytes = items.reduce((s, [k, v]) => s + k.length + JSON.stringify(v).length, 0);
        expect(bytes).toBeLessThanOrEqual(pageBytesMax + 64 * 1024);
        seen.push(...items.map(([k]) => k));
        if (!r.body.result.next) break;
        after = r.body.result.next;
      }
      expect(seen.length, consistency).toBe(n);
      expect(new Set(seen).size).toBe(n);
    }
    const log = await api("GET", "/v1/groups/fat/log?from=1&limit=1000");
    expect(log.status).toBe(200);
    expect(log.body.entries.length).toBeGreaterThan(0);
    expect(log.body.entries.length).toBeLessThan(n);
    expect(log.body.next).toBe(log.body.entries.at(-1).seq + 1); // cut short by bytes: the next page's from
    expect(JSON.stringify(log.body).length).toBeLessThanOrEqual(pageBytesMax + 256 * 1024);
  });
});

describe("one key order everywhere: code points (SQLite's, the memory store's, the cursor's)", () => {
  it("a list after a key outside the BMP skips the BMP keys that sort before it", async () => {
    await createGroup("order");
    for (const [i, key] of ["\uffff", "\uffffa", "\u{1f600}", "\uffff\u{1f600}", "\uffff\u{1f600}z"].entries()) {
      expect((await command("order", { op: "put", key, value: i }, "order", i + 1)).status).toBe(200);
    }
    const r = await query("order", { op: "list", prefix: "\uffff", after: "\u{1f600}" });
    expect(r.body.result.items).toEqual([]);
    const within = await query("order", { op: "list", prefix: "\uffff", after: "\uffffa" });
    expect(within.body.result.items.map(([k]: [string]) => k)).toEqual(["\uffff\u{1f600}", "\uffff\u{1f600}z"]);
    const all = await query("order", { op: "list" });
    expect(all.body.result.items.map(([k]: [string]) => k)).toEqual(["\uffff", "\uffffa", "\uffff\u{1f600}", "\uffff\u{1f600}z", "\u{1f600}"]);
    // Paging one at a time visits every key once, in that order.
    const paged: string[] = [];
    let after: string | undefined;
    for (let i = 0; i < 10; i++) {
      const p = await query("order", { op: "list", limit: 1, ...(after !== undefined ? { after } : {}) });
      paged.push(...p.body.result.items.map(([k]: [string]) => k));
      if (!p.body.result.next) break;
      after = p.body.result.next;
    }
    expect(paged).toEqual(all.body.result.items.map(([k]: [string]) => k));
  });

  it("integer query parameters are decimal digits: a hex, exponent or spaced one is a 400 naming it; an empty one is not given", async () => {
    await createGroup("params");
    expect((await command("params", { op: "put", key: "k", value: 1 })).status).toBe(200);
    const bad: [string, RegExp][] = [
      ["/v1/groups/params/log?from=&from=1", /^query\.from: given more than once/],
      ["/v1/groups/params/log?limit=1e3", /^query\.limit: must be a decimal integer/],
      ["/v1/groups/params/log?from=0x10", /^query\.from:/],
      ["/v1/groups/params/log?from=%205", /^query\.from:/],
      ["/v1/groups/params/log?limit=2000", /^query\.limit:/],
      ["/v1/groups/params/audits?limit=1.0", /^query\.limit:/],
      ["/v1/groups/params/events?limit=-1", /^query\.limit:/],
      ["/v1/groups/params/events?limit=201", /^query\.limit:/],
      ["/v1/groups/params/audits?limit=101", /^query\.limit:/],
      ["/v1/groups?limit=ten", /^query\.limit:/],
      ["/v1/metrics?limit=0", /^query\.limit:/],
      ["/v1/groups/params/watch?from=1e3", /^query\.from:/],
      ["/v1/groups/params/watch?from=99999999999999999", /^query\.from:/],
      ["/v1/groups/params/watch?from=99999999999999999999", /^query\.from: must be at most 2\^53-1/],
      ["/v1/groups/params/log?from=99999999999999999999", /^query\.from: must be at most 2\^53-1/],
    ];
    for (const [path, message] of bad) expectError(await api("GET", path), 400, "bad_request", message);
    // A watch's incarnation above the group's was never given: a 400, not a 404 "was deleted".
    const watchOf = async (incarnation: string) => {
      const res = await SELF.fetch("http://smr.test/v1/groups/params/watch?from=1", { headers: { authorization: `Bearer ${clientToken}`, "x-smr-incarnation": incarnation } });
      const body = res.headers.get("content-type")?.includes("json") ? await res.json() : await res.body?.cancel();
      return { status: res.status, body: body as any, headers: res.headers };
    };
    expectError(await watchOf("999"), 400, "bad_request", /^x-smr-incarnation: 999 is not an incarnation of group params \(it is at \d+\)/);
    expectError(await watchOf("0"), 400, "bad_request", /^x-smr-incarnation: 0 is not an incarnation of group params/);
    expect((await watchOf("1")).status).toBe(200);
    const log = await api("GET", "/v1/groups/params/log?from=1&limit=007");
    expect(log.status).toBe(200);
    expect(log.body.entries.length).toBeGreaterThan(0);
    // from=0 is the log's start, as a watch's from=0 is (it was a 400).
    const zero = await api("GET", "/v1/groups/params/log?from=0&limit=007");
    expect(zero.status, JSON.stringify(zero.body)).toBe(200);
    expect(zero.body.entries).toEqual(log.body.entries);
    expect(zero.body.entries[0].seq).toBe(1);
    // API.md writes its routes `?from=&limit=`: empty values are the defaults.
    const empty = await api("GET", "/v1/groups/params/log?from=&limit=");
    expect(empty.status, JSON.stringify(empty.body)).toBe(200);
    expect(empty.body.entries).toEqual(log.body.entries);
    expect((await api("GET", "/v1/groups?after=&limit=")).body.groups).toContain("params");
    for (const path of ["/v1/groups/params/events?limit=", "/v1/groups/params/audits?limit="]) {
      expect((await api("GET", path)).status, path).toBe(200);
    }
    const metrics = await SELF.fetch("http://smr.test/v1/metrics?group=&limit=", { headers: { authorization: `Bearer ${adminToken}` } });
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('group="params"');
    // Every event and audit a group keeps can be read in one page (200 and 100 of them).
    expect((await api("GET", "/v1/groups/params/events?limit=200")).status).toBe(200);
    expect((await api("GET", "/v1/groups/params/audits?limit=100")).status).toBe(200);
  });
});

describe("a 400 or a 404 says exactly what is wrong, one way", () => {
  it("fields are named from the body's root in a command, a batch and a query, and a missing one is `required`", async () => {
    await createGroup("fields");
    expectError(await command("fields", { op: "put", key: 5, value: 1 }), 400, "bad_request", /^body\.command\.key: /);
    const batch = { client: "b", commands: [{ request: 1, command: { op: "put", key: "a", value: 1 } }, { request: 2, command: { op: "get", key: 5 } }] };
    expectError(await api("POST", "/v1/groups/fields/commands", batch, clientToken), 400, "bad_request", /^body\.commands\.1\.command\.key: /);
    // A request id given twice names the second item (it named none: a review).
    const twice = { client: "b", commands: [1, 2, 1].map((request) => ({ request, command: { op: "put", key: "a", value: request } })) };
    expectError(await api("POST", "/v1/groups/fields/commands", twice, clientToken), 400, "bad_request", /^body\.commands\.2\.request: request id 1 is also item 0's: each command of a batch needs its own request id$/);
    expectError(await query("fields", { op: "get", key: 5 }), 400, "bad_request", /^body\.query\.key: /);
    expectError(await api("POST", "/v1/groups/fields/commands", { client: "c", request: 1 }, clientToken), 400, "bad_request", /^body\.command: required$/);
    expectError(await command("fields", { op: "put", value: 1 }), 400, "bad_request", /^body\.command\.key: required \(string\)$/);
    // A missing JSON value (a union of types) was just "Invalid input" (a probe).
    const json = "required \\(string \\| number \\| boolean \\| null \\| array \\| object\\)$";
    expectError(await command("fields", { op: "put", key: "k" }), 400, "bad_request", new RegExp(`^body\\.command\\.value: ${json}`));
    expectError(await command("fields", { op: "txn", compare: [{ key: "k" }], success: [], failure: [] }), 400, "bad_request", new RegExp(`^body\\.command\\.compare\\.0\\.value: ${json}`));
    // A repeated key is named (JSON.parse kept the last: this ran a get), and nothing is ordered;
    // a missing enum field is required, not an invalid option.
    expectError(await api("POST", "/v1/groups/fields/commands", '{"client":"d","request":1,"command":{"op":"delete","key":"x","op":"get"}}', clientToken), 400, "bad_request", /^body\.command: the key "op" appears more than once$/);
    expectError(await api("PUT", "/v1/groups/fields2", {}), 400, "bad_request", /^body\.machine: required \(one of kv, bank, lock\)$/);
    expect((await api("GET", "/v1/groups/fields/log?from=1")).body.entries.filter((e: any) => e.client === "d")).toEqual([]);
  });

  it("a list's prefix and after, and a watch's prefix, are bounded as keys are, in bytes", async () => {
    await createGroup("prefixes");
    const wide = "é".repeat(257); // 257 characters, 514 bytes
    expectError(await query("prefixes", { op: "list", prefix: "x".repeat(513) }, "stale"), 400, "bad_request", /^body\.query\.prefix: must be at most 512 bytes/);
    expectError(await query("prefixes", { op: "list", after: wide }, "stale"), 400, "bad_request", /^body\.query\.after: must be at most 512 bytes/);
    expectError(await api("GET", `/v1/groups/prefixes/watch?prefix=${encodeURIComponent(wide)}`, undefined, clientToken), 400, "bad_request", /^query\.prefix: must be at most 512 bytes/);
    expect((await query("prefixes", { op: "list", prefix: "x".repeat(512) }, "stale")).body.result.items).toEqual([]);
  });

  it("a query parameter given twice, or not percent-encoded UTF-8, is a 400 naming it", async () => {
    await createGroup("twice");
    expect((await command("twice", { op: "put", key: "k", value: 1 })).status).toBe(200);
    expectError(await api("GET", "/v1/groups/twice/log?from=1&from=2"), 400, "bad_request", /^query\.from: given more than once$/);
    expectError(await api("GET", "/v1/groups/twice/watch?prefix=%ff", undefined, clientToken), 400, "bad_request", /^query\.prefix: not percent-encoded UTF-8$/);
    expectError(await api("GET", "/v1/metrics?group=twice&group=other"), 400, "bad_request", /^query\.group: given more than once$/);
    // A parameter the route does not take is ignored, repeated or not (a cache-buster).
    const log = await api("GET", "/v1/groups/twice/log?from=1&limit=1&_=1&_=2&x=%ff");
    expect(log.body.entries.map((e: { seq: number }) => e.seq)).toEqual([1]);
  });

  it("a path that exists under other methods is a 404 saying which, with Allow", async () => {
    await createGroup("methods");
    const put = await api("PUT", "/v1/groups/methods/commands", {}, clientToken);
    expectError(put, 404, "not_found", /^no route PUT \/v1\/groups\/methods\/commands \(\/v1\/groups\/methods\/commands takes POST\)$/);
    expect(put.headers.get("allow")).toBe("POST");
    expect((await api("PATCH", "/v1/groups/methods")).headers.get("allow")).toBe("PUT, GET, DELETE");
    const none = await api("GET", "/v1/groups/methods/nothing");
    expectError(none, 404, "not_found", /^no route GET \/v1\/groups\/methods\/nothing$/);
    expect(none.headers.get("allow")).toBeNull();
  });
});
