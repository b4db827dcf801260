// The checkers every simulation runs after its heal phase. Each returns failure messages.
import { simMachineFor as machineFor } from "./machines.js";
import { entryHash } from "../../shared/protocol/entry.js";
import { canonicalJson, zeroHash } from "../../shared/protocol/hash.js";
import { MemoryRowStore } from "../../shared/protocol/memory.js";
import { DigestedState, applyEntry } from "../../shared/protocol/state.js";
import type { AppliedOutput, GroupConfig } from "../../shared/protocol/types.js";
import type { Entry } from "../../shared/api/types.js";
import type { ClientHistory } from "./clients.js";
import { checkHistory } from "./linearizability.js";
import type { SimReplica, SimSequencer } from "./nodes.js";
import { changesText } from "../../shared/protocol/replica.js";
import type { Changes } from "../../shared/protocol/state.js";
import type { SimWatcher } from "./watchers.js";

interface Reference {
  outputs: Map<number, AppliedOutput>;
  /** Per "client/request", the seqs of the entries whose forgetting deleted its session row (GroupConfig.sessionIdleMs). */
  forgotten: Map<string, number[]>;
  /** Entries that forgot clients (each client counted once per entry). */
  forgettings: number;
  digests: Map<number, string>;
  /** Per seq, the rows its execution changed (changesText, as a watch event carries them). */
  changes: Map<number, string>;
  failures: string[];
}

/**
 * Replays the committed log through a fresh state machine: the reference every replica must
 * match. Reads are answered against it at the position they claim (so a read at seq s must equal
 * the reference state after s), which is also where bank invariants are checked.
 */
/**
 * Whether `answer` is the output_not_kept marker of `output`, checked apart from the code that
 * makes it: its length and its top-level flags. (Read back from the reference's own row, any row
 * passed: a build whose rows turned a transfer's ok into a failure passed every bank seed, a review.)
 */
function markerOf(output: unknown, answer: unknown): boolean {
  if (!notKept(answer)) return false;
  const { error: _e, chars, limit: _l, ...flags } = answer as Record<string, unknown>;
  if (chars !== JSON.stringify(output ?? null).length) return false;
  const top = typeof output === "object" && output !== null && !Array.isArray(output) ? (output as Record<string, unknown>) : {};
  // As output.ts's flags: at most 8, named in at most 64 characters, the marker's own fields left out.
  const expected = Object.entries(top)
    .filter(([k, v]) => k !== "error" && k !== "chars" && k !== "limit" && k.length <= 64 && (typeof v === "boolean" || (typeof v === "number" && Number.isFinite(v))))
    .slice(0, 8);
  return canonicalJson(flags) === canonicalJson(Object.fromEntries(expected));
}

function notKept(output: unknown): boolean {
  return typeof output === "object" && output !== null && (output as { error?: unknown }).error === "output_not_kept";
}

function replay(config: GroupConfig, log: Entry[], commitSeq: number, history: ClientHistory): Reference {
  const machine = machineFor(config.machine);
  const state = new DigestedState(new MemoryRowStore());
  const outputs = new Map<number, AppliedOutput>();
  const forgotten = new Map<string, number[]>();
  let applying: Entry | null = null;
  /** Per client, the timestamp of its last command executed (its idle time starts there). */
  const lastRunMs = new Map<string, number>();
  const idleMs = config.sessionIdleMs;
  let forgettings = 0;
  const forgot = (client: string, requests: number[]) => {
    forgettings++;
    for (const r of requests) forgotten.set(`${client}/${r}`, [...(forgotten.get(`${client}/${r}`) ?? []), applying!.seq]);
    // Checked apart from the code that decided it: idle for the window (eight whole buckets of
    // an eighth of it), by the log's clock. A build that forgot a bucket early passed every seed.
    const idleForMs = Date.parse(applying!.timestamp) - (lastRunMs.get(client) ?? -Infinity);
    if (!(idleForMs > 8 * Math.max(1, Math.floor(idleMs! / 8)))) failures.push(`${client} forgotten at seq ${applying!.seq} after ${idleForMs} ms idle (window ${idleMs} ms)`);
  };
  const expiry = idleMs === undefined ? null : { idleMs, forgot };
  const digests = new Map<number, string>([[0, zeroHash]]);
  const changesBySeq = new Map<number, string>();
  const failures: string[] = [];
  const reads = [...history.reads].sort((a, b) => a.seq - b.seq);
  let r = 0;
  const checkReadsAt = (seq: number) => {
    for (; r < reads.length && reads[r]!.seq === seq; r++) {
      const read = reads[r]!;
      const expected = machine.query(state.machineView(), read.query);
      if (canonicalJson(expected) !== canonicalJson(read.result) && !read.fromCorrupted) {
        failures.push(`read by ${read.client} (${read.consistency}) at ${read.replica} seq ${seq} saw ${JSON.stringify(read.result)}, state was ${JSON.stringify(expected)}`);
      }
    }
  };
  checkReadsAt(0);
  for (const e of log) {
    if (e.seq > commitSeq) break;
    applying = e;
    const changes: Changes = new Map();
    const out = applyEntry(state, machine, e, changes, expiry, config.sessionOutputFreeChars);
    outputs.set(e.seq, out);
    changesBySeq.set(e.seq, changesText(changes));
    if (e.kind === "command" && out.status === "ok") lastRunMs.set(e.client!, Date.parse(e.timestamp));
    digests.set(e.seq, state.digest);
    checkReadsAt(e.seq);
  }
  for (; r < reads.length; r++) failures.push(`read at seq ${reads[r]!.seq} beyond commitSeq ${commitSeq}`);
  return { outputs, forgotten, forgettings, digests, changes: changesBySeq, failures };
}

export interface CheckInput {
  config: GroupConfig;
  sequencer: SimSequencer;
  replicas: Map<string, SimReplica>;
  history: ClientHistory;
  /** Replicas whose state was corrupted on purpose: they may differ, and must end quarantined. */
  corrupted: Set<string>;
  /** Reads before the bank's accounts were all opened see a smaller total. */
  bankSetupSeq: number;
  /** Filled in: `forgotten`, the clients the session window forgot (in the reference's replay). */
  counts?: Record<string, number>;
  /** Watch clients (--watchers): what they saw must be the committed log, gapless, in order. */
  watchers?: SimWatcher[];
}

export function runCheckers({ config, sequencer, replicas, history, corrupted, bankSetupSeq, counts, watchers }: CheckInput): string[] {
  const failures: string[] = [...history.unexpected];
  const core = sequencer.driver!.core;
  const log = sequencer.fullLog();
  const bySeq = new Map(log.map((e) => [e.seq, e]));
  const commitSeq = core.commitSeq;
  if (log.length !== core.lastLogSeq) failures.push(`the archived log has ${log.length} entries, the sequencer's ends at ${core.lastLogSeq}`);

  // The sequencer's log is gapless and hash-chained.
  let prev = zeroHash;
  log.forEach((e, i) => {
    if (e.seq !== i + 1) failures.push(`sequencer log has seq ${e.seq} at position ${i + 1}`);
    if (e.hash !== entryHash(prev, e)) failures.push(`sequencer log hash chain broken at ${e.seq}`);
    prev = e.hash;
  });

  // Agreement: every entry a replica holds at or below its commitSeq is the sequencer's entry.
  const memberIds = new Set(core.replicaIds());
  for (const r of replicas.values()) {
    // Removed from the group (its storage is destroyed, or due to be): nothing to agree on.
    if (r.retired || !memberIds.has(r.id)) continue;
    const meta = r.storage.meta;
    // Its storage lost (lose-replica-storage) and never made again by the heal's end.
    if (!meta) {
      failures.push(`${r.id}, a member, has no state after healing`);
      continue;
    }
    for (let s = (meta.baseSeq ?? 0) + 1; s <= meta.commitSeq; s++) {
      const held = r.storage.log.get(s);
      const truth = bySeq.get(s);
      if (!held) failures.push(`${r.id} lacks committed entry ${s}`);
      else if (truth && held.hash !== truth.hash) failures.push(`${r.id} holds a different entry at committed seq ${s}`);
    }
  }

  const ref = replay(config, log, commitSeq, history);
  failures.push(...ref.failures);
  if (counts) counts.forgotten = ref.forgettings;

  // Exactly-once: a (client, request) executes at most once.
  const executed = new Map<string, number>();
  const firstRun = new Map<string, number>();
  /** Commands executed again after their session row was forgotten: one more effect for each run after the first. */
  const again = new Map<string, number>();
  for (const [seq, out] of ref.outputs) {
    const e = log[seq - 1]!;
    if (e.kind === "command" && out.status === "ok") {
      const key = `${e.client}/${e.request}`;
      // Again after its client was forgotten (idle past the window) is a new client's command.
      const first = executed.get(key);
      const forgotBetween = first !== undefined && (ref.forgotten.get(key) ?? []).some((s) => s > first && s <= seq);
      if (first !== undefined && !forgotBetween) failures.push(`${key} executed twice (seq ${first} and ${seq})`);
      if (forgotBetween) again.set(key, (again.get(key) ?? 0) + 1);
      executed.set(key, seq);
      if (!firstRun.has(key)) firstRun.set(key, seq);
    }
  }
  // "Expired" is the answer to a retry whose session row is gone: only one its client's
  // forgetting deleted, after the command ran.
  for (const x of history.expired) {
    const key = `${x.client}/${x.request}`;
    const ran = firstRun.get(key);
    if (config.sessionIdleMs === undefined) failures.push(`${key}: answered expired (conflict) for a request id used once, with no session window`);
    else if (ran === undefined || !(ref.forgotten.get(key) ?? []).some((s) => s > ran)) failures.push(`${key}: answered expired, but no forgetting deleted its row after its first run (seq ${ran ?? "none"})`);
  }

  // Durability and outputs: every acknowledged command is committed at its seq, with that output.
  for (const a of history.acked) {
    const e = log[a.seq - 1];
    if (!e || a.seq > commitSeq) failures.push(`acknowledged ${a.client}/${a.request} at seq ${a.seq} is not committed`);
    else if (e.client !== a.client || e.request !== a.request) failures.push(`acknowledged ${a.client}/${a.request} at seq ${a.seq}, but the log has ${e.client}/${e.request} there`);
    else {
      const out = ref.outputs.get(a.seq)!;
      // The output, or, for an answer that may have come from a session row (a retry, or a copy of
      // the message the network duplicated), the row's copy of it. Only then: a first answer that
      // lost its output passed every seed when any answer could be the copy (a review).
      const copy = a.retried && config.sessionOutputFreeChars !== undefined && markerOf(out.output, a.output);
      if (canonicalJson(out.output) !== canonicalJson(a.output) && !copy) {
        failures.push(`acknowledged ${a.client}/${a.request} got ${JSON.stringify(a.output)}, the log's execution gives ${JSON.stringify(out.output)}`);
      }
    }
  }
  // At most one sequencer acknowledges writes in any epoch (a deposed one never acknowledges).
  const byEpoch = new Map<number, Set<string>>();
  for (const a of history.acksBy) byEpoch.set(a.epoch, (byEpoch.get(a.epoch) ?? new Set()).add(a.sequencer));
  for (const [epoch, names] of byEpoch) if (names.size > 1) failures.push(`epoch ${epoch} had writes acknowledged by ${[...names].join(" and ")}`);

  // Commands refused (503) on every attempt were never ordered.
  const ordered = new Set(log.map((e) => `${e.client}/${e.request}`));
  for (const r of history.refused) if (ordered.has(`${r.client}/${r.request}`)) failures.push(`${r.client}/${r.request} was refused with 503 yet ordered`);

  // Equal digests at equal positions: checkpoints and final digests match the reference.
  for (const r of replicas.values()) {
    if (r.corruptedAtMs !== null || r.retired || !memberIds.has(r.id)) continue;
    for (const cp of r.storage.checkpoints()) {
      const d = ref.digests.get(cp.seq);
      if (d !== undefined && d !== cp.digest) failures.push(`${r.id} checkpoint at ${cp.seq} has digest ${cp.digest.slice(0, 8)}, reference ${d.slice(0, 8)}`);
      if (log[cp.seq - 1] && log[cp.seq - 1]!.hash !== cp.logHash) failures.push(`${r.id} checkpoint at ${cp.seq} has another log hash`);
    }
    const m = r.storage.meta;
    if (!m) continue;
    const d = ref.digests.get(m.appliedSeq);
    if (d !== undefined && d !== m.digest) failures.push(`${r.id} digest at applied ${m.appliedSeq} differs from the reference`);
  }

  // Convergence after the heal phase: every healthy replica has applied the whole committed log.
  if (commitSeq !== core.lastLogSeq) failures.push(`after healing, commitSeq ${commitSeq} < lastSeq ${core.lastLogSeq}`);
  for (const r of replicas.values()) {
    if (r.retired || !memberIds.has(r.id)) continue;
    const status = core.replicaStatuses().find((s) => s.id === r.id)?.status;
    // The audit-repair loop: a corrupted replica ends rebuilt from a healthy one, not just quarantined.
    if (r.corruptedAtMs !== null) failures.push(`${r.id} was corrupted and never rebuilt (status ${status})`);
    if (status === "quarantined" && !corrupted.has(r.id)) failures.push(`${r.id} was quarantined without being corrupted`);
    if (status !== "healthy") failures.push(`after healing, ${r.id} is ${status}`);
    if (r.storage.meta?.appliedSeq !== commitSeq) failures.push(`after healing, ${r.id} applied ${r.storage.meta?.appliedSeq} of ${commitSeq}`);
  }

  // Watches: every event is the committed entry at its seq with its execution's output and
  // changes (a replica corrupt when it sent it: the entry only); a full watcher misses nothing
  // but across a 410 resync, and a prefix watcher misses no entry that changed a key under it.
  for (const w of watchers ?? []) {
    failures.push(...w.failures.slice(0, 5));
    const seen = new Set<number>();
    for (const ev of w.events) {
      seen.add(ev.seq);
      const truth = bySeq.get(ev.seq);
      const tag = `${w.name} event ${ev.seq} from ${ev.replica} at ${ev.atMs} ms`;
      if (!truth || ev.seq > commitSeq) {
        failures.push(`${tag}: not a committed entry`);
        continue;
      }
      const d = ev.data;
      if (d.kind !== truth.kind || d.client !== truth.client || d.request !== truth.request || canonicalJson(d.command) !== canonicalJson(truth.command) || d.timestamp !== truth.timestamp) {
        failures.push(`${tag}: ${JSON.stringify(d).slice(0, 200)}, the log has ${JSON.stringify(truth).slice(0, 200)}`);
        continue;
      }
      if (replicas.get(ev.replica)?.wasCorruptAt(ev.atMs)) continue;
      const out = ref.outputs.get(ev.seq);
      const outputOk = canonicalJson(d.output ?? null) === canonicalJson(out?.output ?? null) || (config.sessionOutputFreeChars !== undefined && markerOf(out?.output, d.output));
      if (!outputOk) failures.push(`${tag}: output ${JSON.stringify(d.output)}, the log's execution gives ${JSON.stringify(out?.output)}`);
      if (canonicalJson(d.changes) !== canonicalJson(JSON.parse(ref.changes.get(ev.seq) ?? "[]"))) failures.push(`${tag}: changes ${JSON.stringify(d.changes).slice(0, 200)}, the reference ${ref.changes.get(ev.seq)?.slice(0, 200)}`);
    }
    // Completeness up to where it stands, but across the resyncs it was told of.
    const resynced = (s: number) => w.resyncs.some((r) => s > r.fromSeq && s <= r.toSeq) || w.spans.some((p) => s > p.fromSeq && s <= p.toSeq && replicas.get(p.replica)?.wasCorruptAt(p.atMs));
    const missing: number[] = [];
    for (let s = 1; s <= Math.min(w.lastId, commitSeq); s++) {
      if (seen.has(s) || resynced(s)) continue;
      const touches = w.prefix === null || (JSON.parse(ref.changes.get(s) ?? "[]") as [string, unknown][]).some(([k]) => k.startsWith(w.prefix!));
      if (touches) missing.push(s);
    }
    if (missing.length > 0) failures.push(`${w.name}${w.prefix ? ` (prefix ${w.prefix})` : ""} missed ${missing.length} entries up to ${w.lastId}: ${missing.slice(0, 10).join(", ")}`);
    if (w.lastId > commitSeq) failures.push(`${w.name} stands at ${w.lastId}, beyond commitSeq ${commitSeq}`);
  }

  // Linearizability of commands and linearizable reads (kv).
  if (config.machine === "kv") {
    // Linearizable reads served by a replica while its state was corrupt (before the audit caught
    // it) are outside what a crash-fault protocol promises; everything else must linearize.
    const servedCorrupt = (o: any) => o.replica && (replicas.get(o.replica)?.wasCorruptAt(o.call) || replicas.get(o.replica)?.wasCorruptAt(o.return));
    // A retry answered output_not_kept (its session row's marker, checked above against the log's
    // execution) is searched with that execution's output: left unknown (no return time), the
    // even seeds' many such answers outgrew the search (4 million states).
    const executed = new Map(history.acked.map((a) => [`${a.client}/${a.request}`, ref.outputs.get(a.seq)?.output]));
    const ops = history.operations
      .filter((o) => !servedCorrupt(o))
      .map((o) => (notKept(o.output) ? (o.id !== undefined && executed.has(o.id) ? { ...o, output: executed.get(o.id) } : { ...o, return: null, output: undefined }) : o));
    // A command run again after its client was forgotten took effect once more each time: each
    // other effect is an operation of unknown outcome from the same call (the client saw one
    // answer at most). A client forgotten twice can have it run three times (seed 2927).
    for (const o of history.operations) for (let i = 0; o.id !== undefined && i < (again.get(o.id) ?? 0); i++) ops.push({ ...o, return: null, output: undefined });
    const lin = checkHistory({ model: "kv", operations: ops });
    if (!lin.linearizable) failures.push(`not linearizable on key ${lin.key}: ${lin.operations.map((o) => JSON.stringify(o)).join(" ")}`);
  }

  // Bank: every read conserves the total and shows no negative balance.
  if (config.machine === "bank") {
    for (const read of history.reads) {
      if (read.seq < bankSetupSeq || read.fromCorrupted) continue;
      const res = read.result as { accounts: Record<string, number>; total: number };
      if (res.total !== bankTotal) failures.push(`bank read at ${read.replica} seq ${read.seq} has total ${res.total}`);
      if (Object.values(res.accounts).some((b) => b < 0)) failures.push(`bank read at ${read.replica} seq ${read.seq} has a negative balance`);
    }
  }
  return failures;
}

export const bankAccounts = { a: 1000, b: 1000, c: 1000, d: 1000 };
export const bankTotal = Object.values(bankAccounts).reduce((x, y) => x + y, 0);
