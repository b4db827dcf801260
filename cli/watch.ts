// smr watch: the change feed, one line per event, until Ctrl-C (or SIGTERM).
import { Command } from "commander";
import { ApiRequestError, type WatchEvent } from "../shared/client/index.js";
import { seqArg } from "./args.js";
import { runOf } from "./context.js";
import { note, printable, safeJson, stdoutCarries } from "./output.js";

/** `seq  key=value key2=value2`; an entry that changed no key shows its command instead. */
export function eventLine(e: WatchEvent): string {
  const changes = e.changes ?? [];
  if (changes.length === 0) return `${e.seq}  ${e.kind} ${safeJson(e.command)}`;
  return `${e.seq}  ${changes.map(([k, v]) => `${keyShown(k)}=${safeJson(v)}`).join(" ")}`;
}

/** A key JSON-quoted if it holds a space, `=` or `"`: `a=b c=1` read as two changes where one key was `a=b c` (a probe). */
function keyShown(k: string): string {
  return /[\s="]/.test(k) ? safeJson(k) : printable(k);
}

/** Once stdout has taken what was written, the signal again with no handler left: its default ends the process. */
async function dieBy(signal: NodeJS.Signals): Promise<void> {
  await new Promise<void>((resolve) => process.stdout.write("", () => resolve()));
  process.removeAllListeners(signal);
  process.kill(process.pid, signal);
  // Reached only if the signal is ignored (node as PID 1 in a container): the exit code it means.
  process.exit(signal === "SIGINT" ? 130 : 143);
}

export function watchCommand(): Command {
  return new Command("watch")
    .description("stream the group's applied entries as they commit, until Ctrl-C (it resumes by itself after a dropped connection; with --retry-for, gives up after failing that long)")
    .argument("<group>")
    .option("--from <seq>", "entries after this seq (default: from now)", seqArg)
    .option("--prefix <p>", "kv: only entries that change a key with this prefix")
    .action(async (group: string, opts: { from?: number; prefix?: string }, cmd: Command) => {
      const { client, json } = runOf(cmd);
      const stop = new AbortController();
      // Ended by a signal, it dies by it (as interrupt.ts does): exit 0 let a shell loop over
      // groups (`for g in ...; do smr watch $g; done`) go on to the next on Ctrl-C (a probe).
      let signalled: NodeJS.Signals | null = null;
      for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => ((signalled = sig), stop.abort()));
      // --retry-for: give up after failing to connect for that long (a watch of a server that is
      // gone retried every 5 s for ever, and the flag did nothing, a probe); without it, until Ctrl-C.
      const retryForSec = cmd.optsWithGlobals<{ retryFor?: number }>().retryFor;
      let failingSinceMs: number | null = null;
      let gaveUp: string | null = null;
      const feed = client.watch(group, {
        ...(opts.from !== undefined ? { from: opts.from } : {}),
        ...(opts.prefix !== undefined ? { prefix: opts.prefix } : {}),
        signal: stop.signal,
        // On stderr, so a server that is down or a dropped stream is not retried in silence.
        onRetry: (r) => {
          const reason = r.reason.replace(/^0 /, "");
          // A stream that was open starts the count again, and is always retried once (a server's
          // `retry:` of 5-10 s gave up at once after a routine close, a review). Otherwise no pause
          // goes past the time given, as a command's retries (one pause late, up to 30 s, before).
          if (r.opened || failingSinceMs === null) failingSinceMs = Date.now();
          if (!r.opened && retryForSec !== undefined && Date.now() - failingSinceMs + r.pauseMs > retryForSec * 1000) {
            // What happened, not the limit: it gave up early, as the next try would have come too late (a probe).
            const failingSec = ((Date.now() - failingSinceMs) / 1000).toFixed(1);
            gaveUp = `watch: no stream for ${failingSec} s, and the next try, in ${r.pauseMs} ms, would come after --retry-for's ${retryForSec} s: ${reason}`;
            return stop.abort();
          }
          note(`watch: ${reason}; reconnecting in ${r.pauseMs} ms${r.after !== undefined ? ` after seq ${r.after}` : ""}`);
        },
      });
      for await (const e of feed) {
        // From the first event on (a watch refused at once, a 404, is an error document like any: a review).
        stdoutCarries.stream = true;
        process.stdout.write((json ? JSON.stringify(e) : eventLine(e)) + "\n");
      }
      // A network failure's document (status 0, `network`), as CLI.md says of a stream it cannot get (it was `"code": "error"`: a probe).
      if (gaveUp !== null) throw new ApiRequestError(0, "network", gaveUp);
      if (signalled !== null) await dieBy(signalled);
    });
}
