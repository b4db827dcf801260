// Snapshot and restore (API.md "Snapshot and restore"): a consistent copy of a group's machine
// state as NDJSON, taken from a frozen copy at a healthy replica while writes go on; and the load
// of such a file into a new, empty group, verified whole before any replica sees a row.
import { type Context, Hono } from "hono";
import { ApiError } from "../../shared/api/errors.js";
import { bounded } from "../../shared/bounded.js";
import { checkJson, parseJson, repeatedKey } from "../../shared/api/input.js";
import type { SnapshotHeader, SnapshotSpec } from "../../shared/api/results.js";
import type { GroupRecord } from "../../shared/control/directory.js";
import { exportPageTimeoutMs, readWaitMs, scrubNowStepsMax, restoreBytesMax, slowReplicasMax, snapshotIdleMs, snapshotPageRows, snapshotsPerReplicaMax, transferPageBytes } from "../../shared/limits.js";
import { machineFor, machineNames } from "../../shared/machines/index.js";
import type { ExportInfo } from "../../shared/protocol/replica.js";
import { machinePrefix, rowHash } from "../../shared/protocol/state.js";
import { bytesToHex, xorInto } from "../../shared/protocol/hash.js";
import { encodeBookmark } from "../../shared/api/bookmark.js";
import { compareCodePoints } from "../../shared/text.js";
import { type GroupConfig, isColocated, membersOf } from "../../shared/protocol/types.js";
import { realClock, replicaStub, rpc } from "../env.js";
import { withTimeout } from "../../shared/protocol/io.js";
import * as groups from "../groups.js";
import { type App, groupParam, requireAdmin, status, statusForReaders } from "../http.js";
import { drainRaw, nextPart } from "../upload.js";
import type { RestoreAnswer } from "../sequencer.js";

export const snapshotRoutes = new Hono<App>();

const encoder = new TextEncoder();

snapshotRoutes.get("/:group/snapshot", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  const record = await groups.lookup(c.env, group);
  const inc = record.config.incarnation;
  // A healthy replica outside the sequencer's object first, the most advanced first: freezing a
  // copy and digesting it holds its replica (5.1 s at 2.5 million rows), and the co-located one
  // holds every write of the group meanwhile. Each waits until it has applied the commit point
  // the status saw, so the snapshot holds every write acknowledged before it was asked for (the
  // co-located replica, most advanced most of the time, was taken first for that; a replica a
  // commit message behind left the last write out).
  const seen = await status(c.env, group);
  const colocated = (id: string) => isColocated(record.config, id);
  // One whose last download here did not match its digest goes last (damaged rows, until rebuilt).
  const damaged = (id: string) => Number(Date.now() - (damagedAt.get(`${group}/${inc}/${id}`) ?? -Infinity) < damagedAvoidMs);
  const healthy = seen.replicas
    .filter((r) => r.status === "healthy")
    .sort((a, b) => damaged(a.id) - damaged(b.id) || Number(colocated(a.id)) - Number(colocated(b.id)) || b.appliedSeq - a.appliedSeq);
  // HEAD runs this handler too (Hono), and its body is never read: a frozen copy begun for it was
  // never released, and seven HEADs left no replica able to take a snapshot for a minute. It
  // answers what a GET would, short of taking the copy.
  if (c.req.method === "HEAD" && healthy.length > 0) return c.body(null, 200, { "content-type": "application/x-ndjson" });
  if (c.req.method === "HEAD") throw new ApiError("unavailable", `no healthy replica of ${group} can take a snapshot now`, 1);
  for (const r of healthy) {
    const stub = replicaStub(c.env, record.config, r.id, r.location);
    const info = await rpc<ExportInfo | null>(stub.call(inc, "beginExport", [seen.commitSeq, readWaitMs])).catch(() => null);
    if (!info) continue;
    const header: SnapshotHeader = { group, machine: record.config.machine, seq: info.seq, rows: info.rows, digest: info.digest, spec: specOf(record.config) };
    const body = downloadBody(c, inc, r.id, stub, info, header);
    return new Response(body, { headers: { "content-type": "application/x-ndjson", "x-smr-replica": r.id, "x-smr-seq": String(info.seq) } });
  }
  // A replica refuses while it serves as many downloads as it may, is being rebuilt, or has not
  // applied the commit point within readWaitMs: each can pass, so a retry may be served.
  const asked = healthy.length === 0 ? "none is healthy" : `each of ${healthy.map((r) => r.id).join(", ")} is serving its ${snapshotsPerReplicaMax} downloads at most, being rebuilt, behind, or did not answer`;
  throw new ApiError("unavailable", `no healthy replica of ${group} can take a snapshot now (${asked})`, 1);
});

/**
 * A download's body: the header, then the frozen copy's rows page by page, each row's hash folded
 * in; at the end the rows must sum to the header's digest, or the download fails (a replica whose
 * rows do not match is judged: scrubbed whole and audited).
 */
function downloadBody(c: Context<App>, inc: number, replica: string, stub: ReturnType<typeof replicaStub>, info: ExportInfo, header: SnapshotHeader): ReadableStream<Uint8Array> {
  const group = header.group;
  let after: string | null = null;
  let headerSent = false;
  const sent = { acc: new Uint8Array(32), rows: 0 };
  const end = () => rpc<void>(stub.call(inc, "endExport", [info.id])).catch(() => undefined);
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!headerSent) {
        headerSent = true;
        controller.enqueue(encoder.encode(JSON.stringify(header) + "\n"));
        return;
      }
      // A page that cannot come (the group deleted, the replica destroyed or reset) ends the
      // download as an error of the stream (the client sees it cut short, never a whole-looking
      // file), with one line that says why and after how many rows: the log had only workerd's
      // reports of an uncaught error (a probe). workerd still reports the errored body.
      const asked = rpc<[string, string][] | null>(stub.call(inc, "exportPage", [info.id, after, transferPageBytes]));
      const page = await withTimeout(realClock, asked, exportPageTimeoutMs, `a page from replica ${replica}`).catch((err: unknown) => String(err));
      if (page === null || typeof page === "string") {
        const why = page === null ? `replica ${replica} dropped the frozen copy of the snapshot (deleted, rebuilt, or idle past ${snapshotIdleMs / 1000} s)` : `replica ${replica} did not answer: ${page}`;
        console.warn(`snapshot of ${group} cut short after ${sent.rows} rows: ${why}`);
        c.executionCtx.waitUntil(end()); // its download slot, not held for snapshotIdleMs
        return controller.error(new Error(why));
      }
      if (page.length === 0) {
        await end();
        const problem = mismatch(sent, header);
        if (problem === null) return controller.close();
        bounded(damagedAt, slowReplicasMax).set(`${group}/${inc}/${replica}`, Date.now());
        console.error(`snapshot of ${group} at replica ${replica}: ${problem}; the download fails, the next is taken at another replica, and this one is scrubbed whole and audited (rebuilt if a quorum agrees)`);
        c.executionCtx.waitUntil(judge(c.env, group, stub, inc));
        return controller.error(new Error(`replica ${replica}'s rows do not match its digest (${problem}): this file would be refused by a restore; download it again`));
      }
      after = page[page.length - 1]![0];
      let text = "";
      for (const [k, v] of page) {
        xorInto(sent.acc, rowHash(k, v));
        text += `[${JSON.stringify(k.slice(machinePrefix.length))},${v}]\n`;
      }
      sent.rows += page.length;
      controller.enqueue(encoder.encode(text));
    },
    cancel: end,
  });
}

/**
 * A replica whose download did not match its digest: its scrub pass is taken to its end now, one
 * audit's rows a call (left to the audits, which read 50,000 rows each, a large state took many of
 * them to be judged, while other routers' downloads kept choosing it; a review), then the group is
 * audited, which quarantines it and rebuilds it from a healthy one under the audit's rules (a
 * quorum that agrees).
 */
async function judge(env: App["Bindings"], group: string, stub: ReturnType<typeof replicaStub>, inc: number): Promise<void> {
  // Step by step (each its own call, so the replica serves between them), to the pass's end.
  for (let step = 0; step < scrubNowStepsMax; step++) {
    const r = await rpc<{ finished: boolean } | null>(stub.call(inc, "scrubNow", [])).catch(() => null);
    if (r === null || r.finished) break;
  }
  await groups.withSequencer(env, group, (s) => rpc(s.audit()), (a) => a === null).catch(() => undefined);
}

/** The PUT body of a group shaped like this one now (SnapshotHeader.spec): its voters, where they are, and its settings. */
function specOf(config: GroupConfig): SnapshotSpec {
  const voters = membersOf(config).filter((m) => m.voter);
  return {
    replicas: voters.length,
    ...(voters.some((m) => m.location !== null) ? { locations: voters.map((m) => m.location) } : {}),
    outputs: config.outputs,
    checkpointEvery: config.checkpointEvery,
    ...(config.sessionIdleMs === undefined ? {} : { sessionIdleSeconds: config.sessionIdleMs / 1000 }),
    ...(config.sequencerLocations?.length ? { sequencerLocations: config.sequencerLocations } : {}),
    ...(config.colocate === false ? { colocate: false as const } : {}),
    // Its quota too: a copy --create made of a 16 MiB group had the default 4,096 (a probe).
    ...(config.storageQuotaMiB === undefined ? {} : { storageQuotaMiB: config.storageQuotaMiB }),
  };
}

/**
 * Replicas whose download did not match its header (`group/incarnation/id` -> when): the next
 * downloads go to another replica first for damagedAvoidMs, while the audit's scrub finds the
 * damage and the replica is rebuilt. At most slowReplicasMax, as the slow replicas' marks.
 */
const damagedAt = new Map<string, number>();
const damagedAvoidMs = 10 * 60_000;

/**
 * Whether the rows sent hash to the header's digest, which is the replica's recorded one
 * (ReplicaCore.exportDigest): rows damaged behind it are caught at the end of the download,
 * before a client keeps a file that a restore would refuse. Null: they match.
 */
function mismatch(sent: { acc: Uint8Array; rows: number }, header: SnapshotHeader): string | null {
  if (sent.rows !== header.rows) return `${sent.rows} rows sent, ${header.rows} counted`;
  const digest = bytesToHex(sent.acc);
  return digest === header.digest ? null : `the rows sent hash to ${digest.slice(0, 12)}…, the replica's digest is ${header.digest.slice(0, 12)}…`;
}

// ---- restore --------------------------------------------------------------------------------

/** A line longer than this is refused (a value is at most 64 KiB serialized; escapes can grow it). */
const lineBytesMax = 1024 * 1024;

/**
 * The lines of a request body, decoded strictly as UTF-8, bounded in total and per line. Each
 * chunk's complete lines are decoded in one call, on their own bytes (a newline is never inside a
 * sequence, so no sequence is split), and only a call that fails is decoded again line by line to
 * name the line with the bad byte. (Whole chunks were decoded as a stream, and the line named was
 * the last one completed before the chunk: "line 1" for a bad byte on line 301, a probe; one call
 * per line was 2 to 3 times slower, a review.)
 */
export async function* lines(body: ReadableStream<Uint8Array> | null): AsyncGenerator<{ no: number; text: string }> {
  if (!body) return;
  const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  const reader = body.getReader();
  // The bytes of the line under way, in the parts they came in (joined once its newline comes:
  // joined at every part, a long line cost its length squared, a review).
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  let bytes = 0;
  let no = 0;
  /** The text of whole lines (bytes ending in a newline, or the body's end); the first line's byte order mark dropped. */
  const decode = (region: Uint8Array): string => {
    let text: string;
    try {
      text = decoder.decode(region);
    } catch {
      let start = 0;
      for (let n = no + 1; ; n++) {
        const end = region.indexOf(10, start);
        const line = region.subarray(start, end < 0 ? region.length : end + 1);
        try {
          decoder.decode(line);
        } catch {
          throw new ApiError("bad_request", `line ${n}: not UTF-8`);
        }
        if (end < 0) throw new ApiError("bad_request", `line ${n}: not UTF-8`);
        start = end + 1;
      }
    }
    return no === 0 && text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (value) {
        bytes += value.byteLength;
        if (bytes > restoreBytesMax) throw new ApiError("too_large", `body: larger than ${restoreBytesMax} bytes`);
        const last = value.lastIndexOf(10);
        if (last < 0) (pending.push(value), (pendingBytes += value.byteLength));
        else {
          // Every whole line in this part is bounded too, not only the one left under way: a
          // longer one that came whole in one part was taken (a probe).
          for (let start = -pendingBytes, nl = value.indexOf(10), n = no + 1; nl >= 0; start = nl + 1, nl = value.indexOf(10, start), n++) {
            if (nl - start > lineBytesMax) throw new ApiError("bad_request", `line ${n}: longer than ${lineBytesMax} bytes`);
          }
          const text = decode(joined([...pending, value.subarray(0, last + 1)]));
          pending = last + 1 < value.byteLength ? [value.subarray(last + 1)] : [];
          pendingBytes = value.byteLength - last - 1;
          let start = 0;
          for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", start)) {
            yield { no: ++no, text: text.slice(start, i) };
            start = i + 1;
          }
        }
        if (pendingBytes > lineBytesMax) throw new ApiError("bad_request", `line ${no + 1}: longer than ${lineBytesMax} bytes`);
      }
      if (done) break;
    }
  } finally {
    // A refused file's rest is drained by the route (see drain).
    reader.releaseLock();
  }
  const text = pendingBytes > 0 ? decode(joined(pending)) : "";
  if (text.trim() !== "") yield { no: ++no, text };
}

function joined(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), (at += p.byteLength));
  return out;
}

function parseLine(no: number, text: string): unknown {
  let value: unknown;
  try {
    value = parseJson(text);
  } catch {
    throw new ApiError("bad_request", `line ${no}: malformed JSON`);
  }
  const problem = checkJson(value, `line ${no}`);
  // A row's [key, value] named as such: "line 2.0" read as a line number (a probe).
  if (problem !== null) throw new ApiError("bad_request", Array.isArray(value) ? problem.replace(/^(line \d+)\.([01])(?=[.:])/, (_, line: string, i: string) => `${line} ${i === "0" ? "key" : "value"}`) : problem);
  return value;
}

function parseHeader(no: number, text: string, machine: string): SnapshotHeader {
  const h = parseLine(no, text) as Partial<SnapshotHeader> | null;
  // A repeated key is refused here as in every body (a probe). Not in each row: the file's digest
  // is over each row's value as parsed, so a row that repeats a key with another value is refused
  // by it, and one that repeats the same value changes nothing; a scan of every row would cost a
  // large restore about another parse.
  const repeated = repeatedKey(text, h, `line ${no}`);
  if (repeated !== null) throw new ApiError("bad_request", repeated);
  if (typeof h !== "object" || h === null || Array.isArray(h)) throw new ApiError("bad_request", `line ${no}: the header must be an object {group, machine, seq, rows, digest}`);
  if (typeof h.group !== "string") throw new ApiError("bad_request", `line ${no}: header.group: a group name`);
  if (typeof h.machine !== "string") throw new ApiError("bad_request", `line ${no}: header.machine: a machine name`);
  // API.md fixes the header's fields: a seq that is not a position (missing, "9", 1.5, -5) is a
  // malformed file, as a bad rows or digest is (it was accepted and ignored).
  if (!Number.isSafeInteger(h.seq) || h.seq! < 0) throw new ApiError("bad_request", `line ${no}: header.seq: a non-negative integer`);
  if (!Number.isSafeInteger(h.rows) || h.rows! < 0) throw new ApiError("bad_request", `line ${no}: header.rows: a non-negative integer`);
  if (typeof h.digest !== "string" || !/^[0-9a-f]{64}$/.test(h.digest)) throw new ApiError("bad_request", `line ${no}: header.digest: 64 lowercase hex digits`);
  // A machine no group can run is a malformed file (400), not another machine's state (409).
  if (!(machineNames as string[]).includes(h.machine)) throw new ApiError("bad_request", `line ${no}: header.machine: one of ${machineNames.join(", ")}`);
  if (h.machine !== machine) throw new ApiError("conflict", `the file holds a ${h.machine} state; this group runs ${machine}`);
  return h as SnapshotHeader;
}

/** The file as the route reads it, and how to read what is left of its body when it is refused. */
type Upload = { file: ReadableStream<Uint8Array> | null; drain(): Promise<void> };

/**
 * The file as uploaded: with `Content-Encoding: gzip` decompressed (the 64 MiB bound then counts
 * the file's own bytes, so no small upload unpacks into more), any other encoding refused by name.
 * The header was ignored, and a gzip upload was read as text: "line 1: not UTF-8" (a probe).
 */
function uploadOf(c: Context<App>): Upload {
  const encoding = (c.req.header("content-encoding") ?? "").trim().toLowerCase();
  const body = c.req.raw.body;
  if (encoding !== "" && encoding !== "identity" && encoding !== "gzip" && encoding !== "x-gzip") throw new ApiError("bad_request", `Content-Encoding ${encoding}: send the file as it is, or gzip it`);
  if (!body) return { file: null, drain: async () => {} };
  return encoding === "gzip" || encoding === "x-gzip" ? gunzipped(body.getReader()) : counted(body.getReader());
}

/**
 * A plain upload, its bytes counted as the route reads them: the drain's bound counts them too (a
 * review). The stream pulls a part ahead of the route, so a read of the raw body may be under way
 * when the upload is refused: the drain waits for it and pulls no more. Drained beside it, the raw
 * reader was released with that read outstanding, a TypeError: a refused restore of a file past
 * about 1 MB, its parts arriving from the network, answered 500 instead of 409 (an operator's probe).
 */
function counted(raw: ReadableStreamDefaultReader<Uint8Array>): Upload {
  let readBytes = 0;
  let reading: Promise<unknown> = Promise.resolve();
  let draining = false;
  const file = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (draining) return; // nothing is enqueued, so nothing more is pulled
      const read = nextPart(raw);
      reading = read.catch(() => undefined);
      const { value, done } = await read;
      if (done) return controller.close();
      readBytes += value.byteLength;
      controller.enqueue(value);
    },
    cancel: (reason) => raw.cancel(reason),
  });
  const drain = async () => {
    draining = true;
    await reading;
    await drainRaw(raw, readBytes);
  };
  return { file, drain };
}

/**
 * A gzip upload, its raw body fed to the decompression by hand. Piped through it, the raw body
 * was locked by the pipe: a refused upload was drained through the decompression, so a corrupt
 * stream stopped the drain (the rest unread: the client could get a broken pipe instead of the
 * 400) and the drain's bound counted unpacked bytes (a review). Here the drain stops the feed and
 * reads the raw body itself.
 */
/**
 * Why a gzip body did not unpack. The runtime's decompression takes one member: a file of several
 * (concatenated .gz files, bgzip's output), which gunzip reads whole, was called "not gzip" (a
 * review). Where the member ended is not told, so bytes after one member are said either way.
 */
function notGzip(err: unknown): string {
  const why = err instanceof Error ? err.message : String(err);
  if (/trailing bytes/i.test(why)) return "body: bytes follow the end of the gzip stream (several gzip members joined end to end, or data after one); gunzip the file and send it as it is, or gzip it again as one stream";
  return `body: not gzip, as its Content-Encoding says (${why})`;
}

export function gunzipped(raw: ReadableStreamDefaultReader<Uint8Array>): Upload {
  const gunzip = new DecompressionStream("gzip");
  const writer = gunzip.writable.getWriter();
  const out = gunzip.readable.getReader();
  let stopped = false;
  let fedBytes = 0;
  let cutOff: ApiError | null = null; // the raw body stalled or was lost: said as such, not "not gzip"
  const feed = (async () => {
    try {
      for (;;) {
        await writer.ready; // the decompression's backpressure: one chunk ahead of the route
        if (stopped) return;
        const { value, done } = await nextPart(raw).catch((err: ApiError) => {
          cutOff = err;
          throw err;
        });
        if (done) return void (await writer.close());
        fedBytes += value.byteLength;
        void writer.write(value).catch(() => {}); // a corrupt stream fails the reader's read below
      }
    } catch (err) {
      // The decompression failed or was cancelled, or the client went away: the feed stops, and
      // the decompression with it (the route's read would wait for ever, its restore left staged
      // holding the group: a review).
      await writer.abort(err).catch(() => {});
    }
  })();
  const file = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { value, done } = await out.read();
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (err) {
        controller.error(cutOff ?? new ApiError("bad_request", notGzip(err)));
      }
    },
    cancel: (reason) => out.cancel(reason),
  });
  const drain = async () => {
    stopped = true;
    await out.cancel().catch(() => {}); // wakes a feed waiting on backpressure
    await feed;
    await drainRaw(raw, fedBytes);
  };
  return { file, drain };
}
snapshotRoutes.post("/:group/restore", async (c) => {
  requireAdmin(c);
  const group = groupParam(c);
  // A compressed upload's declared length is less than its file's: lines() bounds what it unpacks into.
  // Refused unread (the runtime drains it; see jsonBody).
  if (Number(c.req.header("content-length") ?? "0") > restoreBytesMax) throw new ApiError("too_large", `body: larger than ${restoreBytesMax} bytes`);
  const upload = uploadOf(c);
  // Refused before the file is read (no such group, one being deleted, a sequencer out of reach):
  // the rest of the upload is read first, as for the later refusals. Its reader taken and then
  // dropped by the throw, the runtime did not drain it: a client still sending the file got a
  // connection reset or a 500 "Network connection lost." instead of the 404 or 503 (a probe).
  const beforeRead = async <T>(p: Promise<T>): Promise<T> => {
    try {
      return await p;
    } catch (err) {
      await upload.drain();
      throw err;
    }
  };
  let record = await beforeRead(groups.lookup(c.env, group));
  // The pages, end and abort go to the sequencer that began the restore: the record withSequencer
  // found it by (a cached record from before a move or failover sent them to the old object, which
  // refused the pages and took the abort as done, and the new one stayed 'restoring' for
  // snapshotIdleMs, refusing every command and restore meanwhile: a review).
  const sequencer = () => groups.sequencerOf(c.env, record.config);
  const begin = (s: ReturnType<typeof sequencer>, at: GroupRecord) => {
    record = at;
    return rpc<RestoreAnswer>(s.beginRestore());
  };
  const begun = await beforeRead(groups.withSequencer(c.env, group, begin, (a) => a.kind === "not_found"));
  if (begun.kind !== "ok") {
    await upload.drain();
    throw restoreError(begun);
  }
  const id = begun.id;
  let life = record.config.incarnation; // the life that adopted it names the answer's bookmark (RestoreAnswer)
  try {
    const tally: FileTally = { header: null, headerNo: 1, lastNo: 0, rows: 0, acc: new Uint8Array(32) };
    let page: [string, string][] = [];
    let pageBytes = 0;
    const flush = async () => {
      if (page.length === 0) return;
      if (!(await reached(group, () => rpc<boolean>(sequencer().restorePage(id, page)), "not_done"))) {
        await sameLife(c, group, life);
        throw new ApiError("unavailable", "the restore was replaced by another, or its sequencer changed; start again", 1);
      }
      page = [];
      pageBytes = 0;
    };
    for await (const stored of storedRows(upload.file, record.config.machine, tally)) {
      page.push(stored);
      pageBytes += stored[0].length + stored[1].length;
      if (page.length >= snapshotPageRows || pageBytes >= transferPageBytes) await flush();
    }
    const digest = fileDigest(tally);
    await flush();
    const done = await reached(group, () => rpc<RestoreAnswer>(sequencer().endRestore(id, digest, tally.rows)), "unknown");
    if (done.kind === "not_found" || done.kind === "unavailable") await sameLife(c, group, life);
    if (done.kind !== "ok") throw restoreError(done);
    life = done.incarnation ?? life;
  } catch (err) {
    if (!(await abortRestore(sequencer, id))) c.executionCtx.waitUntil(abortRestoreLater(sequencer, id));
    await upload.drain();
    throw err;
  }
  groups.forget(group);
  // The restore is adopted: the answer is a 200 whatever the status call meets. A sequencer cut
  // off just after it answered a 503 ("certainly not done", API.md), a retry then a 409 for
  // entries, while every replica held the file (a probe); the replicas' view serves meanwhile.
  const status = await statusForReaders(c.env, group, (p) => c.executionCtx.waitUntil(p), "view");
  // A bookmark at the restored position: a sequential read with it is served by a replica that
  // holds the restore. Without one, a replica the restore left behind (slow, rebuilt next) served
  // the state from before it for a second or so after the 200 (a probe).
  return c.json({ ...status, bookmark: encodeBookmark(group, life, { epoch: status.epoch, seq: status.commitSeq }) });
});

/** What a restore's file held so far: its header (and line), its last line, its rows and their digest's fold. */
interface FileTally {
  header: SnapshotHeader | null;
  headerNo: number;
  lastNo: number;
  rows: number;
  acc: Uint8Array;
  /** The machine's checks across rows (a bank's total, say), if it has any. */
  across?: ReturnType<NonNullable<ReturnType<typeof machineFor>["checkState"]>>;
}

/**
 * A restore file's rows, each checked before any replica sees it (the header first, keys in
 * increasing order, rows the group's machine takes), as stored rows; `tally` counts them.
 */
async function* storedRows(file: ReadableStream<Uint8Array> | null, machineName: GroupConfig["machine"], tally: FileTally): AsyncGenerator<[string, string]> {
  const machine = machineFor(machineName);
  tally.across = machine.checkState?.();
  let lastKey: string | null = null;
  for await (const { no, text } of lines(file)) {
    // Blank lines carry nothing (NDJSON readers skip them): a file saved with an extra newline
    // at its end was refused as malformed JSON.
    if (text.trim() === "") continue;
    tally.lastNo = no;
    if (tally.header === null) {
      tally.header = parseHeader(no, text, machineName);
      tally.headerNo = no;
      continue;
    }
    const row = parseLine(no, text);
    if (!Array.isArray(row) || row.length !== 2 || typeof row[0] !== "string" || row[0] === "") throw new ApiError("bad_request", `line ${no}: a row is [key, value] with a non-empty string key`);
    const key = row[0] as string;
    if (lastKey !== null && compareCodePoints(key, lastKey) <= 0) throw new ApiError("bad_request", `line ${no}: keys must be in increasing (code point) order and unique; ${JSON.stringify(key)} follows ${JSON.stringify(lastKey)}`);
    lastKey = key;
    const problem = machine.checkRow?.(key, row[1]) ?? null;
    if (problem !== null) throw new ApiError("bad_request", `line ${no}: ${problem}`);
    tally.across?.row(key, row[1]);
    const stored: [string, string] = [machinePrefix + key, JSON.stringify(row[1])];
    xorInto(tally.acc, rowHash(stored[0], stored[1]));
    tally.rows++;
    yield stored;
  }
}

/** After the last row: the file's digest, once the header's count and digest and the machine's checks across rows hold. */
function fileDigest(tally: FileTally): string {
  const { header, headerNo, lastNo, rows } = tally;
  if (header === null) throw new ApiError("bad_request", "line 1: the file is empty; it must start with a header line");
  if (rows !== header.rows) throw new ApiError("bad_request", `line ${lastNo}: the header (line ${headerNo}) announces ${header.rows} rows, the file has ${rows}`);
  const digest = bytesToHex(tally.acc);
  if (digest !== header.digest) throw new ApiError("bad_request", `line ${headerNo}: header.digest ${header.digest} does not match the rows' digest ${digest}`);
  const problem = tally.across?.end() ?? null;
  if (problem !== null) throw new ApiError("bad_request", `the file: ${problem}`);
  return digest;
}

type SequencerOf = () => ReturnType<typeof groups.sequencerOf>;

/** The route's abort of its staged restore; false if the sequencer could not be reached. */
async function abortRestore(sequencer: SequencerOf, id: string): Promise<boolean> {
  return rpc<void>(sequencer().abortRestore(id)).then(
    () => true,
    () => false,
  );
}

/**
 * An abort the sequencer did not hear (cut off when the upload failed, which is often why it
 * failed) is sent again, backing off, until it lands or snapshotIdleMs has passed (then the
 * sequencer has dropped the staged rows itself). Sent once, the staged restore held the group for
 * that long: the "start again" the 503 said met 503 "another restore of this group is under way"
 * for about 70 s, and every command a 503 (a probe).
 */
async function abortRestoreLater(sequencer: SequencerOf, id: string): Promise<void> {
  const untilMs = Date.now() + snapshotIdleMs;
  for (let pauseMs = 250; Date.now() < untilMs; pauseMs = Math.min(pauseMs * 2, 4_000)) {
    await new Promise((r) => setTimeout(r, pauseMs));
    if (await abortRestore(sequencer, id)) return;
  }
}

/**
 * A call to the sequencer during a restore (after beginRestore, which withSequencer maps): one that
 * could not reach it (cut off, reset by a deploy) answered a 500 "internal", which API.md keeps for
 * bugs (a probe). A page that was not staged leaves nothing restored, a 503; an end that got no
 * answer may have installed the rows or not, a 504. An exception of the sequencer's own code
 * stays a 500.
 */
async function reached<T>(group: string, call: () => Promise<T>, failure: "not_done" | "unknown"): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof ApiError || groups.thrownByObjectCode(err)) throw err;
    if (failure === "not_done") throw new ApiError("unavailable", `the sequencer of ${group} could not be reached during the restore (${String(err)}); nothing was restored, start again`, 1);
    throw new ApiError("timeout", `the sequencer of ${group} could not be reached at the end of the restore (${String(err)}); the file may or may not have been restored: read the group's state (another restore answers 409 if it was)`);
  }
}


/**
 * Throws unless the group is still the life the restore began in: a 404 if it was deleted, a 409 if
 * it was deleted and created again. "Start again" sent the file into the new group, empty, or met
 * a 409 once it had entries (a probe): the new life is not the one the restore was for.
 */
async function sameLife(c: Context<App>, group: string, life: number): Promise<void> {
  groups.forget(group);
  const now = await groups.lookup(c.env, group);
  if (now.config.incarnation !== life) throw new ApiError("conflict", `group ${group} was deleted and created again during the restore: nothing was restored, and the new group is left as it is (restore into it only if it is the one this file is for)`);
}

function restoreError(a: Exclude<RestoreAnswer, { kind: "ok" }>): ApiError {
  switch (a.kind) {
    case "not_found":
      return new ApiError("unavailable", `the group has no sequencer serving yet: ${a.message}`, 1);
    case "conflict":
      return new ApiError("conflict", a.message);
    case "bad":
      return new ApiError("bad_request", a.message);
    case "unavailable":
      return new ApiError("unavailable", a.message, 1);
    case "timeout":
      // May have taken (a probe: a 503 whose group came back restored): read before retrying.
      return new ApiError("timeout", a.message);
  }
}
