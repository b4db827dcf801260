// `smr log` (cli/members.ts logHint): a page says on stderr where the next one starts, or why it
// is empty; the table alone left an operator to guess whether the log went on.
import { describe, expect, it } from "vitest";
import { logHint } from "../../cli/members.js";
import type { Entry } from "../../shared/client/index.js";

const entry = (seq: number) => ({ seq, epoch: 1, kind: "command", client: "c", request: seq, command: {}, timestamp: "2026-12-04T00:00:00Z", hash: "00" }) as Entry;

describe("smr log's hint", () => {
  it("names the next page's --from when entries follow", () => {
    expect(logHint({ firstSeq: 1, lastSeq: 8, commitSeq: 8, entries: [entry(1), entry(2)] })).toBe("more: --from 3 (the log holds 1 to 8)");
  });
  it("says nothing on the last page", () => {
    expect(logHint({ firstSeq: 1, lastSeq: 8, commitSeq: 8, entries: [entry(7), entry(8)] })).toBeUndefined();
  });
  it("says where the log is when --from is past its end, and when it is empty", () => {
    expect(logHint({ firstSeq: 1, lastSeq: 8, commitSeq: 8, entries: [] })).toBe("no entries there: the log holds 1 to 8");
    expect(logHint({ firstSeq: 0, lastSeq: 0, commitSeq: 0, entries: [] })).toBe("the log is empty");
  });
});
