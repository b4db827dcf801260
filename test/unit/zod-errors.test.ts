// describeZodError: the 400's message for a body or command that fails its schema.
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { describeZodError } from "../../shared/api/schemas.js";

const message = (schema: z.ZodType, value: unknown) => describeZodError(schema.safeParse(value).error!, "body", value);

describe("describeZodError", () => {
  it("a missing union value is a required field, with the union's types", () => {
    expect(message(z.object({ value: z.json() }), {})).toBe("body.value: required (string | number | boolean | null | array | object)");
  });

  it("a union value that is present but whose branches each miss a field of their own is not called missing", () => {
    // Each branch's issue lies below the union (x.a, x.c): x itself is there.
    const schema = z.object({ x: z.union([z.object({ a: z.string() }), z.object({ c: z.number() })]) });
    expect(message(schema, { x: {} })).not.toMatch(/^body\.x: required/);
    expect(message(schema, {})).toBe("body.x: required (object | object)");
  });

  it("a missing enum field is required, with its options; a wrong one is not called missing", () => {
    const schema = z.object({ machine: z.enum(["kv", "bank"]), inner: z.object({ scope: z.enum(["read", "write"]) }) });
    expect(message(schema, { inner: { scope: "read" } })).toBe("body.machine: required (one of kv, bank)");
    expect(message(schema, { machine: "kv", inner: {} })).toBe("body.inner.scope: required (one of read, write)");
    expect(message(schema, { machine: "nope", inner: { scope: "read" } })).toMatch(/^body\.machine: Invalid option/);
  });

  it("an op a machine does not have names the ops it has; a missing one is required", () => {
    const schema = z.object({ query: z.discriminatedUnion("op", [z.object({ op: z.literal("balances") }).strict(), z.object({ op: z.literal("audit") })]) });
    expect(message(schema, { query: { op: "get", key: "a" } })).toBe('body.query.op: "get" is not one of balances, audit');
    expect(message(schema, { query: { key: "a" } })).toBe("body.query.op: required (one of balances, audit)");
  });
});

describe("ApiError", () => {
  it("quotes an error passed on across calls with one 'Error: ', not one per hop", async () => {
    const { ApiError } = await import("../../shared/api/errors.js");
    expect(new ApiError("unavailable", "cannot be reached yet (Error: Error: injected fault: r2 of g8 is unreachable)").message).toBe("cannot be reached yet (Error: injected fault: r2 of g8 is unreachable)");
    expect(new ApiError("unavailable", "a (Error: Error: Error: x); b (TypeError: y)").message).toBe("a (Error: x); b (TypeError: y)");
  });
});
