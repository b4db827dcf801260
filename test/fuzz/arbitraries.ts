// Hostile request bodies for the fuzz harness (fast-check arbitraries), as the bytes a client
// would send: strings with lone surrogates, NUL, control characters and every plane; nesting
// around the depth limit (100) and far past it, up to 5,000 levels, written directly as text;
// numbers JSON.stringify cannot write (-0, 1e400, 2^53+1, 1.0); duplicate and odd object keys
// ("__proto__", "constructor", "", surrogates);
// wrong types for every field; bodies near and over the 64 KiB value and 256 KiB body limits;
// bytes that are not UTF-8 and text that is not JSON. Plenty of them are VALID kv and bank
// commands, so that many cases are accepted and executed.
//
// No Node imports: the workerd fuzz test uses these too.
import fc from "fast-check";

export type MachineName = "kv" | "bank";

/** JSON text spliced in verbatim by toJsonText. */
export class RawJson {
  constructor(readonly text: string) {}
  [fc.toStringMethod](): string {
    return `raw(${JSON.stringify(this.text.length > 200 ? this.text.slice(0, 200) + "..." : this.text)})`;
  }
}

/** An object written with exactly these entries, in order (duplicate keys, "__proto__" as an own key). */
export class RawObject {
  constructor(readonly entries: [string, unknown][]) {}
  [fc.toStringMethod](): string {
    return `obj(${this.entries.map(([k, v]) => `${JSON.stringify(k)}: ${fc.stringify(v)}`).join(", ")})`;
  }
}

/** JSON text of a generated value (iterative, so no depth can overflow it). */
export function toJsonText(value: unknown): string {
  const out: string[] = [];
  const stack: unknown[] = [value];
  const pushReversed = (items: unknown[]) => {
    for (let i = items.length - 1; i >= 0; i--) stack.push(items[i]);
  };
  while (stack.length > 0) {
    const v = stack.pop();
    if (v instanceof Chunk) {
      out.push(v.text);
    } else if (v instanceof RawJson) {
      out.push(v.text);
    } else if (v instanceof RawObject) {
      out.push("{");
      const parts: unknown[] = [];
      v.entries.forEach(([k, x], i) => parts.push(new Chunk((i > 0 ? "," : "") + JSON.stringify(k) + ":"), x));
      pushReversed([...parts, new Chunk("}")]);
    } else if (Array.isArray(v)) {
      out.push("[");
      const parts: unknown[] = [];
      v.forEach((x, i) => (i > 0 ? parts.push(new Chunk(","), x) : parts.push(x)));
      pushReversed([...parts, new Chunk("]")]);
    } else if (v !== null && typeof v === "object") {
      const o = v as Record<string, unknown>;
      stack.push(new RawObject(Object.keys(o).map((k) => [k, o[k]])));
    } else {
      out.push(JSON.stringify(v) ?? "null");
    }
  }
  return out.join("");
}

/** Literal text inside toJsonText's work stack. */
class Chunk {
  constructor(readonly text: string) {}
}

// ---- strings ---------------------------------------------------------------------------------

const loneHigh = fc.integer({ min: 0xd800, max: 0xdbff }).map((u) => String.fromCharCode(u));
const loneLow = fc.integer({ min: 0xdc00, max: 0xdfff }).map((u) => String.fromCharCode(u));
/** High and low surrogate alone, and a pair in the wrong order (low then high). */
export const surrogateUnit = fc.oneof(
  loneHigh,
  loneLow,
  fc.tuple(loneLow, loneHigh).map(([l, h]) => l + h),
  fc.constantFrom("\ud800", "\udbff", "\udc00", "\udfff", "\ude00\ud83d"),
);

/** Characters that stress storage, escaping and key order, on every plane. */
const specialChar = fc.constantFrom(
  "\u0000", "\u0001", "\u0008", "\t", "\n", "\r", "\u001b", "\u001f", "\u007f", "\u0080", "\u009f", "\u00a0", "\u00ff",
  "\u0100", "\u0800", "\u2028", "\u2029", "\u200b", "\ufeff", "\ufdd0", "\ufffd", "\ufffe", "\uffff",
  "\u{10000}", "\u{1f600}", "\u{1f468}\u200d\u{1f469}", "\u{e0001}", "\u{efffd}", "\u{fffff}", "\u{10fffd}", "\u{10ffff}",
  "\"", "\\", "/", ":", "%", "s/", "m/", "c/", "1:", "é", "e\u0301",
);
const asciiChar = fc.constantFrom(..."abcxyz019-_./ ");
const anyScalar = fc
  .integer({ min: 0, max: 0x10ffff })
  .filter((cp) => cp < 0xd800 || cp > 0xdfff)
  .map((cp) => String.fromCodePoint(cp));
const controlChar = fc.integer({ min: 0, max: 0x1f }).map((u) => String.fromCharCode(u));

const wellFormedUnit = fc.oneof(
  { weight: 6, arbitrary: asciiChar },
  { weight: 3, arbitrary: specialChar },
  { weight: 2, arbitrary: anyScalar },
  { weight: 1, arbitrary: controlChar },
);
const hostileUnit = fc.oneof({ weight: 8, arbitrary: wellFormedUnit }, { weight: 2, arbitrary: surrogateUnit });

/** Well-formed Unicode: anything a client may legitimately send and expect stored exactly. */
export const wellFormedString = (maxLength = 8) => fc.string({ unit: wellFormedUnit, maxLength });
/** May hold lone surrogates (about one string in four does). */
export const hostileString = (maxLength = 8) =>
  fc.oneof(
    { weight: 3, arbitrary: fc.string({ unit: hostileUnit, maxLength }) },
    { weight: 1, arbitrary: fc.tuple(wellFormedString(3), surrogateUnit, wellFormedString(3)).map(([a, s, b]) => a + s + b) },
  );

/** Object keys that have tripped JavaScript code before. */
export const oddKey = fc.oneof(
  fc.constantFrom("__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "valueOf", "", " ", "\u0000", "__defineGetter__", "length", "0", "-1", "1e3", "op", "key", "value"),
  hostileString(4),
);

// ---- numbers ---------------------------------------------------------------------------------

/** Number texts, valid JSON, that JSON.stringify would never write or that sit on an edge. */
const numberTexts = [
  "-0", "0.0", "-0.0", "0e0", "1.0", "1e0", "1E0", "10e-1", "0.1e1", "1.5", "-1.5", "0.5", "1e-7",
  "9007199254740991", "9007199254740992", "9007199254740993", "-9007199254740991", "-9007199254740992", "-9007199254740993",
  "9007199254740991.0", "9007199254740991.5", "1e308", "-1e308", "1.7976931348623157e308", "1e309", "1e400", "-1e400",
  "5e-324", "2e-324", "1e-400", "-1e-400", "4294967296", "18446744073709551616", "123456789012345678901234567890",
  "0.30000000000000004", "1e21", "1e+21", "2147483648", "-2147483649",
].map((t) => new RawJson(t));
/** Not JSON at all: the body is malformed. */
const badNumberTexts = ["01", "+1", ".5", "1.", "1e", "NaN", "Infinity", "-Infinity", "0x10", "1_000", "--1", "\u0661"].map((t) => new RawJson(t));

export const edgeNumber = fc.oneof(
  fc.constantFrom(0, -0, 1, -1, 2 ** 53 - 1, 2 ** 53, -(2 ** 53 - 1), -(2 ** 53), 2 ** 52, 2 ** 31, 2 ** 32, 1e308, -1e308, 5e-324, 1e-300, 0.1, 0.5, 1.5, -1.5, Number.MAX_VALUE, Number.EPSILON),
  fc.constantFrom(...numberTexts),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.integer(),
);

// ---- JSON values -----------------------------------------------------------------------------

const scalar = fc.oneof(
  { weight: 2, arbitrary: fc.constantFrom(null, true, false) },
  { weight: 3, arbitrary: edgeNumber },
  { weight: 3, arbitrary: hostileString(10) },
  { weight: 2, arbitrary: wellFormedString(10) },
);

const { json: hostileJson } = fc.letrec<{ json: unknown }>((tie) => ({
  json: fc.oneof(
    { depthSize: "small", maxDepth: 5 },
    { weight: 4, arbitrary: scalar },
    { weight: 1, arbitrary: fc.array(tie("json"), { maxLength: 5 }) },
    {
      weight: 1,
      arbitrary: fc
        .array(fc.tuple(fc.oneof({ weight: 3, arbitrary: wellFormedString(5) }, { weight: 1, arbitrary: oddKey }), tie("json")), { maxLength: 5 })
        .map((entries) => new RawObject(entries)),
    },
  ),
}));
/** Any JSON value, hostile strings and keys included. */
export const anyJson = hostileJson;

/** A JSON value that survives storage exactly (well-formed strings; depth well under the limit). */
const { json: cleanJson } = fc.letrec<{ json: unknown }>((tie) => ({
  json: fc.oneof(
    { depthSize: "small", maxDepth: 4 },
    { weight: 4, arbitrary: fc.oneof(fc.constantFrom(null, true, false), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), wellFormedString(10)) },
    { weight: 1, arbitrary: fc.array(tie("json"), { maxLength: 4 }) },
    { weight: 1, arbitrary: fc.dictionary(wellFormedString(5), tie("json"), { maxKeys: 4 }) },
  ),
}));

/** A value for the wrong type of any field: every JSON type, edges included. */
export const wrongType = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, "", "x", [], {}, [1], { a: 1 }, "1", "put", "null"),
  edgeNumber,
  hostileString(6),
  anyJson,
);

// ---- fields ----------------------------------------------------------------------------------

/** Byte-length edges of kv keys (1..512 UTF-8 bytes): the valid ones, then the invalid ones. */
const edgeKeysValid = fc.constantFrom("x".repeat(512), "\u{1f600}".repeat(128), "\u00e9".repeat(256), "\u0800".repeat(170) + "ab", "\u0000".repeat(512), "\u{10ffff}".repeat(128));
const edgeKeysInvalid = fc.constantFrom("x".repeat(513), "\u{1f600}".repeat(129), "\u00e9".repeat(256) + "a", "\u0800".repeat(171), "");
const keyPool = fc.constantFrom("a", "b", "k", "k1", "a/b", "\u0000", "\u{1f600}", "\uffff", "\u{10ffff}", "m/x", "s/1:c/0000000000000001", "c/1:c", "__proto__", "constructor", "toString", " ", "\ufeff");

/** Keys the kv machine accepts: mostly a small pool (so commands meet), every plane, the length edges. */
export const cleanKey = fc.oneof(
  { weight: 10, arbitrary: keyPool },
  { weight: 4, arbitrary: wellFormedString(6).filter((s) => s.length > 0) },
  { weight: 1, arbitrary: edgeKeysValid },
);
export const kvKey = fc.oneof({ weight: 8, arbitrary: cleanKey }, { weight: 1, arbitrary: hostileString(6) }, { weight: 1, arbitrary: edgeKeysInvalid });

const clientPool = fc.constantFrom("c", "c2", "client-\u{1f600}", "\u0000", "x".repeat(128), "\u{10ffff}".repeat(64), "1:c", "c/", " ", "\ufeff", "\u{1f600}".repeat(64));
const cleanClient = fc.oneof({ weight: 8, arbitrary: clientPool }, { weight: 2, arbitrary: wellFormedString(10).filter((s) => s.length > 0) });
export const clientId = fc.oneof(
  { weight: 8, arbitrary: cleanClient },
  { weight: 1, arbitrary: hostileString(10) },
  { weight: 1, arbitrary: fc.constantFrom("", "x".repeat(129), "\u{1f600}".repeat(65), "\u{10ffff}".repeat(64) + "x") },
);

/** Request ids: mostly small (collisions: retries and 409s), the safe range, its edges. */
const cleanRequest = fc.oneof(
  { weight: 10, arbitrary: fc.integer({ min: 1, max: 40 }) },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(Number.MAX_SAFE_INTEGER, new RawJson("1.0"), new RawJson("9007199254740991"), new RawJson("1e1"), new RawJson("0.5e1")) },
);
export const requestId = fc.oneof(
  { weight: 8, arbitrary: cleanRequest },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(2 ** 53, 0, -1, 1.5, -0, "1", null, [], true, new RawJson("9007199254740993"), new RawJson("1e400"), new RawJson("-0"), new RawJson("1e-400")) },
);

const valuePool = fc.constantFrom<unknown>(
  null, 0, 1, -1, "x", "", true, false, { a: 1 }, [1, 2], [], {},
  new RawObject([["__proto__", { a: 1 }]]), new RawObject([["constructor", 1], ["__proto__", null]]), { "": "", "\u0000": 0 },
  new RawJson("-0"), new RawJson("1e308"), new RawJson("5e-324"), new RawJson("9007199254740992"), new RawJson("1.0"),
);
/** A kv value: mostly a few common ones (so cas compares succeed), then any well-formed JSON. */
const cleanValue = fc.oneof({ weight: 5, arbitrary: valuePool }, { weight: 3, arbitrary: cleanJson });
/** Values a put must store and give back exactly. */
export const storableValue = cleanValue;
export const kvValue = fc.oneof({ weight: 8, arbitrary: cleanValue }, { weight: 2, arbitrary: anyJson });

const cleanIncrBy = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: -5, max: 5 }) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 2 ** 52, -0, new RawJson("2.0"), new RawJson("1e1")) },
);
const incrBy = fc.oneof(
  { weight: 8, arbitrary: cleanIncrBy },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(2 ** 53, 1.5, "1", null, new RawJson("1e400"), new RawJson("9007199254740993")) },
);

/** A machine command's generators, one per field (clean or hostile). */
type Fields<K extends string> = Record<K, fc.Arbitrary<unknown>>;

const kvCommandOf = ({ key, value, by }: Fields<"key" | "value" | "by">) =>
  fc.oneof(
    { weight: 5, arbitrary: fc.record({ op: fc.constant("put"), key, value }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant("get"), key }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant("delete"), key }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant("cas"), key, expected: value, value }) },
    { weight: 3, arbitrary: fc.record({ op: fc.constant("incr"), key, by }) },
  );
/** kv commands with fields the machine accepts (values may still pass 64 KiB: rare). */
export const validKvCommand = kvCommandOf({ key: cleanKey, value: cleanValue, by: cleanIncrBy });
/** kv commands whose fields may be hostile: lone surrogates, bad lengths, wrong numbers. */
export const kvCommand = kvCommandOf({ key: kvKey, value: kvValue, by: incrBy });

const accountPool = fc.constantFrom("alice", "bob", "carol", "\u{1f600}", "\u0000x", "x".repeat(128), "__proto__", "m/a", "\ufeff");
const cleanAccount = fc.oneof({ weight: 8, arbitrary: accountPool }, { weight: 2, arbitrary: wellFormedString(6).filter((s) => s.length > 0) });
export const account = fc.oneof({ weight: 8, arbitrary: cleanAccount }, { weight: 1, arbitrary: hostileString(6) }, { weight: 1, arbitrary: fc.constantFrom("", "x".repeat(129)) });
const cleanBalance = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 1000 }) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER - 1, -0, new RawJson("1e3")) },
);
const balance = fc.oneof({ weight: 8, arbitrary: cleanBalance }, { weight: 1, arbitrary: fc.constantFrom<unknown>(2 ** 53, -1, 1.5, "5", null, new RawJson("1e400")) });
const cleanAmount = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 1, max: 500 }) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(Number.MAX_SAFE_INTEGER, new RawJson("1.0")) },
);
const amount = fc.oneof({ weight: 8, arbitrary: cleanAmount }, { weight: 1, arbitrary: fc.constantFrom<unknown>(2 ** 53, 0, -5, 0.5, "5", null, -0) });

const bankCommandOf = ({ account, balance, amount }: Fields<"account" | "balance" | "amount">) =>
  fc.oneof(
    { weight: 2, arbitrary: fc.record({ op: fc.constant("open"), account, balance }) },
    { weight: 3, arbitrary: fc.record({ op: fc.constant("transfer"), from: account, to: account, amount }) },
  );
export const validBankCommand = bankCommandOf({ account: cleanAccount, balance: cleanBalance, amount: cleanAmount });
export const bankCommand = bankCommandOf({ account, balance, amount });

export const commandFor = (m: MachineName, valid: boolean) => (m === "kv" ? (valid ? validKvCommand : kvCommand) : valid ? validBankCommand : bankCommand);

// ---- mutations of a valid body ----------------------------------------------------------------

type Obj = Record<string, unknown>;

const mutation = fc.record({
  /** The body itself, or its command (query). */
  inner: fc.boolean(),
  kind: fc.constantFrom("replace", "delete", "extra", "duplicate", "wrap", "op"),
  index: fc.nat(),
  replacement: wrongType,
  key: oddKey,
  op: fc.constantFrom<unknown>("PUT", " put", "put\u0000", "Put", "", "list", "txn", "balances", "open\ud800", null, 1, ["put"]),
});
type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

/** One field of the body (or of its `inner` object) replaced by a wrong type, removed, doubled, wrapped... */
function mutate(body: Obj, m: Mutation, innerField: "command" | "query"): unknown {
  const inner = body[innerField];
  const innerIsObject = inner !== null && typeof inner === "object" && !Array.isArray(inner);
  const onInner = m.inner && innerIsObject;
  const on = onInner ? (inner as Obj) : body;
  const entries = Object.entries(on);
  const field = entries[m.index % Math.max(1, entries.length)]?.[0] ?? "x";
  const rebuild = (next: [string, unknown][]) =>
    onInner ? new RawObject(Object.entries(body).map(([k, v]) => [k, k === innerField ? new RawObject(next) : v])) : new RawObject(next);
  switch (m.kind) {
    case "replace":
      return rebuild(entries.map(([k, v]) => [k, k === field ? m.replacement : v]));
    case "delete":
      return rebuild(entries.filter(([k]) => k !== field));
    case "extra":
      return rebuild([...entries, [m.key, m.replacement]]);
    case "duplicate":
      // JSON.parse keeps the last one: a second "op" or "key" silently wins.
      return rebuild([...entries, [field, m.replacement]]);
    case "wrap":
      return { ...body, [innerField]: m.index % 3 === 0 ? [inner] : m.index % 3 === 1 ? JSON.stringify(inner) : { [innerField]: inner } };
    case "op":
      return innerIsObject ? { ...body, [innerField]: { ...(inner as Obj), op: m.op } } : body;
  }
}

// ---- bodies ----------------------------------------------------------------------------------

export interface FuzzCase {
  endpoint: "command" | "query";
  /** What the client sends: text (encoded as UTF-8, as fetch does) or raw bytes. */
  body: string | Uint8Array;
}

/** A body the router accepts (bar the rare value over 64 KiB). */
const validCommandBody = (m: MachineName) => fc.record({ client: cleanClient, request: cleanRequest, command: commandFor(m, true) });
/** The same shape, every field possibly hostile. */
const hostileCommandBody = (m: MachineName) => fc.record({ client: clientId, request: requestId, command: commandFor(m, false) });

/** Nesting depth around the limit (100) and far past it, in the value, the command, the client, the root. */
const deepText = fc
  .record({
    depth: fc.oneof(fc.integer({ min: 95, max: 104 }), fc.integer({ min: 1, max: 5000 })),
    shape: fc.constantFrom("array", "object", "mixed"),
    where: fc.constantFrom("value", "command", "client", "root", "request", "expected"),
    leaf: fc.constantFrom("0", '"x"', "null", "{}", "[]", '"\\ud800"', "[[]]"),
    open: fc.boolean(),
  })
  .map(({ depth, shape, where, leaf, open }) => {
    let head = "";
    let tail = "";
    for (let i = 0; i < depth; i++) {
      const arr = shape === "array" || (shape === "mixed" && i % 2 === 0);
      head += arr ? "[" : '{"a":';
      tail = (arr ? "]" : "}") + tail;
    }
    // Now and then an unbalanced one: malformed, however deep.
    const nested = head + leaf + (open ? tail.slice(1) : tail);
    switch (where) {
      case "value":
        return `{"client":"c","request":1,"command":{"op":"put","key":"deep","value":${nested}}}`;
      case "expected":
        return `{"client":"c","request":2,"command":{"op":"cas","key":"deep","expected":${nested},"value":1}}`;
      case "command":
        return `{"client":"c","request":3,"command":${nested}}`;
      case "client":
        return `{"client":${nested},"request":4,"command":{"op":"get","key":"k"}}`;
      case "request":
        return `{"client":"c","request":${nested},"command":{"op":"get","key":"k"}}`;
      default:
        return nested;
    }
  });

/** Bodies near and over the limits: a 64 KiB value, a 256 KiB body (whitespace counts), huge arrays and objects. */
const hugeText = fc
  .record({
    kind: fc.constantFrom("string", "wide-string", "array", "object", "whitespace", "astral-string"),
    size: fc.oneof(fc.integer({ min: 65_530, max: 65_542 }), fc.integer({ min: 262_136, max: 262_150 }), fc.integer({ min: 1_000, max: 200_000 }), fc.integer({ min: 262_144, max: 300_000 })),
    request: fc.integer({ min: 1, max: 40 }),
    key: fc.constantFrom("big", "big2", "k"),
  })
  .map(({ kind, size, request, key }) => {
    const head = `{"client":"big","request":${request},"command":{"op":"put","key":"${key}","value":`;
    const tail = "}}";
    switch (kind) {
      case "string": // `size` bytes of value, quotes included
        return head + '"' + "x".repeat(Math.max(0, size - 2)) + '"' + tail;
      case "wide-string": // two bytes per character, so characters and bytes differ
        return head + '"' + "\u00e9".repeat(Math.max(0, Math.floor((size - 2) / 2))) + '"' + tail;
      case "astral-string": // four bytes, two UTF-16 units per character
        return head + '"' + "\u{1f600}".repeat(Math.max(0, Math.floor((size - 2) / 4))) + '"' + tail;
      case "array": {
        const n = Math.max(1, Math.floor(size / 2));
        return head + "[" + "0,".repeat(n - 1) + "0]" + tail;
      }
      case "object": {
        const n = Math.max(1, Math.floor(size / 10));
        const parts: string[] = [];
        for (let i = 0; i < n; i++) parts.push(`"k${i}":${i % 10}`);
        return head + "{" + parts.join(",") + "}" + tail;
      }
      default: {
        // A small valid command padded with whitespace to exactly `size` bytes of body.
        const body = `{"client":"big","request":${request},"command":{"op":"put","key":"${key}","value":1}}`;
        return body + " ".repeat(Math.max(0, size - body.length));
      }
    }
  });

const enc = new TextEncoder();
const concat = (...parts: (string | readonly number[])[]) => {
  const chunks = parts.map((p) => (typeof p === "string" ? enc.encode(p) : Uint8Array.from(p)));
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
};

/** Byte sequences that are not UTF-8 (surrogates encoded, overlong, past U+10FFFF, truncated), and one that is. */
const badUtf8 = fc.constantFrom(
  [0xed, 0xa0, 0x80], [0xed, 0xb0, 0x80], [0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80], [0xff], [0xfe], [0xc0, 0x80], [0xc0, 0xaf],
  [0xe0, 0x80, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0x80], [0xe2, 0x82], [0xf0, 0x9f, 0x98], [0xf0, 0x9f, 0x98, 0x80],
);

/** Text that is not a JSON object of the right shape, or not JSON at all. */
const malformedText = fc.oneof(
  fc.constantFrom(
    "", " ", "\n", "{", "}", "[", "]", "null", "0", "-0", '"x"', "[]", "{}", "true", '{"client":}', "{'client':'c'}", "{client:1}",
    '{"client":"c","request":1,"command":{"op":"get","key":"k"},}', '{"client":"c","request":1,"command":{"op":"get","key":"k"}}x',
    '{"client":"c","request":1,"command":{"op":"get","key":"k"}} {}', '/*c*/{"client":"c","request":1,"command":{"op":"get","key":"k"}}',
    '{"client":"c","request":01,"command":{"op":"get","key":"k"}}', '{"client":"c\u0000","request":1,"command":{"op":"get","key":"k"}}',
    '\ufeff{"client":"c","request":1,"command":{"op":"get","key":"bom"}}', '{"client":"c","request":1,"command":{"op":"get","key":"\\uZZZZ"}}',
    '{"client":"c","request":1,"command":{"op":"get","key":"\\ud800"}}', '{"client":"c","request":1,"command":{"op":"get","key":"\\udc00\\ud800"}}',
    '{"client":"c","request":1,"command":{"op":"get","key":"\\ud83d\\ude00"}}', '{"client":"c","request":1,"command":{"op":"get","key":"\\u0000"}}',
    '{"__proto__":{"client":"c"},"client":"c","request":1,"command":{"op":"get","key":"k"}}', '{"client":"c","request":1,"command":{"op":"get","key":"k","__proto__":null}}',
    '{"client":"c","client":"d","request":1,"command":{"op":"get","key":"k"}}', '{"client":"c","request":1,"command":{"op":"get","op":"put","key":"k"}}',
  ),
  fc.constantFrom(...badNumberTexts).map((n) => `{"client":"c","request":${n.text},"command":{"op":"get","key":"k"}}`),
  fc.constantFrom(...badNumberTexts).map((n) => `{"client":"c","request":1,"command":{"op":"put","key":"k","value":${n.text}}}`),
);

/** Raw lone surrogates in the text itself (not escaped): a UTF-8 encoder writes U+FFFD for them. */
const rawSurrogateText = fc
  .tuple(surrogateUnit, fc.constantFrom("key", "client", "value", "account"))
  .map(([s, where]) =>
    where === "client"
      ? `{"client":"c${s}","request":1,"command":{"op":"get","key":"k"}}`
      : where === "value"
        ? `{"client":"c","request":1,"command":{"op":"put","key":"k","value":"${s}"}}`
        : where === "account"
          ? `{"client":"c","request":1,"command":{"op":"open","account":"${s}","balance":1}}`
          : `{"client":"c","request":1,"command":{"op":"put","key":"${s}","value":1}}`,
  );

const rawBytes: fc.Arbitrary<string | Uint8Array> = fc.oneof(
  fc.tuple(badUtf8, fc.constantFrom("key", "client", "value")).map(([bytes, where]) =>
    where === "client"
      ? concat('{"client":"c', bytes, '","request":1,"command":{"op":"get","key":"k"}}')
      : where === "value"
        ? concat('{"client":"c","request":1,"command":{"op":"put","key":"k","value":"', bytes, '"}}')
        : concat('{"client":"c","request":1,"command":{"op":"put","key":"', bytes, '","value":1}}'),
  ),
  malformedText,
  rawSurrogateText,
);

/** A body for POST /v1/groups/{g}/commands of a group running machine m. */
export const commandCase = (m: MachineName): fc.Arbitrary<FuzzCase> => {
  const other: MachineName = m === "kv" ? "bank" : "kv";
  return fc
    .oneof(
      { weight: 45, arbitrary: validCommandBody(m).map(toJsonText) },
      { weight: 15, arbitrary: hostileCommandBody(m).map(toJsonText) },
      { weight: 2, arbitrary: validCommandBody(other).map(toJsonText) },
      { weight: 15, arbitrary: fc.tuple(validCommandBody(m), mutation).map(([b, mu]) => toJsonText(mutate(b, mu, "command"))) },
      { weight: 4, arbitrary: deepText },
      { weight: 2, arbitrary: hugeText },
      { weight: 4, arbitrary: anyJson.map(toJsonText) },
      { weight: 2, arbitrary: fc.record({ client: clientId, request: requestId, command: wrongType }).map(toJsonText) },
      { weight: 4, arbitrary: rawBytes },
    )
    .map((body) => ({ endpoint: "command" as const, body }));
};

// ---- queries ---------------------------------------------------------------------------------

const listLimit = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 1000 }) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(0, 1001, -1, 1.5, "10", null, 2 ** 53, new RawJson("1e400"), new RawJson("1.0")) },
);
const prefixOrAfter = fc.oneof({ weight: 4, arbitrary: keyPool }, { weight: 2, arbitrary: wellFormedString(4) }, { weight: 1, arbitrary: hostileString(4) }, { weight: 1, arbitrary: wrongType });

export const kvQuery = fc.oneof(
  fc.record({ op: fc.constant("get"), key: kvKey }),
  fc.record({ op: fc.constant("list"), prefix: prefixOrAfter, after: prefixOrAfter, limit: listLimit }, { requiredKeys: ["op"] }),
);
export const bankQuery = fc.oneof({ weight: 4, arbitrary: fc.constant({ op: "balances" }) }, { weight: 1, arbitrary: fc.record({ op: fc.constant("balances"), account }) });

/**
 * Bookmarks: well-formed ones of the older form (b1: it names no group, so a sequential read with
 * one is served linearizable; the b2 ones are the workers tests'), then garbage.
 */
export const bookmark = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 5 })).map(([e, s]) => `b1.${e.toString(36)}.${s.toString(36)}`) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>("", "b1", "b1..", "b1.1.zzzzzzzzzzzz", "b2.1.1", "b1.-1.1", "x".repeat(65), 5, null, "b1.1.1\u0000") },
  { weight: 1, arbitrary: hostileString(12) },
);

const validQueryBody = (m: MachineName) =>
  fc.record(
    {
      query: m === "kv" ? kvQuery : bankQuery,
      consistency: fc.oneof({ weight: 6, arbitrary: fc.constantFrom("linearizable", "sequential", "stale") }, { weight: 1, arbitrary: wrongType }),
      bookmark,
    },
    { requiredKeys: ["query"] },
  );

/** A body for POST /v1/groups/{g}/query of a group running machine m. */
export const queryCase = (m: MachineName): fc.Arbitrary<FuzzCase> =>
  fc
    .oneof(
      { weight: 10, arbitrary: validQueryBody(m).map(toJsonText) },
      { weight: 5, arbitrary: fc.tuple(validQueryBody(m), mutation).map(([b, mu]) => toJsonText(mutate(b, mu, "query"))) },
      { weight: 1, arbitrary: validQueryBody(m === "kv" ? "bank" : "kv").map(toJsonText) },
      { weight: 1, arbitrary: deepText.map((t) => t.replace('"command"', '"query"')) },
      { weight: 2, arbitrary: anyJson.map((query) => toJsonText({ query })) },
      { weight: 1, arbitrary: rawBytes },
    )
    .map((body) => ({ endpoint: "query" as const, body }));

/** Mostly commands, some queries. */
export const anyCase = (m: MachineName): fc.Arbitrary<FuzzCase> => fc.oneof({ weight: 5, arbitrary: commandCase(m) }, { weight: 1, arbitrary: queryCase(m) });

/** Bytes as a client sends them (a string body goes out as UTF-8, lone surrogates as U+FFFD). */
export function bodyBytes(body: string | Uint8Array): Uint8Array {
  return typeof body === "string" ? enc.encode(body) : body;
}
