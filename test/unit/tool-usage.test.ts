// The project's own tools (npm run bench, npm run sim) say how to use them, and refuse what they do
// not know: `npm run bench -- --help` started a full 12-minute run over bench/results.json, and
// `npm run sim -- --help` said "--help needs a value" (a probe).
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const root = join(__dirname, "../..");

function tool(script: string, ...args: string[]) {
  const r = spawnSync("npx", ["tsx", script, ...args], { cwd: root, encoding: "utf8", timeout: 60_000 });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

describe("the tools' usage", () => {
  it("bench: --help prints its options and runs nothing; an unknown option or one without its value is exit 2", () => {
    const help = tool("bench/bench.ts", "--help");
    expect(help.status).toBe(0);
    expect(help.out).toMatch(/^usage: npm run bench \[-- --quick\]/);
    const bogus = tool("bench/bench.ts", "--quick", "--bogus");
    expect(bogus.status).toBe(2);
    expect(bogus.err).toMatch(/^unknown option --bogus\nusage: npm run bench/);
    expect(tool("bench/bench.ts", "--quick", "--seconds").err).toMatch(/^--seconds needs a value/);
  });

  it("sim: --help prints its options and the fault kinds", () => {
    const help = tool("test/sim/cli.ts", "--help");
    expect(help.status).toBe(0);
    expect(help.out).toMatch(/^usage:\n  npm run sim -- --seed S/);
    expect(help.out).toContain("isolate-location");
  });
});
