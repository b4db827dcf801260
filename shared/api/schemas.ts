import { z } from "zod";
import {
  auditHistoryMax,
  batchCommandsMax,
  checkpointEveryDefault,
  checkpointEveryMax,
  checkpointEveryMin,
  clientCharsMax,
  keyBytesMax,
  eventHistoryMax,
  groupsPageMax,
  logPageMax,
  metricsPageMax,
  replicasDefault,
  replicasMax,
  sessionIdleMsDefault,
  sessionOutputFreeCharsDefault,
  sessionIdleSecondsMax,
  storageQuotaMiBDefault,
  storageQuotaMiBMax,
  storageQuotaMiBMin,
  slowFaultDefaultMs,
} from "../limits.js";
import { locationHints } from "../geo.js";
import { utf8Length } from "../text.js";
import { machineNames, machines } from "../machines/index.js";
import type { GroupConfig } from "../protocol/types.js";
import type { MachineName } from "./types.js";
import { groupNamePattern, replicaIdPattern, tokenIdPattern } from "./names.js";

/** A Durable Object location hint: the platform knows no other (an unknown one would fail at get()). */
const locationHint = z.enum(locationHints);

export { groupNamePattern, replicaIdPattern, tokenIdPattern };

/**
 * What a refinement of a request schema (or a route's own check of it) requires, in JSON Schema's
 * words, where it can say it: zod's conversion cannot see into a refine, so the OpenAPI document
 * (openapi.ts adds these keywords to the schema's own) accepted bodies the router refuses. Only
 * keywords a reader of the document may skip (dependentSchemas, if/then): the fields still read as
 * they are, and each schema's description says the same in words.
 */
export const refinedAs = z.registry<Record<string, unknown>>();

/** What each listed machine still orders at the storage quota (StateMachine.goesAtQuota): said from the list, so a machine added to it is said too. */
const goesAtQuotaSaid = Object.entries(machines)
  .map(([name, m]) => `${name}: ${m.goesAtQuota?.commands ?? "none"}`)
  .join("; ");

export const createGroupBody = z
  .object({
    machine: z.enum(machineNames as [MachineName, ...MachineName[]]),
    replicas: z.number().int().min(1).max(replicasMax).default(replicasDefault),
    locations: z
      .array(locationHint.nullable())
      .max(replicasMax)
      .optional()
      .describe(`one per replica, in order (as many as \`replicas\`, ${replicasDefault} if it is not given); null: no hint`),
    outputs: z.enum(["first", "majority"]).default("first"),
    checkpointEvery: z.number().int().min(checkpointEveryMin).max(checkpointEveryMax).default(checkpointEveryDefault),
    sequencerLocations: z.array(locationHint).min(1).max(replicasMax).optional(),
    /** Host one replica in the sequencer's object (leader-as-replica; docs/PROTOCOL.md). Default true. */
    colocate: z.boolean().optional(),
    sessionIdleSeconds: z
      .number()
      .int()
      .min(1)
      .max(sessionIdleSecondsMax)
      .optional()
      .describe(
        `a client with no command executed for this long is forgotten (its remembered requests and their outputs deleted, as commands arrive; a retry sent later answers 409, "may have run already", or runs again if the sequencer no longer knows it); default ${sessionIdleMsDefault / 1000} (a day; older groups keep the 7 days they were made with). Each command's session row (about 300 bytes with a small output) is kept for it when client ids are short-lived: size the storage quota for the rate times the window. When the group exists, another one given is a 409 (it is set at creation)`,
      ),
    storageQuotaMiB: z
      .number()
      .int()
      .min(storageQuotaMiBMin)
      .max(storageQuotaMiBMax)
      .optional()
      .describe(`while any replica's storage holds this many MiB, commands that write are refused (503) and only small ones that grow no state go (${goesAtQuotaSaid}); default ${storageQuotaMiBDefault}. When the group exists, another one given is a 409 (it is set at creation)`),
  })
  .strict()
  .refine((b) => b.locations === undefined || b.locations.length === b.replicas, {
    message: "must name one location per replica",
    path: ["locations"],
  });
/** POST /v1/groups/{group}/quota: the group's storage quota from now on. */
export const quotaBody = z
  .object({
    storageQuotaMiB: z
      .number()
      .int()
      .min(storageQuotaMiBMin)
      .max(storageQuotaMiBMax)
      .describe(`the group's storage quota from now on (see the group's PUT body): raised, a group at its quota takes writes again; lowered under what its replicas hold, writes are refused until they hold less`),
  })
  .strict();

// `locations` has as many items as `replicas` says, or replicasDefault when it is not given.
refinedAs.add(createGroupBody, {
  dependentSchemas: {
    locations: {
      anyOf: [
        ...Array.from({ length: replicasMax }, (_, i) => ({ required: ["replicas"], properties: { replicas: { const: i + 1 }, locations: { minItems: i + 1, maxItems: i + 1 } } })),
        { not: { required: ["replicas"] }, properties: { locations: { minItems: replicasDefault, maxItems: replicasDefault } } },
      ],
    },
  },
});

export function groupConfigFrom(group: string, body: z.infer<typeof createGroupBody>): GroupConfig {
  const locations = body.locations ?? Array.from({ length: body.replicas }, () => null);
  return {
    group,
    incarnation: 0, // assigned by the group's directory
    machine: body.machine,
    replicas: body.replicas,
    locations,
    outputs: body.outputs,
    checkpointEvery: body.checkpointEvery,
    sessionIdleMs: (body.sessionIdleSeconds ?? sessionIdleMsDefault / 1000) * 1000,
    sessionOutputFreeChars: sessionOutputFreeCharsDefault,
    // Stored whether asked or not: a later default does not change a group's quota (a review).
    storageQuotaMiB: body.storageQuotaMiB ?? storageQuotaMiBDefault,
    ...(body.sequencerLocations ? { sequencerLocations: body.sequencerLocations, sequencer: { name: group, location: body.sequencerLocations[0]!, no: 0 } } : {}),
    ...colocation(body, locations),
  };
}

/**
 * The replica that shares the first sequencer's object: the first one placed where the sequencer
 * starts (any, when neither is placed). None when asked not to, or when no replica is placed there,
 * or with one replica: batches form while a remote append is in flight, and a group whose only
 * replica is reached by direct calls ordered every command alone (measured: 1,234 against 663 µs
 * of CPU per put at 128 clients).
 */
function colocation(body: z.infer<typeof createGroupBody>, locations: (string | null)[]): Pick<GroupConfig, "colocated" | "colocate"> {
  if (body.colocate === false) return { colocate: false };
  if (body.replicas < 2) return {};
  const at = body.sequencerLocations?.[0];
  const i = at === undefined ? 0 : locations.indexOf(at);
  return i < 0 ? {} : { colocated: `r${i + 1}` };
}

/** A command's client id; the route refuses the names group tokens' commands are recorded under. */
const client = z
  .string()
  .min(1)
  .max(clientCharsMax)
  .describe("the client's id; `<8 hex digits>~...` is reserved for group tokens' commands (a 400 with any other token)");

export const commandBody = z
  .object({
    client,
    request: z.number().int().min(1).refine(Number.isSafeInteger, "must be a safe integer"),
    command: z.unknown(),
  })
  .strict();

/** A batch: one client, 1 to batchCommandsMax commands, each its own exactly-once (client, request) entry. */
export const batchBody = z
  .object({
    client,
    commands: z
      .array(
        z
          .object({
            request: z.number().int().min(1).refine(Number.isSafeInteger, "must be a safe integer"),
            command: z.unknown(),
          })
          .strict(),
      )
      .min(1)
      .max(batchCommandsMax)
      // (JSON Schema cannot say that one field differs across items: uniqueItems compares them whole.)
      .describe("each with a `request` of its own: a request id given twice is a 400"),
  })
  .strict()
  // The message names the second item (it named none: "body.commands", a review).
  .superRefine((b, ctx) => {
    const seen = new Map<number, number>();
    for (const [i, c] of b.commands.entries()) {
      const earlier = seen.get(c.request);
      if (earlier !== undefined) {
        ctx.addIssue({ code: "custom", path: ["commands", i, "request"], message: `request id ${c.request} is also item ${earlier}'s: each command of a batch needs its own request id` });
        return;
      }
      seen.set(c.request, i);
    }
  });

export const queryBody = z
  .object({
    query: z.unknown(),
    consistency: z.enum(["linearizable", "sequential", "stale"]).default("linearizable"),
    bookmark: z.string().max(64).optional().describe("a `bookmark` as an earlier answer from this group gave it (anything else is a 400)"),
  })
  .strict();

/**
 * A query parameter holding a decimal integer, strictly: a coerced number took "" as 0 and "0x10",
 * "1e3" or " 5" as numbers; each is a 400 now.
 */
function decimalParam(schema: z.ZodNumber) {
  // Up to 32 digits read, so that a long one is "too large", not "not a decimal integer" (a probe).
  return z.string().regex(/^[0-9]{1,32}$/, "must be a decimal integer").transform(Number).pipe(schema.max(Number.MAX_SAFE_INTEGER, "must be at most 2^53-1").int());
}

export const logParams = z.object({
  // The first seq to list. 0 is read as 1, the first there can be: a watch's `from` (entries after
  // it) takes 0, and a user paging the log from its start wrote the same and got a 400.
  from: decimalParam(z.number().min(0)).optional().describe("the first seq to list (0 or 1: from the start; older than the retained log: 410 `compacted`); default the first retained entry"),
  limit: decimalParam(z.number().min(1).max(logPageMax)).optional(),
});

/** GET /v1/groups/{g}/watch: entries after `from` (default: the replica's applied position), optionally only those changing a key under `prefix`. */
export const watchParams = z.object({
  from: decimalParam(z.number().min(0)).optional(),
  // A key's bound, in bytes as keys count it (it was 512 characters: a list took what a watch refused).
  // (The refinement first: its message, in bytes, is the one a 400 gives; max only documents it.)
  // The description says bytes: the document's maxLength counts characters (a conformance probe).
  prefix: z
    .string()
    .refine((p) => utf8Length(p) <= keyBytesMax, `must be at most ${keyBytesMax} bytes`)
    .max(keyBytesMax)
    .describe(`only entries changing a key that starts with it; at most ${keyBytesMax} bytes in UTF-8, as a key (so fewer characters if some take several bytes)`)
    .optional(),
});

/** GET /v1/groups/{g}/audits: up to every report the group keeps. */
export const auditsParams = z.object({
  limit: decimalParam(z.number().min(1).max(auditHistoryMax)).optional(),
});

/** GET /v1/groups/{g}/events: up to every event the group keeps. */
export const eventsParams = z.object({
  limit: decimalParam(z.number().min(1).max(eventHistoryMax)).optional(),
});

// ---- the bodies and parameters of the operator's routes (workers/routes/) -------------------

/** GET /v1/groups: a page of group names after `after`. */
export const groupsParams = z.object({
  after: z.string().max(64).optional(),
  limit: decimalParam(z.number().min(1).max(groupsPageMax)).optional(),
});

/**
 * DELETE /v1/groups/{group}: `force=1` finishes the delete though some of the group's objects
 * cannot be reached (a location lost for good): their storage is left behind, fenced by the
 * incarnation (groups.ts finishDelete).
 */
export const deleteGroupParams = z.object({
  force: z.enum(["1", "true"]).optional().describe("1: delete though objects cannot be reached, leaving their storage behind"),
  incarnation: decimalParam(z.number().int().min(1)).optional().describe("delete only this life of the group (its status's `incarnation`): one created again meanwhile is a 409, left as it is"),
});

/** GET /v1/metrics: one group, or a page of the registry's groups after `after`. */
export const metricsParams = z.object({
  group: z.string().regex(groupNamePattern, "must match ^[a-z0-9][a-z0-9-]{0,62}$").optional(),
  after: z.string().max(64).optional(),
  limit: decimalParam(z.number().min(1).max(metricsPageMax)).optional(),
});


export const addReplicaBody = z.object({ location: locationHint.nullable().optional() }).strict();

export const releaseBody = z.object({ rebase: z.boolean().optional() }).strict();

export const moveSequencerBody = z.object({ location: locationHint.nullable().optional() }).strict();

export const tokenBody = z.object({ scope: z.enum(["read", "write"]), name: z.string().min(1).max(128).optional() }).strict();

export const faultBody = z
  .object({
    target: z.string().regex(/^(sequencer|registry|r[1-9][0-9]{0,5})$/, "sequencer, registry or a replica id"),
    fault: z
      .enum(["unreachable", "slow", "corrupt", "none"])
      .describe("`corrupt` (a replica only: any other target is a 400): one stored state row changed behind its digest, once (nothing to clear)"),
    ms: z.number().int().min(0).max(60_000).optional().describe(`with slow: the delay of every call (default ${slowFaultDefaultMs}: it was 0, a fault that slowed nothing)`),
  })
  .strict();
// The route's own check (workers/routes/faults.ts): a corrupt fault targets a replica.
refinedAs.add(faultBody, {
  allOf: [
    { if: { properties: { fault: { const: "corrupt" } }, required: ["fault"] }, then: { properties: { target: { pattern: replicaIdPattern.source } } } },
  ],
});

/** "field: problem" for the first issue, so a 400 names what is wrong. */
export function describeZodError(err: z.ZodError, root: string, input?: unknown): string {
  const issue = err.issues[0];
  if (!issue) return `${root}: invalid`;
  const path = [root, ...issue.path.map(String)].filter(Boolean).join(".");
  // zod says "Invalid input: expected nonoptional, received undefined" of a missing field.
  const missing = issue.code === "invalid_type" && / received undefined$/.test(issue.message);
  if (missing) return `${path}: required${issue.expected === "nonoptional" ? "" : ` (${issue.expected})`}`;
  // And "Invalid option: expected one of ..." of a missing enum field, as of a wrong one (a probe).
  if (issue.code === "invalid_value" && input !== undefined && valueAt(input, issue.path) === undefined) {
    return `${path}: required (one of ${issue.values.map((v) => String(v)).join(", ")})`;
  }
  // An op no machine's schema has: "Invalid discriminator value. Expected 'balances'" (a probe).
  const discriminated = issue as { code: string; discriminator?: string; options?: unknown[] };
  if (discriminated.code === "invalid_union" && discriminated.discriminator !== undefined && Array.isArray(discriminated.options)) {
    const options = discriminated.options.map((o) => String(o)).join(", ");
    const given = input === undefined ? undefined : valueAt(input, issue.path);
    if (input !== undefined && given === undefined) return `${path}: required (one of ${options})`;
    return `${path}: ${given === undefined ? "not" : `${JSON.stringify(given)} is not`} one of ${options}`;
  }
  // A missing field of a union (a JSON value: kv's `value`) was just "Invalid input" (a probe).
  if (issue.code === "invalid_union") {
    const branches = issue.errors.map((e) => e[0]);
    // The union's own value missing: each branch's issue at the union itself, not below it (a
    // present object whose branches each miss a field of their own is not a missing value).
    if (branches.length > 0 && branches.every((b) => b?.code === "invalid_type" && b.path.length === 0 && / received undefined$/.test(b.message))) {
      const types = branches.map((b) => (b as { expected: string }).expected).map((t) => (t === "record" ? "object" : t));
      return `${path}: required (${types.join(" | ")})`;
    }
  }
  return `${path}: ${issue.message}`;
}

/** The value at path in a parsed JSON input (undefined if any step is missing). */
function valueAt(input: unknown, path: PropertyKey[]): unknown {
  let at = input;
  for (const key of path) {
    if (typeof at !== "object" || at === null || !Object.hasOwn(at, key)) return undefined;
    at = (at as Record<PropertyKey, unknown>)[key];
  }
  return at;
}
