import { describe, expect, it } from "vitest";
import { rttMs } from "../../shared/geo.js";
import { extraFaultKinds, faultKinds, laterFaultKinds, reproduce, simulate, type SimOptions } from "./run.js";
import { simRetention } from "./nodes.js";

async function clean(o: SimOptions) {
  const r = await simulate(o);
  expect(r.failures, `${r.failures.join("\n")}\nreproduce: ${reproduce(o)}`).toEqual([]);
  return r;
}

describe("deterministic simulation: fixed seeds, every checker", () => {
  for (const fault of faultKinds) {
    it(`kv, 3 replicas, ${fault}`, async () => {
      // Seeds from 11 on, every one clean, until one has injected the fault (storage loss is rare
      // per run; which seed draws it moves whenever the protocol's timing does).
      const injected = (r: { stats: Record<string, unknown> }) => ["drop", "duplicate", "reorder"].includes(fault) || Number(r.stats[fault] ?? 0) > 0;
      // A location's isolation needs the geography model (nodes with locations).
      const geo = fault === "isolate-location" ? { geo: { locations: ["wnam", "weur", "apac"], sequencer: "wnam" } } : {};
      let r = await clean({ seed: 11, ops: 200, replicas: 3, faults: [fault], ...geo });
      for (let seed = 12; !injected(r) && seed < 41; seed++) r = await clean({ seed, ops: 200, replicas: 3, faults: [fault], ...geo });
      expect(Number(r.stats.acked)).toBeGreaterThan(100);
      expect(injected(r), `no seed in 11..40 injected ${fault}`).toBe(true);
    });
  }

  it("kv, 3 replicas, every fault at once", async () => {
    const r = await clean({ seed: 12, ops: 300, replicas: 3, faults: [...faultKinds] });
    for (const f of ["crash-replica", "crash-sequencer", "partition", "corrupt", "lose-sequencer-storage"]) expect(Number(r.stats[f] ?? 0)).toBeGreaterThan(0);
    expect(Number(r.stats.epoch)).toBeGreaterThan(1);
    expect(Number(r.stats.dropped)).toBeGreaterThan(0);
  });

  it("sessions that expire under every fault kind: every replica forgets the same clients at the same seqs as the reference, and a forgotten client's retry is checked", async () => {
    // Windows far shorter than the faults (3 s; partitions last tens of seconds): clients are
    // forgotten mid-retry, so a retry meets "expired" (checked: only a forgotten client's) or runs
    // again (checked: only after its client was forgotten; linearizability counts both effects).
    for (const [seed, sessionIdleMs] of [[21, 3_000], [22, 3_000], [23, 20_000]] as const) {
      const o: SimOptions = { seed, ops: 200, replicas: 3, faults: [...faultKinds], batches: true, colocate: true, sessionIdleMs };
      const r = await clean(o);
      expect(Number(r.stats.forgotten), `seed ${seed}`).toBeGreaterThan(0);
    }
  });

  it("logs kept to a few kilobytes (compaction by bytes, a tiny quota's budget), under every fault kind: replicas' logs hold fewer entries than the entries window, nothing is lost", async () => {
    for (const seed of [26, 27]) {
      const o: SimOptions = { seed, ops: 300, replicas: 3, faults: [...faultKinds], batches: true, colocate: true, logBytes: 3_000 };
      const r = await clean(o);
      // Replicas compacted past the entries window (simRetention: 40 behind, in steps of 10);
      // the sequencer's may be held back at the end by a replica still catching up.
      expect(Number(r.stats.replicaLogMax), `seed ${seed}`).toBeLessThan(simRetention.entries);
      expect(Number(r.stats.compactedTo), `seed ${seed}`).toBeGreaterThan(0);
    }
  });

  it("regression: seeds 2927 and 2923, windows of 1 s (a command run three times, its client forgotten before each rerun, was counted as two effects: the linearizability check failed a correct history)", async () => {
    // --replicas 5 --faults all+ --session-idle 1000 --sleep-after 1000 --log-bytes 1500
    for (const seed of [2927, 2923]) {
      const r = await clean({ seed, ops: 300, replicas: 5, faults: [...faultKinds, ...extraFaultKinds, ...laterFaultKinds], batches: true, colocate: true, sessionIdleMs: 1_000, sleepAfterMs: 1_000, logBytes: 1_500 });
      expect(Number(r.stats.forgotten), `seed ${seed}`).toBeGreaterThan(0);
    }
  });

  it("groups that sleep in quiet times, under every fault kind: sleeps and wakes happen, nothing is lost, the group fails over and resumes", async () => {
    // Quiet cycles (World.quietUntilMs) let the sequencer sleep between bursts of work; isolations,
    // crashes and lost storage land on sleeping groups too (a PreVote then wakes the replicas).
    // Seed 26, not 25: a change of the message flow (quarantine stamps) left 25 without a quiet spell long enough to sleep in.
    for (const [seed, sleepAfterMs] of [[24, 1_000], [26, 3_000]] as const) {
      const o: SimOptions = { seed, ops: 300, replicas: 3, faults: [...faultKinds], batches: true, colocate: true, sleepAfterMs };
      const r = await clean(o);
      expect(Number(r.stats.sleeps), `seed ${seed}`).toBeGreaterThan(0);
      expect(Number(r.stats.failovers), `seed ${seed}`).toBeGreaterThan(0);
    }
  });

  it("regression: seeds 1320603362 and 1340096827 (up to 133 commands of unknown outcome: the linearizability search gave up; now each is asked again after the heal)", async () => {
    for (const seed of [1320603362, 1340096827]) {
      const r = await clean({ seed, ops: 300, replicas: 3, faults: [...faultKinds], batches: true, colocate: true });
      // Each still leaves many outcomes unknown at the heal (30 and 14 since the directory's calls
      // take simulated time; over 20 each before), every one of them asked again and resolved.
      expect(Number(r.stats.resolved), `seed ${seed}`).toBeGreaterThan(10);
      expect(r.stats.unknown, `seed ${seed}`).toBe(0);
    }
  });

  it("regression: seed 1066322991 (a replica rebuilding after a rejoin answered a retry's session question 'missing': with outputs 'first' that alone told the retry of an executed command its request id had expired)", async () => {
    await clean({ seed: 1066322991, ops: 300, replicas: 3, faults: ["reconfigure", "lose-sequencer-storage", "crash-sequencer", "drop", "partition", "crash-replica"], batches: true, colocate: true });
  }, 120_000);

  it("regression: seed 1907071619 (a linearizable read saw a put, the next at another replica did not: the read index was commitSeq, below a commit sent to a replica whose ack was lost)", async () => {
    await clean({ seed: 1907071619, ops: 300, replicas: 3, faults: [...faultKinds], batches: true, colocate: true });
  });

  it("kv, 5 replicas, every fault at once", async () => {
    await clean({ seed: 13, ops: 300, replicas: 5, faults: [...faultKinds] });
  });

  it("bank, 3 and 5 replicas, every fault at once: totals conserved, no negative balance", async () => {
    await clean({ seed: 14, ops: 250, replicas: 3, faults: [...faultKinds], machine: "bank" });
    await clean({ seed: 15, ops: 250, replicas: 5, faults: [...faultKinds], machine: "bank" });
  });

  it("1 replica, crashes of the sequencer and the replica", async () => {
    await clean({ seed: 16, ops: 150, replicas: 1, faults: ["crash-sequencer", "drop", "reorder"] });
  });

  it("regression: seed 1 (a stopped sequencer incarnation wrote its stale commitSeq back)", async () => {
    // Found with the stale-reads variant; the bug was in the driver, so it must not recur there either.
    const r = await simulate({ seed: 1, ops: 200, replicas: 3, faults: [...faultKinds], variant: "stale-reads" });
    expect(r.failures.filter((f) => /backwards|invariant/.test(f))).toEqual([]);
    await clean({ seed: 1, ops: 200, replicas: 3, faults: [...faultKinds] });
  });

  it("the same seed gives the same run, event for event", async () => {
    const o: SimOptions = { seed: 99, ops: 120, replicas: 3, faults: [...faultKinds] };
    const a = await simulate(o);
    const b = await simulate(o);
    expect(a.trace).toBe(b.trace);
    expect(a.stats).toEqual(b.stats);
    const c = await simulate({ ...o, seed: 100 });
    expect(c.trace).not.toBe(a.trace);
  });
  it("regression: seed 2032590062 (in majority mode a retry was answered from one replica's session table, a corrupted one)", async () => {
    await clean({ seed: 2032590062, ops: 300, replicas: 3, faults: ["drop", "duplicate", "reorder", "partition", "crash-replica", "crash-sequencer", "corrupt"] });
  });

  it("regression: slow-sequencer,quorum-away seeds 856764203 and 1669690215 (a PreVote that did not count a voter hearing a cut-off sequencer deposed a slow one)", async () => {
    for (const seed of [856764203, 1669690215]) await clean({ seed, ops: 300, replicas: 3, faults: ["slow-sequencer", "quorum-away"], batches: true, colocate: true });
  });

  it("regression: seed 1042938228 (a duplicated submit: one copy refused 503 'recovering', the other ordered; the harness took the command as certainly not ordered)", async () => {
    await clean({ seed: 1042938228, ops: 300, replicas: 3, faults: [...faultKinds], batches: true, colocate: true });
  });

  it("regression: seeds 253300275 and 2021705378 (the harness held a rebuilt replica to its pre-transfer position and treated reads served before the rebuild as healthy)", async () => {
    for (const seed of [253300275, 2021705378]) await clean({ seed, ops: 300, replicas: 3, faults: [...faultKinds] });
  });

  it("regression: seed 652764441 (the audit scrubbed a replica halfway through a state transfer and called it diverged)", async () => {
    await clean({ seed: 652764441, ops: 300, replicas: 3, faults: [...faultKinds] });
  });

  it("regression: bank seed 14 (a replica restarted halfway through a state transfer forgot it was rebuilding)", async () => {
    await clean({ seed: 14, ops: 250, replicas: 3, faults: [...faultKinds], machine: "bank" });
  });

  it("regression: seeds 1172456005, 2022064775, 1765191583, 642679001 (a sequencer recovering with a stale registry fenced the old membership and lost an entry committed by the new one)", async () => {
    for (const seed of [1172456005, 2022064775, 1765191583, 642679001]) await clean({ seed, ops: 300, replicas: 3, faults: [...faultKinds] });
  });

  it("regression: seeds 189323327, 2060157833, 295979644 (a double restart ran two sequencer incarnations; a replica left halfway through a transfer by a dead sequencer was never rebuilt)", async () => {
    for (const seed of [189323327, 2060157833, 295979644, 498326633]) await clean({ seed, ops: 300, replicas: 3, faults: [...faultKinds] });
  });

  it("regression: bank seed 1149093191 (the harness counted reads before every account was open)", async () => {
    await clean({ seed: 1149093191, ops: 300, replicas: 5, faults: [...faultKinds], machine: "bank" });
  });

  it("regression: bank seed 580815611 (every answer carrying a committed command's output was lost; its retries waited for an output that never came, and timed out forever)", async () => {
    await clean({ seed: 580815611, ops: 300, replicas: 3, faults: [...faultKinds], machine: "bank" });
  });

  // The run that found it; with today's fault budget it takes another course, so the unit test
  // in protocol.test.ts ("a replica being rebuilt accepts no fence") is what fails without the fix.
  it("seed 1011823589 runs clean (it found a failover's recovery counting a replica halfway through a state transfer, whose log was cleared, losing seven acknowledged commands; protocol.test.ts is that bug's regression test now)", async () => {
    await clean({ seed: 1011823589, ops: 300, replicas: 3, faults: [...faultKinds] });
  });

  it("regression: seed 1438301466 (a repair whose source failed at once was retried at once, for ever: the run never left one virtual instant)", async () => {
    await clean({ seed: 1438301466, ops: 300, replicas: 3, faults: [...faultKinds] });
  });

  it("regression: seeds 75648447 and 333748949 (the harness's replacement removed a voter while the new replica was a non-voter being rebuilt, leaving two voters, one of them mid-transfer: no recovery could fence a quorum)", async () => {
    for (const seed of [75648447, 333748949]) await clean({ seed, ops: 300, replicas: 3, faults: [...faultKinds] });
  });

  it("regression: seed 335296893 (the harness lost one replica's storage while another was corrupted, two faults of three: once both were being rebuilt no recovery could fence a quorum)", async () => {
    await clean({ seed: 335296893, ops: 300, replicas: 3, faults: [...faultKinds] });
  });

  it("regression: seed 1730814463 (the first sequencer, cut off before any append got out, and its successor both took epoch 1)", async () => {
    await clean({ seed: 1730814463, ops: 300, replicas: 3, faults: [...faultKinds] });
  });

  it("regression: seed 108817061 (every repair copied from the corrupted co-located replica and failed its digest check; the rebuilt-never replicas were quarantined, and the corrupted one decided outputs alone)", async () => {
    await clean({ seed: 108817061, ops: 300, replicas: 3, faults: [...faultKinds] });
  });

  it("regression: seed 1041128435 (the pass under way had read the row before it was corrupted; the harness's one final audit ended before the next pass reached it)", async () => {
    const r = await clean({ seed: 1041128435, ops: 300, replicas: 3, faults: ["corrupt", "crash-sequencer", "lose-sequencer-storage", "crash-replica"], batches: true, colocate: true });
    expect(r.stats.corrupt).toBe(1);
    expect(Number(r.stats.transfers)).toBeGreaterThan(0);
  });

  it("regression: seed 1189255685 (the harness injected a lost storage into a membership of two voters, beyond what it survives: the group never recovered)", async () => {
    await clean({ seed: 1189255685, ops: 300, replicas: 3, faults: [...faultKinds] });
  });
});

describe("sequencer failover in the simulator (the real PreVote, lifecycle and recovery)", () => {
  it("an isolated sequencer is replaced once a quorum of voters lost it; writes resume within the bound; one sequencer per epoch", async () => {
    let taken = 0;
    for (let seed = 1; seed <= 6; seed++) {
      const r = await clean({ seed, ops: 300, replicas: 3, faults: ["isolate-sequencer", "drop", "reorder"] });
      if (Number(r.stats.failovers) > 0) {
        taken++;
        expect(Number(r.stats.takeoverMs)).toBeLessThan(20_000);
        expect(Number(r.stats.epoch)).toBeGreaterThan(1);
      }
    }
    expect(taken).toBeGreaterThan(0);
  });

  it("regression: seeds 1463748935, 109684840, 1113006210 (a deposed sequencer wiped a healthy replica by state transfer; a replica halfway through one, its log cleared, reported its old positions to a recovery)", async () => {
    for (const seed of [1463748935, 109684840, 1113006210]) await clean({ seed, ops: 300, replicas: 3, faults: [...faultKinds] });
  });

  it("regression: seeds 657966582, 1637251195, 185789746, 2078614866 (a deposed sequencer restarted without storage recovered and fenced its successor; the two deposed each other at ever higher epochs)", async () => {
    for (const seed of [657966582, 1637251195, 185789746, 2078614866]) await clean({ seed, ops: 300, replicas: 3, faults: [...faultKinds] });
  });

  it("the geography model: a client reads at its nearest replica, and a location's isolation fails the sequencer over to another location", async () => {
    const r = await clean({ seed: 1, ops: 200, replicas: 3, faults: ["isolate-location"], geo: { locations: ["wnam", "weur", "apac"], sequencer: "wnam" } });
    expect(Number(r.stats.failovers)).toBeGreaterThan(0);
    const near = await clean({ seed: 2, ops: 300, replicas: 3, faults: [], geo: { locations: ["wnam", "weur", "apac"], sequencer: "wnam" } });
    // Sequential and stale reads never leave the reader's location (one-way 1 ms within it).
    for (const [at, kinds] of Object.entries(near.geo!.latencies)) {
      for (const k of ["sequential", "stale"]) {
        expect(kinds[k], `${at} ${k}: no reads of that kind`).toBeDefined();
        expect(kinds[k]!.p99, `${at} ${k}`).toBeLessThan(20);
      }
      if (at !== "wnam") expect(kinds.write!.p50, at).toBeGreaterThan(100); // the sequencer is in wnam
    }
  });

  it("a slow sequencer that answers is never failed over", async () => {
    for (let seed = 1; seed <= 5; seed++) {
      const r = await clean({ seed, ops: 200, replicas: 3, faults: ["slow-sequencer"] });
      expect(Number(r.stats["slow-sequencer"] ?? 0)).toBeGreaterThan(0);
      expect(r.stats.failovers).toBe(0);
    }
  });
});

describe("leader-as-replica: the first sequencer's object hosts a voting replica", () => {
  it("every fault kind at once, 3 and 5 replicas: the replica goes down, is cut off and loses its storage with its object", async () => {
    for (const seed of [21, 22, 23, 24]) {
      const r = await clean({ seed, ops: 200, replicas: seed % 2 ? 3 : 5, faults: [...faultKinds], colocate: true, batches: true });
      expect(r.stats.colocated).toBe("r1");
      expect(Number(r.stats.acked)).toBeGreaterThan(20);
      expect(Number(r.stats["crash-sequencer"] ?? 0) + Number(r.stats["isolate-sequencer"] ?? 0)).toBeGreaterThan(0);
    }
  });

  it("in the geography model a write waits at most for an append in flight to the nearest other replica and one round trip to it (outputs majority)", async () => {
    // The sequencer and its co-located replica in wnam; apac is the nearest other replica. A
    // command ordered while an append is in flight to apac goes in the next one, whose message
    // must carry its commit (the co-located replica stored it first), so apac answers with the
    // output at once. Before the direct replica's turn was taken ahead of its flush, a remote
    // message was often built before the co-located replica stored the entries, and the answer
    // waited for another round trip: seeds 1, 4 and 5 had a wnam p99 of 259 to 261 ms (weur's
    // round trip twice) where this bound is 205.
    const where = { locations: ["wnam", "weur", "apac"], sequencer: "wnam" };
    const quorumMs = rttMs("wnam", "apac");
    for (let seed = 1; seed <= 5; seed++) {
      const r = await clean({ seed, ops: 200, replicas: 3, faults: [], geo: where, colocate: true, batches: true });
      expect(r.stats.colocated).toBe("r1");
      for (const [at, kinds] of Object.entries(r.geo!.latencies)) {
        expect(kinds.write!.p99, `seed ${seed}, a write from ${at}`).toBeLessThanOrEqual(rttMs(at, "wnam") + 2 * quorumMs + 5);
      }
    }
  });

  it("a storage loss of the object: the sequencer recovers from the others, its replica is made again and rebuilt", async () => {
    // Seeds from 31 on until one has lost the object's storage (and so made the replica again).
    let r = await clean({ seed: 31, ops: 200, replicas: 3, faults: ["lose-sequencer-storage", "crash-replica", "drop"], colocate: true });
    for (let seed = 32; Number(r.stats.rejoins) === 0 && seed < 61; seed++) r = await clean({ seed, ops: 200, replicas: 3, faults: ["lose-sequencer-storage", "crash-replica", "drop"], colocate: true });
    expect(Number(r.stats.rejoins), "no seed in 31..60 lost the object's storage").toBeGreaterThan(0);
    expect(Number(r.stats.epoch)).toBeGreaterThan(1);
  });

  it("regression: seed 1690053799 (a promotion whose commit came too late stayed in flight in the directory; after the object lost its storage the old membership's two voters, one of them the lost replica, were demanded for ever)", async () => {
    await clean({ seed: 1690053799, ops: 200, replicas: 3, faults: [...faultKinds], colocate: true, batches: true });
    // Since the fault budget follows the membership in force, that seed's run takes another
    // course: the first seed from 1 whose object loses its storage around a reconfiguration.
    const shaped = (r: { stats: Record<string, unknown> }) => Number(r.stats["lose-sequencer-storage"]) > 0 && Number(r.stats.reconfigure) > 0 && Number(r.stats.epoch) > 1;
    let r = await clean({ seed: 1, ops: 200, replicas: 3, faults: [...faultKinds], colocate: true, batches: true });
    // (Up to 60: which seed draws it moves with the protocol's timing; none of 1..30 did after the
    // cut-off PreVote's early go, b8ff03a, and seed 35 does.)
    for (let seed = 2; !shaped(r) && seed <= 60; seed++) r = await clean({ seed, ops: 200, replicas: 3, faults: [...faultKinds], colocate: true, batches: true });
    expect(shaped(r), "no seed in 1..60 lost the object's storage around a reconfiguration").toBe(true);
  });

  it("a sequencer cut off from its replicas (dropped or late) is replaced within the bound, by its own report of no quorum", async () => {
    let cutOff = 0;
    for (const seed of [5, 6, 7]) {
      const r = await clean({ seed, ops: 300, replicas: 3, faults: ["cut-sequencer"] });
      cutOff += Number(r.stats.cutOffFailovers);
    }
    expect(cutOff).toBeGreaterThan(0);
  });

  it("regression: quorum-away seeds 1412393983 and 1997462469 (a healthy sequencer deposed when its replicas came back: a retry of a committed command held a router past its timeout, or a lease wait longer than needed)", async () => {
    for (const seed of [1412393983, 1997462469]) {
      const r = await clean({ seed, ops: 300, replicas: 3, faults: ["quorum-away"], colocate: true, batches: true });
      expect(Number(r.stats.failovers)).toBe(0);
    }
  });

  it("regression: quorum-away --replicas 5 --no-colocate seeds 1710661176 and 168052263 (a quorum back for the cut-off PreVote's first round, away again, and back 0.1 s before its second: a healthy sequencer deposed before its retry reached them)", async () => {
    for (const seed of [1710661176, 168052263]) {
      const r = await clean({ seed, ops: 400, replicas: 5, faults: ["quorum-away"], outputs: "first", colocate: false, batches: true });
      expect(Number(r.stats.failovers), `seed ${seed}`).toBe(0);
    }
  });

  it("the object cut off: a successor elsewhere takes over within the bound while two of three replicas answer", async () => {
    let failovers = 0;
    for (const seed of [41, 42, 43]) {
      const r = await clean({ seed, ops: 250, replicas: 3, faults: ["isolate-sequencer", "drop"], colocate: true });
      failovers += Number(r.stats.failovers);
    }
    expect(failovers).toBeGreaterThan(0);
  });
});

describe("the simulator catches a deliberately broken protocol", () => {
  async function caughtWithin(variant: SimOptions["variant"], faults: SimOptions["faults"], seeds: number[], pattern: RegExp) {
    for (const seed of seeds) {
      const r = await simulate({ seed, ops: 300, replicas: 3, faults, variant });
      if (r.failures.some((f) => pattern.test(f))) return seed;
    }
    return null;
  }

  it("linearizable reads served without a read index", async () => {
    expect(await caughtWithin("stale-reads", ["crash-replica", "partition"], [1, 2, 3, 4, 5, 6], /not linearizable|read by/)).not.toBeNull();
  });

  it("replicas applying entries before they are committed", async () => {
    const faults: SimOptions["faults"] = ["lose-sequencer-storage", "drop", "crash-replica"];
    const seeds = Array.from({ length: 20 }, (_, i) => i + 1);
    expect(await caughtWithin("apply-uncommitted", faults, seeds, /different entry|diverged|acknowledged|invariant/)).not.toBeNull();
  });

  it("committing before a majority holds an entry", async () => {
    const faults: SimOptions["faults"] = ["lose-sequencer-storage", "drop", "crash-replica"];
    expect(await caughtWithin("early-commit", faults, Array.from({ length: 20 }, (_, i) => i + 1), /different entry|acknowledged|not linearizable|beyond/)).not.toBeNull();
  });

  it("kv txns and batches under every fault kind: agreement, digests, exactly-once and linearizability hold", async () => {
    for (const seed of [11, 12, 13, 14, 15, 16]) {
      const r = await simulate({ seed, ops: 120, replicas: seed % 2 ? 3 : 5, faults: [...faultKinds], batches: true, colocate: true });
      expect(r.failures, `seed ${seed}`).toEqual([]);
      expect(Number(r.stats.acked)).toBeGreaterThan(0);
    }
  });
});

describe("the fault kinds outside \"all\" (all+), and watchers checked against the log", () => {
  for (const fault of extraFaultKinds) {
    it(`kv, 3 replicas, ${fault}, with watchers`, async () => {
      // Every sequencer object of a clock-skew run has its skew: no count.
      const injected = (x: { stats: Record<string, unknown> }) => fault === "clock-skew" || Number(x.stats[fault === "corrupt-any" ? "corrupt" : fault] ?? 0) > 0;
      let r = await clean({ seed: 11, ops: 200, replicas: 3, faults: [fault], watchers: 2 });
      for (let seed = 12; !injected(r) && seed < 41; seed++) r = await clean({ seed, ops: 200, replicas: 3, faults: [fault], watchers: 2 });
      expect(injected(r), `no seed in 11..40 injected ${fault}`).toBe(true);
      expect(Number(r.stats.watchEvents)).toBeGreaterThan(0);
    });
  }

  it("kv and bank, 5 replicas, every fault and corrupt-again: a replica damaged again after its rebuild is found and rebuilt again (a stale quarantine must not end the new one: a review)", async () => {
    for (const [seed, machine] of [[11, "kv"], [12, "bank"]] as const) {
      const r = await clean({ seed, ops: 300, replicas: 5, machine, faults: [...faultKinds, ...laterFaultKinds] });
      expect(Number(r.stats.corrupt), `seed ${seed}`).toBeGreaterThan(1);
    }
  });

  it("regression: seeds 276791773, 1184612567 and 268006403 (a rebuilt replica quarantined again: by a successor recovering from the directory's list written before the rebuild, until with one more replica lost no recovery could take office; by a tell that landed after the rebuild)", async () => {
    const runs: SimOptions[] = [
      { seed: 276791773, ops: 300, replicas: 3, faults: [...faultKinds, ...extraFaultKinds], batches: true, colocate: true, logBytes: 3_000, watchers: 4 },
      { seed: 1184612567, ops: 300, replicas: 5, faults: [...faultKinds, ...extraFaultKinds], batches: true, colocate: true, watchers: 4 },
      { seed: 268006403, ops: 300, replicas: 5, faults: [...faultKinds], batches: true, colocate: true },
    ];
    // Clean (the first stayed without a sequencer). Some tells to healthy replicas remain (a lost
    // endInstall answer: docs/PROTOCOL.md), so their count is not asserted; the sweeps report it.
    for (const o of runs) await clean(o);
  });

  it("regression: seed 3314 (the answers to an install's end and to its retry both lost: the next repair began a second install on the rebuilt replica, emptying its log; with one more replica's storage lost, no recovery could fence a quorum, and the group stayed without a sequencer)", async () => {
    // --replicas 3 --faults all+ --output-free 30 --watchers 2. install-end-lost.test.ts is the unit test.
    await clean({ seed: 3314, ops: 300, replicas: 3, faults: [...faultKinds, ...extraFaultKinds, ...laterFaultKinds], batches: true, colocate: true, sessionOutputFreeChars: 30, watchers: 2 });
  });
});
