// Commands and queries: smr put | get | del | list | query | exec | txn | batch
import { Command, Option } from "commander";
import { ApiRequestError, type BatchResult, type CommandResult, type Consistency, type KvTxnOutput, type QueryResult, type SmrClient } from "../shared/client/index.js";
import { cliBatchCommandsMax, listLimitMax } from "../shared/limits.js";
import { decodeBookmark } from "../shared/api/bookmark.js";
import { jsonArg, nonEmptyArg, positiveArg, readJsonFile, upToArg, UsageError } from "./args.js";
import { exitCodes, markUnknown, runOf, unanswered } from "./context.js";
import { cleanupOnInterrupt } from "./interrupt.js";
import { brief, printable, printJson, printRecord, printTable, safeJson, shellOption } from "./output.js";

interface SessionFlags {
  client?: string;
  request?: number;
}

const consistencyOption = () =>
  new Option("--consistency <level>", "linearizable (default), sequential or stale").choices(["linearizable", "sequential", "stale"]).default("linearizable");

/**
 * --bookmark: a write's bookmark (its `--json` answer), so a sequential read in another run sees
 * that write. The CLI printed bookmarks that no option took (a probe): read-your-writes ended with
 * the process.
 */
const bookmarkOption = () => new Option("--bookmark <bookmark>", "with --consistency sequential: see at least this position (the bookmark a write or a query printed)").argParser(nonEmptyArg);

interface ReadFlags {
  consistency: Consistency;
  bookmark?: string;
}

/**
 * --client and --request: a script that retries a command with the same pair gets the first answer
 * back. Under --client without --request the id is the library's (above any earlier run's, from
 * the clock): it was 1, so a second `exec --client me` of an incr was answered the first's output
 * and not run, and any other command under that client was a 409.
 */
function withSession(cmd: Command): Command {
  return cmd
    .option("--client <id>", "client id for exactly-once (default: random per run)", nonEmptyArg)
    .option("--request <n>", "request id for exactly-once (default: 1 under a random client; under --client, one above every earlier run's)", positiveArg);
}

async function submitAndPrint(cmd: Command, group: string, command: unknown, flags: SessionFlags): Promise<CommandResult> {
  const { client, json } = runOf(cmd, flags.client ? { clientId: flags.client } : {});
  const result = await submitOnce(client, group, command, flags.request ?? client.newRequest());
  if (json) printJson(result);
  else printRecord({ seq: result.seq, output: safeJson(result.output), bookmark: result.bookmark, ...replayedLine(result) });
  return result;
}

/**
 * The line that says an answer was recorded by an earlier attempt of this (client, request): a
 * rerun under a --client that reused its request ids printed old answers as new work (a review).
 */
function replayedLine(r: { seq: number; replayed?: true }): { replayed?: string } {
  return r.replayed ? { replayed: `yes: this client and request ran before (seq ${r.seq}); its recorded answer, nothing ran now` } : {};
}

/**
 * Submits; when the outcome is unknown (504, or the server could not be reached) says how to send
 * it again exactly once: the client id is random per run, and a new one would execute it twice.
 */
async function submitOnce(client: SmrClient, group: string, command: unknown, request: number): Promise<CommandResult> {
  const hint = `the command may have taken effect; to retry it exactly once, repeat it with --client ${client.clientId} --request ${request}`;
  return whileSent(hint, () => client.submit(group, command, request).catch(hintOnUnknown(hint, { client: client.clientId, request })));
}

/** Runs `send`; interrupted meanwhile (Ctrl-C), says `hint` first: the request may have reached the server (a probe: exit 130 in silence, and the command had run). */
function whileSent<T>(hint: string, send: () => Promise<T>): Promise<T> {
  return cleanupOnInterrupt(() => process.stderr.write(`interrupted: ${hint}\n`), send);
}

/**
 * Rethrows the error, first printing `hint` if the outcome is unknown (504, no answer, a 500 or
 * another server's 5xx: raised after the sequencer was called, the command may have run; a review
 * found no hint for a 500): a 503 certainly ran nothing. Marked so (markUnknown): exit 3, and
 * under --json the `retry` pair.
 */
function hintOnUnknown(hint: string, retry: Record<string, unknown>): (err: unknown) => never {
  return (err) => {
    // Not when the connection was never made (refused, no such host): nothing was sent.
    if (unanswered(err)) {
      process.stderr.write(`${hint}\n`);
      markUnknown(err, retry);
    }
    throw err;
  };
}

async function queryAndPrint(cmd: Command, group: string, query: unknown, flags: ReadFlags, show: (r: QueryResult) => void): Promise<void> {
  const { client, json } = runOf(cmd);
  if (flags.bookmark !== undefined && flags.consistency !== "sequential") {
    throw new UsageError("--bookmark is for --consistency sequential (a linearizable read sees every write already; a stale one promises nothing)");
  }
  const r = await client.query(group, query, flags.consistency, flags.bookmark === undefined ? {} : { bookmark: flags.bookmark });
  if (r.damaged) process.stderr.write(`warning: served by ${printable(r.replica)}, whose rows failed their last scrub (no other replica could serve): the result may hold its damage\n`);
  if (json) printJson(r);
  else show(r);
}

const txnFields = ["compare", "success", "failure"];

/**
 * A txn given as JSON: `op` may be left out; a missing list is empty. Anything else is refused, so
 * a command given by mistake (`{"op":"put",...}`) is not run as an empty txn that "succeeded".
 */
function txnOf(doc: unknown): { op: "txn"; compare: unknown[]; success: unknown[]; failure: unknown[] } {
  const shape = "a txn is an object {compare, success, failure} (a single command goes to `smr exec`)";
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) throw new UsageError(shape);
  const t = doc as Record<string, unknown>;
  const stray = Object.keys(t).filter((k) => !txnFields.includes(k) && !(k === "op" && t.op === "txn"));
  if (stray.length > 0 || !txnFields.some((k) => k in t)) throw new UsageError(`${shape}; got ${stray.length > 0 ? stray.map((k) => JSON.stringify(k)).join(", ") : "none of them"}`);
  const list = (k: string): unknown[] => {
    if (t[k] === undefined) return [];
    if (!Array.isArray(t[k])) throw new UsageError(`the txn's ${k} must be an array`);
    return t[k];
  };
  return { op: "txn", compare: list("compare"), success: list("success"), failure: list("failure") };
}

/**
 * The one document of a txn file. A file of several (NDJSON) ran its first and dropped the rest
 * in silence, exit 0 (a probe): several commands go to `smr batch`, or in one txn's lists.
 */
export function txnFileDoc(file: string): unknown {
  const docs = readJsonFile(file);
  if (docs.length !== 1) throw new UsageError(`${file}: ${docs.length} JSON documents; a txn file holds one {compare, success, failure} object (several commands: smr batch)`);
  return docs[0];
}

/** One command of a batch file: a bare command, or {command, request?}. */
function batchItemOf(doc: unknown): { command: unknown; request?: number } {
  if (typeof doc === "object" && doc !== null && !Array.isArray(doc) && "command" in doc && !("op" in doc)) {
    const { command, request } = doc as { command: unknown; request?: unknown };
    if (request !== undefined && (typeof request !== "number" || !Number.isSafeInteger(request) || request < 1)) throw new UsageError("a batch item's request must be an integer >= 1");
    return request === undefined ? { command } : { command, request };
  }
  return { command: doc };
}

function printBatch(r: BatchResult, requests: number[]): void {
  printTable(
    ["#", "request", "seq", "output"],
    // A too_large item has its seq: it was executed, only its output was left out.
    r.results.map((x, i) => ("error" in x ? [i + 1, requests[i], x.seq ?? null, `error ${x.error.code}: ${x.error.message}`] : [i + 1, requests[i], x.seq, `${x.replayed ? "(replayed: ran before) " : ""}${brief(x.output)}`])),
  );
  const replayed = r.results.filter((x) => "replayed" in x && x.replayed).length;
  // Said once under the table: ids reused under one --client answer what ran before (a review).
  if (replayed > 0) process.stderr.write(`${replayed} of ${r.results.length} commands had run before under this client and request id: their recorded answers, nothing ran now (another file under the same --client needs --first-request above the ids it used)\n`);
}

export function dataCommands(): Command[] {
  return [...kvCommands(), ...anyMachineCommands(), txnCommand(), batchCommand()];
}

/** put, get, del, list: the kv machine's own. */
function kvCommands(): Command[] {
  const put = withSession(new Command("put"))
    .description("kv: set a key to a JSON value")
    .argument("<group>")
    .argument("<key>")
    .argument("<json-value>", "the value as JSON, e.g. '\"hello\"' or '{\"n\":1}'", jsonArg)
    .action(async (group: string, key: string, value: unknown, flags: SessionFlags, cmd: Command) => {
      await submitAndPrint(cmd, group, { op: "put", key, value }, flags);
    });

  const del = withSession(new Command("del"))
    .description("kv: delete a key")
    .argument("<group>")
    .argument("<key>")
    .action(async (group: string, key: string, flags: SessionFlags, cmd: Command) => {
      await submitAndPrint(cmd, group, { op: "delete", key }, flags);
    });

  const get = new Command("get")
    .description("kv: a key's value (null if absent)")
    .argument("<group>")
    .argument("<key>")
    .addOption(consistencyOption())
    .addOption(bookmarkOption())
    .action(async (group: string, key: string, opts: ReadFlags, cmd: Command) => {
      await queryAndPrint(cmd, group, { op: "get", key }, opts, (r) => {
        process.stdout.write(safeJson((r.result as { value: unknown }).value, 2) + "\n");
      });
    });

  const list = new Command("list")
    .description("kv: keys and values in key order")
    .argument("<group>")
    .option("--prefix <p>", "only keys with this prefix")
    .option("--after <key>", "only keys after this one")
    .option("--limit <n>", `at most this many (default 100, max ${listLimitMax})`, upToArg(listLimitMax))
    .addOption(consistencyOption())
    .addOption(bookmarkOption())
    .action(async (group: string, opts: { prefix?: string; after?: string; limit?: number } & ReadFlags, cmd: Command) => {
      const query = { op: "list", ...(opts.prefix !== undefined ? { prefix: opts.prefix } : {}), ...(opts.after !== undefined ? { after: opts.after } : {}), ...(opts.limit ? { limit: opts.limit } : {}) };
      await queryAndPrint(cmd, group, query, opts, (r) => {
        const page = r.result as { items?: [string, unknown][]; next?: string };
        if (!Array.isArray(page.items)) throw new UsageError(`${group} is not a kv group (its list has no items): use \`smr query ${group} '{"op":"list"}'\``);
        printTable(["key", "value"], page.items.map(([k, v]) => [k, brief(v)]));
        if (page.next !== undefined) {
          const more = shellOption("after", page.next);
          process.stderr.write(more ? `more: ${more}\n` : `more: after ${printable(page.next)}, a key no command line can carry (a control character): page with the client library or the API\n`);
        }
      });
    });
  return [put, get, del, list];
}

/** query and exec: any machine's queries and commands, as JSON. */
function anyMachineCommands(): Command[] {
  const query = new Command("query")
    .description("any machine: run a query")
    .argument("<group>")
    .argument("<json-query>", "e.g. '{\"op\":\"balances\"}'", jsonArg)
    .addOption(consistencyOption())
    .addOption(bookmarkOption())
    .action(async (group: string, q: unknown, opts: ReadFlags, cmd: Command) => {
      await queryAndPrint(cmd, group, q, opts, (r) => {
        printRecord({ seq: r.seq, replica: r.replica, bookmark: r.bookmark });
        process.stdout.write(safeJson(r.result, 2) + "\n");
      });
    });

  const exec = withSession(new Command("exec"))
    .description("any machine: submit a command exactly once")
    .argument("<group>")
    .argument("<json-command>", "e.g. '{\"op\":\"incr\",\"key\":\"n\",\"by\":1}'", jsonArg)
    .action(async (group: string, command: unknown, flags: SessionFlags, cmd: Command) => {
      await submitAndPrint(cmd, group, command, flags);
    });
  return [query, exec];
}

function txnCommand(): Command {
  return withSession(new Command("txn"))
    .description("kv: compare, then run the success or the failure commands atomically")
    .argument("<group>")
    .argument("[json-txn]", '{"compare":[{"key":K,"value":V}],"success":[...],"failure":[...]}', jsonArg)
    .option("--file <file>", "read the txn from a JSON file")
    .action(async (group: string, doc: unknown, flags: SessionFlags & { file?: string }, cmd: Command) => {
      if (doc !== undefined && flags.file !== undefined) throw new UsageError("give the txn as an argument or with --file, not both");
      if (doc === undefined && flags.file === undefined) throw new UsageError("give the txn as an argument or with --file");
      const command = txnOf(doc !== undefined ? doc : txnFileDoc(flags.file!));
      const { client, json } = runOf(cmd, flags.client ? { clientId: flags.client } : {});
      const r = await submitOnce(client, group, command, flags.request ?? client.newRequest());
      if (json) return printJson(r);
      const out = r.output as KvTxnOutput;
      printRecord({ seq: r.seq, succeeded: out.succeeded, bookmark: r.bookmark, ...replayedLine(r) });
      printTable(["#", "output"], (out.results ?? []).map((o, i) => [i + 1, brief(o)]));
    });
}

function batchCommand(): Command {
  return new Command("batch")
    .description(`submit the commands of a file (NDJSON or a JSON array, 1 to ${cliBatchCommandsMax}), each exactly once: one request, or several in order past 256 commands or 256 KiB`)
    .argument("<group>")
    .argument("<file>", "commands, or {command, request} items; - reads stdin")
    .option("--client <id>", "client id for exactly-once (default: random per run)", nonEmptyArg)
    .option("--first-request <n>", "request id of the first command without one (default: 1, or one above the highest the file gives)", positiveArg)
    .action(async (group: string, file: string, flags: { client?: string; firstRequest?: number }, cmd: Command) => {
      const items = readJsonFile(file).map(batchItemOf);
      if (items.length === 0 || items.length > cliBatchCommandsMax) throw new UsageError(`${file}: ${items.length} commands; a batch file takes 1 to ${cliBatchCommandsMax}`);
      const { client, json } = runOf(cmd, flags.client ? { clientId: flags.client } : {});
      const first = flags.firstRequest ?? nextFree(items);
      const requests = assignRequests(items, first, file);
      const hint = `the commands may have taken effect; to retry them exactly once, repeat the batch with --client ${client.clientId} --first-request ${first}`;
      const retry = { client: client.clientId, firstRequest: first };
      const r = await whileSent(hint, () => client.submitBatch(group, items.map((it, i) => ({ command: it.command, request: requests[i]! }))).catch(hintOnUnknown(hint, retry)).catch(fileNumbered));
      // Items whose outcome is unknown come back as results, not as a thrown error: the hint too.
      const unknown = r.results.some((x) => "error" in x && x.error.code === "timeout");
      if (unknown) process.stderr.write(`${hint}\n`);
      // The pair that repeats it exactly once, in the document too (a random client's id was only in the hint: a review).
      if (json) printJson(unknown ? { ...r, outcome: "unknown", retry } : r);
      else {
        printBatch(r, requests);
        // Not a position before any write (none of the batch ran: a probe's conflict printed seq 0).
        if (r.bookmark && (decodeBookmark(r.bookmark)?.seq ?? 1) > 0) printRecord({ bookmark: r.bookmark });
      }
      // An unknown outcome is no failure: said apart ("3 of 3 commands failed" followed the hint
      // that they may have taken effect, and a rerun found every one had: a probe).
      const unknownCount = r.results.filter((x) => "error" in x && x.error.code === "timeout").length;
      const failed = r.results.filter((x) => "error" in x).length - unknownCount;
      const said = [failed > 0 ? `${failed} failed` : null, unknownCount > 0 ? `${unknownCount} may or may not have taken effect` : null].filter((x) => x !== null);
      if (said.length > 0) {
        process.stderr.write(`error: of ${r.results.length} commands, ${said.join(", ")}\n`);
        process.exitCode = unknown ? exitCodes.unknown : exitCodes.failed;
      }
    });
}

/**
 * A 400 that names `body.commands.N` names the file's command too, counted from 1 as a person
 * counts the file's lines (the API counts from 0: the third read as ".2", a probe).
 */
function fileNumbered(err: unknown): never {
  const at = err instanceof ApiRequestError && err.status === 400 ? /body\.commands\.(\d+)/.exec(err.message) : null;
  if (!at) throw err;
  const e = err as ApiRequestError;
  throw new ApiRequestError(e.status, e.code, `${e.message.slice(`${e.status} ${e.code}: `.length)} (the file's command ${Number(at[1]) + 1})`);
}

/** The first request id above every id the file gives itself, so assigned ones never collide. */
function nextFree(items: { request?: number }[]): number {
  return Math.max(0, ...items.map((i) => i.request ?? 0)) + 1;
}

/**
 * Request ids for the items: their own, else consecutive ones from `first`, skipping the ids the
 * file gives (under --first-request they collided: a 400 naming no item, a review). An id the
 * file gives twice is a usage error naming both commands, counted from 1.
 */
function assignRequests(items: { request?: number }[], first: number, file: string): number[] {
  const given = new Map<number, number>();
  for (const [i, item] of items.entries()) {
    if (item.request === undefined) continue;
    const earlier = given.get(item.request);
    if (earlier !== undefined) throw new UsageError(`${file}: commands ${earlier + 1} and ${i + 1} both give request ${item.request}; each command needs its own`);
    given.set(item.request, i);
  }
  let next = first;
  return items.map((i) => {
    if (i.request !== undefined) return i.request;
    while (given.has(next)) next++;
    return next++;
  });
}
