// smr: the operator's CLI for the replica set (API.md), built on shared/client.
// Shape: smr <command> [group] [args] [--json]. Exit 0 on success, 1 when the API answers an error
// (printed as "error: <status> <code>: <message>"; under --json also as {"error": {...}} on
// stdout), 2 for a usage error, 3 when a command's or a restore's outcome is unknown.
import { Command, CommanderError, Help, Option } from "commander";
import { locationHints } from "../shared/geo.js";
import { ApiRequestError } from "../shared/client/index.js";
import { readFileSync } from "node:fs";
import { groupArg, nonEmptyArg, nonNegativeArg, positiveArg, UsageError } from "./args.js";
import { backupCommands } from "./backup.js";
import { checkTarget } from "./config.js";
import { exitCodes, jsonWanted, runOf, targetHint, targetOf, unknownOutcomeOf } from "./context.js";
import { dataCommands } from "./data.js";
import { groupsCommand } from "./groups.js";
import { memberCommands } from "./members.js";
import { metricsCommand } from "./metrics.js";
import { escapeUnsafe, printJson, printRecord, stdoutCarries, stdoutClosed } from "./output.js";
import { watchCommand } from "./watch.js";

function configCommand(): Command {
  return new Command("config")
    .description("where requests go and where the token comes from (never the token itself)")
    .action((_opts: unknown, cmd: Command) => {
      const t = targetOf(cmd);
      checkTarget(t); // SMR_URL=localhost:8891 was shown as fine here, and refused by every other command (a probe)
      const shown = { url: t.url, urlFrom: t.urlFrom, tokenFrom: t.tokenFrom };
      if (jsonWanted(cmd)) return printJson(shown);
      printRecord(shown);
    });
}

/**
 * `smr help groups create`: the help of the command those words name, at any depth. Commander's own
 * help command reads one word (that one showed the groups' help) and showed the whole program's
 * help for a word that names nothing (`smr help bogus`, exit 0; a probe).
 */
function helpCommand(root: Command): Command {
  return new Command("help")
    .description("the help of a command: smr help groups create")
    .argument("[command...]")
    .action((words: string[]) => {
      let shown = root;
      words.forEach((word, i) => {
        const next = shown.commands.find((c) => c.name() === word || c.aliases().includes(word));
        if (next === undefined) {
          const above = words.slice(0, i).map((w) => `${w} `).join("");
          const known = shown.commands.map((c) => c.name()).join(" | ");
          throw new UsageError(`unknown command '${above}${word}'${known ? ` (${above}${known})` : ""}`);
        }
        shown = next;
      });
      shown.outputHelp();
    });
}

/** The version in the project's package.json (smr runs from its source). */
function packageVersion(): string {
  return (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version;
}

function program(): Command {
  // An empty SMR_NEAR is none (commander checked it against the hints: every command failed, a review).
  if (process.env.SMR_NEAR?.trim() === "") delete process.env.SMR_NEAR;
  const p = new Command("smr")
    .description("operate an edge-smr replica set: groups, reads and writes, watch, audits, replicas, backups")
    .option("--url <url>", "the API's base URL (env SMR_URL; default http://localhost:8787)", nonEmptyArg)
    .option("--token <token>", "bearer token (env SMR_TOKEN; inside the project, .dev.vars)", nonEmptyArg)
    .option("--json", "print JSON for scripts instead of tables")
    .option("--retry-for <seconds>", "how long a command or a read is retried (default 90; 0: not retried); the attempt under way at its end runs on, up to --timeout", nonNegativeArg)
    .option("--timeout <seconds>", "how long one request waits for its answer (default 40; for a snapshot or a restore, for each next part): past it, a read is retried, a write's outcome is unknown; a watch has its own idle limit", positiveArg)
    .addOption(new Option("--near <location>", "where you are (env SMR_NEAR): sequential and stale reads and watches go to the replica nearest it").choices(locationHints).env("SMR_NEAR"))
    .version(packageVersion(), "--version", "print smr's version")
    .exitOverride()
    .helpCommand(false);
  for (const c of [groupsCommand(), ...dataCommands(), watchCommand(), ...memberCommands(), ...backupCommands(), metricsCommand(), configCommand(), helpCommand(p)]) {
    p.addCommand(c);
  }
  // Subcommands made before being added do not inherit exitOverride: set it on every one.
  // Every <group> argument is checked by one parser (a bad name was an API error, exit 1, though
  // nothing was sent).
  const override = (c: Command) => {
    c.exitOverride().showHelpAfterError("(add --help for usage)");
    // A parent's list of subcommands shows each one's own usage where it sets one: `replicas list`
    // showed its internal [more...] argument (a probe).
    c.configureHelp({ subcommandTerm: (sub) => (sub.registeredArguments.some((a) => a.name() === "more") ? `${sub.name()} ${sub.usage()}` : new Help().subcommandTerm(sub)) });
    for (const a of c.registeredArguments) if (a.name() === "group") a.argParser(groupArg);
    c.commands.forEach(override);
  };
  override(p);
  return p;
}

/**
 * The error line, its control characters escaped (as `printable` escapes server text): messages quote what the
 * caller or a file gave (a client id, a line of JSON), and one holding escape sequences recoloured
 * and retitled the operator's terminal (a probe).
 */
function say(message: string): void {
  process.stderr.write(`error: ${message.split("\n").map((line) => escapeUnsafe(line)).join("\n")}\n`);
}

/** A network failure has no status: "0 network" said nothing, also inside an unknown outcome's message (a probe). */
function withoutZeroStatus(message: string): string {
  return message.replace(/(^|: )0 network: /g, "$1network: ");
}

function report(err: unknown): number {
  if (err instanceof CommanderError) return err.exitCode === 0 ? exitCodes.ok : exitCodes.usage; // commander printed it already
  if (err instanceof UsageError) {
    say(err.message);
    return exitCodes.usage;
  }
  const unknown = unknownOutcomeOf(err);
  if (err instanceof ApiRequestError) {
    // "error: 404 not_found: group x does not exist"; "error: network: GET http://...: TypeError: fetch failed (...)"
    say(withoutZeroStatus(err.message));
    const hint = targetHint(err);
    if (hint) process.stderr.write(`${escapeUnsafe(hint)}\n`);
  } else say(err instanceof Error ? err.message : String(err));
  return unknown ? exitCodes.unknown : exitCodes.failed;
}

/**
 * Under --json, the error as a document on stdout too, as the API's body is, with the status, and
 * for an outcome unknown the pair that retries it: a script read a text line on stderr and one
 * exit code for "refused" and "may have run" (a review).
 */
function reportJson(err: unknown): void {
  // Help or the version was printed (no command given is help too); a stream's data is not added to.
  if (err instanceof CommanderError && (err.exitCode === 0 || err.code === "commander.help")) return;
  if (stdoutCarries.stream) return;
  const unknown = unknownOutcomeOf(err);
  const message = err instanceof Error ? err.message : String(err);
  const error =
    err instanceof ApiRequestError
      ? { status: err.status, code: err.code, message: withoutZeroStatus(message.slice(`${err.status} ${err.code}: `.length)), ...(err.reason ? { reason: err.reason } : {}) }
      : { code: err instanceof UsageError || err instanceof CommanderError ? "usage" : "error", message: message.replace(/^error: /, "") };
  // One line: a script reading lines, or a log, takes it whole.
  process.stdout.write(JSON.stringify({ error: { ...error, ...(unknown ? { outcome: "unknown", ...(unknown.retry ? { retry: unknown.retry } : {}) } : {}) } }) + "\n");
}

/** --json among the arguments before a `--` (report runs where no command's options are at hand). */
function jsonAsked(argv: string[]): boolean {
  const end = argv.indexOf("--");
  return (end === -1 ? argv : argv.slice(0, end)).includes("--json");
}

// `smr watch ... | head`: a reader that has gone away ends the command, quietly. Any other failure
// to write the output (a full disk: `smr snapshot g > f`) is an error line, not a stack trace.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE" && stdoutClosed.cutShort !== null) {
    say(stdoutClosed.cutShort);
    process.exit(1);
  }
  if (err.code === "EPIPE") process.exit(0);
  say(`cannot write the output: ${err.code ?? err.message}`);
  process.exit(1);
});

try {
  await program().parseAsync(process.argv);
} catch (err) {
  process.exitCode = report(err);
  if (jsonAsked(process.argv.slice(2))) reportJson(err);
}
