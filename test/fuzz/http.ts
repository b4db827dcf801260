// Hostile inputs for the routes around the commands (the workerd fuzz test): group creation
// bodies, group names in the path, and query strings of the log and audits routes, with
// percent-encodings that are not UTF-8 (%ED%A0%80 is a surrogate, %FF is no byte of UTF-8),
// numbers past every edge, repeated and empty parameters. No Node imports.
import fc from "fast-check";
import { hostileString, oddKey, RawJson, RawObject, toJsonText, wrongType } from "./arbitraries.js";

/** Percent-encoded bytes that are not UTF-8, broken escapes, and encodings of odd characters. */
const badEscapes = ["%ED%A0%80", "%ed%b0%80", "%FF", "%fe", "%C0%80", "%C0%AF", "%E0%80%80", "%F4%90%80%80", "%80", "%E2%82", "%", "%%", "%zz", "%0", "%00", "%2F", "%2e%2e", "%E2%80%A8", "%EF%BB%BF", "%F0%9F%98%80", "+", "%20"];

const numberParam = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 30 }).map(String) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      "0", "-1", "1.5", "1e3", "1e400", "-1e400", "9007199254740991", "9007199254740992", "9007199254740993", "99999999999999999999999",
      "0x10", "0b1", "0o7", " 1", "1 ", "1%20", "%201", "", "abc", "NaN", "Infinity", "-0", "1000", "1001", "+5", "1_0", "١",
    ),
  },
  { weight: 2, arbitrary: fc.constantFrom(...badEscapes).map((e) => `1${e}`) },
  { weight: 2, arbitrary: fc.constantFrom(...badEscapes) },
);

/** A query string for GET .../log (from, limit) or .../audits (limit), hostile in every way. */
export const logQuery = fc.oneof(
  { weight: 6, arbitrary: fc.record({ from: numberParam, limit: numberParam }, { requiredKeys: [] }).map((p) => Object.entries(p).map(([k, v]) => `${k}=${v}`).join("&")) },
  { weight: 2, arbitrary: fc.tuple(numberParam, numberParam).map(([a, b]) => `from=${a}&from=${b}&limit=${b}&limit=${a}`) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom(...badEscapes), numberParam).map(([k, v]) => `${k}=${v}&from=${v}`) },
  { weight: 1, arbitrary: fc.constantFrom("from", "limit", "from=", "=1", "&&", "&from=1&", "from=1&limit", "?from=1", "from=1#x", "from[]=1", "from=1;limit=2") },
);

/** Group names in a path: valid ones that exist or not, invalid ones, encodings that are not UTF-8. */
export const groupSegment = (existing: string[]) =>
  fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...existing) },
    { weight: 1, arbitrary: fc.constantFrom("fuzz-absent", "0", "a".repeat(63), "z-9") },
    {
      weight: 4,
      arbitrary: fc.constantFrom(
        "A", "-a", "a_b", "a.b", "a".repeat(64), "..", ".", "%2e%2e", "a%2Fb", "a%00", "%20a", "\u00e9", "%C3%A9", "a%ED%A0%80", "%FF", "%", "a%zz",
        "%F0%9F%98%80", "fuzz-kv%00", "fuzz-kv%20", "FUZZ-KV", "fuzz-kv;x", "fuzz-kv%3Fx", "%EF%BB%BFfuzz-kv",
      ),
    },
    { weight: 1, arbitrary: fc.constantFrom(...badEscapes).map((e) => `a${e}`) },
  );

const machineField = fc.oneof({ weight: 6, arbitrary: fc.constantFrom("kv", "bank") }, { weight: 1, arbitrary: wrongType }, { weight: 1, arbitrary: fc.constantFrom("KV", "kv ", "txn", "", "kv\u0000") });
const replicasField = fc.oneof({ weight: 5, arbitrary: fc.integer({ min: 1, max: 7 }) }, { weight: 1, arbitrary: fc.constantFrom<unknown>(0, 8, -1, 1.5, "3", null, 2 ** 53, new RawJson("3.0"), new RawJson("1e400")) });
const location = fc.oneof(fc.constantFrom("wnam", "enam", "weur", "apac", "oc", null, "", "x".repeat(65), "nowhere"), hostileString(4));

/** Bodies for PUT /v1/groups/{g}: valid configs (same or another as the group's), every field hostile. */
export const createGroupText: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .record(
        {
          machine: machineField,
          replicas: replicasField,
          locations: fc.oneof(fc.array(location, { maxLength: 8 }), wrongType),
          outputs: fc.oneof({ weight: 4, arbitrary: fc.constantFrom("first", "majority") }, { weight: 1, arbitrary: wrongType }),
          checkpointEvery: fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 1000 }) }, { weight: 1, arbitrary: fc.constantFrom<unknown>(0, 1_000_001, 1.5, "100", null, new RawJson("1e400")) }),
          extra: wrongType,
        },
        { requiredKeys: ["machine"] },
      )
      .map(({ extra, ...b }) => b)
      .map(toJsonText),
  },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom("kv", "bank"), oddKey, wrongType).map(([m, k, v]) => toJsonText(new RawObject([["machine", m], [k, v]]))) },
  { weight: 1, arbitrary: wrongType.map(toJsonText) },
  { weight: 1, arbitrary: fc.constantFrom("", "{", '{"machine":"kv"}x', '{"machine":"kv","machine":"bank"}', "[]", "null", '{"machine":"\\ud800"}', "{}") },
);
