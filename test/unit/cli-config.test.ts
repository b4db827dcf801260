// Where the CLI finds its URL and token (cli/config.ts): flags, then SMR_*, then the project's .dev.vars.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { UsageError } from "../../cli/args.js";
import { checkTarget, parseDevVars, resolveTarget } from "../../cli/config.js";

const dir = mkdtempSync(join(tmpdir(), "smr-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("cli config", () => {
  it("reads .dev.vars lines as wrangler writes them: comments, export, quotes", () => {
    expect(parseDevVars('# tokens\nADMIN_TOKEN=abc\nexport CLIENT_TOKENS="t1,t2"\nOTHER = \'x y\' \nBAD LINE\nTRAIL=v # note\n')).toEqual({
      ADMIN_TOKEN: "abc",
      CLIENT_TOKENS: "t1,t2",
      OTHER: "x y",
      TRAIL: "v",
    });
    // A quoted value followed by a comment, as wrangler's dotenv reads it (was sent with its quotes).
    expect(parseDevVars('ADMIN_TOKEN="admintok" # c\nCLIENT_TOKENS=\'t1\' # two\nHASH="a#b"\n')).toEqual({ ADMIN_TOKEN: "admintok", CLIENT_TOKENS: "t1", HASH: "a#b" });
  });

  it("prefers flags to SMR_URL/SMR_TOKEN to .dev.vars, and looks for .dev.vars only up to the project's root", () => {
    const project = join(dir, "p");
    mkdirSync(join(project, "a", "b"), { recursive: true });
    writeFileSync(join(project, "package.json"), "{}");
    writeFileSync(join(project, ".dev.vars"), "CLIENT_TOKENS=c1, c2\n");
    const deep = join(project, "a", "b");
    expect(resolveTarget({}, {}, deep)).toEqual({ url: "http://localhost:8787", urlFrom: "default", token: "c1", tokenFrom: `${join(project, ".dev.vars")} (CLIENT_TOKENS)` });
    expect(resolveTarget({}, { SMR_URL: "http://x/", SMR_TOKEN: "e" }, deep)).toMatchObject({ url: "http://x", token: "e", tokenFrom: "SMR_TOKEN" });
    expect(resolveTarget({ url: "http://f", token: "f" }, { SMR_URL: "http://x", SMR_TOKEN: "e" }, deep)).toMatchObject({ url: "http://f", token: "f", urlFrom: "--url" });
    // A nested package (its own package.json, no .dev.vars) is a project of its own.
    writeFileSync(join(project, "a", "package.json"), "{}");
    expect(resolveTarget({}, {}, deep)).toMatchObject({ token: undefined, tokenFrom: "none" });
  });

  it("gives .dev.vars' tokens (the dev server's) only to a server on this machine", () => {
    const project = join(dir, "q");
    mkdirSync(project, { recursive: true });
    writeFileSync(join(project, "package.json"), "{}");
    writeFileSync(join(project, ".dev.vars"), "ADMIN_TOKEN=dev-admin\n");
    for (const url of ["http://localhost:9001", "http://127.0.0.1:8787", "http://[::1]:8787", "http://app.localhost"]) {
      expect(resolveTarget({ url }, {}, project)).toMatchObject({ token: "dev-admin" });
    }
    for (const url of ["https://smr.example.com", "http://10.0.0.5:8787"]) {
      expect(resolveTarget({ url }, {}, project)).toMatchObject({ token: undefined });
      expect(resolveTarget({}, { SMR_URL: url }, project)).toMatchObject({ token: undefined });
    }
    expect(resolveTarget({ url: "https://smr.example.com", token: "mine" }, {}, project)).toMatchObject({ token: "mine" });
  });

  it("refuses, as a usage error, a URL without http(s) and a token that cannot be sent, never echoing the token", () => {
    const t = (url: string, token = "tok", urlFrom = "--url") => ({ url, token, urlFrom, tokenFrom: "SMR_TOKEN" });
    expect(() => checkTarget(t("http://localhost:8787"))).not.toThrow();
    expect(() => checkTarget(t("https://smr.example.com/prefix"))).not.toThrow();
    expect(() => checkTarget(t("http://x", "g.demo.0123abcd.secret-with_all.chars~+/="))).not.toThrow();
    // No scheme: a command was retried for 90 s, then said it "may have taken effect".
    for (const url of ["localhost:8811", "notaurl", "ftp://host", ""]) {
      expect(() => checkTarget(t(url))).toThrow(UsageError);
      expect(() => checkTarget(t(url))).toThrow(/--url .* is not an http:\/\/ or https:\/\/ URL/);
    }
    expect(() => checkTarget(t("http://u:p@host"))).toThrow(/user name or password/);
    for (const token of ["sekret\nx", "sekret\r\n", " sekret", "s\u0000", "tök\u20acn", "sekret x"]) {
      expect(() => checkTarget(t("http://x", token))).toThrow(UsageError);
      try {
        checkTarget(t("http://x", token));
      } catch (err) {
        expect((err as Error).message).toContain("the token from SMR_TOKEN cannot be sent");
        expect((err as Error).message).not.toContain("sekret");
      }
    }
  });

  it("refuses a URL with a query or a fragment: the API's paths would be appended after it", () => {
    const t = (url: string) => ({ url, token: "tok", urlFrom: "SMR_URL", tokenFrom: "SMR_TOKEN" });
    for (const url of ["http://localhost:8811?x=1", "http://localhost:8811#frag", "http://localhost:8811/?"]) {
      expect(() => checkTarget(t(url))).toThrow(/SMR_URL .* has a query or a fragment/);
    }
    expect(() => checkTarget(t("http://localhost:8811/prefix"))).not.toThrow();
  });
});
