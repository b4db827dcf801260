// The CLI's file arguments (cli/args.ts inputFile): a refusal says what the file is and what to do.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { inputFile, UsageError } from "../../cli/args.js";

const dir = mkdtempSync(join(tmpdir(), "smr-args-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("inputFile", () => {
  it("says a restore's input must be a regular file, and why, for a pipe or a device", () => {
    expect(() => inputFile("/dev/null", true)).toThrow(UsageError);
    expect(() => inputFile("/dev/null", true)).toThrow(/not a regular file \(a pipe or a device\).*save it to a file/);
    expect(inputFile("/dev/null")).toBe(0); // a batch file may be a pipe
  });

  it("names a directory and a missing file", () => {
    expect(() => inputFile(dir)).toThrow(/a directory, not a file/);
    expect(() => inputFile(join(dir, "none"))).toThrow(/cannot be read \(ENOENT\)/);
  });
});
