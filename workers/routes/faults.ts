// Fault injection (API.md, "Fault injection"): a 404 unless the worker's var ALLOW_FAULTS is "1".
import { Hono } from "hono";
import { faultBody } from "../../shared/api/schemas.js";
import { ApiError } from "../../shared/api/errors.js";
import { faultsAllowed, setFault } from "../faults.js";
import { sequencerName } from "../../shared/protocol/types.js";
import * as groups from "../groups.js";
import { type App, groupParam, jsonBody, parse, requireAdmin } from "../http.js";

export const faultRoutes = new Hono<App>();

faultRoutes.post("/:group/faults", async (c) => {
  if (!faultsAllowed(c.env)) throw new ApiError("not_found", `no route POST ${new URL(c.req.url).pathname}`);
  requireAdmin(c);
  const group = groupParam(c);
  const body = parse(faultBody, await jsonBody(c), "body");
  const record = body.target === "registry" ? null : await groups.lookup(c.env, group, true);
  const name = record ? sequencerName(record.config) : undefined;
  return c.json({ faults: setFault(group, body.target, body.fault, body.ms ?? 0, name) });
});
