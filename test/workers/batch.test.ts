// Batches (API.md "Batches") and kv transactions (API.md "Transactions"), through the router.
import { describe, expect, it } from "vitest";
import { batchOutputCharsMax, outputCharsMax, stepOutputCharsMax, valueBytesMax } from "../../shared/limits.js";
import { api, clientToken, command, createGroup, expectError, query } from "./helpers.js";

function batch(group: string, client: string, commands: { request: number; command: unknown }[]) {
  return api("POST", `/v1/groups/${group}/commands`, { client, commands }, clientToken);
}

describe("batches", () => {
  it("orders each command as its own entry in array order and answers one result per command", async () => {
    await createGroup("b1");
    const cmds = Array.from({ length: 20 }, (_, i) => ({ request: i + 1, command: { op: "incr", key: "n", by: 1 } }));
    const r = await batch("b1", "bc", cmds);
    expect(r.status).toBe(200);
    expect(r.body.results).toHaveLength(20);
    const seqs = r.body.results.map((x: any) => x.seq);
    expect(seqs).toEqual([...seqs].sort((a: number, b: number) => a - b));
    expect(new Set(seqs).size).toBe(20);
    // Applied in array order: the i-th increment saw i before it.
    expect(r.body.results.map((x: any) => x.output.value)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    // The bookmark covers the whole batch: a sequential read with it sees the last increment.
    const read = await query("b1", { op: "get", key: "n" }, "sequential", r.body.bookmark);
    expect(read.body.result.value).toBe(20);

    // A retry of the whole batch executes nothing again and returns the same results.
    const again = await batch("b1", "bc", cmds);
    expect(again.body.results).toEqual(r.body.results.map((x: object) => ({ ...x, replayed: true })));
    expect((await query("b1", { op: "get", key: "n" })).body.result.value).toBe(20);
  });

  it("answers each command on its own: a reused request id with another command is that command's conflict only", async () => {
    await createGroup("b2");
    expect((await command("b2", { op: "put", key: "a", value: 1 }, "bx", 5)).status).toBe(200);
    const r = await batch("b2", "bx", [
      { request: 5, command: { op: "put", key: "a", value: 2 } },
      { request: 6, command: { op: "put", key: "b", value: 3 } },
    ]);
    expect(r.status).toBe(200);
    expect(r.body.results[0].error.code).toBe("conflict");
    expect(r.body.results[1]).toMatchObject({ output: { previous: null } });
  });

  it("refuses the whole batch before ordering anything when one command is invalid", async () => {
    await createGroup("b3");
    const bad = await batch("b3", "by", [
      { request: 1, command: { op: "put", key: "ok", value: 1 } },
      { request: 2, command: { op: "put", key: "", value: 1 } },
    ]);
    expectError(bad, 400, "bad_request", /body\.commands\.1\.command\.key/);
    const big = await batch("b3", "by", [
      { request: 3, command: { op: "put", key: "ok", value: 1 } },
      { request: 4, command: { op: "put", key: "big", value: "x".repeat(70_000) } },
    ]);
    expectError(big, 413, "too_large", /body\.commands\.1\.command\.value/);
    expectError(await batch("b3", "by", []), 400, "bad_request", /commands/);
    const tooMany = Array.from({ length: 257 }, (_, i) => ({ request: i + 1, command: { op: "get", key: "k" } }));
    expectError(await batch("b3", "by", tooMany), 400, "bad_request", /commands/);
    expectError(await batch("b3", "by", [{ request: 1, command: { op: "get", key: "k" } }, { request: 1, command: { op: "get", key: "j" } }]), 400, "bad_request", /own request id/);
    const log = await api("GET", "/v1/groups/b3/log?from=1");
    expect(log.body.entries).toEqual([]);
  });
});

describe("kv txn", () => {
  it("runs success when every compare holds, failure otherwise, atomically with every output", async () => {
    await createGroup("t1");
    await command("t1", { op: "put", key: "x", value: 1 });
    const ok = await command("t1", {
      op: "txn",
      compare: [{ key: "x", value: 1 }, { key: "absent", value: null }],
      success: [{ op: "put", key: "x", value: 2 }, { op: "incr", key: "n", by: 5 }, { op: "get", key: "x" }],
      failure: [{ op: "put", key: "fail", value: true }],
    });
    expect(ok.body.output).toEqual({ succeeded: true, results: [{ previous: 1 }, { value: 5 }, { value: 2 }] });
    const no = await command("t1", {
      op: "txn",
      compare: [{ key: "x", value: 1 }],
      success: [{ op: "put", key: "x", value: 3 }],
      failure: [{ op: "delete", key: "n" }, { op: "cas", key: "x", expected: 2, value: 9 }],
    });
    expect(no.body.output).toEqual({ succeeded: false, results: [{ deleted: true }, { ok: true, value: 9 }] });
    const list = await query("t1", { op: "list" });
    expect(list.body.result.items).toEqual([["x", 9]]);
  });

  it("validates its parts: no nested txn, bounded lists, values' sizes named", async () => {
    await createGroup("t2");
    expectError(await command("t2", { op: "txn", success: [{ op: "txn" }] }), 400, "bad_request", /command\.success\.0/);
    const many = Array.from({ length: 65 }, () => ({ key: "k", value: 1 }));
    expectError(await command("t2", { op: "txn", compare: many }), 400, "bad_request", /command\.compare/);
    expectError(await command("t2", { op: "txn", success: [{ op: "put", key: "k", value: "x".repeat(70_000) }] }), 413, "too_large", /command\.success\.0\.value/);
  });

  it("concurrent conflicting txns have the outcome of some serial order (the log's)", async () => {
    await createGroup("t3");
    await command("t3", { op: "put", key: "c", value: 0 });
    // Each txn reads c as it expects it (a guess) and bumps it: compare-and-swap by txn.
    const n = 30;
    const runs = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        command("t3", {
          op: "txn",
          compare: [{ key: "c", value: i % 5 }],
          success: [{ op: "put", key: "c", value: (i % 5) + 1 }, { op: "put", key: `won/${i}`, value: i }],
          failure: [{ op: "get", key: "c" }],
        }, `tc${i}`, 1),
      ),
    );
    expect(runs.every((r) => r.status === 200)).toBe(true);
    // Replay in seq order against a reference: every output must be what the serial order gives.
    const bySeq = runs.map((r, i) => ({ i, seq: r.body.seq, out: r.body.output })).sort((a, b) => a.seq - b.seq);
    let c = 0;
    const won: number[] = [];
    for (const t of bySeq) {
      if (c === t.i % 5) {
        expect(t.out).toEqual({ succeeded: true, results: [{ previous: c }, { previous: null }] });
        c = c + 1;
        won.push(t.i);
      } else {
        expect(t.out).toEqual({ succeeded: false, results: [{ value: c }] });
      }
    }
    expect((await query("t3", { op: "get", key: "c" })).body.result.value).toBe(c);
    const items = (await query("t3", { op: "list", prefix: "won/" })).body.result.items;
    expect(items.map((x: any) => x[1]).sort((a: number, b: number) => a - b)).toEqual(won.sort((a, b) => a - b));
  });

  it("large outputs: one over outputCharsMax is replaced on every replica; a batch's past batchOutputCharsMax say their seq; replicas apply them over several steps", async () => {
    await createGroup("bigout");
    const big = "x".repeat(valueBytesMax - 2); // a 64 KiB value as stored (JSON, quotes included)
    for (let i = 0; i < 10; i++) expect((await command("bigout", { op: "put", key: `v${i}`, value: big }, "w", i + 1)).status).toBe(200);
    const gets = (n: number) => ({ op: "txn", compare: [], success: Array.from({ length: n }, (_, i) => ({ op: "get", key: `v${i}` })), failure: [] });
    // Ten gets: a 640 KiB output, over outputCharsMax (a Durable Object's SQLite refuses a row over 2 MB).
    expect(10 * valueBytesMax).toBeGreaterThan(outputCharsMax);
    const over = await command("bigout", gets(10), "w", 100);
    expect(over.status).toBe(200);
    // With the txn's `succeeded` kept: which branch ran is not lost with the results.
    expect(over.body.output).toEqual({ error: "output_too_large", chars: expect.any(Number), limit: outputCharsMax, succeeded: true });
    expect(over.body.output.chars).toBeGreaterThan(outputCharsMax);
    // Seven gets fit (about 459 KiB); 40 of them in one batch are past the batch's budget, and
    // take each replica more than two steps.
    const items = Array.from({ length: 40 }, (_, i) => ({ request: 200 + i, command: gets(7) }));
    expect(40 * 7 * valueBytesMax).toBeGreaterThan(2 * Math.max(batchOutputCharsMax, stepOutputCharsMax));
    const r = await batch("bigout", "w", items);
    expect(r.status, JSON.stringify(r.body).slice(0, 300)).toBe(200);
    const fitted = r.body.results.filter((x: any) => x.output !== undefined);
    const left = r.body.results.filter((x: any) => x.error !== undefined);
    expect(fitted.length).toBeGreaterThan(10);
    expect(left.length).toBeGreaterThan(0);
    expect(fitted.length + left.length).toBe(40);
    expect(left.every((x: any) => x.error.code === "too_large")).toBe(true);
    expect(fitted[0].output.results).toHaveLength(7);
    expect(left[0]).toMatchObject({ seq: expect.any(Number), error: { code: "too_large", message: expect.stringMatching(/executed at seq \d+.*send it again alone/) } });
    // Sent again alone, an item left out answers its recorded output (executed once: the same seq):
    // here the session row's marker, the output being far longer than its command (a group made
    // since 2026-12-06 keeps no more: sessionOutputFreeCharsDefault).
    const again = await command("bigout", gets(7), "w", 239);
    expect(again.status).toBe(200);
    expect(again.body.seq).toBe(r.body.results[39].seq);
    expect(again.body.output).toEqual({ error: "output_not_kept", chars: expect.any(Number), limit: expect.any(Number), succeeded: true });
    expect(again.body.output.chars).toBeGreaterThan(7 * (valueBytesMax - 2));
    // A first answer that fitted was whole, and its retry answers the marker too.
    const retried = await command("bigout", gets(7), "w", 200);
    expect([retried.body.seq, retried.body.output.error]).toEqual([r.body.results[0].seq, "output_not_kept"]);
    // Every replica applied everything and agrees.
    expect((await api("POST", "/v1/groups/bigout/audit")).body.verdict).toBe("consistent");
    expect((await query("bigout", { op: "get", key: "v9" })).body.result).toEqual({ value: big });
  }, 60_000);
});
