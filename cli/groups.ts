// smr groups list | create | status [group] | delete
import { Command, Option } from "commander";
import { ApiRequestError, type GroupSpec, type GroupStatus } from "../shared/client/index.js";
import { betweenArg, locationListArg, positiveArg, upToArg, UsageError } from "./args.js";
import { metricsPageMax, replicasMax, storageQuotaMiBDefault, storageQuotaMiBMax, storageQuotaMiBMin } from "../shared/limits.js";
import { runOf } from "./context.js";
import { printHealth, slowNote } from "./metrics.js";
import { hashPrefix, note, printJson, printRecord, printTable } from "./output.js";
import { bytesText } from "../public/units.js";
import { noQuorumSideText, quotaText } from "../public/health.js";

/** health.js's wording of a replica at (or near) the group's storage quota, else null. */
function storageText(s: GroupStatus): string | null {
  return quotaText(s.replicas, s.storageQuotaMiB === undefined ? null : s.storageQuotaMiB * 1024 * 1024);
}

export function printStatus(s: GroupStatus): void {
  printRecord({
    group: s.group,
    machine: s.machine,
    epoch: s.epoch,
    commitSeq: s.commitSeq,
    outputs: s.outputs,
    checkpointEvery: s.checkpointEvery,
    // A group made before sessions expired has none (null): it keeps every client.
    ...(s.sessionIdleSeconds === undefined ? {} : { sessionIdle: s.sessionIdleSeconds === null ? "never (a group older than expiring sessions)" : idleText(s.sessionIdleSeconds) }),
    ...(s.storageQuotaMiB !== undefined ? { storageQuota: `${s.storageQuotaMiB} MiB (writes refused while a replica's storage holds as much)` } : {}),
    // The list and the dashboard show such a group degraded: say why here too (a review).
    ...(storageText(s) !== null ? { storage: storageText(s)! } : {}),
    sequencer: `${s.sequencer.name} @ ${s.sequencer.location ?? "any"} (epoch ${s.sequencer.epoch}, since ${s.sequencer.since ?? "-"})`,
    // While the sequencer cannot be reached the status is what the replicas say of themselves:
    // say so, and why (the table looked like a healthy group's, a probe).
    ...(s.sequencer.reachable === false ? { reachable: `NO: ${s.sequencer.problem ?? "the sequencer did not answer"}` } : {}),
    ...(slowNote(s.sequencer.answerMs).length > 0 ? { slow: `${slowNote(s.sequencer.answerMs)[0]}: every command waits at least as long` } : {}),
    ...(s.sequencer.noQuorumMs !== undefined ? { quorum: `NONE for ${Math.round(s.sequencer.noQuorumMs / 1000)} s (${noQuorumWhy(s.sequencer)})` } : {}),
    ...(s.sequencer.asleepSince !== undefined ? { asleep: `since ${s.sequencer.asleepSince} (no client work; the next command wakes it)` } : {}),
  });
  printReplicas(s.replicas);
}

/** Why a sequencer hears no quorum, as the router saw the voters (its status's noQuorumSide). */
function noQuorumWhy(q: GroupStatus["sequencer"]): string {
  return noQuorumSideText(q.noQuorumSide, q.silentVoters) ?? "cut off from its replicas; a failover may replace it";
}

export function printReplicas(replicas: GroupStatus["replicas"]): void {
  // Rows and size from the last audit (none yet: "-").
  const size = (r: GroupStatus["replicas"][number]) => [r.stateRows ?? "-", r.storageBytes === undefined ? "-" : bytesText(r.storageBytes)];
  printTable(
    ["replica", "location", "status", "lastSeq", "appliedSeq", "digest", "lastContact", "rows", "size"],
    // Never heard from (no contact, no audit that reached it): positions unknown, not 0. Not heard
    // from but audited: the audit's positions, said to be its (its time read as a last contact).
    replicas.map((r) => {
      // A rebuild under way: the rows copied so far (it showed "repairing" alone for as long as it took: a probe).
      // Damaged: its rows failed their scrub, though its status may read healthy (only the audits named it: a probe).
      const status = r.rebuild ? `${r.status} (${r.rebuild.rows} rows from ${r.rebuild.source})` : r.damaged ? `${r.status}, damaged: repair it` : r.status;
      if (r.lastContact !== null) return [r.id, r.location, status, r.lastSeq, r.appliedSeq, hashPrefix(r.digest), r.lastContact, ...size(r)];
      // The zero digest: the audit did not compare at its position (unknown, as "?").
      if (r.audited !== undefined) return [r.id, r.location, status, r.lastSeq, r.appliedSeq, /^0+$/.test(r.digest) ? "?" : hashPrefix(r.digest), `none (positions: audit ${r.audited})`, ...size(r)];
      return [r.id, r.location, status, "?", "?", "?", null, ...size(r)];
    }),
  );
}

/** "7 days", "1 h", "90 s": a session window in the largest unit that divides it. */
function idleText(seconds: number): string {
  if (seconds % 86_400 === 0) return `${seconds / 86_400} ${seconds === 86_400 ? "day" : "days"}`;
  if (seconds % 3_600 === 0) return `${seconds / 3_600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

export function groupsCommand(): Command {
  const groups = new Command("groups").description("create, list, inspect and delete groups; set a group's storage quota");
  for (const add of [listCommand, createCommand, statusCommand, quotaCommand, deleteCommand]) add(groups);
  return groups;
}

function listCommand(groups: Command): void {
  groups
    .command("list")
    .description("the groups' names (every page, or --limit of them)")
    .option("--limit <n>", "at most this many", positiveArg)
    .option("--after <name>", "names after this one")
    .action(async (opts: { limit?: number; after?: string }, cmd: Command) => {
      const { client, json } = runOf(cmd);
      const names: string[] = [];
      let after = opts.after;
      let next: string | undefined;
      do {
        const page = await client.listGroups({ ...(after ? { after } : {}), ...(opts.limit ? { limit: Math.min(opts.limit - names.length, 1000) } : {}) });
        names.push(...page.groups);
        next = page.next;
        after = next;
      } while (next && (opts.limit === undefined || names.length < opts.limit));
      if (json) return printJson({ groups: names, ...(next && opts.limit !== undefined ? { next } : {}) });
      if (names.length === 0) return note("no groups");
      printTable(["group"], names.map((n) => [n]));
      if (next && opts.limit !== undefined) note(`more: --after=${next}`);
    });
}

interface CreateFlags {
  machine: string;
  replicas?: number;
  locations?: string[];
  outputs?: "first" | "majority";
  checkpointEvery?: number;
  sequencerLocations?: string[];
  sessionIdle?: number;
  storageQuota?: number;
  colocate?: boolean;
}

function createCommand(groups: Command): void {
  groups
    .command("create")
    .description("create a group (200 if one with the same config exists)")
    .argument("<group>")
    // Named here, not read from shared/machines (its import, zod's and every machine's, cost each run 150 ms).
    .option("--machine <name>", "the state machine: kv, bank, lock, or another the server's build lists (docs/MACHINES.md)", "kv")
    .option("--replicas <n>", `replicas, 1 to ${replicasMax}`, upToArg(replicasMax))
    .option("--locations <hints>", "one location hint per replica, comma-separated", locationListArg)
    .addOption(new Option("--outputs <mode>", "answer with the first replica's output or a majority's").choices(["first", "majority"]))
    .option("--checkpoint-every <n>", "entries between checkpoints", positiveArg)
    .option("--sequencer-locations <hints>", "the sequencer's location hints, in order of preference", locationListArg)
    .option("--session-idle <seconds>", "forget a client with no command executed for this long (default a day)", positiveArg)
    .option("--storage-quota <MiB>", `refuse writes while a replica's storage holds this many MiB (${storageQuotaMiBMin} to ${storageQuotaMiBMax}, default ${storageQuotaMiBDefault})`, betweenArg(storageQuotaMiBMin, storageQuotaMiBMax))
    .option("--no-colocate", "host no replica in the sequencer's object")
    .action(async (group: string, opts: CreateFlags, cmd: Command) => {
      const { client, json } = runOf(cmd);
      const spec: GroupSpec = { machine: opts.machine };
      if (opts.locations) spec.replicas = opts.locations.length;
      if (opts.replicas !== undefined) spec.replicas = opts.replicas;
      if (opts.locations) spec.locations = opts.locations;
      if (opts.outputs) spec.outputs = opts.outputs;
      if (opts.checkpointEvery !== undefined) spec.checkpointEvery = opts.checkpointEvery;
      if (opts.sequencerLocations) spec.sequencerLocations = opts.sequencerLocations;
      if (opts.sessionIdle !== undefined) spec.sessionIdleSeconds = opts.sessionIdle;
      if (opts.storageQuota !== undefined) spec.storageQuotaMiB = opts.storageQuota;
      if (opts.colocate === false) spec.colocate = false;
      let made = true;
      const status = await client.createGroup(group, spec, (m) => (made = m));
      if (json) return printJson({ ...status, created: made });
      // A second create with the same config printed as a creation (a probe).
      if (!made) note(`group ${group} exists with this config: nothing changed`);
      for (const w of status.warnings ?? []) note(`warning: ${w}`);
      printStatus(status);
    });
}

function statusCommand(groups: Command): void {
  groups
    .command("status")
    .description("the group's sequencer and replicas; without a group, every group's health (from the metrics, admin)")
    .argument("[group]")
    .option("--limit <n>", `without a group: a page of this many groups (max ${metricsPageMax})`, upToArg(metricsPageMax))
    .option("--after <name>", "without a group: groups after this one")
    .option("--unhealthy", "without a group: only the groups not ok (degraded or down); exits 1 if it lists any")
    .action(async (group: string | undefined, opts: { limit?: number; after?: string; unhealthy?: boolean }, cmd: Command) => {
      const { client, json } = runOf(cmd);
      if (group === undefined) return printHealth(client, json, { ...(opts.after ? { after: opts.after } : {}), ...(opts.limit ? { limit: opts.limit } : {}) }, opts.unhealthy);
      if (opts.limit !== undefined || opts.after !== undefined || opts.unhealthy) throw new UsageError("--limit, --after and --unhealthy are for every group's health (no group given)");
      const status = await client.group(group).catch((err: unknown) => Promise.reject(withCliAdvice(err, group)));
      if (json) return printJson(status);
      printStatus(status);
    });
}

/** The server's advice in HTTP terms in the CLI's (a probe): "DELETE with ?force=1", "GET /v1/groups/g/replicas". */
export function withCliAdvice(err: unknown, group: string): unknown {
  if (!(err instanceof ApiRequestError)) return err;
  const said = err.message.slice(`${err.status} ${err.code}: `.length);
  const message = said.replace("DELETE with ?force=1", `smr groups delete ${group} --force`).replace(/GET \/v1\/groups\/([a-z0-9-]+)\/replicas\b/g, "smr replicas $1");
  // The same error, reworded: what it carries (an unknown outcome, its cause) stays with it.
  if (message !== said) err.message = `${err.status} ${err.code}: ${message}`;
  return err;
}

function quotaCommand(groups: Command): void {
  groups
    .command("quota")
    .description("set the group's storage quota from now on: raised, a group held at its quota takes writes again")
    .argument("<group>")
    .argument("<MiB>", `${storageQuotaMiBMin} to ${storageQuotaMiBMax}`, betweenArg(storageQuotaMiBMin, storageQuotaMiBMax))
    .action(async (group: string, mib: number, _opts: unknown, cmd: Command) => {
      const { client, json } = runOf(cmd);
      const status = await client.setQuota(group, mib);
      if (json) return printJson(status);
      process.stdout.write(`group ${group}: storage quota ${status.storageQuotaMiB ?? mib} MiB\n`);
    });
}

function deleteCommand(groups: Command): void {
  groups
    .command("delete")
    .description("delete the group and all its state")
    .argument("<group>")
    .option("--force", "finish though some of its objects cannot be reached (a location lost for good), leaving their storage behind")
    .action(async (group: string, opts: { force?: boolean }, cmd: Command) => {
      const { client, json } = runOf(cmd);
      await client.deleteGroup(group, { force: opts.force === true }).catch((err: unknown) => {
        throw withCliAdvice(err, group);
      });
      if (json) return printJson({ deleted: group });
      process.stdout.write(`deleted group ${group}\n`);
    });
}
