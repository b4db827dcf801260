// The group's machinery: smr replicas [add|remove|repair|release] | sequencer move | audit | audits | events | log | tokens
import { Command, Option } from "commander";
import type { AuditReport, GroupEvent, LogPage, ReplicaStatus } from "../shared/client/index.js";
import { auditHistoryMax, eventHistoryMax, logPageMax } from "../shared/limits.js";
import { locationArg, positiveArg, replicaIdArg, seqArg, tokenIdArg, upToArg, UsageError } from "./args.js";
import { runOf } from "./context.js";
import { printReplicas, withCliAdvice } from "./groups.js";
import { brief, hashPrefix, note, printJson, printRecord, printTable } from "./output.js";

/**
 * What a page of the log leaves out, for stderr: where the next page starts, or where the log is
 * when the page is empty. The table alone did not say that more entries follow (a page is 100 by
 * default) nor why it was empty (a --from past the end), as `list` and `groups list` do.
 */
export function logHint(page: LogPage): string | undefined {
  const last = page.entries.at(-1)?.seq;
  if (last !== undefined) return last < page.lastSeq ? `more: --from ${last + 1} (the log holds ${page.firstSeq} to ${page.lastSeq})` : undefined;
  return page.lastSeq === 0 || page.lastSeq < page.firstSeq ? "the log is empty" : `no entries there: the log holds ${page.firstSeq} to ${page.lastSeq}`;
}

/**
 * An event's kind as the table shows it: with its action when it has one. A release, an audit alarm
 * and a rejoin are quarantine events, a restore a recovery one (API.md's kinds only, 2213931);
 * the kind alone showed an operator's release as a quarantine.
 */
export function eventKind(e: Pick<GroupEvent, "kind" | "action">): string {
  return e.action ? `${e.kind} (${e.action})` : e.kind;
}

/** An event's message, with a failover's down time and cause (only `--json` showed them, where the dashboard did: a probe). */
export function eventText(e: GroupEvent): string {
  if (e.kind !== "failover" || typeof e.downMs !== "number") return e.message;
  const cause = typeof e.cause === "string" && e.cause !== "" ? `: ${e.cause}` : "";
  return `${e.message} (down ${(e.downMs / 1000).toFixed(1)} s${cause})`;
}

function printAudit(a: AuditReport): void {
  printRecord({ at: a.at, seq: comparedSeq(a), verdict: a.verdict, quarantined: a.quarantined?.join(",") || "-", ...(a.alarm ? { alarm: a.alarm } : {}) });
  printTable(["replica", "appliedSeq", "digest", "verdict"], a.replicas.map((r) => [r.id, r.appliedSeq, hashPrefix(r.digest), r.reason ? `${r.verdict} (${r.reason})` : r.verdict]));
}

function replicasCommand(): Command {
  const replicas = new Command("replicas").description("a group's replicas: list (default), add, remove, repair, release");

  replicas
    .command("list", { isDefault: true })
    .description("the group's replicas and their positions")
    .usage("<group> [options]") // [more...] is for naming a mistyped subcommand, not to be given
    .argument("<group>")
    .argument("[more...]")
    .allowUnknownOption() // its own check: a mistyped subcommand is named before an option it does not know
    .action(async (group: string, more: string[], _opts: unknown, cmd: Command) => {
      notASubcommand(cmd, ["list", "add", "remove", "repair", "release"], group, more);
      const { client, json } = runOf(cmd);
      const r = await client.replicas(group);
      if (json) return printJson(r);
      printReplicas(r.replicas);
      if (r.sequencer?.reachable === false) note(`${r.sequencer.problem ?? "the sequencer cannot be reached"}; the replicas above are what they say of themselves`);
    });

  replicas
    .command("add")
    .description("add a replica (it joins by state transfer)")
    .argument("<group>")
    .option("--location <hint>", "its location hint", locationArg)
    .action(async (group: string, opts: { location?: string }, cmd: Command) => {
      const { client, json } = runOf(cmd);
      const r = await client.addReplica(group, opts.location).catch((err: unknown) => Promise.reject(withCliAdvice(err, group)));
      if (json) return printJson(r);
      printReplicas([r.replica]);
    });

  addByIdCommands(replicas);
  return replicas;
}

/** The subcommands that name one replica: remove, repair, release. */
function addByIdCommands(replicas: Command): void {
  replicas
    .command("remove")
    .description("remove a replica")
    .argument("<group>")
    .argument("<id>", "e.g. r3", replicaIdArg)
    .action(async (group: string, id: string, _opts: unknown, cmd: Command) => {
      const { client, json } = runOf(cmd);
      const r = await client.removeReplica(group, id).catch((err: unknown) => Promise.reject(withCliAdvice(err, group)));
      if (json) return printJson(r);
      printReplicas([r.replica]);
    });

  replicas
    .command("repair")
    .description("rebuild a replica now from the most advanced healthy one (e.g. out of a quarantine)")
    .argument("<group>")
    .argument("<id>", "e.g. r2", replicaIdArg)
    .action(async (group: string, id: string, _opts: unknown, cmd: Command) => {
      const { client, json } = runOf(cmd);
      // The rebuild's progress on stderr while the call lasts (8 s of silence for 3 MiB: a probe).
      const progress = everyFewSeconds(async (signal) => {
        // One try, no retries (their lines went on after the answer: a review), ended with the repair.
        const r = await client.request<{ replicas: ReplicaStatus[] }>("GET", `/v1/groups/${group}/replicas`, undefined, signal);
        const rebuild = r.replicas.find((x) => x.id === id)?.rebuild;
        if (rebuild && !signal.aborted) note(`repairing ${id}: ${rebuild.rows} rows from ${rebuild.source} (seq ${rebuild.seq})`);
      });
      const r = await client.repairReplica(group, id).finally(progress);
      if (json) return printJson(r);
      if (r.replica) printReplicas([r.replica]);
      else process.stdout.write(`repaired replica ${id}\n`);
    });

  replicas
    .command("release")
    .description("let a quarantined replica serve and vote again (refused while its rows do not match its digest, unless --rebase)")
    .argument("<group>")
    .argument("<id>", "e.g. r2", replicaIdArg)
    .option("--rebase", "take its rows as they are (e.g. when every replica is quarantined)")
    .action(async (group: string, id: string, opts: { rebase?: boolean }, cmd: Command) => {
      const { client, json } = runOf(cmd);
      const r = await client.releaseReplica(group, id, { rebase: opts.rebase === true });
      if (json) return printJson(r);
      if (r.replica) printReplicas([r.replica]);
      else process.stdout.write(`released replica ${id}\n`);
    });
}

function sequencerCommand(): Command {
  const sequencer = new Command("sequencer").description("the object that orders a group's commands");
  sequencer
    .command("move")
    .description("move the sequencer (to a location hint)")
    .argument("<group>")
    .option("--location <hint>", "where to", locationArg)
    .action(async (group: string, opts: { location?: string }, cmd: Command) => {
      const { client, json } = runOf(cmd);
      const r = await client.moveSequencer(group, opts.location);
      if (json) return printJson(r);
      const s = r.sequencer;
      // Accepted (202): the new sequencer may not be in office yet, so it may have no `since`.
      printRecord({ name: s.name, location: s.location ?? "any", epoch: s.epoch, ...(s.since ? { since: s.since } : {}), ...(s.recovering ? { recovering: s.recovering } : {}) });
    });
  return sequencer;
}

function tokensCommand(): Command {
  const tokens = new Command("tokens").description("a group's own tokens: list (default), create, revoke");
  tokens
    .command("list", { isDefault: true })
    .description("the group's tokens (never their secrets)")
    .usage("<group> [options]") // [more...] is for naming a mistyped subcommand, not to be given
    .argument("<group>")
    .argument("[more...]")
    .allowUnknownOption() // its own check: a mistyped subcommand is named before an option it does not know
    .action(async (group: string, more: string[], _opts: unknown, cmd: Command) => {
      notASubcommand(cmd, ["list", "create", "revoke"], group, more);
      const { client, json } = runOf(cmd);
      const r = await client.tokens(group);
      if (json) return printJson(r);
      printTable(["id", "scope", "name", "created"], r.tokens.map((t) => [t.id, t.scope, t.name, t.created]));
    });
  tokens
    .command("create")
    .description("create a token for this group only (the secret is shown once)")
    .argument("<group>")
    .addOption(new Option("--scope <scope>", "read or write").choices(["read", "write"]).makeOptionMandatory())
    .option("--name <name>", "a label")
    .action(async (group: string, opts: { scope: "read" | "write"; name?: string }, cmd: Command) => {
      const { client, json } = runOf(cmd);
      const t = await client.createToken(group, opts.scope, opts.name);
      if (json) return printJson(t);
      printRecord({ id: t.id, scope: t.scope, name: t.name, created: t.created, token: t.token });
    });
  tokens
    .command("revoke")
    .description("revoke a token: it is refused (401) from then on, and its open watches end")
    .argument("<group>")
    .argument("<id>", "as the list shows it", tokenIdArg)
    .action(async (group: string, id: string, _opts: unknown, cmd: Command) => {
      const { client, json } = runOf(cmd);
      await client.revokeToken(group, id);
      if (json) return printJson({ revoked: id });
      process.stdout.write(`revoked token ${id}\n`);
    });
  return tokens;
}

/**
 * Why `smr audit` exits 1, or null: replicas that disagree, an alarm (a quorum failed alike), or
 * too few replicas to compare (`insufficient`: nothing was checked). It exited 0 whatever the
 * verdict, so `smr audit g && ...` went on past a diverged group, and then past one whose replicas
 * none answered (a probe).
 */
export function auditFailure(a: { verdict: string; replicas: { id: string; verdict: string }[]; quarantined?: string[]; alarm?: string }): string | null {
  if (a.alarm) return `audit alarm: ${a.alarm}`;
  if (a.verdict === "insufficient") {
    const missing = a.replicas.filter((r) => r.verdict !== "agrees").map((r) => `${r.id} ${r.verdict}`);
    return `too few replicas to compare, nothing was checked (${missing.join(", ") || "no replica answered"})`;
  }
  if (a.verdict !== "diverged") return null;
  const diverged = a.replicas.filter((r) => r.verdict === "diverged").map((r) => r.id);
  const quarantined = a.quarantined?.length ? `; quarantined: ${a.quarantined.join(", ")}` : "";
  return `the replicas diverged (${diverged.join(", ") || "no majority agrees"})${quarantined}`;
}

/**
 * The default `list` given more than a group: the first word was a mistyped subcommand
 * (`smr replicas ad demo` said "too many arguments for 'list'", a probe).
 */
function notASubcommand(list: Command, subcommands: string[], first: string, more: string[]): void {
  // `smr tokens creat g --scope read` said "unknown option '--scope'": commander checks the default
  // command's options before its words. The list now takes any option and says here which is wrong.
  const option = (word: string) => word.startsWith("-");
  if (option(first)) throw new UsageError(`unknown option '${first}'`);
  if (more.length === 0) return;
  const parent = list.parent!.name();
  if (option(more[0]!)) throw new UsageError(`unknown option '${more[0]}'`);
  // `replicas list demo extra` (the parent's words start with "list"): too many arguments, not a mistyped command (a review).
  if (list.parent!.args[0] === "list") throw new UsageError(`too many arguments: ${parent} list <group>`);
  throw new UsageError(`unknown command '${parent} ${first}' (${parent} ${subcommands.join(" | ")})`);
}

/**
 * Runs `show` every 2 s, one at a time, until the returned stop is called, which aborts the one
 * under way (`signal`); its failures are ignored (progress only).
 */
export function everyFewSeconds(show: (signal: AbortSignal) => Promise<void>, everyMs = 2_000): () => void {
  const stop = new AbortController();
  let busy = false;
  const timer = setInterval(() => {
    if (busy || stop.signal.aborted) return;
    busy = true;
    show(stop.signal)
      .catch(() => undefined)
      .finally(() => (busy = false));
  }, everyMs);
  return () => {
    clearInterval(timer);
    stop.abort();
  };
}

/** An audit's seq, or "-" where none was compared (every scrub failed, none shared one, or not audited at all). */
function comparedSeq(a: AuditReport): number | string {
  return a.compared === false || a.unaudited !== undefined ? "-" : a.seq;
}

/**
 * One row of `smr audits`: a cron's report of a group it could not audit showed seq 0 and an empty
 * replicas cell, its reason only in --json (a probe).
 */
export function auditRow(a: AuditReport): (string | number)[] {
  const replicas = a.replicas.map((x) => `${x.id}:${x.verdict}`).join(" ");
  return [a.at, comparedSeq(a), a.verdict, a.unaudited !== undefined ? `${replicas ? `${replicas}; ` : ""}${a.unaudited}` : replicas];
}

export function memberCommands(): Command[] {
  const audit = new Command("audit")
    .description("run one audit of the replicas' digests now")
    .argument("<group>")
    .action(async (group: string, _opts: unknown, cmd: Command) => {
      const { client, json } = runOf(cmd);
      const a = await client.audit(group);
      if (json) printJson(a);
      else printAudit(a);
      const failure = auditFailure(a);
      if (failure !== null) {
        process.stderr.write(`error: ${failure}\n`);
        process.exitCode = 1;
      }
    });

  const audits = new Command("audits")
    .description("the latest audits, newest first")
    .argument("<group>")
    .option("--limit <n>", `at most this many (max ${auditHistoryMax})`, upToArg(auditHistoryMax))
    .action(async (group: string, opts: { limit?: number }, cmd: Command) => {
      const { client, json } = runOf(cmd);
      const r = await client.audits(group, opts.limit);
      if (json) return printJson(r);
      printTable(
        ["at", "seq", "verdict", "replicas"],
        r.audits.map(auditRow),
      );
    });

  const events = new Command("events")
    .description("the group's operational history (failovers, moves, repairs...), newest first")
    .argument("<group>")
    .option("--limit <n>", `at most this many (max ${eventHistoryMax})`, upToArg(eventHistoryMax))
    .action(async (group: string, opts: { limit?: number }, cmd: Command) => {
      const { client, json } = runOf(cmd);
      const r = await client.events(group, opts.limit);
      if (json) return printJson(r);
      printTable(["at", "kind", "epoch", "message"], r.events.map((e) => [e.at, eventKind(e), e.epoch, eventText(e)]));
    });

  const log = new Command("log")
    .description("the group's log entries")
    .argument("<group>")
    .option("--from <seq>", "first seq (0 and 1 both mean the log's first entry; default its oldest retained)", seqArg)
    .option("--limit <n>", `at most this many (max ${logPageMax})`, upToArg(logPageMax))
    .action(async (group: string, opts: { from?: number; limit?: number }, cmd: Command) => {
      const { client, json } = runOf(cmd);
      const page = await client.log(group, opts.from, opts.limit);
      if (json) return printJson(page);
      printTable(
        ["seq", "epoch", "kind", "client", "request", "command", "timestamp"],
        // An entry past commitSeq is marked: a recovery may replace it (a probe read one that became a no-op).
        page.entries.map((e) => [e.committed === false ? `${e.seq} (uncommitted)` : e.seq, e.epoch, e.kind, e.client, e.request, brief(e.command, 50), e.timestamp]),
      );
      const hint = logHint(page);
      if (hint) note(hint);
    });

  return [replicasCommand(), sequencerCommand(), audit, audits, events, log, tokensCommand()];
}
