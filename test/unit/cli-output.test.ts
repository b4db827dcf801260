// What the CLI prints for people (cli/output.ts, cli/watch.ts): text any writer chose (keys,
// values, client names) never reaches the terminal as control characters. A key holding ESC
// sequences cleared the operator's screen and retitled the terminal through `smr list` and
// `smr watch`; one holding a line break printed as two lines (a probe).
import { afterEach, describe, expect, it, vi } from "vitest";
import { execFileSync } from "node:child_process";
import { brief, printable, printTable, safeJson, shellOption } from "../../cli/output.js";
import { eventLine } from "../../cli/watch.js";
import type { WatchEvent } from "../../shared/client/index.js";

const hostile = "\u001b[2J\u001b]0;pwned\u0007evil";
const controls = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/;

afterEach(() => vi.restoreAllMocks());

describe("the CLI's output for people", () => {
  it("shows text with control characters JSON-quoted and escaped, other text as it is", () => {
    expect(printable("user/ada")).toBe("user/ada");
    expect(printable("ünïcode ✓")).toBe("ünïcode ✓");
    expect(printable(hostile)).toBe('"\\u001b[2J\\u001b]0;pwned\\u0007evil"');
    expect(printable("line1\nline2")).toBe('"line1\\nline2"');
    expect(printable("a\u009bb\u202ec")).toBe('"a\\u009bb\\u202ec"');
  });

  it("keeps JSON valid and laid out, escaping what JSON.stringify leaves (C1, DEL, bidi)", () => {
    const value = { k: "x\u009b[31my", n: [1, 2], s: "\u001b" };
    const text = safeJson(value, 2);
    expect(text).not.toMatch(controls);
    expect(text.split("\n").length).toBeGreaterThan(3);
    expect(JSON.parse(text)).toEqual(value);
    expect(brief({ v: "\u009b" })).toBe('{"v":"\\u009b"}');
  });

  it("prints no control character in a table or a watch line", () => {
    let out = "";
    vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
      out += String(chunk);
      return true;
    });
    printTable(["key", "value"], [[hostile, brief("v")], ["line1\nline2", brief("w\u0085")]]);
    vi.restoreAllMocks();
    expect(out).not.toMatch(controls);
    const lines = out.trimEnd().split("\n");
    expect(lines).toHaveLength(6); // top, head, rule, row, row, bottom: one line per row, no rule between rows
    expect(lines[2]).toMatch(/^├─+┼─+┤$/);
    out = "";
    vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
      out += String(chunk);
      return true;
    });
    printTable(["key", "value"], []);
    vi.restoreAllMocks();
    expect(out.trimEnd().split("\n").map((l) => l[0])).toEqual(["┌", "│", "└"]); // no rule with nothing under it

    const e = { seq: 1, kind: "command", command: { op: "put", key: hostile, value: "\u009b" }, changes: [[hostile, "\u009b"], ["line1\nline2", null]] } as unknown as WatchEvent;
    const line = eventLine(e);
    expect(line).not.toMatch(controls);
    expect(line).not.toContain("\n");
    expect(line).toBe('1  "\\u001b[2J\\u001b]0;pwned\\u0007evil"="\\u009b" "line1\\nline2"=null');
    expect(eventLine({ ...e, changes: [] })).not.toMatch(controls);
  });

  it("cuts a long cell to 100 characters and a brief value to 60, never inside a character (an emoji printed as �, a probe)", () => {
    let out = "";
    vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
      out += String(chunk);
      return true;
    });
    printTable(["key"], [["k".repeat(300)]]);
    vi.restoreAllMocks();
    expect(out).toContain("k".repeat(99) + "…");
    expect(out).not.toContain("k".repeat(100));
    const shown = brief("x".repeat(57) + "😀😀😀");
    expect(shown).toBe('"' + "x".repeat(57) + "😀…");
    expect(shown).not.toContain("\ufffd");
  });

  it("quotes a watch line's key holding a space, = or a quote, so each change reads as one", () => {
    const e = { seq: 9, kind: "command", command: {}, changes: [["a=b c", 1], ["d", "x y=2"], ["plain", null]] } as unknown as WatchEvent;
    expect(eventLine(e)).toBe('9  "a=b c"=1 d="x y=2" plain=null');
  });

  it("gives a paging hint a shell takes back as one argument, whatever the key (`more: --after -b c` was three: a probe)", () => {
    for (const key of ["user/1", "-b c", "it's", "a b", "$HOME", "`x`", "\\n", "é ü", "--", ""]) {
      const option = shellOption("after", key)!;
      // What sh makes of it: the one argument --after=<key>.
      expect(execFileSync("sh", ["-c", `printf '%s' ${option}`], { encoding: "utf8" }), key).toBe(`--after=${key}`);
    }
    expect(shellOption("after", "user/1")).toBe("--after=user/1");
    for (const key of ["\u0000nul", "a\nb", hostile]) expect(shellOption("after", key), JSON.stringify(key)).toBeNull();
  });
});
