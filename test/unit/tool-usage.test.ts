// The project's own tools (npm run bench, sim, profile, compare, fuzz, check-history) say how to use them, and refuse what they do
// not know: `npm run bench -- --help` started a full 12-minute run over bench/results.json, and
// `npm run sim -- --help` said "--help needs a value" (a probe).
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseFlags } from "../support/args.js";

const root = join(__dirname, "../..");

/** Bench's options that keep a run it should have refused short and harmless (no build, no etcd, no results.json). */
const harmless = ["--quick", "--seconds", "1", "--no-build", "--no-etcd", "--out", "/dev/null"];

function tool(script: string, ...args: string[]) {
  const r = spawnSync("npx", ["tsx", script, ...args], { cwd: root, encoding: "utf8", timeout: 60_000 });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

describe("the tools' usage", () => {
  it("bench: --help prints its options and runs nothing; an unknown option, one without its value or with a value that is none is exit 2", () => {
    const help = tool("bench/bench.ts", "--help");
    expect(help.status).toBe(0);
    expect(help.out).toMatch(/^usage: npm run bench \[-- --quick\]/);
    const bogus = tool("bench/bench.ts", ...harmless, "--bogus");
    expect(bogus.status).toBe(2);
    expect(bogus.err).toMatch(/^unknown option --bogus\nusage: npm run bench/);
    expect(tool("bench/bench.ts", ...harmless, "--seconds").err).toMatch(/^--seconds needs a value/);
    // A value that is none ran with NaN seconds, over results.json (a review).
    for (const bad of [["--seconds", "abc"], ["--seconds", "--quick"], ["--rounds", "0"], ["--seconds=x"]]) {
      const r = tool("bench/bench.ts", ...harmless, ...bad);
      expect(r.status, bad.join(" ")).toBe(2);
      expect(r.err, bad.join(" ")).toMatch(/must be an integer of at least 1/);
    }
    expect(tool("bench/bench.ts", ...harmless, "--out", "--quick").err).toMatch(/^--out needs a file name/);
    expect(tool("bench/bench.ts", ...harmless, "--storage", "bogus").err).toMatch(/^--storage must be disk or memory, not "bogus"/);
    // A switch takes no value; a value holding "=" is kept whole (`--out=a=b` wrote to `a`: a review).
    expect(tool("bench/bench.ts", ...harmless, "--quick=0").err).toMatch(/^--quick takes no value/);
  });

  it("the tools' flag parser splits --name=value at the first '=' and refuses a value on a switch", () => {
    expect(parseFlags(["--out=a=b.json", "--seeds", "3", "--geo"], ["geo"])).toEqual(new Map([["out", "a=b.json"], ["seeds", "3"], ["geo", "1"]]));
    expect(() => parseFlags(["--geo=0"], ["geo"])).toThrow("--geo takes no value");
    expect(() => parseFlags(["--seeds"])).toThrow("--seeds needs a value");
  });

  it("profile, compare, fuzz, check-history: --help prints the usage and runs nothing; an unknown option or a value that is none is exit 2", () => {
    // `npm run profile -- --help` ran a whole profile, fuzz said "--help needs a value", check-history read a file "--help" (a probe).
    for (const [script, head] of [["bench/profile.ts", "usage: npm run profile"], ["bench/compare.ts", "usage: npm run compare"], ["test/fuzz/cli.ts", "usage: npm run fuzz"], ["test/sim/check-history.ts", "usage: npm run check-history"]] as const) {
      const help = tool(script, "--help");
      expect(help.status, script).toBe(0);
      expect(help.out.startsWith(head), `${script}: ${help.out}${help.err}`).toBe(true);
    }
    for (const [script, args, why] of [
      ["bench/profile.ts", ["--clients", "abc"], /^--clients must be an integer of at least 1, not "abc"\nusage: npm run profile/],
      ["bench/profile.ts", ["--op", "puts"], /^--op must be one of put, batch, get, not "puts"/],
      ["bench/profile.ts", ["--bogus", "1"], /^unknown option --bogus/],
      ["bench/compare.ts", ["--rounds", "0"], /^--rounds must be an integer of at least 1/],
      ["bench/compare.ts", ["--storage", "ram"], /^--storage must be one of disk, memory/],
      ["test/fuzz/cli.ts", ["--run", "5"], /^unknown option --run\nusage: npm run fuzz/],
      ["test/sim/check-history.ts", ["a.json", "b.json"], /^usage: npm run check-history/],
    ] as const) {
      const r = tool(script, ...args);
      expect(r.status, `${script} ${args.join(" ")}`).toBe(2);
      expect(r.err, `${script} ${args.join(" ")}`).toMatch(why);
    }
  }, 120_000);

  it("sim: --help prints its options and the fault kinds", () => {
    const help = tool("test/sim/cli.ts", "--help");
    expect(help.status).toBe(0);
    expect(help.out).toMatch(/^usage:\n  npm run sim -- --seed S/);
    expect(help.out).toContain("isolate-location");
  });
});
