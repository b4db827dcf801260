// One simulation: a group, clients, injected faults, a heal phase, then every checker.
import { majority, type GroupConfig } from "../../shared/protocol/types.js";
import type { MachineName, OutputsMode } from "../../shared/api/types.js";
import { bankAccounts, runCheckers } from "./checkers.js";
import { type ClientHistory, SimClient } from "./clients.js";
import { Failures, makeGroup, type Variant } from "./nodes.js";
import { Prng } from "./prng.js";
import { Network, World } from "./world.js";

export const faultKinds = ["drop", "duplicate", "reorder", "partition", "crash-replica", "crash-sequencer", "lose-sequencer-storage", "corrupt", "reconfigure"] as const;
export type FaultKind = (typeof faultKinds)[number];

export interface SimOptions {
  seed: number;
  ops: number;
  replicas: number;
  faults: FaultKind[];
  machine?: MachineName;
  clients?: number;
  variant?: Variant;
}

export interface SimResult {
  seed: number;
  failures: string[];
  trace: string;
  stats: Record<string, number | string>;
}

export function reproduce(o: SimOptions): string {
  const parts = [`npm run sim -- --seed ${o.seed} --ops ${o.ops} --replicas ${o.replicas} --faults ${o.faults.join(",") || "none"}`];
  if (o.machine && o.machine !== "kv") parts.push(`--machine ${o.machine}`);
  if (o.variant && o.variant !== "correct") parts.push(`--variant ${o.variant}`);
  return parts.join(" ");
}

const auditEveryMs = 2_000;
const healLimitMs = 180_000;

export async function simulate(opts: SimOptions): Promise<SimResult> {
  // A broken invariant inside a driver's loop surfaces as an unhandled rejection: a failure of
  // this run, not a crash of the simulator.
  const failures = new Failures();
  const onUnhandled = (err: unknown) => failures.add(`unhandled: ${err instanceof Error ? err.message : String(err)}`);
  process.on("unhandledRejection", onUnhandled);
  try {
    return await simulateWith(opts, failures);
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
}

async function simulateWith(opts: SimOptions, failures: Failures): Promise<SimResult> {
  const rng = new Prng(opts.seed);
  const world = new World(rng);
  const net = new Network(world);
  const faults = new Set(opts.faults);
  const machine: MachineName = opts.machine ?? "kv";
  // Corruption can only be outvoted when outputs are voted on.
  const outputs: OutputsMode = faults.has("corrupt") ? "majority" : rng.pick(["first", "majority"] as const);
  const config: GroupConfig = {
    group: "sim",
    incarnation: 0,
    machine,
    replicas: opts.replicas,
    locations: [],
    outputs,
    checkpointEvery: 5 + rng.int(20),
  };
  const { replicas, sequencer } = makeGroup(config, world, net, failures, opts.variant ?? "correct");
  // The members change with reconfiguration: always ask.
  const memberIds = () => [...replicas.values()].filter((r) => !r.retired).map((r) => r.id);
  const tolerated = opts.replicas - majority(opts.replicas);
  const history: ClientHistory = { operations: [], acked: [], refused: [], reads: [], unexpected: [] };
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
    const setup = new SimClient(999, world, net, () => sequencer, replicas, machine, history);
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
  let running = clientCount;
  for (let i = 0; i < clientCount; i++) {
    const c = new SimClient(i, world, net, () => sequencer, replicas, machine as "kv" | "bank", history);
    const share = Math.floor(opts.ops / clientCount) + (i < opts.ops % clientCount ? 1 : 0);
    void c.run(share, () => stopped).then(() => running--);
  }

  // Faults, bounded so a majority stays reachable most of the time.
  const unavailable = () => memberIds().filter((id) => net.down.has(id) || net.isolated.has(id)).length;
  const injectors: (() => void)[] = [];
  if (faults.has("crash-replica")) {
    injectors.push(() => {
      const up = memberIds().filter((id) => !net.down.has(id) && !net.isolated.has(id));
      if (unavailable() >= tolerated || up.length === 0) return;
      const id = rng.pick(up);
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
  const takeSequencerDown = (kind: FaultKind, loseStorage: boolean) => {
    net.down.add("seq");
    sequencer.crash();
    if (loseStorage) sequencer.loseStorage();
    count(kind);
    world.trace(loseStorage ? "lose seq storage" : "crash seq");
    world.setTimer(50 + rng.int(1_000), () => {
      net.down.delete("seq");
      sequencer.restart();
      world.trace(loseStorage ? "restart seq (empty)" : "restart seq");
    });
  };
  if (faults.has("crash-sequencer")) {
    injectors.push(() => {
      if (!net.down.has("seq")) takeSequencerDown("crash-sequencer", false);
    });
  }
  if (faults.has("lose-sequencer-storage")) {
    injectors.push(() => {
      // Rare: each loss starts a new epoch. The sequencer comes back empty and recovers.
      if (net.down.has("seq") || !rng.chance(0.05)) return;
      takeSequencerDown("lose-sequencer-storage", true);
    });
  }
  if (faults.has("partition")) {
    injectors.push(() => {
      const candidates = ["seq", ...memberIds()].filter((id) => !net.isolated.has(id) && !net.down.has(id));
      const id = rng.pick(candidates);
      if (id !== "seq" && unavailable() >= tolerated) return;
      net.isolated.add(id);
      count("partition");
      world.trace(`isolate ${id}`);
      world.setTimer(100 + rng.int(1_500), () => {
        net.isolated.delete(id);
        world.trace(`rejoin ${id}`);
      });
    });
  }
  if (faults.has("corrupt")) {
    injectors.push(() => {
      if (corrupted.size > 0 || tolerated === 0) return;
      const live = memberIds().filter((x) => !net.down.has(x));
      if (live.length === 0) return;
      const id = rng.pick(live);
      if (replicas.get(id)!.corrupt()) {
        corrupted.add(id);
        count("corrupt");
        world.trace(`corrupt ${id}`);
      }
    });
  }
  if (faults.has("reconfigure")) {
    let busy = false;
    let attempts = 0;
    injectors.push(() => {
      if (busy || attempts >= 3) return;
      busy = true;
      attempts++;
      void sequencer
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
    const d = sequencer.driver;
    if (d && !net.down.has("seq")) {
      void d.audit().then((report) => {
        count("audit");
        checkReport(report.replicas, report.seq);
      });
    }
    world.setTimer(auditEveryMs, auditLoop);
  };
  world.setTimer(auditEveryMs, auditLoop);
  const observeLoop = () => {
    sequencer.observe();
    world.setTimer(50, observeLoop);
  };
  observeLoop();

  const loadLimitMs = world.now + opts.ops * 2_000 + 60_000;
  await world.run(loadLimitMs, () => running === 0);
  stopped = true;

  // Heal: every fault ends; the group must converge.
  net.faults = { dropP: 0, duplicateP: 0, jitterMs: net.faults.jitterMs };
  net.isolated.clear();
  for (const id of memberIds()) {
    if (net.down.has(id)) {
      net.down.delete(id);
      replicas.get(id)!.restart();
    }
  }
  if (net.down.has("seq")) {
    net.down.delete("seq");
    sequencer.restart();
  }
  world.trace("heal");
  const healStart = world.now;
  const converged = () => {
    if (!sequencer.driver) return false;
    const core = sequencer.driver.core;
    if (core.commitSeq !== core.lastLogSeq || running > 0) return false;
    // Every replica, the corrupted one too once it is rebuilt, has applied everything.
    const statuses = core.replicaStatuses();
    return statuses.every((s) => s.status === "healthy" && replicas.get(s.id)!.storage.meta!.appliedSeq === core.commitSeq);
  };
  const kickLoop = () => {
    sequencer.driver?.kickAll();
    world.setTimer(1_000, kickLoop);
  };
  kickLoop();
  await world.run(healStart + healLimitMs, converged);
  if ((opts as any).debug) {
    const core = sequencer.driver?.core;
    console.log("DEBUG", core?.epoch, core?.commitSeq, core?.lastLogSeq, JSON.stringify(core?.replicaStatuses()), [...corrupted]);
    for (const r of replicas.values()) console.log(r.id, JSON.stringify({ ...r.storage.meta, digest: undefined }), [...r.storage.log.keys()].slice(-5), [...r.storage.log.values()].slice(-3).map((e) => e.epoch));
    console.log("seq log tail", sequencer.storage.log.slice(-5).map((e) => [e.seq, e.epoch, e.kind]));
  }
  // One more audit after convergence: it must find the corrupted replica, and only it.
  if (!sequencer.driver) {
    failures.add("the sequencer did not recover by the end of the heal phase");
    return { seed: opts.seed, failures: failures.list, trace: world.traceDigest(), stats: { ...counts } };
  }
  let finalAudit = false;
  void sequencer.driver.audit().then((report) => {
    checkReport(report.replicas);
    finalAudit = true;
  });
  await world.run(world.now + 30_000, () => finalAudit);
  if (!finalAudit) failures.add("the final audit did not finish");
  // A fencing in the last moments may have sent the sequencer back into recovery: let it finish.
  await world.run(world.now + 60_000, () => sequencer.driver !== null);
  if (!sequencer.driver) {
    failures.add("the sequencer did not recover after the final audit");
    return { seed: opts.seed, failures: failures.list, trace: world.traceDigest(), stats: { ...counts } };
  }

  for (const read of history.reads) {
    if (replicas.get(read.replica)?.wasCorruptAt(read.atMs)) read.fromCorrupted = true;
  }
  const checked = runCheckers({ config, sequencer, replicas, history, corrupted, bankSetupSeq });
  const all = [...failures.list, ...checked];
  const core = sequencer.driver!.core;
  return {
    seed: opts.seed,
    failures: all,
    trace: world.traceDigest(),
    stats: {
      outputs,
      commitSeq: core.commitSeq,
      acked: history.acked.length,
      unknown: history.operations.filter((o) => o.return === null).length,
      refused: history.refused.length,
      reads: history.reads.length,
      events: world.events,
      virtualMs: world.now,
      healMs: world.now - healStart,
      epoch: core.epoch,
      transfers: sequencer.transfers,
      compactedTo: core.baseSeq,
      messages: net.sent,
      dropped: net.dropped,
      ...counts,
    },
  };
}
