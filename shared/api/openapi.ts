// The OpenAPI 3.1 document of the API, made from the route catalog (routes.ts) with zod's own
// JSON Schema output (draft 2020-12, OpenAPI 3.1's dialect): request schemas as the router reads
// them (io "input": a field with a default is optional), answers as it writes them (io "output").
// Named schemas go to components.schemas; a machine command or query is the union of every listed
// machine's schema, so a new machine appears here by itself.
import { z } from "zod";
import { version } from "../../package.json";
import { type ErrorCode, errorStatus } from "./errors.js";
import * as answers from "./responses.js";
import { type Answer, type Route, type Stream, errorsOf, machineFields, routes } from "./routes.js";
import * as schemas from "./schemas.js";
import { machines } from "../machines/index.js";

type Json = Record<string, unknown>;

/** Each machine's command (and query) schema, titled with its name. */
function machineUnion(kind: "commandSchema" | "querySchema"): z.ZodType {
  const each = Object.entries(machines).map(([name, m]) => m[kind].meta({ title: `${name} ${kind === "commandSchema" ? "command" : "query"}` }));
  return each.length === 1 ? each[0]! : z.union(each as [z.ZodType, z.ZodType, ...z.ZodType[]]);
}

const machineCommand = machineUnion("commandSchema").describe("a command of the group's machine (its `op` selects which)");
const machineQuery = machineUnion("querySchema").describe("a query of the group's machine (its `op` selects which)");

/** The components: each schema here appears once, by name, and is referred to everywhere else. */
const named = z.registry<{ id: string }>();
for (const [id, schema] of Object.entries({
  CreateGroupBody: schemas.createGroupBody,
  CommandBody: schemas.commandBody,
  BatchBody: schemas.batchBody,
  QueryBody: schemas.queryBody,
  AddReplicaBody: schemas.addReplicaBody,
  ReleaseBody: schemas.releaseBody,
  QuotaBody: schemas.quotaBody,
  MoveSequencerBody: schemas.moveSequencerBody,
  TokenBody: schemas.tokenBody,
  FaultBody: schemas.faultBody,
  MachineCommand: machineCommand,
  MachineQuery: machineQuery,
  GroupStatus: answers.groupStatus,
  ReplicaStatus: answers.replicaStatus,
  SequencerStatus: answers.sequencerStatus,
  GroupsPage: answers.groupsPage,
  CommandResult: answers.commandResult,
  BatchResult: answers.batchResult,
  QueryResult: answers.queryResult,
  Entry: answers.entry,
  LogPage: answers.logPage,
  AuditReport: answers.auditReport,
  Event: answers.groupEvent,
  WatchEvent: answers.watchEvent,
  SnapshotHeader: answers.snapshotHeader,
  TokenCreated: answers.tokenCreated,
  TokenInfo: answers.tokenInfo,
  Fault: answers.fault,
  Error: answers.errorBody,
})) {
  named.add(schema, { id });
}

/** The bodies' untyped fields the router hands to the machine: documented as the machines' unions. */
const standIns = new Map<unknown, string>([
  [machineFields.command, "MachineCommand"],
  [machineFields.batchCommand, "MachineCommand"],
  [machineFields.query, "MachineQuery"],
]);

function replaceWith(target: Json, value: Json): void {
  for (const k of Object.keys(target)) delete target[k];
  Object.assign(target, value);
}

/** Builds components.schemas as schemas are converted; refuses two different schemas under one name. */
class Converter {
  readonly components: Record<string, Json> = {};

  convert(schema: z.ZodType, io: "input" | "output"): Json {
    const out = z.toJSONSchema(schema, {
      target: "draft-2020-12",
      io,
      metadata: named,
      unrepresentable: "any",
      override: (ctx) => {
        // Our registry names the components; descriptions and titles stay in zod's global one.
        const meta = z.globalRegistry.get(ctx.zodSchema as unknown as z.ZodType);
        if (meta?.title) ctx.jsonSchema.title = meta.title;
        if (meta?.description) ctx.jsonSchema.description = meta.description;
        const stand = standIns.get(ctx.zodSchema);
        if (stand) replaceWith(ctx.jsonSchema as Json, { $ref: `#/components/schemas/${stand}` });
        // z.json(): any JSON value (its recursive definition says no more and reads worse), with
        // what its own description adds (kv's values: their size limit).
        else if (ctx.zodSchema._zod.def.type === "lazy") replaceWith(ctx.jsonSchema as Json, { description: meta?.description ?? "any JSON value" });
        // What a refinement requires, where JSON Schema can say it (schemas.ts, refinedAs).
        const refined = schemas.refinedAs.get(ctx.zodSchema as unknown as z.ZodType);
        if (refined) Object.assign(ctx.jsonSchema, refined);
      },
    }) as Json;
    const defs = (out.$defs ?? {}) as Record<string, Json>;
    delete out.$defs;
    delete out.$schema;
    const resolve = (node: unknown, inlining: string[]): unknown => {
      if (Array.isArray(node)) return node.map((n) => resolve(n, inlining));
      if (node === null || typeof node !== "object") return node;
      const ref = (node as Json).$ref;
      if (typeof ref === "string" && ref.startsWith("#/$defs/")) {
        const id = ref.slice("#/$defs/".length);
        // A def zod made up (no name of ours): inline it, unless it refers to itself.
        if (id.startsWith("__")) {
          if (inlining.includes(id)) throw new Error(`openapi: schema ${id} is recursive; give it a name in shared/api/openapi.ts`);
          return resolve(defs[id], [...inlining, id]);
        }
        return { ...node, $ref: `#/components/schemas/${id}` };
      }
      return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, resolve(v, inlining)]));
    };
    for (const [id, def] of Object.entries(defs)) {
      if (id.startsWith("__")) continue;
      const body = resolve(def, []) as Json;
      const known = this.components[id];
      if (known && JSON.stringify(known) !== JSON.stringify(body)) throw new Error(`openapi: two different schemas are named ${id}`);
      this.components[id] = body;
    }
    return resolve(out, []) as Json;
  }
}

/** API.md's meaning of each error code. */
const meaning: Record<ErrorCode, string> = {
  bad_request: "malformed JSON, wrong shape, bad group name, unknown op; the message names the field",
  unauthorized: "no or unknown token",
  forbidden: "the token lacks the scope",
  not_found: "no such group, replica or route",
  conflict: "the group exists with another config, or a request id was reused with a different command",
  compacted: "the position is older than the retained log",
  too_large: "the body or a value is over its limit",
  rate_limited: "the token's request rate limit was hit",
  unavailable: "certainly not done (e.g. no quorum); safe to retry",
  not_configured: "no tokens are configured: the API is closed",
  timeout: "outcome unknown: retrying with the same client and request is always safe",
  internal: "a bug; the body carries a request id to find it in the logs",
};

const retryAfter = { "Retry-After": { description: "seconds to wait before retrying", schema: { type: "integer", minimum: 0 } } };

function streamContent(c: Converter, s: Stream): Json {
  const parts = s.parts ? Object.fromEntries(Object.entries(s.parts).map(([k, v]) => [k, c.convert(v, "output")])) : undefined;
  return { [s.type]: { schema: { type: "string", description: s.description }, ...(parts ? { "x-parts": parts } : {}) } };
}

function answerOf(c: Converter, a: Answer): Json {
  if (a.schema) return { description: a.description, content: { "application/json": { schema: c.convert(a.schema, "output") } } };
  if (a.stream) return { description: a.description, content: streamContent(c, a.stream) };
  return { description: a.description };
}

function errorAnswers(c: Converter, route: Route): Record<string, Json> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of errorsOf(route)) byStatus.set(errorStatus[code], [...(byStatus.get(errorStatus[code]) ?? []), code]);
  const out: Record<string, Json> = {};
  for (const [status, codes] of [...byStatus].sort(([a], [b]) => a - b)) {
    out[String(status)] = {
      description: codes.map((code) => `${code}: ${code === "timeout" && route.timeoutMeans ? route.timeoutMeans : meaning[code]}`).join("; "),
      ...(status === 429 || status === 503 ? { headers: retryAfter } : {}),
      // Every error body is an Error; this status narrows its code.
      content: { "application/json": { schema: { allOf: [c.convert(answers.errorBody, "output"), { properties: { error: { properties: { code: { enum: codes } } } } }] } } },
    };
  }
  return out;
}

function parametersOf(c: Converter, route: Route): Json[] {
  const params: Json[] = [];
  for (const name of [...route.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!)) {
    const schema = name === "group" ? z.string().regex(schemas.groupNamePattern).describe("a group name") : route.params?.[name];
    if (!schema) throw new Error(`openapi: ${route.path} has no schema for {${name}}`);
    params.push({ name, in: "path", required: true, schema: c.convert(schema, "input") });
  }
  if (route.query) {
    // As the router reads them once parsed: a decimal parameter is documented as the integer it is
    // (its bounds included), not as the string of digits the URL carries.
    const q = c.convert(route.query, "output") as { properties?: Record<string, Json>; required?: string[] };
    for (const [name, schema] of Object.entries(q.properties ?? {})) params.push({ name, in: "query", required: q.required?.includes(name) ?? false, schema });
  }
  for (const [name, schema] of Object.entries(route.headers ?? {})) params.push({ name, in: "header", required: false, schema: c.convert(schema, "input") });
  return params;
}

function requestBodyOf(c: Converter, route: Route): Json | undefined {
  const body = route.body;
  if (!body) return undefined;
  if ("stream" in body) return { required: true, description: `at most ${body.bytesMax} bytes`, content: streamContent(c, body.stream) };
  return { required: !body.optional, content: { "application/json": { schema: c.convert(body.schema, "input") } } };
}

const security = {
  none: [],
  admin: [{ adminToken: [] }],
  client: [{ adminToken: [] }, { clientToken: [] }, { groupToken: [] }],
};

function operationOf(c: Converter, route: Route): Json {
  const responses: Record<string, Json> = {};
  for (const a of route.answers) responses[String(a.status)] = answerOf(c, a);
  Object.assign(responses, errorAnswers(c, route));
  const body = requestBodyOf(c, route);
  return {
    operationId: route.id,
    tags: [route.tag],
    summary: route.summary,
    ...(route.description ? { description: route.description } : {}),
    security: security[route.auth],
    "x-auth": route.auth,
    ...(route.testOnly ? { "x-test-only": true } : {}),
    parameters: parametersOf(c, route),
    ...(body ? { requestBody: body } : {}),
    responses,
  };
}

export function buildDocument(): Json {
  const c = new Converter();
  // The machines' unions are only referred to from the bodies (see standIns): convert them here.
  c.convert(machineCommand, "input");
  c.convert(machineQuery, "input");
  const paths: Record<string, Record<string, Json>> = {};
  for (const route of routes) (paths[route.path] ??= {})[route.method] = operationOf(c, route);
  const tags = [...new Set(routes.map((r) => r.tag))].map((name) => ({ name }));
  return {
    openapi: "3.1.0",
    info: {
      title: "edge-smr",
      version,
      description:
        "A replicated state machine on Cloudflare Workers and Durable Objects. Bodies are JSON; times are ISO-8601; hashes lowercase hex. `Authorization: Bearer <token>`: ADMIN_TOKEN on every route, a client token on the routes marked client (x-auth), a group token on its own group's client routes.",
    },
    tags,
    paths,
    components: {
      schemas: Object.fromEntries(Object.entries(c.components).sort(([a], [b]) => a.localeCompare(b))),
      securitySchemes: {
        adminToken: { type: "http", scheme: "bearer", description: "ADMIN_TOKEN: every route" },
        clientToken: { type: "http", scheme: "bearer", description: "one of CLIENT_TOKENS: the routes marked client" },
        groupToken: { type: "http", scheme: "bearer", description: "a group token (POST /v1/groups/{group}/tokens): its own group's client routes; scope read: status, replicas, audits, events, query, watch; write: also commands" },
      },
    },
  };
}

let built: Json | null = null;

/** The document, made once per isolate (on its first request, not at start-up). */
export function openApiDocument(): Json {
  built ??= buildDocument();
  return built;
}
