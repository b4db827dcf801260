// The dashboard's and the reference page's scripts load as browser modules with no build step: a
// syntax error in one (a name declared twice) left the page a blank shell, caught only by the
// browser test (a review). Each is checked as a module here.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

describe("public/*.js", () => {
  it("each parses as an ES module", () => {
    const dir = mkdtempSync(join(tmpdir(), "smr-public-"));
    const scripts = readdirSync("public").filter((f) => f.endsWith(".js"));
    expect(scripts).toContain("dashboard.js");
    for (const f of scripts) {
      const copy = join(dir, f.replace(/\.js$/, ".mjs"));
      copyFileSync(join("public", f), copy);
      expect(() => execFileSync(process.execPath, ["--check", copy], { stdio: "pipe" }), f).not.toThrow();
    }
  });
});
