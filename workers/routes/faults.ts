// Fault injection (API.md, "Fault injection"): a 404 unless the worker's var ALLOW_FAULTS is "1".
import { Hono } from "hono";
import { z } from "zod";
import { ApiError } from "../../shared/api/errors.js";
import { faultsAllowed, setFault } from "../faults.js";
import { sequencerName } from "../../shared/protocol/types.js";
import * as groups from "../groups.js";
import { type App, groupParam, jsonBody, parse, requireAdmin } from "../http.js";

export const faultRoutes = new Hono<App>();

const faultBody = z
  .object({
    target: z.string().regex(/^(sequencer|registry|r[1-9][0-9]{0,5})$/, "sequencer, registry or a replica id"),
    fault: z.enum(["unreachable", "slow", "none"]),
    ms: z.number().int().min(0).max(60_000).optional(),
  })
  .strict();

faultRoutes.post("/:group/faults", async (c) => {
  if (!faultsAllowed(c.env)) throw new ApiError("not_found", `no route POST ${new URL(c.req.url).pathname}`);
  requireAdmin(c);
  const group = groupParam(c);
  const body = parse(faultBody, await jsonBody(c), "body");
  const record = body.target === "registry" ? null : await groups.lookup(c.env, group, true);
  const name = record ? sequencerName(record.config) : undefined;
  return c.json({ faults: setFault(group, body.target, body.fault, body.ms ?? 0, name) });
});
