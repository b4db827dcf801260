// One simulation: a group, clients, injected faults, a heal phase, then every checker.
import { majority, membersOf, replicaIds, type GroupConfig } from "../../shared/protocol/types.js";
import { failoverHoldDownMs, logRetentionBytesOf, sequencerTimeoutMs } from "../../shared/limits.js";
import type { MachineName, OutputsMode } from "../../shared/api/types.js";
import type { StateMachine } from "../../shared/machines/types.js";
import { bankAccounts, runCheckers } from "./checkers.js";
import { type ClientHistory, SimClient } from "./clients.js";
import { withTrial } from "./machines.js";
import { Failures, type SimSequencer, makeGroup, simScrubRows, type Variant } from "./nodes.js";
import { Prng } from "./prng.js";
import { Network, World } from "./world.js";
import { SimWatcher } from "./watchers.js";
import { moveSequencer } from "./nodes.js";

export const faultKinds = [
  "drop",
  "duplicate",
  "reorder",
  "partition",
  "crash-replica",
  "crash-sequencer",
  "lose-sequencer-storage",
  "corrupt",
  "reconfigure",
  "isolate-sequencer",
  "slow-sequencer",
  "isolate-location",
  "cut-sequencer",
  "quorum-away",
] as const;
/**
 * Kinds not in "all" (so the regression seeds replay as before): name them, or "all+" for every
 * kind. move-sequencer: a router moves the sequencer (hand-over, compare-and-set, recovery), also
 * racing failovers; lose-replica-storage: a remote replica's object loses its storage (rejoin);
 * clock-skew: every sequencer object's clock is off by up to +-60 s; corrupt-any: corruption of
 * any state row (sessions, books, the idle index), not only the machine's.
 */
export const extraFaultKinds = ["move-sequencer", "lose-replica-storage", "clock-skew", "corrupt-any"] as const;
/**
 * Kinds added after extraFaultKinds (the regression seeds that name those replay as before; the
 * CLI's all+ has them). corrupt-again: a replica is corrupted again once none is corrupt (rebuilt),
 * the same one or another: a quarantine of the first damage must not end the second's.
 */
export const laterFaultKinds = ["corrupt-again"] as const;
export type FaultKind = (typeof faultKinds)[number] | (typeof extraFaultKinds)[number] | (typeof laterFaultKinds)[number];

export interface SimOptions {
  seed: number;
  ops: number;
  replicas: number;
  faults: FaultKind[];
  /** A listed machine's name, or a definition under trial (check-machine). */
  machine?: MachineName | StateMachine<any, any>;
  /** Outputs mode; by default drawn from the seed ("majority" with corrupt or corrupt-any). */
  outputs?: OutputsMode;
  clients?: number;
  variant?: Variant;
  /**
   * The geography model: replica i in locations[i], the sequencer in `sequencer` (a failover takes
   * the next location), one client per location reading at its nearest replica, messages taking
   * half the round-trip time between places.
   */
  geo?: { locations: string[]; sequencer: string };
  /**
   * Clients also send kv txns and batches (the CLI's default). Off, the random stream is the one
   * the regression seeds were found with, so they still reproduce their runs.
   */
  batches?: boolean;
  /**
   * The group's first sequencer object hosts a voting replica (GroupConfig.colocated, the CLI's
   * default): that replica crashes, is cut off and loses its storage with the object. Off, the
   * regression seeds replay their runs.
   */
  colocate?: boolean;
  /** The group's session window (GroupConfig.sessionIdleMs): idle clients are forgotten. Absent: never. */
  sessionIdleMs?: number;
  /**
   * GroupConfig.sessionOutputFreeChars; by default none kept on even seeds (every answer from a
   * session row is the output_not_kept marker), no bound on odd ones.
   */
  sessionOutputFreeChars?: number;
  /**
   * The sequencer sleeps after this long without client work (DriverIO.sleepAfterMs), and the
   * clients pause in cycles long enough for it to (World.quietUntilMs). Absent: it never sleeps.
   */
  sleepAfterMs?: number;
  /**
   * Each object's log bytes budget (limits.ts logRetentionBytesOf), through a quota of a fraction
   * of a MiB no group could have (the memory stores measure no size, so writes are never refused
   * for it): a few entries, so compaction by bytes, and the transfers and watch gaps it brings,
   * happen all through a run. Absent: the default quota's budget, never reached.
   */
  logBytes?: number;
  /** Watch clients following the log (watchers.ts), checked against it after the heal. */
  watchers?: number;
}

export interface SimResult {
  seed: number;
  failures: string[];
  trace: string;
  stats: Record<string, number | string>;
  /** With --geo: latency percentiles (ms) per client location and operation, and the takeovers. */
  geo?: { latencies: Record<string, Record<string, { p50: number; p99: number; n: number }>>; takeoverMs: number[] };
}

function percentiles(history: ClientHistory) {
  const out: Record<string, Record<string, { p50: number; p99: number; n: number }>> = {};
  const groups = new Map<string, number[]>();
  for (const l of history.latencies) {
    const key = `${l.location}|${l.kind}`;
    groups.set(key, [...(groups.get(key) ?? []), l.ms]);
  }
  for (const [key, values] of groups) {
    const [where, kind] = key.split("|") as [string, string];
    values.sort((a, b) => a - b);
    (out[where] ??= {})[kind] = { p50: values[Math.floor(values.length / 2)]!, p99: values[Math.min(values.length - 1, Math.floor(values.length * 0.99))]!, n: values.length };
  }
  return out;
}

export function reproduce(o: SimOptions): string {
  const parts = [`npm run sim -- --seed ${o.seed} --ops ${o.ops} --replicas ${o.replicas} --faults ${o.faults.join(",") || "none"}`];
  const machine = typeof o.machine === "object" ? o.machine.name : o.machine;
  if (machine && machine !== "kv") parts.push(`--machine ${machine}`);
  if (o.outputs) parts.push(`--outputs ${o.outputs}`);
  if (o.variant && o.variant !== "correct") parts.push(`--variant ${o.variant}`);
  if (!o.batches) parts.push("--no-batches");
  if (!o.colocate) parts.push("--no-colocate");
  if (o.sessionIdleMs !== undefined) parts.push(`--session-idle ${o.sessionIdleMs}`);
  if (o.sessionOutputFreeChars !== undefined) parts.push(`--output-free ${o.sessionOutputFreeChars}`);
  if (o.sleepAfterMs !== undefined) parts.push(`--sleep-after ${o.sleepAfterMs}`);
  if (o.logBytes !== undefined) parts.push(`--log-bytes ${o.logBytes}`);
  if (o.watchers) parts.push(`--watchers ${o.watchers}`);
  if (o.geo) parts.push(`--geo --locations ${o.geo.locations.join(",")} --sequencer ${o.geo.sequencer}`);
  if (o.clients !== undefined && o.clients !== (o.geo ? o.geo.locations.length : 5)) parts.push(`--clients ${o.clients}`);
  return parts.join(" ");
}

/**
 * Even seeds: no session row keeps an output, so every answer from a row is the marker (0 made 1
 * marker in 6,000 rows: a review). The real bound is the unit tests'.
 */
const sessionOutputsNoneKept = -1_000_000;

/** The run's sessionOutputFreeChars: given, or drawn from the seed's parity (not from its Prng: regression seeds replay as before). */
function sessionOutputsOf(opts: SimOptions): { sessionOutputFreeChars?: number } {
  const free = opts.sessionOutputFreeChars ?? (opts.seed % 2 === 0 ? sessionOutputsNoneKept : undefined);
  return free === undefined ? {} : { sessionOutputFreeChars: free };
}

const auditEveryMs = 2_000;
/**
 * Writes must resume within this long after the sequencer's isolation (the timeout, a client's
 * call, the PreVote and a recovery), in runs where nothing else stops progress (only network
 * faults besides): crashes and partitions of replicas can hold a quorum back for longer.
 */
const resumeBoundMs = 20_000;
const isolationQuietMs = 20_000;
const livenessFaults = new Set(["isolate-sequencer", "isolate-location", "cut-sequencer", "slow-sequencer", "drop", "duplicate", "reorder"]);
const healLimitMs = 180_000;

export async function simulate(opts: SimOptions): Promise<SimResult> {
  // A broken invariant inside a driver's loop surfaces as an unhandled rejection: a failure of
  // this run, not a crash of the simulator.
  const failures = new Failures();
  const onUnhandled = (err: unknown) => { if (process.env.SIM_STACK) console.error(err); failures.add(`unhandled: ${err instanceof Error ? err.message : String(err)}`); };
  process.on("unhandledRejection", onUnhandled);
  try {
    const m = opts.machine;
    if (typeof m === "object") return await withTrial(m, () => simulateWith({ ...opts, machine: m.name }, failures));
    return await simulateWith(opts, failures);
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
}

async function simulateWith(opts: SimOptions, failures: Failures): Promise<SimResult> {
  const rng = new Prng(opts.seed);
  const world = new World(rng);
  if (opts.sleepAfterMs !== undefined) world.sleepAfterMs = opts.sleepAfterMs;
  const net = new Network(world);
  const faults = new Set(opts.faults);
  const machine = (opts.machine ?? "kv") as MachineName;
  // Corruption can only be outvoted when outputs are voted on.
  const outputs: OutputsMode = opts.outputs ?? (faults.has("corrupt") || faults.has("corrupt-any") ? "majority" : rng.pick(["first", "majority"] as const));
  const config: GroupConfig = {
    group: "sim",
    incarnation: 0,
    machine,
    replicas: opts.replicas,
    locations: opts.geo ? replicaIds(opts.replicas).map((_, i) => opts.geo!.locations[i % opts.geo!.locations.length]!) : [],
    ...(opts.geo ? { sequencerLocations: [opts.geo.sequencer, ...opts.geo.locations.filter((l) => l !== opts.geo!.sequencer)] } : {}),
    outputs,
    checkpointEvery: 5 + rng.int(20),
    ...(opts.sessionIdleMs === undefined ? {} : { sessionIdleMs: opts.sessionIdleMs }),
    ...sessionOutputsOf(opts),
    ...(opts.logBytes === undefined ? {} : { storageQuotaMiB: opts.logBytes / logRetentionBytesOf(1) }),
  };
  // As the router places it: the first replica where the sequencer starts.
  const colocatedIndex = !opts.colocate || opts.replicas < 2 ? -1 : opts.geo ? config.locations.indexOf(opts.geo.sequencer) : 0;
  if (colocatedIndex >= 0) config.colocated = `r${colocatedIndex + 1}`;
  const { replicas, group } = makeGroup(config, world, net, failures, opts.variant ?? "correct");
  if (config.colocated) net.host.set(config.colocated, "seq");
  if (faults.has("clock-skew")) {
    group.skewOf = () => rng.int(120_001) - 60_000;
    group.current().skewMs = group.skewOf();
  }
  if (opts.geo) {
    config.locations.forEach((loc, i) => loc && net.location.set(`r${i + 1}`, loc));
    net.location.set("seq", opts.geo.sequencer);
  }
  // The sequencer in office (a failover names another).
  const seq = () => group.current();
  // The members change with reconfiguration: always ask.
  // As the directory names them (a change in flight: both memberships); a removed replica whose
  // destroy failed is still up until a retry destroys it.
  const memberIds = () => {
    const c = group.dir.config;
    const named = new Set([...membersOf(c), ...(c.inFlight ?? []).flat()].map((m) => m.id));
    return [...replicas.values()].filter((r) => !r.retired && named.has(r.id)).map((r) => r.id);
  };
  /**
   * Replicas the group can lose now and still recover: per membership in force (a change under
   * way: each), its voters less a majority of them; the least. A replacement that removed an old
   * voter before the new one got its vote leaves two voters and no margin: a fault then is beyond
   * what the group claims to survive, and injecting it made a campaign report a group that never
   * recovered (seed 1189255685: the two voters' one lost its storage with the sequencer).
   */
  const tolerated = () => {
    const c = group.dir.config;
    const voters = (c.inFlight ?? [membersOf(c)]).map((ms) => ms.filter((m) => m.voter).length);
    return Math.min(...voters.map((v) => v - majority(v)));
  };
  const history: ClientHistory = { operations: [], acked: [], refused: [], reads: [], unexpected: [], expired: [], acksBy: [], latencies: [] };
  const corrupted = new Set<string>();
  const counts: Record<string, number> = {};
  const count = (k: string) => (counts[k] = (counts[k] ?? 0) + 1);

  net.faults = {
    dropP: faults.has("drop") ? 0.03 + rng.next() * 0.07 : 0,
    duplicateP: faults.has("duplicate") ? 0.02 + rng.next() * 0.05 : 0,
    jitterMs: faults.has("reorder") ? 5 + rng.int(40) : 0,
  };

  // Bank accounts are opened before the load starts.
  let bankSetupSeq = 0;
  if (machine === "bank") {
    const setup = new SimClient(999, world, net, seq, replicas, machine, history);
    const done = (async () => {
      // Until every open is acknowledged (an unknown outcome is retried as a new request:
      // opening an existing account changes nothing).
      for (const [account, balance] of Object.entries(bankAccounts)) {
        const before = history.acked.length;
        while (history.acked.length === before) await setup.submit({ op: "open", account, balance });
      }
    })();
    let finished = false;
    void done.then(() => (finished = true));
    await world.run(120_000, () => finished);
    if (!finished) failures.add("the bank's accounts could not be opened in 120 s");
    bankSetupSeq = Math.max(0, ...history.acked.map((a) => a.seq));
    history.operations.length = 0;
  }

  // The load.
  let stopped = false;
  const clientCount = opts.clients ?? 5;
  /** Clients with operations left (an isolation's liveness bound needs one outside it). */
  const active = new Set<string>();
  const clients: SimClient[] = [];
  for (let i = 0; i < clientCount; i++) {
    const at = opts.geo ? opts.geo.locations[i % opts.geo.locations.length]! : null;
    if (at) net.location.set(`c${i}`, at);
    const c = new SimClient(i, world, net, seq, replicas, machine, history, (from, failed, cutOffMs) => group.failover(from, failed, cutOffMs), at, opts.batches ?? false);
    const share = Math.floor(opts.ops / clientCount) + (i < opts.ops % clientCount ? 1 : 0);
    active.add(c.name);
    clients.push(c);
    void c.run(share, () => stopped).then(() => active.delete(c.name));
  }

  // Faults, bounded so a majority stays reachable most of the time.
  // A replica halfway through a state transfer, or back from one (or from lost storage) short of
  // what it acknowledged, answers no recovery's fence; a corrupted one is a fault until it is
  // rebuilt (and its repair is such a transfer): each counts as unavailable. Seed 335296893 lost
  // the storage of one replica while another was corrupted, two faults of three: no recovery
  // could fence a quorum once both were being rebuilt.
  const outOfQuorum = (id: string) => {
    const r = replicas.get(id)!;
    const m = r.storage.meta;
    // Quarantined (a rejoin after lost storage, or an audit's verdict) is a fault until rebuilt too:
    // its log may be back past rejoinSeq, but its rebuild's install takes it out of every fence
    // again (seed 921528124 with lose-replica-storage: two rejoined replicas and a corrupted one
    // caught installing by a move, three of five, and no recovery could ever fence a quorum).
    return r.corruptedAtMs !== null || m === null || Boolean(m.installing) || m.quarantined || (m.rejoinSeq !== undefined && m.lastSeq < m.rejoinSeq);
  };
  const unavailable = () => memberIds().filter((id) => net.isDown(id) || net.isIsolated(id) || outOfQuorum(id)).length;
  /** The replica that lives in the object of sequencer s, if any: it goes down with it. */
  const hostedBy = (s: SimSequencer) => (config.colocated && s.name === config.group && !replicas.get(config.colocated)!.retired ? replicas.get(config.colocated)! : null);
  const injectors: (() => void)[] = [];
  if (faults.has("crash-replica")) {
    injectors.push(() => {
      const up = memberIds().filter((id) => !net.isDown(id) && !net.isIsolated(id));
      if (unavailable() >= tolerated() || up.length === 0) return;
      const id = rng.pick(up);
      // The co-located replica's crash is its object's: the first sequencer goes down with it.
      if (id === config.colocated) return takeSequencerDown("crash-replica", false, group.sequencers.get(config.group)!);
      net.down.add(id);
      replicas.get(id)!.crash();
      count("crash-replica");
      world.trace(`crash ${id}`);
      world.setTimer(100 + rng.int(1_500), () => {
        net.down.delete(id);
        replicas.get(id)!.restart();
        world.trace(`restart ${id}`);
      });
    });
  }
  // The sequencer goes down (its memory lost; with loseStorage its storage too) and comes back.
  // The sequencer's object goes down (its memory lost; with loseStorage its storage too), with
  // the replica it hosts, and comes back. By default the sequencer in office now: the one that
  // comes back is the same object, even if a failover named another meanwhile.
  function takeSequencerDown(kind: FaultKind, loseStorage: boolean, s: SimSequencer = seq()): void {
    const r = hostedBy(s);
    net.down.add(s.node);
    s.crash();
    r?.crash();
    if (loseStorage) {
      s.loseStorage();
      r?.loseStorage();
    }
    count(kind);
    world.trace(`${loseStorage ? "lose storage of" : "crash"} ${s.node}${r ? ` and ${r.id}` : ""}`);
    world.setTimer(50 + rng.int(1_000), () => restartObject(s));
  }
  function restartObject(s: SimSequencer): void {
    if (!net.down.delete(s.node)) return;
    s.restart();
    hostedBy(s)?.restart();
    world.trace(`restart ${s.node}`);
  }
  if (faults.has("crash-sequencer")) {
    injectors.push(() => {
      if (!net.down.has(seq().node) && (!hostedBy(seq()) || unavailable() < tolerated())) takeSequencerDown("crash-sequencer", false);
    });
  }
  if (faults.has("lose-sequencer-storage")) {
    injectors.push(() => {
      // Rare: each loss starts a new epoch. The sequencer comes back empty and recovers.
      if (net.down.has(seq().node) || !rng.chance(0.05) || (hostedBy(seq()) && unavailable() >= tolerated())) return;
      takeSequencerDown("lose-sequencer-storage", true);
    });
  }
  if (faults.has("partition")) {
    injectors.push(() => {
      const candidates = [seq().node, ...memberIds()].filter((id) => !net.isIsolated(id) && !net.isDown(id));
      // A co-located replica is cut off with its whole object.
      const id = net.hostOf(rng.pick(candidates));
      const holdsReplica = memberIds().some((m) => net.hostOf(m) === id);
      if (holdsReplica && unavailable() >= tolerated()) return;
      net.isolated.add(id);
      count("partition");
      world.trace(`isolate ${id}`);
      world.setTimer(100 + rng.int(1_500), () => {
        net.isolated.delete(id);
        world.trace(`rejoin ${id}`);
      });
    });
  }
  // The sequencer's location stops answering for longer than sequencerTimeoutMs: a quorum of
  // voters loses it, a client (as a router) fails it over; writes must resume within a bound.
  // One at a time (healedAtMs set when it ends); another may follow once the last has healed.
  // Writes must resume within resumeBoundMs of an isolation, or of the end of the hold-down after
  // the group's last failover (none is allowed before), where some client outside is still at
  // work (a client cut off with the sequencer reaches no one).
  type Isolation = { atMs: number; sequencer: string; healedAtMs: number | null; resumedMs: number | null; resumedBy?: string; boundMs: number | null };
  const isolations: Isolation[] = [];
  // And not within isolationQuietMs of the last one's end: back to back, they leave the group
  // no steady state between them, and the history so many indefinite writes that the
  // linearizability search gave up on one of 200 seeds.
  const isolating = () => isolations.some((i) => i.healedAtMs === null || world.now - i.healedAtMs < isolationQuietMs);
  const isolation = (s: SimSequencer): Isolation => {
    const last = group.failovers[group.failovers.length - 1];
    const holdMs = last ? Math.max(0, last.atMs + failoverHoldDownMs - world.now) : 0;
    const outside = [...active].some((c) => !net.isolated.has(c));
    // A sleeping group: the clients may be in a quiet time (no write to resume), and its replicas
    // vote the sequencer gone only sequencerTimeoutMs after a PreVote woke them.
    const sleepMs = world.sleepAfterMs === undefined ? 0 : 2 * world.sleepAfterMs + 3_000 + sequencerTimeoutMs;
    const iso = { atMs: world.now, sequencer: s.name, healedAtMs: null, resumedMs: null, boundMs: outside ? resumeBoundMs + holdMs + sleepMs : null };
    isolations.push(iso);
    return iso;
  };
  if (faults.has("isolate-sequencer")) {
    injectors.push(() => {
      const s = seq();
      if (net.isolated.has(s.node) || net.down.has(s.node) || isolating() || !rng.chance(0.3)) return;
      if (hostedBy(s) && unavailable() >= tolerated()) return;
      net.isolated.add(s.node);
      const iso = isolation(s);
      count("isolate-sequencer");
      world.trace(`isolate ${s.node}`);
      world.setTimer(6_000 + rng.int(9_000), () => {
        iso.healedAtMs = world.now;
        net.isolated.delete(s.node);
        world.trace(`rejoin ${s.node}`);
      });
    });
  }
  // The sequencer cut off from its (remote) replicas but not from routers: every message between
  // them dropped, or late past the append timeout (a slow link). It answers its clients, with
  // no quorum; the replicas may hear its late appends. A successor must take over (cut-off
  // failover, shared/protocol/failover.ts) within the same bound as after an isolation.
  if (faults.has("cut-sequencer")) {
    injectors.push(() => {
      const s = seq();
      if (net.isolated.has(s.node) || net.down.has(s.node) || net.severed.size > 0 || isolating() || !rng.chance(0.3)) return;
      const from = new Set(memberIds().filter((m) => net.hostOf(m) !== s.node));
      const delayMs = rng.chance(0.5) ? null : 1_600 + rng.int(1_400);
      net.severed.set(s.node, { from, delayMs });
      const iso = isolation(s);
      count("cut-sequencer");
      world.trace(`cut ${s.node} from ${[...from].join(",")} (${delayMs === null ? "dropped" : `${delayMs} ms late`})`);
      world.setTimer(8_000 + rng.int(12_000), () => {
        iso.healedAtMs = world.now;
        net.severed.delete(s.node);
        world.trace(`mend ${s.node}`);
      });
    });
  }
  // A quorum of remote replicas away from everyone (isolated, or crashed and restarted) for 6 to
  // 18 s, then back, 0 to 30 s apart (flapping too): the sequencer, healthy and reachable throughout, reports a
  // cut-off and must keep its office (its retry reaches them once back). Run alone, a failover
  // is a failure (churn: the first cut-off failover deposed such a sequencer).
  let awayQuietUntilMs = 0;
  if (faults.has("quorum-away")) {
    injectors.push(() => {
      const s = seq();
      if (world.now < awayQuietUntilMs || net.isolated.size > 0 || net.down.size > 0 || isolating() || !rng.chance(0.3)) return;
      const members = memberIds();
      const away = members.filter((m) => net.hostOf(m) !== s.node).slice(0, members.length - Math.floor(members.length / 2));
      const crash = rng.chance(0.5);
      for (const id of away) {
        if (crash) {
          net.down.add(id);
          replicas.get(id)!.crash();
        } else net.isolated.add(id);
      }
      awayQuietUntilMs = Infinity;
      count("quorum-away");
      world.trace(`quorum away: ${away.join(",")} ${crash ? "crashed" : "isolated"}`);
      world.setTimer(6_000 + rng.int(12_000), () => {
        for (const id of away) {
          if (crash) {
            net.down.delete(id);
            replicas.get(id)!.restart();
          } else net.isolated.delete(id);
        }
        world.trace(`quorum back: ${away.join(",")}`);
        awayQuietUntilMs = world.now + rng.int(30_000);
      });
    });
  }
  // Slow but answering: must never be failed over.
  if (faults.has("slow-sequencer")) {
    injectors.push(() => {
      const s = seq();
      if (net.slow.has(s.node)) return;
      net.slow.set(s.node, 100 + rng.int(700));
      count("slow-sequencer");
      world.setTimer(2_000 + rng.int(8_000), () => net.slow.delete(s.node));
    });
  }
  // Every node in the sequencer's location stops answering (the sequencer, the replicas and the
  // clients there, a replica only while a quorum stays elsewhere): the others fail it over.
  if (faults.has("isolate-location")) {
    injectors.push(() => {
      const s = seq();
      const where = net.location.get(s.node) ?? null;
      if (where === null || net.isolated.has(s.node) || isolating() || !rng.chance(0.3)) return;
      // Objects, not replicas: a co-located replica goes with its host's node.
      const here = [...net.location.entries()].filter(([node, loc]) => loc === where && net.hostOf(node) === node).map(([node]) => node);
      let replicasCut = 0;
      const cut = here.filter((n) => {
        const held = memberIds().filter((m) => net.hostOf(m) === n).length;
        if (held === 0) return true;
        if (unavailable() + replicasCut + held > tolerated()) return false;
        replicasCut += held;
        return true;
      });
      if (!cut.includes(s.node)) return;
      for (const n of cut) net.isolated.add(n);
      const iso = isolation(s);
      count("isolate-location");
      world.trace(`isolate location ${where}: ${cut.join(",")}`);
      world.setTimer(8_000 + rng.int(8_000), () => {
        iso.healedAtMs = world.now;
        for (const n of cut) net.isolated.delete(n);
        world.trace(`rejoin location ${where}`);
      });
    });
  }
  /** Whether a corruption may be injected now: once a run, or with corrupt-again whenever none is corrupt. */
  const mayCorrupt = () => (faults.has("corrupt-again") ? [...replicas.values()].every((r) => r.corruptedAtMs === null) : corrupted.size === 0) && unavailable() < tolerated();
  /** Damages a row of a live replica, when one may be (anyRow: any state row, not only the machine's). */
  const corruptOne = (anyRow: boolean) => {
    if (!mayCorrupt()) return;
    const live = memberIds().filter((x) => !net.isDown(x));
    if (live.length === 0) return;
    const id = rng.pick(live);
    if (replicas.get(id)!.corrupt(anyRow)) {
      corrupted.add(id);
      count("corrupt");
      world.trace(`${anyRow ? "corrupt (any row)" : "corrupt"} ${id}`);
    }
  };
  if (faults.has("corrupt")) injectors.push(() => corruptOne(false));
  if (faults.has("reconfigure")) {
    let busy = false;
    let attempts = 0;
    injectors.push(() => {
      if (busy || attempts >= 3) return;
      busy = true;
      attempts++;
      void seq()
        .replaceOne((candidates) => rng.pick(candidates))
        .then((what) => {
          if (what) {
            count("reconfigure");
            world.trace(`replaced ${what}`);
          }
        })
        .finally(() => (busy = false));
    });
  }
  if (faults.has("move-sequencer")) {
    let moving = false;
    injectors.push(() => {
      if (moving || !rng.chance(0.2)) return;
      moving = true;
      void moveSequencer(group, world, net, `c${rng.int(clientCount)}`)
        .then((to) => {
          if (to) count("move-sequencer");
        })
        .finally(() => (moving = false));
    });
  }
  if (faults.has("lose-replica-storage")) {
    injectors.push(() => {
      if (!rng.chance(0.2) || unavailable() >= tolerated()) return;
      // A remote replica (the co-located one loses it with its object: lose-sequencer-storage).
      const remote = memberIds().filter((id) => net.hostOf(id) === id && !net.isDown(id) && replicas.get(id)!.corruptedAtMs === null);
      if (remote.length === 0) return;
      const id = rng.pick(remote);
      const r = replicas.get(id)!;
      net.down.add(id);
      r.crash();
      r.loseStorage();
      count("lose-replica-storage");
      world.trace(`lose storage of ${id}`);
      world.setTimer(100 + rng.int(2_000), () => {
        if (r.retired) return;
        net.down.delete(id);
        r.restart();
        world.trace(`restart ${id} (empty)`);
      });
    });
  }
  if (faults.has("corrupt-any")) injectors.push(() => corruptOne(true));
  const injectLoop = () => {
    if (stopped) return;
    if (injectors.length > 0 && rng.chance(0.5)) rng.pick(injectors)();
    world.setTimer(50 + rng.int(400), injectLoop);
  };
  world.setTimer(100, injectLoop);

  // The auditor, as the cron would run it.
  const checkReport = (verdicts: { id: string; verdict: string; reason?: string }[], seq?: number) => {
    for (const r of verdicts) {
      if (r.verdict === "diverged" && !corrupted.has(r.id)) {
        failures.add(`audit flagged ${r.id} diverged at seq ${seq} (${r.reason}), but it was not corrupted`);
        if ((opts as any).debug) console.log("AUDIT", world.now, JSON.stringify(verdicts));
      }
    }
  };
  const auditLoop = () => {
    const d = seq().driver;
    if (d && !net.down.has(seq().node)) {
      void d.audit().then((report) => {
        count("audit");
        checkReport(report.replicas, report.seq);
      });
    }
    world.setTimer(auditEveryMs, auditLoop);
  };
  world.setTimer(auditEveryMs, auditLoop);
  const observeLoop = () => {
    seq().observe();
    world.setTimer(50, observeLoop);
  };
  observeLoop();
  const watchers: SimWatcher[] = [];
  for (let i = 0; i < (opts.watchers ?? 0); i++) {
    // Half follow everything, half a prefix of the machine's keys.
    const prefix = i % 2 === 0 ? null : machine === "kv" ? rng.pick(["k", "t", "n"]) : machine === "bank" ? rng.pick(["a", "b"]) : rng.pick(["l/", "token"]);
    const w = new SimWatcher(i, world, net, replicas, memberIds, prefix);
    watchers.push(w);
    w.start(() => stopped);
  }

  const loadLimitMs = world.now + opts.ops * 2_000 + 60_000;
  await world.run(loadLimitMs, () => active.size === 0);
  stopped = true;
  const loadEndMs = world.now;

  // Heal: every fault ends; the group must converge.
  net.faults = { dropP: 0, duplicateP: 0, jitterMs: net.faults.jitterMs };
  net.isolated.clear();
  net.slow.clear();
  // Every replica not destroyed, a removed one too (its object comes back at its next call, and
  // the destroy the directory still lists reaches it then).
  for (const r of replicas.values()) {
    if (!r.retired && net.down.has(r.id)) {
      net.down.delete(r.id);
      r.restart();
    }
  }
  for (const s of group.sequencers.values()) restartObject(s);
  world.trace("heal");
  const healStart = world.now;
  const converged = () => {
    const driver = seq().driver;
    if (!driver) return false;
    const core = driver.core;
    if (core.commitSeq !== core.lastLogSeq || active.size > 0) return false;
    // Every replica, the corrupted one too once it is rebuilt, has applied everything.
    const statuses = core.replicaStatuses();
    return statuses.every((s) => s.status === "healthy" && replicas.get(s.id)!.storage.meta?.appliedSeq === core.commitSeq);
  };
  const kickLoop = () => {
    seq().driver?.kickAll();
    world.setTimer(1_000, kickLoop);
  };
  kickLoop();
  await world.run(healStart + healLimitMs, converged);
  if ((opts as any).debug) {
    const core = seq().driver?.core;
    console.log("DEBUG", core?.epoch, core?.commitSeq, core?.lastLogSeq, JSON.stringify(core?.replicaStatuses()), [...corrupted]);
    for (const r of replicas.values()) console.log(r.id, JSON.stringify({ ...r.storage.meta, digest: undefined }), [...r.storage.log.keys()].slice(-5), [...r.storage.log.values()].slice(-3).map((e) => e.epoch));
    console.log("seq log tail", seq().storage.log.slice(-5).map((e) => [e.seq, e.epoch, e.kind]));
  }
  // Every command whose outcome stayed unknown is asked for again (clients.ts, resolve).
  const ackedAtHeal = history.acked.length;
  if (seq().driver) {
    let resolved = 0;
    for (const c of clients) void c.resolve().then(() => resolved++);
    await world.run(world.now + 120_000, () => resolved === clients.length);
    if (resolved < clients.length) failures.add("commands asked again after the heal were not answered in 120 s");
    await world.run(world.now + 30_000, converged);
  }
  // Every removed replica's storage is destroyed once healed: the directory lists those whose
  // destroy failed, and the sequencer in office retries them (at its start and its heartbeats).
  if (seq().driver) {
    // Members once: the first ones and every committed add (a replica provisioned for an add that
    // was refused is not one: its id goes to the next add). Not checked: a replica provisioned for
    // an add whose write-ahead was recorded but whose entry was never appended, which a successor
    // destroys from memory only (finishInherited; the directory never lists it: never in force).
    const added = [...group.dir.archive.values()].filter((e) => e.kind === "config" && (e.command as { op?: string }).op === "add").map((e) => (e.command as { id: string }).id);
    const everMembers = new Set([...replicaIds(config.replicas), ...added]);
    const undestroyed = () => {
      const c = group.dir.config;
      const named = new Set([...membersOf(c), ...(c.inFlight ?? []).flat()].map((m) => m.id));
      return [...replicas.values()].filter((r) => !r.retired && everMembers.has(r.id) && !named.has(r.id)).map((r) => r.id);
    };
    await world.run(world.now + 30_000, () => undestroyed().length === 0 && group.dir.core.retiring(group.dir.incarnation).length === 0);
    if (undestroyed().length > 0) failures.add(`removed replicas never destroyed: ${undestroyed().join(", ")}`);
    const listed = group.dir.core.retiring(group.dir.incarnation);
    if (listed.length > 0) failures.add(`the directory still lists replicas to destroy: ${listed.join(", ")}`);
  }
  // One more audit after convergence: it must find the corrupted replica, and only it.
  if (!seq().driver) {
    failures.add("the sequencer did not recover by the end of the heal phase");
    if (process.env.SIM_STACK) console.log("DEBUG", JSON.stringify(group.dir.config.inFlight), JSON.stringify(group.dir.config.sequencer), [...group.sequencers.keys()], group.failovers, JSON.stringify([...replicas.values()].map((r) => [r.id, r.storage.meta?.epoch, r.storage.meta?.lastSeq, r.storage.meta?.installing ? "installing" : "", r.retired])));
    return { seed: opts.seed, failures: failures.list, trace: world.traceDigest(), stats: { ...counts } };
  }
  // A scrub reads simScrubRows rows an audit, so damage behind the cursor of the pass under way is
  // found by the next pass: audit on (the pass under way and one more at most) until every
  // corrupted replica is found and rebuilt.
  const rowsMax = Math.max(0, ...[...replicas.values()].map((r) => r.storage.rows.scan("", null, Infinity).length));
  const finalAuditsMax = 2 + 2 * Math.ceil(rowsMax / simScrubRows);
  for (let i = 0; i < finalAuditsMax && seq().driver; i++) {
    let finalAudit = false;
    void seq().driver!.audit().then((report) => {
      checkReport(report.replicas);
      finalAudit = true;
    });
    await world.run(world.now + 30_000, () => finalAudit);
    if (!finalAudit) {
      failures.add("the final audit did not finish");
      break;
    }
    if ([...replicas.values()].every((r) => r.corruptedAtMs === null)) break;
    await world.run(world.now + 30_000, () => seq().driver !== null && converged());
  }
  // A fencing in the last moments may have sent the sequencer back into recovery: let it finish.
  await world.run(world.now + 60_000, () => seq().driver !== null);
  if (!seq().driver) {
    failures.add("the sequencer did not recover after the final audit");
    return { seed: opts.seed, failures: failures.list, trace: world.traceDigest(), stats: { ...counts } };
  }
  // A sequencer that recovered just now has not heard from its replicas yet (lagging until then).
  await world.run(world.now + 30_000, converged);

  for (const read of history.reads) {
    if (replicas.get(read.replica)?.wasCorruptAt(read.atMs)) read.fromCorrupted = true;
  }
  // Every watcher catches up with the final log (a connection at a time, after the heal).
  if (watchers.length > 0) {
    const last = seq().driver!.core.commitSeq;
    for (let i = 0; i < 120 && !watchers.every((w) => w.caughtUp(last)); i++) await world.run(world.now + 500);
    for (const w of watchers) if (w.lastId < last) failures.add(`${w.name} stands at ${w.lastId} after the heal, the log at ${last}`);
    // A move begun before the heal may have ended meanwhile: its successor recovers first.
    await world.run(world.now + 60_000, () => seq().driver !== null && converged());
    if (!seq().driver) {
      failures.add("the sequencer did not recover after the watchers caught up");
      return { seed: opts.seed, failures: failures.list, trace: world.traceDigest(), stats: { ...counts } };
    }
  }
  const checkCounts: Record<string, number> = {};
  const checked = runCheckers({ config, sequencer: seq(), replicas, history, corrupted, bankSetupSeq, counts: checkCounts, watchers });
  // Slow but answering is no reason to fail a sequencer over either (see the injector above):
  // with only these two kinds, every failover deposed a healthy sequencer.
  if (opts.faults.includes("quorum-away") && opts.faults.every((f) => f === "quorum-away" || f === "slow-sequencer") && group.failovers.length > 0) {
    checked.push(`a healthy sequencer was failed over ${group.failovers.length} times while replicas were away and back (churn)`);
  }
  const livenessChecked = opts.faults.every((f) => livenessFaults.has(f));
  // Liveness after an isolated sequencer: the next write acknowledged (by a successor, or by it
  // once back) comes within a bound.
  // An isolation followed by another before any write was acknowledged (the successor cut off
  // before its first) has no resume of its own: the next one's bound covers that stretch.
  for (const [i, iso] of isolations.entries()) {
    // Writes of the load only: the answers to commands asked again after the heal are not resumes.
    const next = history.acksBy.find((a) => a.atMs > iso.atMs && a.atMs <= loadEndMs);
    const interrupted = next !== undefined && i + 1 < isolations.length && isolations[i + 1]!.atMs < next.atMs;
    iso.resumedMs = next && !interrupted ? next.atMs - iso.atMs : null;
    iso.resumedBy = next?.sequencer;
    if (livenessChecked && iso.boundMs !== null && iso.resumedMs !== null && iso.resumedMs > iso.boundMs) checked.push(`writes resumed ${iso.resumedMs} ms after ${iso.sequencer} was isolated (bound ${iso.boundMs} ms)`);
  }
  const resumes = isolations.map((i) => i.resumedMs).filter((x): x is number => x !== null).sort((a, b) => a - b);
  // From the isolation to the first write acknowledged after it, where a successor acknowledged
  // it (a takeover). Where the isolated sequencer acknowledged first (back before anyone took
  // over), there was no takeover: a later failover for another reason is not this one's.
  // Only from a steady state: not within a failover's hold-down, with clients outside at work.
  const takeovers = isolations
    .filter((iso) => iso.boundMs === resumeBoundMs && iso.resumedMs !== null && iso.resumedBy !== iso.sequencer)
    .map((iso) => iso.resumedMs!);
  const all = [...failures.list, ...checked];
  const core = seq().driver!.core;
  return {
    seed: opts.seed,
    failures: all,
    ...(opts.geo ? { geo: { latencies: percentiles(history), takeoverMs: takeovers } } : {}),
    trace: world.traceDigest(),
    stats: {
      outputs,
      commitSeq: core.commitSeq,
      acked: history.acked.length,
      unknown: history.operations.filter((o) => o.return === null).length,
      resolved: history.acked.length - ackedAtHeal,
      refused: history.refused.length,
      reads: history.reads.length,
      events: world.events,
      virtualMs: world.now,
      healMs: world.now - healStart,
      epoch: core.epoch,
      transfers: seq().transfers,
      failovers: group.failovers.length,
      ...(group.moves > 0 ? { moves: group.moves } : {}),
      requarantined: [...replicas.values()].reduce((n, r) => n + r.requarantined, 0),
      ...(watchers.length > 0 ? { watchEvents: watchers.reduce((n, w) => n + w.events.length, 0), watchConnections: watchers.reduce((n, w) => n + w.connections, 0), watchResyncs: watchers.reduce((n, w) => n + w.resyncs.length, 0) } : {}),
      refusedFailovers: group.refusedFailovers,
      cutOffFailovers: group.cutOffFailovers,
      ...(resumes.length > 0 ? { resumeMsMax: resumes[resumes.length - 1]!, resumeMsP50: resumes[Math.floor(resumes.length / 2)]! } : {}),
      ...(takeovers.length > 0 ? { takeoverMs: Math.max(...takeovers) } : {}),
      compactedTo: core.baseSeq,
      // The most applied entries a replica's log holds behind its applied position (compaction).
      replicaLogMax: Math.max(0, ...[...replicas.values()].map((r) => (r.retired || !r.storage.meta ? 0 : r.storage.meta.appliedSeq - r.storage.meta.baseSeq))),
      ...(config.sessionIdleMs !== undefined ? { sessionIdleMs: config.sessionIdleMs, forgotten: checkCounts.forgotten ?? 0 } : {}),
      ...(world.sleepAfterMs !== undefined ? { sleepAfterMs: world.sleepAfterMs, sleeps: [...group.sequencers.values()].reduce((n, s) => n + s.sleeps, 0) } : {}),
      ...(config.colocated ? { colocated: config.colocated, rejoins: [...replicas.values()].reduce((n, r) => n + r.rejoins, 0) } : {}),
      messages: net.sent,
      dropped: net.dropped,
      ...counts,
    },
  };
}
