// The CLI's file arguments (cli/args.ts inputFile): a refusal says what the file is and what to do.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { InvalidArgumentError } from "commander";
import { checkJson, scannedJson } from "../../shared/api/input.js";
import { UsageError, inputFile, jsonArg, listArg, locationArg, locationListArg, nonEmptyArg, positiveArg, readJsonFile, upToArg } from "../../cli/args.js";

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

describe("integer arguments", () => {
  it("call an integer beyond 2^53 - 1 too large, not 'not an integer' (a probe: --request 9007199254740993)", () => {
    expect(() => positiveArg("9007199254740993")).toThrow(/^too large: at most 9007199254740991/);
    expect(positiveArg("9007199254740991")).toBe(9007199254740991);
    expect(() => positiveArg("1.5")).toThrow(/^not an integer$/);
    expect(() => positiveArg("0")).toThrow(/^must be at least 1$/);
  });
});

describe("JSON arguments and files", () => {
  // A probe: `smr put g k 1e400` stored null and 12345678901234567890 was stored as ...7000, exit 0.
  it("refuses a number JSON.parse would change: beyond a double's range, or an integer beyond 2^53", () => {
    expect(() => jsonArg("1e400")).toThrow(InvalidArgumentError);
    expect(() => jsonArg("1e400")).toThrow(/1e400 is out of range/);
    expect(() => jsonArg('{"n":[12345678901234567890]}')).toThrow(/^the value\.n\.0: the integer 12345678901234567890 is beyond 2\^53 and would be sent as 12345678901234567000: quote it as a string/);
    expect(jsonArg('{"n":[9007199254740991, 1.5e300, -0.1, "12345678901234567890"]}')).toEqual({ n: [9007199254740991, 1.5e300, -0.1, "12345678901234567890"] });
    // However written (a review): below a double's smallest, an integer with a fraction of zeros or an exponent.
    expect(() => jsonArg("1e-400")).toThrow(/1e-400 is too small for a double/);
    expect(() => jsonArg("12345678901234567890.0")).toThrow(/beyond 2\^53/);
    expect(() => jsonArg("1.2345678901234567890e19")).toThrow(/beyond 2\^53/);
    expect(() => jsonArg("9.007199254740993e15")).toThrow(/would be sent as 9007199254740992/);
    expect(() => jsonArg("9007199254740993e0")).toThrow(/would be sent as 9007199254740992/);
    expect(jsonArg("[0.0e5, 1e20, 1e308, 9007199254740992, 1E+2, 1.5e300]")).toEqual([0, 1e20, 1e308, 9007199254740992, 100, 1.5e300]);
    expect(() => jsonArg('"\\ud800"')).toThrow(/lone surrogate/);
  });

  it("refuses them where JSON.parse gives no source text (Node 20: `node bin/smr.mjs` stored 12345678901234567890 changed, exit 0: a probe)", () => {
    const refusal = (text: string) => checkJson(scannedJson(text, "sent"), "the value");
    expect(refusal('{"n":[12345678901234567890]}')).toBe("the value: the integer 12345678901234567890 is beyond 2^53 and would be sent as 12345678901234567000: quote it as a string");
    for (const text of ["1e400", "1e-400", "12345678901234567890.0", "9007199254740993e0", '{"a":"x\\"","b":-9.007199254740993e15}']) expect(refusal(text), text).not.toBeNull();
    // In strings (an escaped quote too), and numbers a double holds, let be.
    for (const text of ['{"n":[9007199254740991, 1.5e300, -0.1, "12345678901234567890"]}', '["a\\"12345678901234567890", 1e20]', "[0.0e5, 1e308, 9007199254740992, 1E+2]"]) {
      expect(refusal(text), text).toBeNull();
      expect(scannedJson(text, "sent")).toEqual(JSON.parse(text));
    }
  });

  it("refuses such a number in a file, naming the line of an NDJSON file", () => {
    const ndjson = join(dir, "cmds.ndjson");
    writeFileSync(ndjson, '{"op":"put","key":"a","value":1}\n{"op":"put","key":"b","value":1e400}\n');
    expect(() => readJsonFile(ndjson)).toThrow(/cmds\.ndjson:2\.value: the number 1e400 is out of range/);
    const array = join(dir, "cmds.json");
    writeFileSync(array, '[{"op":"put","key":"a","value":12345678901234567890}]');
    expect(() => readJsonFile(array)).toThrow(/cmds\.json\[0\]\.value: the integer 12345678901234567890 is beyond 2\^53 and would be sent as/);
    // Pretty-printed, one document: the number is said, not "Unexpected end of JSON input" of its first line.
    writeFileSync(array, '[\n  {"op":"put","key":"a","value":1e400}\n]\n');
    expect(() => readJsonFile(array)).toThrow(/cmds\.json\[0\]\.value: the number 1e400 is out of range/);
    writeFileSync(array, '[{"op":"put","key":"a","value":1}]');
    expect(readJsonFile(array)).toEqual([{ op: "put", key: "a", value: 1 }]);
  });

  it("refuses a key repeated in one object (JSON.parse kept the last, and sent that), and reads a file that starts with a byte order mark", () => {
    expect(() => jsonArg('{"op":"delete","op":"get"}')).toThrow(/^the value: the key "op" appears more than once$/);
    const ndjson = join(dir, "twice.ndjson");
    writeFileSync(ndjson, '{"op":"put","key":"a","value":1}\n{"op":"put","key":"b","key":"c","value":1}\n');
    expect(() => readJsonFile(ndjson)).toThrow(/twice\.ndjson:2: the key "key" appears more than once$/);
    const array = join(dir, "twice.json");
    writeFileSync(array, '[{"op":"put","key":"a","value":1},{"op":"get","key":"b","op":"x"}]');
    expect(() => readJsonFile(array)).toThrow(/twice\.json\[1\]: the key "op" appears more than once$/);
    const bom = join(dir, "bom.ndjson");
    writeFileSync(bom, '\uFEFF{"op":"put","key":"a","value":1}\n{"op":"get","key":"a"}\n');
    expect(readJsonFile(bom)).toEqual([{ op: "put", key: "a", value: 1 }, { op: "get", key: "a" }]);
  });

  it("refuses an empty item in a list and an empty value (a group of two made of `weur,,apac`, `--token \"\"` running as admin)", () => {
    expect(listArg("weur, apac")).toEqual(["weur", "apac"]);
    expect(() => listArg("weur,,apac")).toThrow(/an empty item/);
    expect(() => listArg("weur,")).toThrow(/an empty item/);
    expect(() => nonEmptyArg("")).toThrow(/empty/);
    expect(nonEmptyArg("x")).toBe("x");
  });
});

describe("limits", () => {
  it("refuse a limit past its maximum before anything is sent (the server's 400 was exit 1)", () => {
    expect(upToArg(1000)("1000")).toBe(1000);
    expect(() => upToArg(1000)("5000")).toThrow(/must be at most 1000/);
    expect(() => upToArg(1000)("0")).toThrow(/at least 1/);
  });
});

describe("location hints", () => {
  it("are checked before anything is sent (the server's 400 was an API error, exit 1: a probe's --location mars)", () => {
    expect(locationArg("weur")).toBe("weur");
    expect(() => locationArg("mars")).toThrow(/^not a location hint \(wnam enam sam weur eeur apac oc afr me\)$/);
    expect(locationListArg("weur,apac")).toEqual(["weur", "apac"]);
    expect(() => locationListArg("weur,mars")).toThrow(/^"mars" is not a location hint/);
    expect(() => locationListArg("weur,,apac")).toThrow(/empty item/);
  });
});
