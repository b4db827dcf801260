// The fuzz property over the protocol cores (test/fuzz/cores.ts), bounded for npm test: hostile
// bodies through the router's gate; refusals documented, everything accepted committed, executed
// as a reference model says, stored over UTF-8 storage without loss, scrubs and digests agreeing.
// FUZZ_SEED=n fixes the seed; a failure prints the `npm run fuzz` line that replays it.
import { describe, expect, it } from "vitest";
import { checkProperty, coresProperty, fidelityProperty, FuzzStats } from "../fuzz/cores.js";
import fc from "fast-check";

// A fixed seed in npm test (a red CI must be reproducible); `npm run fuzz` explores random ones.
const seed = process.env.FUZZ_SEED === undefined ? 20261201 : Number(process.env.FUZZ_SEED);
const seeded = { seed };
const casesPerRun = 250;

describe("fuzz: hostile bodies through the router's gate into real cores over UTF-8 storage", () => {
  it("refusals are documented; accepted commands commit and execute as the reference says; scrubs, digests and lists agree", () => {
    const stats = new FuzzStats();
    // Accepted commands that validation changed are counted here and failed by the next test.
    checkProperty(coresProperty(stats, casesPerRun, { allowChanged: true }), { numRuns: 100, ...seeded }, (s, p) => `npm run fuzz -- --seed ${s} --path ${p} --cases-per-run ${casesPerRun} --allow-changed`);
    console.log(`fuzz (cores): ${stats.summary().replaceAll("\n", "; ")}`);
    expect(stats.cases).toBeGreaterThan(5_000);
    // The mix keeps its purpose: many cases get through and execute, and every kind of refusal happens.
    expect(stats.accepted).toBeGreaterThan(stats.cases * 0.4);
    expect(stats.executed.ok ?? 0).toBeGreaterThan(stats.cases * 0.3);
    expect(stats.refused.too_large).toBeGreaterThan(0);
    for (const stage of ["json", "checkJson", "schema", "machine", "size"] as const) expect(stats.refusedAt[stage] ?? 0, stage).toBeGreaterThan(0);
    expect(stats.submits.conflict ?? 0).toBeGreaterThan(0);
    expect(stats.restarts).toBeGreaterThan(0);
    expect(stats.compactions).toBeGreaterThan(0);
  });

  it("what the cores get is what was sent: validation changes no accepted command (kv and bank)", () => {
    for (const machine of ["kv", "bank"] as const) {
      checkProperty(fidelityProperty(machine), { numRuns: 20_000, ...seeded }, (s) => `FUZZ_SEED=${s} npx vitest run --project node test/sim/fuzz.test.ts`);
    }
  });

  it("the harness finds the bug class it closes: with the router's checkJson left out, it fails", () => {
    // Before checkJson, a lone surrogate reached SQLite (stored as U+FFFD) and deep JSON reached
    // recursive code: either must fail the property, quickly.
    const stats = new FuzzStats();
    const r = fc.check(coresProperty(stats, casesPerRun, { allowChanged: true, checkJson: false }), { numRuns: 50, seed: 1, endOnFailure: true });
    expect(r.failed).toBe(true);
    expect(String((r.errorInstance as Error).message)).toMatch(/UTF-8|call stack|scrub|no command wrote|reference/);
  });
});
