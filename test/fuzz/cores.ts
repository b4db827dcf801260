// The fuzz property over the protocol cores (Node, no workerd): every generated body goes
// through the router's gate (test/fuzz/gate.ts); what is refused must be a documented refusal,
// what is accepted is submitted to a real group (SequencerCore and ReplicaCores, test/support/
// cluster.ts) whose replicas store their rows and log the way SQLite does: as UTF-8, so a string
// that is not well-formed comes back as something else. Every batch of cases is settled and
// checked: each replica's scrub agrees with its recorded digest, the replicas' digests and
// checkpoints agree, nobody is quarantined, every accepted command is committed and executed
// exactly as a plain reference model says (outputs included), queries answer like the reference,
// and the kv list shows exactly the keys that were written, nothing else.
import fc from "fast-check";
import { machineFor } from "../../shared/machines/index.js";
import { MemoryReplicaStorage, MemoryRowStore, MemorySequencerStorage } from "../../shared/protocol/memory.js";
import { ReplicaCore, type ReplicaMeta } from "../../shared/protocol/replica.js";
import { SequencerCore, type SequencerMeta } from "../../shared/protocol/sequencer.js";
import { commandHash } from "../../shared/protocol/entry.js";
import { canonicalJson } from "../../shared/protocol/hash.js";
import type { AppliedOutput, ApplyStatus } from "../../shared/protocol/types.js";
import type { Entry, OutputsMode } from "../../shared/api/types.js";
import { Cluster } from "../support/cluster.js";
import { anyCase, bodyBytes, commandCase, type FuzzCase, type MachineName } from "./arbitraries.js";
import { gateCommand, gateQuery, type RefusalCode, type Stage } from "./gate.js";
import { ReferenceState, SessionModel, sameJson, show } from "./reference.js";
import { materialized } from "../../shared/machines/output.js";

export { show };

// ---- storage that behaves like SQLite's TEXT columns -------------------------------------------

const encoder = new TextEncoder();
// ignoreBOM: a leading U+FEFF is text like any other (the default decoder would drop it).
const decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

/** Strings that did not survive UTF-8 storage (should stay empty: the edge refuses them). */
export class LossyLog {
  count = 0;
  first: string | null = null;
  note(s: string): void {
    this.count++;
    this.first ??= s;
  }
}

function utf8(s: string, lossy: LossyLog): string {
  const t = decoder.decode(encoder.encode(s));
  if (t !== s) lossy.note(s);
  return t;
}

/** The memory row store, with every key and value stored as UTF-8 text (lone surrogates become U+FFFD). */
export class Utf8RowStore extends MemoryRowStore {
  constructor(private readonly lossy: LossyLog) {
    super();
  }
  private t(s: string): string {
    return utf8(s, this.lossy);
  }
  override get(key: string): string | null {
    return super.get(this.t(key));
  }
  override put(key: string, value: string): void {
    super.put(this.t(key), this.t(value));
  }
  override delete(key: string): void {
    super.delete(this.t(key));
  }
  override scan(prefix: string, after: string | null, limit: number, bytesMax?: number): [string, string][] {
    return super.scan(this.t(prefix), after === null ? null : this.t(after), limit, bytesMax);
  }
  override lastKey(prefix: string): string | null {
    return super.lastKey(this.t(prefix));
  }
  /** Keyed by the stored keys, as rows SQLite returns would be. */
  override getMany(keys: string[]): Map<string, string> {
    return super.getMany(keys.map((k) => this.t(k)));
  }
  override writeMany(puts: [string, string][], deletes: string[]): void {
    super.writeMany(
      puts.map(([k, v]) => [this.t(k), this.t(v)]),
      deletes.map((k) => this.t(k)),
    );
  }
}

/** An entry as the SQLite log table gives it back: client and timestamp as UTF-8, the command as JSON text. */
function storedEntry(e: Entry, lossy: LossyLog): Entry {
  return {
    ...e,
    client: e.client === null ? null : utf8(e.client, lossy),
    command: e.command === undefined ? undefined : JSON.parse(utf8(JSON.stringify(e.command), lossy)),
    timestamp: utf8(e.timestamp, lossy),
  };
}

function storedJson<T>(value: T, lossy: LossyLog): T {
  return JSON.parse(utf8(JSON.stringify(value), lossy)) as T;
}

export class Utf8ReplicaStorage extends MemoryReplicaStorage {
  override readonly rows: MemoryRowStore;
  constructor(private readonly lossy: LossyLog) {
    super();
    this.rows = new Utf8RowStore(lossy);
  }
  override appendEntries(entries: Entry[]): void {
    super.appendEntries(entries.map((e) => storedEntry(e, this.lossy)));
  }
  override saveMeta(meta: ReplicaMeta): void {
    super.saveMeta(storedJson(meta, this.lossy));
  }
}

export class Utf8SequencerStorage extends MemorySequencerStorage {
  constructor(private readonly lossy: LossyLog) {
    super();
  }
  override appendEntries(entries: Entry[]): void {
    super.appendEntries(entries.map((e) => storedEntry(e, this.lossy)));
  }
  override saveMeta(meta: SequencerMeta): void {
    super.saveMeta(storedJson(meta, this.lossy));
  }
}

// ---- the group ---------------------------------------------------------------------------------

export interface GroupSpec {
  machine: MachineName;
  replicas: number;
  outputs: OutputsMode;
  checkpointEvery: number;
  /** Small compaction windows (the simulator's kind): logs compact within a run, and the sequencer forgets old requests. */
  compact: boolean;
}

const smallRetention = { entries: 24, slack: 8 };

/** test/support/cluster.ts's synchronous group, its storage swapped for the UTF-8 kind. */
function utf8Cluster(spec: GroupSpec, lossy: LossyLog) {
  const c = Cluster.of(spec.machine, spec.replicas, spec.outputs, spec.checkpointEvery);
  const retention = spec.compact ? smallRetention : undefined;
  for (const [id, old] of [...c.replicaStores]) {
    const store = new Utf8ReplicaStorage(lossy);
    store.saveMeta(old.meta!);
    c.replicaStores.set(id, store);
    c.replicas.set(id, new ReplicaCore(store, store.meta!, machineFor(store.meta!.machine), retention));
  }
  const seqStore = new Utf8SequencerStorage(lossy);
  seqStore.saveMeta(c.seqStore.meta!);
  c.seqStore = seqStore;
  c.sequencer = new SequencerCore(seqStore, seqStore.meta!);
  return {
    cluster: c,
    restartReplica(id: string) {
      const store = c.replicaStores.get(id)!;
      c.replicas.set(id, new ReplicaCore(store, store.meta!, machineFor(store.meta!.machine), retention));
    },
  };
}

// ---- statistics --------------------------------------------------------------------------------

export class FuzzStats {
  runs = 0;
  cases = 0;
  commands = 0;
  queries = 0;
  accepted = 0;
  refused: Record<RefusalCode, number> = { bad_request: 0, too_large: 0 };
  refusedAt: Partial<Record<Stage, number>> = {};
  submits: Record<string, number> = {};
  executed: Partial<Record<ApplyStatus, number>> = {};
  batches = 0;
  restarts = 0;
  bursts = 0;
  compactions = 0;
  /** Batches whose bank total was past 2^53 (so the answer's total is rounded). */
  bankTotalsRounded = 0;
  /** Accepted commands the validation changed (see FuzzOptions.allowChanged). */
  changed = 0;
  changedFirst: string | null = null;

  add(o: FuzzStats): void {
    for (const k of ["runs", "cases", "commands", "queries", "accepted", "batches", "restarts", "bursts", "compactions", "changed", "bankTotalsRounded"] as const) this[k] += o[k];
    for (const [k, v] of Object.entries(o.refused)) this.refused[k as RefusalCode] += v;
    for (const [k, v] of Object.entries(o.refusedAt)) this.refusedAt[k as Stage] = (this.refusedAt[k as Stage] ?? 0) + v;
    for (const [k, v] of Object.entries(o.submits)) this.submits[k] = (this.submits[k] ?? 0) + v;
    for (const [k, v] of Object.entries(o.executed)) this.executed[k as ApplyStatus] = (this.executed[k as ApplyStatus] ?? 0) + v;
    this.changedFirst ??= o.changedFirst;
  }

  /** One line: the counts that matter. */
  line(): string {
    return `${this.cases} cases, ${this.accepted} accepted, refused: bad_request=${this.refused.bad_request} too_large=${this.refused.too_large}, ${this.executed.ok ?? 0} executed, ${this.batches} batches checked`;
  }

  summary(): string {
    const kv = (r: Record<string, number | undefined>) =>
      Object.entries(r)
        .filter(([, v]) => v)
        .map(([k, v]) => `${k}=${v}`)
        .join(" ");
    return [
      `cases=${this.cases} (commands=${this.commands} queries=${this.queries}) runs=${this.runs}`,
      `accepted=${this.accepted} refused: ${kv(this.refused)} (at ${kv(this.refusedAt)})`,
      `submits: ${kv(this.submits)} executed: ${kv(this.executed)}`,
      `batches checked=${this.batches} restarts=${this.restarts} bursts=${this.bursts} compactions=${this.compactions} changed-by-validation=${this.changed} bank-totals-past-2^53=${this.bankTotalsRounded}`,
    ].join("\n");
  }
}

// ---- one run -----------------------------------------------------------------------------------

/**
 * A body; a restart (of a replica, or of the sequencer) between batches; or a burst: one client
 * sending `count` commands with consecutive request ids, then re-sending a few of them, so its
 * session table evicts (past 1,088 rows) and old ids come back expired or as duplicates.
 */
export type Step =
  | FuzzCase
  | { endpoint: "restart"; target: number }
  | { endpoint: "burst"; client: string; start: number; count: number; resend: number[] };

/** The bodies of a burst step. */
export function burstBodies(machine: MachineName, b: Extract<Step, { endpoint: "burst" }>): string[] {
  // Every seventh command differs, so a re-sent id is sometimes the same command, sometimes another.
  const commandAt = (j: number) => {
    const n = j % 7 === 6 ? 2 : 1;
    return machine === "kv" ? { op: "incr", key: "burst", by: n } : { op: "transfer", from: "alice", to: "bob", amount: n };
  };
  const ids = [...Array.from({ length: b.count }, (_, j) => b.start + j), ...b.resend.map((r) => b.start + (r % (b.count + 10)))];
  return ids.map((request, j) => JSON.stringify({ client: b.client, request, command: commandAt(j) }));
}

export interface RunSpec extends GroupSpec {
  steps: Step[];
}

export interface FuzzOptions {
  /** Cases between settles and checks. */
  batch?: number;
  /**
   * Accept that the validation hands the cores a command different from the one sent (today:
   * an object key "__proto__" in a kv value is dropped by zod). Counted in the stats either way.
   */
  allowChanged?: boolean;
  /** false: gate without checkJson, as the router was before it (the harness must catch that). */
  checkJson?: boolean;
  /** Skip the direct check that every stored string survived UTF-8 (so the other checks must catch a loss). */
  noLossyCheck?: boolean;
}

class FuzzFailure extends Error {}

function fail(message: string): never {
  throw new FuzzFailure(message);
}

/** Runs one generated sequence of cases against a fresh group; throws on the first broken property. */
export function runCases(spec: RunSpec, stats: FuzzStats, options: FuzzOptions = {}): void {
  const batchMax = options.batch ?? 50;
  const machine = machineFor(spec.machine);
  const lossy = new LossyLog();
  const g = utf8Cluster(spec, lossy);
  const c = g.cluster;
  const ref = new ReferenceState();
  const sessions = new SessionModel();
  /** The command hash the sequencer indexes for (client, request): the last one it ordered. */
  const ordered = new Map<string, string>();
  const openedTotal = { value: 0n };
  let batchStart = 0;
  let inBatch = 0;
  let queued = 0;
  let pendingQueries: { query: unknown; at: number }[] = [];
  let batchNo = 0;
  let firstCase = 0;
  stats.runs++;

  const checkBatch = (lastCase: number) => {
    const where = `batch ${batchNo} (steps ${firstCase}..${lastCase})`;
    stats.batches++;
    c.settle(200);
    const s = c.sequencer;
    if (s.pendingCount !== 0) fail(`${where}: ${s.pendingCount} submits still pending at the sequencer after settling`);
    if (s.commitSeq !== s.lastLogSeq) fail(`${where}: commitSeq ${s.commitSeq} short of the log's ${s.lastLogSeq} after settling`);
    if (c.diverged.length > 0) fail(`${where}: the sequencer found replicas diverged: ${c.diverged.join(", ")}`);
    for (const [id, r] of c.replicas) {
      if (r.quarantined) fail(`${where}: replica ${id} quarantined`);
      if (r.appliedSeq !== s.commitSeq) fail(`${where}: replica ${id} applied ${r.appliedSeq} of ${s.commitSeq} committed`);
    }
    // Every accepted, newly ordered command: committed, then executed as the session model and the reference say.
    const entries = s.lastLogSeq > batchStart ? s.readEntries(batchStart + 1, s.lastLogSeq) : [];
    if (entries.length !== queued) fail(`${where}: ${queued} commands were queued but ${entries.length} entries ordered`);
    const decided = new Map<number, AppliedOutput | null>();
    for (const d of c.decided) {
      if (decided.has(d.seq) && !sameJson(decided.get(d.seq), d.outcome)) fail(`${where}: seq ${d.seq} decided twice, differently`);
      decided.set(d.seq, d.outcome);
    }
    c.decided.length = 0;
    for (const e of entries) {
      if (e.kind !== "command" || e.client === null || e.request === null) fail(`${where}: unexpected entry ${show(e)}`);
      const outcome = decided.get(e.seq);
      if (outcome === undefined) fail(`${where}: entry ${e.seq} (${show(e.client)} #${e.request}) committed but no output was ever decided`);
      if (outcome === null) fail(`${where}: entry ${e.seq}: the replicas' outputs disagree`);
      const hash = commandHash(e.command);
      const p = sessions.predict(e.client, e.request, hash);
      if (outcome.status !== p.status) fail(`${where}: entry ${e.seq} ${show(e.command)} of ${show(e.client)} #${e.request}: status ${outcome.status}, the session model says ${p.status}`);
      stats.executed[outcome.status] = (stats.executed[outcome.status] ?? 0) + 1;
      if (p.status === "ok") {
        const expected = materialized(machine.apply(ref, e.command, { seq: e.seq, timestamp: e.timestamp }));
        if (!sameJson(outcome.output, expected)) fail(`${where}: entry ${e.seq} ${show(e.command)}: output ${show(outcome.output)}, the reference gives ${show(expected)}`);
        sessions.executed(e.client, e.request, hash, outcome.output);
        const cmd = e.command as { op: string; balance?: number };
        if (spec.machine === "bank" && cmd.op === "open" && (expected as { ok: boolean }).ok) openedTotal.value += BigInt(cmd.balance!);
      } else if (p.status === "duplicate" && !sameJson(outcome.output, p.output)) {
        fail(`${where}: entry ${e.seq}: a duplicate answered ${show(outcome.output)}, the first execution ${show(p.output)}`);
      }
    }
    // Storage: nothing lost in UTF-8, every scrub agrees, the replicas agree with each other.
    if (lossy.count > 0 && !options.noLossyCheck) fail(`${where}: ${lossy.count} strings did not survive UTF-8 storage, the first ${show(lossy.first)}`);
    const infos = [...c.replicas].map(([id, r]) => ({ id, info: r.auditInfo() }));
    const cps = new Map<number, { id: string; digest: string; logHash: string }>();
    for (const { id, info } of infos) {
      if (info.scrub.actualDigest !== info.scrub.recordedDigest) fail(`${where}: replica ${id}'s scrub: rows hash to ${info.scrub.actualDigest}, recorded ${info.scrub.recordedDigest}`);
      if (info.quarantined || info.rebuilding) fail(`${where}: replica ${id} quarantined or rebuilding`);
      if (info.appliedSeq !== infos[0]!.info.appliedSeq || info.digest !== infos[0]!.info.digest) {
        fail(`${where}: replica ${id} at ${info.appliedSeq} digest ${info.digest}, ${infos[0]!.id} at ${infos[0]!.info.appliedSeq} digest ${infos[0]!.info.digest}`);
      }
      for (const cp of info.checkpoints) {
        const other = cps.get(cp.seq);
        if (!other) cps.set(cp.seq, { id, digest: cp.digest, logHash: cp.logHash });
        else if (other.digest !== cp.digest || other.logHash !== cp.logHash) fail(`${where}: checkpoint ${cp.seq} of ${id} differs from ${other.id}'s`);
      }
    }
    // The machine state equals the reference's, on every replica.
    for (const [id, r] of c.replicas) {
      if (spec.machine === "kv") {
        const items: [string, string][] = [];
        let after: string | undefined;
        for (let page = 0; page < 10_000; page++) {
          const res = r.query({ op: "list", limit: 1000, ...(after === undefined ? {} : { after }) }) as { items: [string, unknown][]; next?: string };
          for (const [k, v] of res.items) {
            if (!ref.written.has(k)) fail(`${where}: replica ${id} lists key ${show(k)} that no command wrote`);
            items.push([k, canonicalJson(v)]);
          }
          if (res.next === undefined || res.items.length === 0) break;
          after = res.next;
        }
        const want = ref.dump();
        if (canonicalJson(items) !== canonicalJson(want)) fail(`${where}: replica ${id} lists ${show(items)}, the reference ${show(want)}`);
      } else {
        const got = r.query({ op: "balances" }) as { accounts: Record<string, number>; total: number; totalExact?: string };
        const want = machine.query(ref, { op: "balances" });
        if (!sameJson(got, want)) fail(`${where}: replica ${id} has balances ${show(got)}, the reference ${show(want)}`);
        // Conserved: the total is what was opened. Past 2^53 the answer's JSON number can only be
        // the nearest double (balances are safe integers; their sum need not be): totalExact has it.
        const exact = openedTotal.value <= BigInt(Number.MAX_SAFE_INTEGER);
        if (exact ? BigInt(got.total) !== openedTotal.value : got.total !== Number(openedTotal.value)) fail(`${where}: bank total ${got.total}, but ${openedTotal.value} was opened`);
        if (!exact && got.totalExact !== openedTotal.value.toString()) fail(`${where}: bank totalExact ${got.totalExact}, but ${openedTotal.value} was opened`);
        if (!exact) stats.bankTotalsRounded++;
      }
    }
    // Queries sent during the batch, answered now on every replica (all at the same position).
    for (const { query, at } of pendingQueries) {
      const want = machine.query(ref, query) as { items?: unknown };
      for (const [id, r] of c.replicas) {
        const got = r.query(query) as { items?: unknown; next?: string };
        const same = want.items !== undefined ? sameJson(got.items, want.items) : sameJson(got, want);
        if (!same) fail(`${where}: step ${at}, query ${show(query)} on ${id}: ${show(got)}, the reference ${show(want)}`);
      }
    }
    pendingQueries = [];
    if (spec.compact && s.compact(smallRetention.entries, smallRetention.slack) !== null) stats.compactions++;
    batchStart = s.lastLogSeq;
    inBatch = 0;
    queued = 0;
    batchNo++;
    firstCase = lastCase + 1;
  };

  const handle = (step: FuzzCase, i: number) => {
    stats.cases++;
    inBatch++;
    const bytes = bodyBytes(step.body);
    if (step.endpoint === "query") {
      stats.queries++;
      const q = gateQuery(spec.machine, bytes, options.checkJson ?? true);
      if (!q.ok) {
        if (q.code !== "bad_request" && q.code !== "too_large") fail(`step ${i}: query refused with an undocumented code ${q.code}: ${show(step.body)}`);
        stats.refused[q.code]++;
        stats.refusedAt[q.stage] = (stats.refusedAt[q.stage] ?? 0) + 1;
      } else {
        stats.accepted++;
        pendingQueries.push({ query: q.query, at: i });
      }
    } else {
      stats.commands++;
      const r = gateCommand(spec.machine, bytes, options.checkJson ?? true);
      if (!r.ok) {
        if (r.code !== "bad_request" && r.code !== "too_large") fail(`step ${i}: refused with an undocumented code ${r.code}: ${show(step.body)}`);
        stats.refused[r.code]++;
        stats.refusedAt[r.stage] = (stats.refusedAt[r.stage] ?? 0) + 1;
      } else {
        stats.accepted++;
        if (!sameJson(r.raw, r.command)) {
          stats.changed++;
          stats.changedFirst ??= `${show(r.raw)} became ${show(r.command)}`;
          if (!options.allowChanged) fail(`step ${i}: accepted, but the command the cores get differs from the one sent: sent ${show(r.raw)}, validated ${show(r.command)} (body ${show(step.body)})`);
        }
        const d = c.submit(r.client, r.request, r.command);
        stats.submits[d.kind] = (stats.submits[d.kind] ?? 0) + 1;
        const key = `${r.request}:${r.client}`;
        const hash = commandHash(r.command);
        const last = ordered.get(key);
        switch (d.kind) {
          case "queued":
            ordered.set(key, hash);
            queued++;
            break;
          case "existing":
            if (last !== hash) fail(`step ${i}: the sequencer calls ${show(r.client)} #${r.request} a retry, but ${last === undefined ? "it was never ordered" : "it was ordered with another command"} (body ${show(step.body)})`);
            break;
          case "conflict":
            if (last === undefined || last === hash) fail(`step ${i}: the sequencer answers conflict for ${show(r.client)} #${r.request}, ${last === undefined ? "never ordered" : "ordered with this very command"} (body ${show(step.body)})`);
            break;
          case "unavailable":
            fail(`step ${i}: the sequencer of a healthy group answered unavailable: ${d.reason}`);
        }
      }
    }
    if (inBatch >= batchMax) checkBatch(i);
  };

  spec.steps.forEach((step, i) => {
    if (step.endpoint === "restart") {
      checkBatch(i);
      stats.restarts++;
      const ids = [...c.replicas.keys()];
      if (step.target % (ids.length + 1) === ids.length) c.restartSequencer();
      else g.restartReplica(ids[step.target % (ids.length + 1)]!);
    } else if (step.endpoint === "burst") {
      stats.bursts++;
      for (const body of burstBodies(spec.machine, step)) handle({ endpoint: "command", body }, i);
    } else {
      handle(step, i);
    }
  });
  checkBatch(spec.steps.length - 1);
}

// ---- the property ------------------------------------------------------------------------------

const restartStep = fc.nat({ max: 7 }).map((target) => ({ endpoint: "restart" as const, target }));
const burstStep = fc.record({
  endpoint: fc.constant("burst" as const),
  client: fc.constantFrom("c", "burst", "x".repeat(128), "\u{10ffff}".repeat(64)),
  start: fc.integer({ min: 1, max: 50 }),
  count: fc.integer({ min: 1_085, max: 1_160 }),
  resend: fc.array(fc.nat(1_300), { maxLength: 6 }),
});

/** A group (machine, size, outputs, checkpoints, compaction) and up to casesMax steps for it. */
export function runSpec(casesMax: number): fc.Arbitrary<RunSpec> {
  return fc
    .record({
      machine: fc.constantFrom<MachineName>("kv", "kv", "bank"),
      replicas: fc.constantFrom(1, 3, 3, 5),
      outputs: fc.constantFrom<OutputsMode>("first", "majority"),
      checkpointEvery: fc.integer({ min: 1, max: 12 }),
      compact: fc.boolean(),
    })
    .chain((group) =>
      fc
        .array(fc.oneof({ weight: 6000, arbitrary: anyCase(group.machine) }, { weight: 40, arbitrary: restartStep }, { weight: 1, arbitrary: burstStep }), {
          minLength: 1,
          maxLength: casesMax,
          size: "max",
        })
        .map((steps) => ({ ...group, steps })),
    );
}

export function coresProperty(stats: FuzzStats, casesMax: number, options: FuzzOptions = {}) {
  return fc.property(runSpec(casesMax), (spec) => {
    const mine = new FuzzStats();
    try {
      runCases(spec, mine, options);
    } finally {
      stats.add(mine);
    }
  });
}

// ---- validation fidelity -----------------------------------------------------------------------

/**
 * What the cores get is what was sent: for every body the gate accepts, the validated command
 * equals (as JSON) the command in the body. A difference is a value silently changed on its way
 * in (a put that stores something else than it was given).
 */
export function fidelityProperty(machine: MachineName) {
  return fc.property(commandCase(machine), (c) => {
    const r = gateCommand(machine, bodyBytes(c.body));
    if (r.ok && !sameJson(r.raw, r.command)) fail(`accepted, but validated into another command: sent ${show(r.raw)}, validated ${show(r.command)}`);
  });
}

/** fc.check, throwing with the failure and the command line that replays it. */
export function checkProperty<T>(property: fc.IProperty<T>, params: fc.Parameters<T>, replay: (seed: number, path: string) => string): void {
  const r = fc.check(property, params);
  if (!r.failed) return;
  const err = r.errorInstance instanceof Error ? r.errorInstance.message : String(r.errorInstance);
  const example = fc.stringify(r.counterexample);
  throw new Error(
    `property failed after ${r.numRuns} runs (shrunk ${r.numShrinks} times; seed ${r.seed}, path ${r.counterexamplePath}):\n${err}\n` +
      `counterexample: ${example.length > 4000 ? `${example.slice(0, 4000)}... (${example.length} chars)` : example}\n` +
      `replay: ${replay(r.seed, r.counterexamplePath ?? "")}`,
  );
}
