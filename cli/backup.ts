// smr snapshot (to stdout or a file) and smr restore (from a file, with a progress bar on stderr).
import { once } from "node:events";
import { constants as zlibConstants, gunzipSync } from "node:zlib";
import { accessSync, closeSync, constants, createReadStream, createWriteStream, existsSync, fchmodSync, fstatSync, lstatSync, openSync, readlinkSync, readSync, realpathSync, renameSync, rmSync, statSync } from "node:fs";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import cliProgress from "cli-progress";
import { Command } from "commander";
import { ApiRequestError, type GroupSpec, type SmrClient, type SnapshotHeader } from "../shared/client/index.js";
import { chunks } from "../shared/client/streams.js";
import { replicasMax, restoreBytesMax } from "../shared/limits.js";
import { inputFile, positiveArg, upToArg, UsageError } from "./args.js";
import { markUnknown, runOf, unanswered } from "./context.js";
import { cleanupOnInterrupt } from "./interrupt.js";
import { printStatus } from "./groups.js";
import { printJson, printRecord, stdoutCarries, stdoutClosed } from "./output.js";

/** Bytes of a file's start read to find its header line. */
const headerBytesMax = 64 * 1024;

async function write(out: NodeJS.WritableStream, chunk: Uint8Array): Promise<void> {
  if (!out.write(chunk)) await once(out, "drain");
}

/** Whether a file starts as gzip does (1f 8b): sent as it is with `Content-Encoding: gzip`. */
function gzipped(start: Buffer): boolean {
  return start.length >= 2 && start[0] === 0x1f && start[1] === 0x8b;
}

/**
 * The start of a file's text: of its bytes, or of what they unpack to (a gzipped file, which the
 * API takes: `smr restore` said its first line was not a header, a probe). A sync flush unpacks
 * as much as the start holds without asking for the rest.
 */
function textStart(start: Buffer, file: string): string {
  if (!gzipped(start)) return start.toString("utf8");
  try {
    return gunzipSync(start, { finishFlush: zlibConstants.Z_SYNC_FLUSH }).subarray(0, headerBytesMax).toString("utf8");
  } catch (err) {
    throw new UsageError(`${file}: starts as gzip does, but does not unpack (${(err as Error).message})`);
  }
}

/** The header (first line) of a snapshot file, and whether the file is gzipped. */
function fileHeader(file: string): { header: SnapshotHeader; gzip: boolean } {
  const fd = openSync(file, "r");
  try {
    const buf = Buffer.alloc(headerBytesMax);
    const n = readSync(fd, buf, 0, buf.length, 0);
    const start = buf.subarray(0, n);
    // As the server reads it: a byte order mark and blank lines before the header are skipped.
    const text = textStart(start, file).replace(/^\uFEFF/, "");
    const line = text.split("\n").find((l: string) => l.trim() !== "") ?? "";
    let header: unknown;
    try {
      header = JSON.parse(line);
    } catch {
      header = null;
    }
    const h = header as Partial<SnapshotHeader> | null;
    if (h === null || typeof h !== "object" || Array.isArray(h) || typeof h.machine !== "string" || typeof h.rows !== "number") {
      throw new UsageError(`${file}: its first line is not a snapshot header ({"group", "machine", "seq", "rows", "digest"})`);
    }
    return { header: h as SnapshotHeader, gzip: gzipped(start) };
  } finally {
    closeSync(fd);
  }
}

/**
 * The group --create makes: shaped like the snapshot's source (its header's `spec`: voters and
 * their locations, outputs, checkpoints, sequencer locations, co-location), with --replicas
 * instead of its voters (and then none of their locations). It had the defaults whatever the
 * source was (a probe).
 */
function createSpec(header: SnapshotHeader, replicas: number | undefined): GroupSpec {
  const spec = header.spec !== null && typeof header.spec === "object" && !Array.isArray(header.spec) ? header.spec : undefined;
  const { locations, ...rest } = spec ?? {};
  return { ...rest, ...(replicas === undefined ? (locations ? { locations } : {}) : { replicas }), machine: header.machine as GroupSpec["machine"] };
}

/**
 * The download's failure, said: the server cuts a download off before its end when the replica's
 * rows do not hash to its digest (damaged), and the bare "terminated" said nothing of that.
 */
function cutOffSaid(body: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let bytes = 0;
  return new ReadableStream<Uint8Array>({
    async pull(c) {
      let part: ReadableStreamReadResult<Uint8Array>;
      try {
        part = await reader.read();
      } catch (err) {
        const why = err instanceof Error ? err.message : String(err);
        throw new Error(`the download was cut off after ${bytes} bytes (${why}); download it again: the server cuts one off when the replica serving it stops answering or finds its rows damaged, and the next goes to a replica that answers (when every replica's rows are damaged, none completes: the group's audits raise the alarm, smr audits <group>)`);
      }
      if (part.done) return c.close();
      bytes += part.value.length;
      c.enqueue(part.value);
    },
    cancel: (reason) => reader.cancel(reason),
  });
}

/** What a download brought: its bytes, its first line, its lines, and whether it ends one. */
class Tally {
  bytes = 0;
  head = "";
  lines = 0;
  endsLine = true;

  see(c: Uint8Array): void {
    if (this.bytes < headerBytesMax && !this.head.includes("\n")) this.head += Buffer.from(c).toString("utf8");
    this.bytes += c.length;
    for (const b of c) if (b === 10) this.lines++;
    if (c.length > 0) this.endsLine = c[c.length - 1] === 10;
  }

  /**
   * Throws unless it is a snapshot (its header parses) with as many rows as its header says, its
   * last line ended (the server ends every line: one missing is a download cut inside a row).
   * `after` says what became of what was written.
   */
  checkWhole(after: string): void {
    if (this.bytes > 0 && !this.endsLine) throw new Error(`the download ends inside a line (cut short?); ${after}`);
    const first = this.head.split("\n", 1)[0]!;
    let h: Partial<SnapshotHeader> | null = null;
    try {
      h = JSON.parse(first) as Partial<SnapshotHeader>;
    } catch {
      h = null;
    }
    if (h === null || typeof h !== "object" || typeof h.rows !== "number") throw new Error(`the download is not a snapshot (its first line: ${JSON.stringify(first.slice(0, 80))}); ${after}`);
    if (this.lines - 1 !== h.rows) throw new Error(`the download has ${this.lines - 1} rows where its header says ${h.rows} (cut short?); ${after}`);
  }
}

/** The body written to `out` (ended, unless it is this process's stdout or stderr), `each` seeing every chunk; a write error rejects, not crashes. */
async function pour(body: ReadableStream<Uint8Array>, out: NodeJS.WritableStream, each: (c: Uint8Array) => void = () => undefined): Promise<void> {
  const failed = new Promise<never>((_, reject) => out.once("error", reject));
  failed.catch(() => undefined);
  for await (const c of chunks(body)) {
    each(c);
    await Promise.race([write(out, c), failed]);
  }
  if (out === process.stdout || out === process.stderr) return;
  out.end();
  await Promise.race([once(out, "finish"), failed]);
}

/**
 * The rows downloaded so far against the header's count, on stderr (a terminal only, as the
 * restore's bar: `smr snapshot -o` of a large group showed nothing for minutes, a probe).
 */
function rowsBar(): { header(rows: number): void; rows(n: number): void; stop(): void } {
  const bar = new cliProgress.SingleBar({ format: "snapshot |{bar}| {percentage}% {value}/{total} rows", stream: process.stderr }, cliProgress.Presets.shades_classic);
  let started = false;
  return {
    header: (rows) => {
      bar.start(rows, 0);
      started = true;
    },
    rows: (n) => started && bar.update(n),
    stop: () => started && bar.stop(),
  };
}

/**
 * The download into `partial`, checked whole, then renamed over `path`; the partial file removed on
 * failure. Made with the mode of the file it replaces, else readable by its owner only: a snapshot
 * holds the whole group, and the rename gave a backup kept 0600 the umask's 0644 (a review).
 */
async function download(body: ReadableStream<Uint8Array>, partial: string, path: string): Promise<{ bytes: number; header: SnapshotHeader }> {
  const tally = new Tally();
  const bar = rowsBar();
  const mode = existsSync(path) ? statSync(path).mode & 0o777 : 0o600;
  try {
    const out = createWriteStream(partial, { flags: "wx", mode });
    // The mode given at creation passes through the umask (077 made a replaced 0644 file 0600): set
    // again, exactly, where the file system can (a vfat stick cannot: it threw from the stream's
    // event, a stack trace and the partial file left, a review).
    out.on("open", (fd) => {
      try {
        fchmodSync(fd, mode);
      } catch {
        // the mode given at creation, less the umask, stays
      }
    });
    await pour(body, out, (c) => {
      const before = tally.lines;
      tally.see(c);
      if (before === 0 && tally.lines > 0) bar.header(headerRows(tally.head));
      bar.rows(Math.max(0, tally.lines - 1));
    });
    bar.stop();
    // Checked before it replaces anything: a 200 from something else (a proxy's login page)
    // or a file cut short replaced a good backup, and then failed (a probe).
    tally.checkWhole("nothing was written");
    renameSync(partial, path);
  } catch (err) {
    bar.stop();
    rmSync(partial, { force: true });
    throw err;
  }
  return { bytes: tally.bytes, header: JSON.parse(tally.head.split("\n", 1)[0]!) as SnapshotHeader };
}

/**
 * The download poured into stdout, a pipe or a device as it comes (nothing to rename over), then
 * checked as a file's is: `smr snapshot g > file` of a login page or of a download cut short
 * exited 0 (a review), where `-o file` refused both.
 */
async function pass(body: ReadableStream<Uint8Array>, out: NodeJS.WritableStream, where: string): Promise<void> {
  const tally = new Tally();
  await pour(body, out, (c) => tally.see(c));
  tally.checkWhole(`what was written to ${where} is not a whole snapshot: do not keep it`);
  warnIfUnrestorable(tally.bytes, where);
}

/**
 * A snapshot over what a restore takes can be kept and read, not restored: said when it is written
 * (a probe's 80 MB bank snapshot, its group held at its quota, was refused only at the restore).
 */
function warnIfUnrestorable(bytes: number, where: string): void {
  if (bytes <= restoreBytesMax) return;
  process.stderr.write(`warning: the snapshot in ${where} is ${(bytes / 1024 / 1024).toFixed(1)} MiB, over the ${restoreBytesMax / 1024 / 1024} MiB a restore takes: it can be kept and read, not restored (a group held at its storage quota: smr groups quota)\n`);
}

/** The row count a download's first line names (0 when it is not a header: whole() says so at the end). */
function headerRows(head: string): number {
  try {
    const rows = (JSON.parse(head.split("\n", 1)[0]!) as Partial<SnapshotHeader>)?.rows;
    return typeof rows === "number" && rows >= 0 ? rows : 0;
  } catch {
    return 0;
  }
}

/**
 * Where -o writes. A regular file (or none yet) is replaced whole once the download is complete;
 * through a symbolic link, the file it names is (the link was replaced by a file); a pipe or a
 * device is written to as it is (it was replaced by a regular file: -o /dev/full, as root, made
 * the device a file, a probe). Checked before the download: a folder, or one that cannot be
 * written, failed after it, naming the partial file.
 */
type Output = { kind: "own"; stream: NodeJS.WriteStream } | { kind: "through"; path: string } | { kind: "replace"; path: string };

function outputTarget(file: string): Output {
  const problem = (err: unknown, what = "") => new UsageError(`${file}: cannot be written (${(err as NodeJS.ErrnoException).code ?? String(err)}${what})`);
  try {
    // The name as given first: /dev/stdout and /dev/fd/N name a pipe through /proc links that
    // realpath turns into names that do not exist (a review: a download, then ENOENT).
    const st = statSync(file);
    if (st.isDirectory()) throw new UsageError(`${file} is a directory: name the file to write`);
    // This process's own stdout or stderr, whatever it is (`-o /dev/stdout >> log` renamed the
    // download over the log, a review; opened again, a socket fails with ENXIO).
    for (const stream of [process.stdout, process.stderr]) {
      const own = fstatSync(stream.fd);
      if (st.dev === own.dev && st.ino === own.ino) return { kind: "own", stream };
    }
    if (!st.isFile()) return { kind: "through", path: file };
  } catch (err) {
    if (err instanceof UsageError) throw err;
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw problem(err);
  }
  const path = linkTarget(file);
  try {
    accessSync(dirname(path), constants.W_OK);
  } catch (err) {
    throw problem(err, " for its folder");
  }
  return { kind: "replace", path };
}

/**
 * The file a name leads to through symbolic links, existing or not: the kernel's answer when the
 * file is there (the native realpath: node's own takes `..` away as text first); otherwise each
 * link followed from the real folder it sits in (`..` after a linked folder is the real folder's
 * parent, a review). A link to a missing file was replaced by a file (a review).
 */
function linkTarget(file: string): string {
  try {
    return realpathSync.native(file);
  } catch {
    // not there (yet), perhaps through a link: followed below
  }
  let path = file;
  for (let hops = 0; hops < 40; hops++) {
    let folder: string;
    try {
      folder = realpathSync.native(dirname(path));
    } catch {
      return resolve(path); // its folder is missing: said by the caller's check
    }
    const here = join(folder, basename(path));
    let st;
    try {
      st = lstatSync(here);
    } catch {
      return here; // nothing there (yet): this is the file to write
    }
    if (!st.isSymbolicLink()) return here;
    const to = readlinkSync(here);
    path = isAbsolute(to) ? to : join(folder, to);
  }
  throw new UsageError(`${file}: too many symbolic links`);
}

export function backupCommands(): Command[] {
  return [snapshotCommand(), restoreCommand()];
}

function snapshotCommand(): Command {
  return new Command("snapshot")
    .description("a consistent snapshot of the group's state (NDJSON: a header, then [key, value] rows), to stdout or a file")
    .argument("<group>")
    .option("-o, --output <file>", "write it to this file")
    .action(async (group: string, opts: { output?: string }, cmd: Command) => {
      const { client, json } = runOf(cmd);
      const target: Output = opts.output === undefined ? { kind: "own", stream: process.stdout } : outputTarget(opts.output);
      const body = cutOffSaid(await client.snapshot(group));
      if (target.kind === "own") {
        stdoutClosed.cutShort = "the output was closed before the download ended: what its reader took is not a whole snapshot";
        stdoutCarries.stream = target.stream === process.stdout;
        return pass(body, target.stream, target.stream === process.stdout ? "stdout" : "stderr");
      }
      if (target.kind === "through") return pass(body, createWriteStream(target.path), target.path);
      // Written beside the file and renamed over it once complete: a snapshot cut short never
      // replaces (or empties) an earlier backup of that name, and leaves nothing that looks like
      // one (nor does Ctrl-C: a probe found the partial files of 6 interrupts in 8).
      const partial = `${target.path}.partial-${process.pid}`;
      await cleanupOnInterrupt(() => rmSync(partial, { force: true }), () => download(body, partial, target.path)).then((r) => {
        warnIfUnrestorable(r.bytes, target.path);
        if (json) return printJson({ file: opts.output, bytes: r.bytes, header: r.header });
        printRecord({ file: opts.output, bytes: r.bytes, group: r.header.group, machine: r.header.machine, seq: r.header.seq, rows: r.header.rows, digest: r.header.digest });
      });
    });
}

function restoreCommand(): Command {
  return new Command("restore")
    .description("load a snapshot file (as smr snapshot wrote it, or gzipped) into a new, empty group (--create makes the group with the file's machine)")
    .argument("<group>")
    .argument("<file>")
    .option("--create", "create the group first, shaped like the snapshot's source (machine, replicas, locations, outputs, checkpoints, session window, storage quota)")
    .option("--replicas <n>", `with --create: this many replicas instead of the source's (1 to ${replicasMax})`, upToArg(replicasMax))
    .action(restoreAction);
}

async function restoreAction(group: string, file: string, opts: { create?: boolean; replicas?: number }, cmd: Command): Promise<void> {
  const { client, json } = runOf(cmd);
  if (opts.replicas !== undefined && !opts.create) throw new UsageError("--replicas is for a group --create makes");
  const size = inputFile(file, true);
  if (size > restoreBytesMax) throw new UsageError(`${file}: ${size} bytes; a restore takes at most ${restoreBytesMax}`);
  const { header, gzip } = fileHeader(file);
  // A group this command made is deleted again if the file is refused: a retry with a
  // corrected file (perhaps of another machine) then starts from nothing, not from a 409.
  // One that exists is restored into as it is (the server refuses it if it has entries).
  const absent = opts.create && !(await exists(client, group));
  if (opts.create && !absent && opts.replicas !== undefined) throw new UsageError(`group ${group} exists: --replicas is for a group --create makes`);
  // Made here only if the PUT made it (201): one made the same by another meanwhile (200) is
  // theirs (a review). The life made here is the only one deleted again if the file is refused.
  let made = false;
  const madeLife = absent ? (await client.createGroup(group, createSpec(header, opts.replicas), (created) => (made = created))).incarnation : undefined;
  // The bar shows the bytes fetch has taken from the file: sent, or in the socket's buffer.
  const bar = new cliProgress.SingleBar(
    { format: "restore |{bar}| {percentage}% {value}/{total} bytes", stream: process.stderr, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  bar.start(size, 0);
  let sent = 0;
  async function* counted(): AsyncGenerator<Uint8Array> {
    for await (const c of createReadStream(file) as AsyncIterable<Buffer>) {
      sent += c.length;
      bar.update(sent);
      yield c;
    }
  }
  const mayLand = `the restore may still be applied (the server has what was sent); \`smr groups status ${group}\` shows whether it was`;
  try {
    // Interrupted, the bar gives the cursor back (it hid it), and the restore may yet land.
    const interrupted = () => {
      bar.stop();
      process.stderr.write(`interrupted: ${mayLand}\n`);
    };
    const status = await cleanupOnInterrupt(interrupted, () => client.restore(group, counted(), { gzip }));
    bar.update(size);
    bar.stop();
    if (json) return printJson(status);
    printStatus(status);
  } catch (err) {
    // A refusal of the file itself, a 400 or a 413 (a 413 left the group: a review); not a 409,
    // which says the group took writes or was made again meanwhile, and is left alone (a review).
    // Only the life made here: a group made again meanwhile is another's.
    if (made && err instanceof ApiRequestError && (err.status === 400 || err.status === 413)) {
      bar.stop();
      await deleteMade(client, group, madeLife);
    }
    // The whole file sent and no answer (a connection lost, a 504): it may have landed. It said
    // "error: network ... fetch failed", and a review's restore was there 15 s later.
    if (sent === size && unanswered(err)) {
      bar.stop();
      process.stderr.write(`${mayLand}\n`);
      markUnknown(err, null);
    }
    if (!opts.create && err instanceof ApiRequestError && err.status === 404) {
      bar.stop();
      process.stderr.write(`group ${group} does not exist: --create makes it with the snapshot's machine (${header.machine})\n`);
    }
    throw err;
  } finally {
    bar.stop();
  }
}

/** Deletes the life of `group` that restore --create made, and says what became of it. */
async function deleteMade(client: SmrClient, group: string, life: number | undefined): Promise<void> {
  const deleted = await client.deleteGroup(group, life === undefined ? {} : { incarnation: life }).then(
    () => "yes" as const,
    // By the API's codes: a proxy's 404 page is not the group gone (a review).
    (e: unknown) => (e instanceof ApiRequestError && e.code === "conflict" ? ("another" as const) : e instanceof ApiRequestError && e.code === "not_found" ? ("gone" as const) : ("no" as const)),
  );
  // A 409: the group was deleted and made again by someone else meanwhile: theirs, left alone; a
  // 404: someone deleted it already (it said "smr groups delete deletes it": reviews).
  const said = {
    yes: `the file was refused; group ${group}, made by --create, was deleted again`,
    gone: `the file was refused; group ${group}, made by --create, was deleted meanwhile`,
    another: `the file was refused; group ${group}, made by --create, was deleted and made again by someone else meanwhile: that group is left alone`,
    no: `the file was refused; group ${group}, made by --create, could not be deleted now: \`smr groups delete ${group}\` deletes it`,
  };
  process.stderr.write(`${said[deleted]}\n`);
}

async function exists(client: SmrClient, group: string): Promise<boolean> {
  try {
    await client.group(group);
    return true;
  } catch (err) {
    if (err instanceof ApiRequestError && err.status === 404) return false;
    throw err;
  }
}
