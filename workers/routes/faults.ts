// Fault injection (API.md, "Fault injection"): a 404 unless the worker's var ALLOW_FAULTS is "1".
import { Hono } from "hono";
import { faultBody } from "../../shared/api/schemas.js";
import { slowFaultDefaultMs } from "../../shared/limits.js";
import { ApiError } from "../../shared/api/errors.js";
import { faultsAllowed, listFaults, setFault } from "../faults.js";
import { membersOf, sequencerName } from "../../shared/protocol/types.js";
import { replicaStub } from "../env.js";
import * as groups from "../groups.js";
import { type App, groupParam, jsonBody, parse, requireAdmin } from "../http.js";

export const faultRoutes = new Hono<App>();

faultRoutes.post("/:group/faults", async (c) => {
  if (!faultsAllowed(c.env)) throw new ApiError("not_found", `no route POST ${new URL(c.req.url).pathname}`);
  requireAdmin(c);
  const group = groupParam(c);
  const body = parse(faultBody, await jsonBody(c), "body");
  // Any state: a fault that makes a delete wait must be clearable while the group is "deleting".
  const record = body.target === "registry" ? null : await groups.recordOf(c.env, group);
  const isReplica = /^r[0-9]+$/.test(body.target);
  // A typo ("r4" of three) would otherwise be accepted and cut nothing off. Clearing ("none")
  // takes any id: a replica removed while cut off has its fault cleared too.
  const member = record && isReplica ? membersOf(record.config).find((m) => m.id === body.target) : undefined;
  if (isReplica && !member && body.fault !== "none") throw new ApiError("not_found", `group ${group} has no replica ${body.target}`);
  if (body.fault === "corrupt") {
    if (!record || !member) throw new ApiError("bad_request", "target: corrupt applies to a replica id");
    const stub = replicaStub(c.env, record.config, member.id, member.location);
    // Through the faults it reaches, as any call: one cut off is a 503 that says so (it was a 500, a probe).
    const key = await stub.corrupt(record.config.incarnation ?? 0).catch((err: unknown) => {
      throw new ApiError("unavailable", `replica ${member.id} cannot be reached to corrupt it: ${String(err)}`, 1);
    });
    if (key === null) throw new ApiError("conflict", `replica ${body.target} has no stored state rows to corrupt`);
    return c.json({ faults: listFaults(group), corrupted: { replica: member.id, key } });
  }
  const name = record ? sequencerName(record.config) : undefined;
  return c.json({ faults: setFault(group, body.target, body.fault, body.ms ?? (body.fault === "slow" ? slowFaultDefaultMs : 0), name) });
});
