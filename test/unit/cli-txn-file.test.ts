// `smr txn --file` (cli/data.ts txnFileDoc): a file of one txn is read; a file of several is a
// usage error, not its first run and the rest dropped in silence.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { UsageError } from "../../cli/args.js";
import { txnFileDoc } from "../../cli/data.js";

const dir = mkdtempSync(join(tmpdir(), "smr-txn-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const txn = (key: string) => ({ compare: [], success: [{ op: "put", key, value: 1 }] });

describe("smr txn --file", () => {
  it("reads the one txn of a file (an object, or an array of one)", () => {
    const one = join(dir, "one.json");
    writeFileSync(one, JSON.stringify(txn("a"), null, 2));
    expect(txnFileDoc(one)).toEqual(txn("a"));
    writeFileSync(one, JSON.stringify([txn("a")]));
    expect(txnFileDoc(one)).toEqual(txn("a"));
  });

  it("refuses a file of several documents, and an empty one", () => {
    const two = join(dir, "two.ndjson");
    writeFileSync(two, `${JSON.stringify(txn("a"))}\n${JSON.stringify(txn("b"))}\n`);
    expect(() => txnFileDoc(two)).toThrow(UsageError);
    expect(() => txnFileDoc(two)).toThrow(/2 JSON documents; a txn file holds one/);
    const none = join(dir, "none.ndjson");
    writeFileSync(none, "\n");
    expect(() => txnFileDoc(none)).toThrow(/0 JSON documents/);
  });
});
