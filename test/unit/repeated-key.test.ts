// repeatedKey: a JSON body that repeats a key in one object is a 400 naming it (JSON.parse kept
// the last silently: `{"op":"delete","op":"get"}` ran a get, and a second "client" became the
// exactly-once pair's).
import { describe, expect, it } from "vitest";
import { repeatedKey } from "../../shared/api/input.js";

const check = (text: string) => repeatedKey(text, JSON.parse(text), "body");

describe("repeatedKey", () => {
  it("names the object and the key repeated, at any depth", () => {
    expect(check('{"client":"a","request":1,"client":"b"}')).toBe('body: the key "client" appears more than once');
    expect(check('{"client":"a","command":{"op":"delete","key":"x","op":"get"}}')).toBe('body.command: the key "op" appears more than once');
    expect(check('{"commands":[{"request":1},{"request":2,"command":{"a":1,"a":2}}]}')).toBe('body.commands.1.command: the key "a" appears more than once');
    expect(check('{"a":[[1,2],{"b":{"c":1}}],"d":{"e":1,"e":1}}')).toBe('body.d: the key "e" appears more than once');
  });

  it("counts a key written with escapes as the same key", () => {
    expect(check('{"op":"put","\\u006fp":"get"}')).toBe('body: the key "op" appears more than once');
  });

  it("takes keys that repeat in different objects, and strings that look like keys, as they are", () => {
    expect(check('{"a":{"k":1},"b":{"k":1},"c":[{"k":1},{"k":2}]}')).toBeNull();
    expect(check('{"value":"\\"x\\":1,\\"x\\":2","note":"a: b, c: d","empty":{},"list":[]}')).toBeNull();
    expect(check('["a","a",{"a":1}]')).toBeNull();
    expect(check('"just a string"')).toBeNull();
  });

  it("counts the items of a long array without overflowing the stack (a 500 past 125,000 items)", () => {
    const text = `{"value":[${new Array(200_000).fill("0").join(",")}],"k":1}`;
    expect(check(text)).toBeNull();
    expect(check(`{"value":[${new Array(200_000).fill("{}").join(",")}],"k":1,"k":2}`)).toBe('body: the key "k" appears more than once');
  });

  it("cuts a long key in its message", () => {
    const key = "k".repeat(5_000);
    expect(check(`{"${key}":1,"${key}":2}`)).toBe(`body: the key "${"k".repeat(100)}…" appears more than once`);
  });
});
