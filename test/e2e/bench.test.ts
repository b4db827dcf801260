// The benchmark is a deliverable too: a tiny run (1 s rows, a 10,000-put growth run: long enough that its first tenth, which includes opening 128 connections, has completions, no etcd)
// must finish and write results in the documented shape. Figures are not asserted: they come
// from `npm run bench`, never from a test.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { root } from "../support/server.js";

const dir = mkdtempSync(join(tmpdir(), "bench-smoke-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("npm run bench", () => {
  it("runs the quick rows and a growth run, and writes bench results and ratios as documented", async () => {
    const out = join(dir, "results.json");
    const args = [join(root, "bench/bench.ts"), "--quick", "--seconds", "1", "--growth", "10000", "--no-etcd", "--no-build", "--out", out];
    const { stdout } = await promisify(execFile)(join(root, "node_modules/.bin/tsx"), args, { cwd: root, timeout: 120_000 });
    expect(stdout).toContain("etcd rows skipped");
    const results = JSON.parse(readFileSync(out, "utf8"));
    expect(results.machine).toMatchObject({ cores: expect.any(Number), mode: "quick", rounds: 1, secondsPerRun: 1 });
    const rows = results.runs.map((r: { system: string; replicas: number; clients: number; op: string }) => [r.system, r.replicas, r.clients, r.op]);
    expect(rows).toEqual([
      ["smr", 3, 32, "put"],
      ["smr-separate", 3, 32, "put"],
      ["baseline", 1, 32, "put"],
      ["smr", 3, 32, "put-batch100"],
    ]);
    // The put rows carry the sequencer's work per command; only the co-located layout has direct appends.
    const [colocated, separate] = results.runs as { work: Record<string, number> }[];
    for (const w of [colocated!.work, separate!.work]) {
      expect(w.commands).toBeGreaterThan(0);
      expect(w.commandsPerFlush).toBeGreaterThanOrEqual(1);
      expect(w.rpcAppendsPerCommand).toBeGreaterThan(0);
    }
    expect(colocated!.work.directAppendsPerCommand).toBeGreaterThan(0);
    expect(separate!.work.directAppendsPerCommand).toBe(0);
    for (const r of results.runs) {
      expect(r.opsPerSec).toBeGreaterThan(0);
      expect(r.errors).toBe(0);
      for (const k of ["p50Ms", "p99Ms", "p999Ms"]) expect(r[k]).toBeGreaterThan(0);
      if (process.platform === "linux") expect(r.cpuUsPerOp).toBeGreaterThan(0);
      expect(r.loadCpuUsPerOp).toBeGreaterThan(0);
    }
    // One median per kind of row (a quick run has one round: the median is the row).
    expect(results.medians.map((m: { system: string; rows: number }) => [m.system, m.rows])).toEqual([["smr", 1], ["smr-separate", 1], ["baseline", 1], ["smr", 1]]);
    expect(results.medians[0].opsPerSec).toBe(results.runs[0].opsPerSec);
    // Each ratio with its target; one the run lacks a row for (etcd here) has neither value nor verdict.
    for (const name of ["smr3/baseline@32", "batch100/smr3put@32", "growth last/first"]) {
      expect(results.ratios[name]).toMatchObject({ value: expect.any(Number), target: expect.stringMatching(/^[<>]= [\d.]+$/), met: expect.any(Boolean) });
      expect(results.ratios[name].value).toBeGreaterThan(0);
    }
    expect(results.ratios["batch100 smr3/etcd@32"]).toEqual({ value: null, target: ">= 1", met: null });
    expect(results.ratios["smr3/etcd@32"]).toEqual({ value: null, target: null, met: null });
    expect(results.ratios["smr3/separate@32"]).toMatchObject({ value: expect.any(Number), target: null, met: null });
    expect(stdout).toMatch(/ratio +value +target +met/);
    expect(results.growth).toMatchObject({ ops: 10000, ratio: expect.any(Number) });
  }, 150_000);
});
