// Idle groups sleep: the cron skips a group whose sequencer told the registry it is asleep, so that
// its objects can be evicted (called each minute, they never were), except once every
// asleepAuditEveryMs, when it is audited (scrubbed) all the same.
import { SELF, env, runInDurableObject } from "cloudflare:test";
import { beforeEach, describe, expect, it } from "vitest";
import { asleepAuditEveryMs } from "../../shared/limits.js";
import type { RegistryObject } from "../../workers/registry.js";
import { auditAll } from "../../workers/auditor.js";
import type { Env } from "../../workers/env.js";
import { adminToken, api, clientToken, createGroup } from "./helpers.js";

const registry = () => env.REGISTRY.get(env.REGISTRY.idFromName("registry"));

/** Runs `sql` with its arguments in the registry's own storage (what no RPC does: a clock moved back). */
async function registrySql(sql: string, ...args: (string | number | null)[]): Promise<void> {
  await runInDurableObject(registry(), (_: RegistryObject, state) => {
    state.storage.sql.exec(sql, ...args);
  });
}

/** The cron took `name` asleepAuditEveryMs (and a little) ago. */
function claimedADayAgo(name: string): Promise<void> {
  return registrySql("UPDATE names SET claimed_ms = ? WHERE name = ?", Date.now() - asleepAuditEveryMs - 1_000, name);
}

/** A whole lap of claims of `limit` names each: every name taken, in order. */
async function lap(limit = 100): Promise<string[]> {
  const taken: string[] = [];
  for (let i = 0; i < 1_000; i++) {
    const page = await registry().claim(limit);
    taken.push(...page.groups);
    // A claim that takes nothing stops a run too (auditor.ts), lap or not.
    if (page.lapEnd || page.groups.length === 0) return taken;
  }
  throw new Error("no lap end in 1,000 claims");
}

/**
 * A real group's sleep (or wake: null) as its sequencer would note it, stamped above the notes of
 * its own sequencer (which says "awake" when it starts: the registry keeps the newer note).
 */
function noteOfSequencer(name: string, asleepSinceMs: number | null): Promise<void> {
  return registry().noteSleep(name, 1, asleepSinceMs, { epoch: 1_000, atMs: Date.now() });
}

async function listed(names: string[], incarnation = 1): Promise<void> {
  for (const n of names) await registry().add(n, incarnation);
}

// Every test starts from an empty registry: the claims and laps below are over its names only.
beforeEach(() => registrySql("DELETE FROM names").then(() => registrySql("DELETE FROM cron")));

describe("the cron and asleep groups", () => {
  it("skips a group noted asleep in the next claims, and takes the awake ones", async () => {
    await listed(["sl-a", "sl-b", "sl-c"]);
    expect(await lap()).toEqual(["sl-a", "sl-b", "sl-c"]);
    await registry().noteSleep("sl-b", 1, Date.now());
    for (let i = 0; i < 3; i++) expect(await lap()).toEqual(["sl-a", "sl-c"]);
    // One name a claim, too.
    expect(await lap(1)).toEqual(["sl-a", "sl-c"]);
    // Awake again (a client came back): taken each lap.
    await registry().noteSleep("sl-b", 1, null);
    expect(await lap()).toEqual(["sl-a", "sl-b", "sl-c"]);
  });

  it("takes an asleep group the cron has not taken for asleepAuditEveryMs (or ever), then skips it again for as long", async () => {
    await listed(["sl-a", "sl-b"]);
    // Asleep before the cron ever took it: taken once, its first audit.
    await registry().noteSleep("sl-b", 1, Date.now());
    expect(await lap()).toEqual(["sl-a", "sl-b"]);
    expect(await lap()).toEqual(["sl-a"]);
    // Taken a day ago, give or take: due its daily audit.
    await claimedADayAgo("sl-b");
    expect(await lap()).toEqual(["sl-a", "sl-b"]);
    expect(await lap()).toEqual(["sl-a"]);
    // Just short of a day: not yet.
    await registrySql("UPDATE names SET claimed_ms = ? WHERE name = ?", Date.now() - asleepAuditEveryMs + 60_000, "sl-b");
    expect(await lap()).toEqual(["sl-a"]);
  });

  it("a note for another incarnation changes nothing; a re-creation (add) starts awake", async () => {
    await listed(["sl-a", "sl-b"]);
    expect(await lap()).toEqual(["sl-a", "sl-b"]);
    // A deleted incarnation's late note, and one from an incarnation not listed yet.
    await registry().noteSleep("sl-b", 2, Date.now());
    await registry().noteSleep("sl-b", 0, Date.now());
    expect(await lap()).toEqual(["sl-a", "sl-b"]);
    expect((await registry().cron()).asleep).toBe(0);
    await registry().noteSleep("sl-b", 1, Date.now());
    expect(await lap()).toEqual(["sl-a"]);
    // An older incarnation's late add leaves it asleep; the next incarnation's starts it awake.
    await registry().add("sl-b", 0);
    expect(await lap()).toEqual(["sl-a"]);
    await registry().add("sl-b", 2);
    expect((await registry().cron()).asleep).toBe(0);
    expect(await lap()).toEqual(["sl-a", "sl-b"]);
    // The deleted incarnation's note, late: the re-created group stays awake.
    await registry().noteSleep("sl-b", 1, Date.now());
    expect(await lap()).toEqual(["sl-a", "sl-b"]);
  });

  it("a claim finds the due names past many asleep ones, and a lap ends at the last due name", async () => {
    const asleep = Array.from({ length: 50 }, (_, i) => `sl-m-${String(i).padStart(2, "0")}`);
    await listed(["sl-a", ...asleep, "sl-z"]);
    await lap();
    for (const n of asleep) await registry().noteSleep(n, 1, Date.now());
    // One name a claim: a, then z past the 50 asleep ones, and z ends the lap.
    expect(await registry().claim(1)).toMatchObject({ groups: ["sl-a"], lapEnd: false });
    expect(await registry().claim(1)).toMatchObject({ groups: ["sl-z"], lapEnd: true });
    expect(await registry().cron()).toMatchObject({ lastLapGroups: 2, lapGroups: 0, asleep: 50 });
    expect(await registry().claim(1)).toMatchObject({ groups: ["sl-a"], lapEnd: false });
  });

  it("a cursor with only asleep names after it ends the lap and starts the next from the first name", async () => {
    await listed(["sl-a", "sl-b", "sl-c", "sl-d", "sl-e"]);
    await lap();
    expect(await registry().claim(1)).toMatchObject({ groups: ["sl-a"], lapEnd: false });
    expect(await registry().claim(1)).toMatchObject({ groups: ["sl-b"], lapEnd: false });
    // Every name after the cursor falls asleep: the lap under way (a and b) is whole, and the next begins.
    for (const n of ["sl-c", "sl-d", "sl-e"]) await registry().noteSleep(n, 1, Date.now());
    expect(await registry().claim(1)).toMatchObject({ groups: ["sl-a"], lapEnd: false });
    expect(await registry().cron()).toMatchObject({ lastLapGroups: 2, lapGroups: 1 });
    expect(await registry().claim(1)).toMatchObject({ groups: ["sl-b"], lapEnd: true });
    expect(await registry().cron()).toMatchObject({ lastLapGroups: 2, lapGroups: 0 });
    const before = await registry().cron();
    // Every name asleep: claims take nothing (the cron's run stops), end no lap, and record no empty
    // one: each such run's finishRun timed the last lap again from its start, growing by a run's
    // interval every run (a probe: 0.76 s to 166 s).
    await registry().noteSleep("sl-a", 1, Date.now());
    await registry().noteSleep("sl-b", 1, Date.now());
    for (let i = 0; i < 3; i++) {
      const empty = await registry().claim(8);
      expect(empty).toMatchObject({ groups: [], lapEnd: false });
      await registry().finishRun({ audited: 0, failed: 0, startedMs: Date.now(), endedMs: Date.now() + 60_000 * (i + 1) }, empty.lapEnd);
    }
    expect(await registry().cron()).toMatchObject({ lastLapGroups: 2, lastLapMs: before.lastLapMs, asleep: 5 });
    // One due its daily audit: taken, a lap of one.
    await claimedADayAgo("sl-c");
    expect(await registry().claim(8)).toMatchObject({ groups: ["sl-c"], lapEnd: true });
    expect(await registry().cron()).toMatchObject({ lastLapGroups: 1, lapGroups: 0 });
    expect(await registry().claim(8)).toMatchObject({ groups: [], lapEnd: false });
  });

  it("a cron run audits the awake group and leaves the asleep one alone, until its daily audit", async () => {
    for (const g of ["sl-run-awake", "sl-run-asleep"]) await createGroup(g);
    const audits = async (g: string) => (await api("GET", `/v1/groups/${g}/audits?limit=100`, undefined, clientToken)).body.audits.length;
    const run = () => auditAll(env as unknown as Env);
    expect((await run()).audited).toBe(2);
    await noteOfSequencer("sl-run-asleep", Date.now());
    expect((await run()).audited).toBe(1);
    expect(await audits("sl-run-awake")).toBe(2);
    expect(await audits("sl-run-asleep")).toBe(1);
    await claimedADayAgo("sl-run-asleep");
    expect((await run()).audited).toBe(2);
    expect(await audits("sl-run-asleep")).toBe(2);
    // Its daily audit fails (its sequencer and a replica cut off): taken again at the next run, not a day later.
    await claimedADayAgo("sl-run-asleep");
    for (const target of ["sequencer", "r2"]) await api("POST", "/v1/groups/sl-run-asleep/faults", { target, fault: "unreachable" });
    try {
      expect((await run()).failed).toEqual(["sl-run-asleep"]);
      expect((await run()).failed).toEqual(["sl-run-asleep"]);
    } finally {
      for (const target of ["sequencer", "r2"]) await api("POST", "/v1/groups/sl-run-asleep/faults", { target, fault: "none" });
    }
    expect((await run()).audited).toBe(2);
    expect((await run()).audited).toBe(1); // audited: asleep again until its next day
    // Its daily audit is insufficient (two replicas cut off: no quorum compared), not a failure: taken again next run too.
    await claimedADayAgo("sl-run-asleep");
    for (const target of ["r2", "r3"]) await api("POST", "/v1/groups/sl-run-asleep/faults", { target, fault: "unreachable" });
    try {
      expect((await run()).audited).toBe(2);
      expect((await run()).audited).toBe(2);
    } finally {
      for (const target of ["r2", "r3"]) await api("POST", "/v1/groups/sl-run-asleep/faults", { target, fault: "none" });
    }
    const [latest] = (await api("GET", "/v1/groups/sl-run-asleep/audits?limit=1", undefined, clientToken)).body.audits;
    expect(latest.verdict).toBe("insufficient");
    expect((await run()).audited).toBe(2); // consistent again
    expect((await run()).audited).toBe(1);
  }, 120_000);

  it("finishes at its next run the delete of an asleep group that failed (503), not a day later", async () => {
    await createGroup("sl-del");
    const run = () => auditAll(env as unknown as Env);
    expect((await run()).audited).toBe(1);
    await noteOfSequencer("sl-del", Date.now());
    expect((await run()).audited).toBe(0); // asleep, audited lately: skipped
    await api("POST", "/v1/groups/sl-del/faults", { target: "sequencer", fault: "unreachable" });
    try {
      const del = await api("DELETE", "/v1/groups/sl-del");
      expect(del.status).toBe(503);
    } finally {
      await api("POST", "/v1/groups/sl-del/faults", { target: "sequencer", fault: "none" });
    }
    // No request comes to the group again: the cron's next run finishes the delete.
    await run();
    expect((await registry().list(null, 100)).groups).not.toContain("sl-del");
    expect((await api("GET", "/v1/groups/sl-del", undefined, adminToken)).status).toBe(404);
  }, 60_000);

  it("a registry made before these columns gets them, its names awake and due", async () => {
    await listed(["sl-old"]);
    await runInDurableObject(registry(), (instance: RegistryObject, state) => {
      for (const c of ["asleep_since_ms", "claimed_ms"]) state.storage.sql.exec(`ALTER TABLE names DROP COLUMN ${c}`);
      // What the object does when it starts on such storage.
      new (instance.constructor as new (ctx: DurableObjectState, env: unknown) => RegistryObject)(state, env);
      const columns = state.storage.sql.exec<{ name: string }>("PRAGMA table_info(names)").toArray().map((c) => c.name);
      expect(columns).toEqual(expect.arrayContaining(["asleep_since_ms", "claimed_ms"]));
    });
    expect(await lap()).toEqual(["sl-old"]);
    await registry().noteSleep("sl-old", 1, Date.now());
    expect(await lap()).toEqual([]);
  });

  it("the cron's figures and the metrics count the asleep groups", async () => {
    for (const g of ["sl-metrics-1", "sl-metrics-2", "sl-metrics-3"]) await createGroup(g);
    const scraped = async () => {
      const res = await SELF.fetch("http://smr.test/v1/metrics", { headers: { authorization: `Bearer ${adminToken}` } });
      const text = await res.text();
      expect(text).toContain("# TYPE smr_groups_asleep gauge");
      return Number(/^smr_groups_asleep (\S+)$/m.exec(text)?.[1]);
    };
    expect((await registry().cron()).asleep).toBe(0);
    expect(await scraped()).toBe(0);
    for (const g of ["sl-metrics-1", "sl-metrics-3"]) await noteOfSequencer(g, Date.now());
    expect((await registry().cron()).asleep).toBe(2);
    expect(await scraped()).toBe(2);
    await noteOfSequencer("sl-metrics-3", null);
    expect(await scraped()).toBe(1);
  });
  it("ignores a note older than the one it holds: a later time at the same epoch, any time at a higher epoch; awake wins a tie", async () => {
    await listed(["sl-order"]);
    const t = Date.now();
    const at = (epoch: number, atMs: number) => ({ epoch, atMs });
    await registry().noteSleep("sl-order", 1, null, at(1, t + 2_000)); // the awake note, sent second, landed first
    await registry().noteSleep("sl-order", 1, t, at(1, t + 1_000)); // the asleep note, timed out at the sender, lands late
    expect(await lap()).toEqual(["sl-order"]); // still awake: taken every lap
    expect(await lap()).toEqual(["sl-order"]);
    // The same millisecond (a start that said asleep, then the command that woke it): awake wins.
    await registry().noteSleep("sl-order", 1, null, at(1, t + 2_000));
    await registry().noteSleep("sl-order", 1, t, at(1, t + 2_000));
    expect(await lap()).toEqual(["sl-order"]);
    // A successor (epoch 2) is awake; the deposed sequencer (epoch 1), started later by a call to
    // its co-located replica, says asleep with a later time: ignored.
    await registry().noteSleep("sl-order", 1, null, at(2, t + 3_000));
    await registry().noteSleep("sl-order", 1, t + 4_000, at(1, t + 4_000));
    expect(await lap()).toEqual(["sl-order"]);
    await registry().noteSleep("sl-order", 1, t + 5_000, at(2, t + 5_000));
    expect(await lap()).toEqual([]);
  });

  it("takes an asleep group again next lap after the cron's audit of it failed (unclaim), not a day later", async () => {
    await listed(["sl-fail"]);
    await registry().noteSleep("sl-fail", 1, Date.now(), { epoch: 1, atMs: Date.now() });
    expect(await lap()).toEqual(["sl-fail"]); // its first audit
    expect(await lap()).toEqual([]);
    await registry().unclaim("sl-fail"); // that audit failed
    expect(await lap()).toEqual(["sl-fail"]);
    expect(await lap()).toEqual([]);
  });
});

describe("figures kept for the scrapes", () => {
  const figures = (name: string, commandsTotal: number) => JSON.stringify({ group: name, up: true, commandsTotal });
  const kept = async (name: string) => (await registry().listForScrape(null, 100)).kept[name];
  const keep = (items: { name: string; incarnation: number; askedMs: number; figures: string }[]) => registry().keepFigures(items, 60_000);

  it("are kept of an asleep group of that incarnation only, over older ones only, dropped at a wake, a sleep or a re-creation, and given while fresh", async () => {
    await listed(["kf-a", "kf-b"]);
    const nowMs = Date.now();
    // Awake: nothing kept.
    await keep([{ name: "kf-a", incarnation: 1, askedMs: nowMs, figures: figures("kf-a", 1) }]);
    expect(await kept("kf-a")).toBeUndefined();
    await noteOfSequencer("kf-a", nowMs);
    await noteOfSequencer("kf-b", nowMs);
    // Another incarnation's, nothing; this one's, kept.
    await keep([{ name: "kf-a", incarnation: 2, askedMs: nowMs, figures: figures("kf-a", 2) }]);
    expect(await kept("kf-a")).toBeUndefined();
    await keep([
      { name: "kf-a", incarnation: 1, askedMs: nowMs, figures: figures("kf-a", 3) },
      { name: "kf-b", incarnation: 1, askedMs: nowMs, figures: figures("kf-b", 4) },
    ]);
    expect(await kept("kf-a")).toBe(figures("kf-a", 3));
    // Figures asked earlier (a slower scrape's) do not replace them: a counter never goes back.
    await keep([{ name: "kf-a", incarnation: 1, askedMs: nowMs - 1, figures: figures("kf-a", 2) }]);
    expect(await kept("kf-a")).toBe(figures("kf-a", 3));
    // Past its time: not given. Paged: a page's kept figures are of its own names.
    await registrySql("UPDATE names SET kept_until_ms = ? WHERE name = ?", nowMs - 1, "kf-b");
    expect(await registry().listForScrape(null, 100)).toEqual({ groups: ["kf-a", "kf-b"], kept: { "kf-a": figures("kf-a", 3) } });
    await registrySql("UPDATE names SET kept_until_ms = ? WHERE name = ?", nowMs + 60_000, "kf-b");
    expect(await registry().listForScrape("kf-a", 100)).toEqual({ groups: ["kf-b"], kept: { "kf-b": figures("kf-b", 4) } });
    // A wake drops them, and so does a re-creation.
    await noteOfSequencer("kf-a", null);
    expect(await kept("kf-a")).toBeUndefined();
    await registry().add("kf-b", 2);
    expect((await registry().listForScrape(null, 100)).kept).toEqual({});
  });

  it("stay fresh for half their time to all of it, spread at random: the groups one scrape asked do not come due together", async () => {
    const names = Array.from({ length: 40 }, (_, i) => `kf-s${String(i).padStart(2, "0")}`);
    await listed(names);
    const askedMs = Date.now();
    for (const n of names) await noteOfSequencer(n, askedMs);
    await keep(names.map((name) => ({ name, incarnation: 1, askedMs, figures: figures(name, 1) })));
    const untils = await runInDurableObject(registry(), (_: RegistryObject, state) => state.storage.sql.exec<{ u: number }>("SELECT kept_until_ms AS u FROM names WHERE name LIKE 'kf-s%'").toArray().map((r) => r.u - askedMs));
    expect(untils).toHaveLength(40);
    for (const u of untils) expect(u).toBeGreaterThanOrEqual(30_000), expect(u).toBeLessThanOrEqual(60_000);
    // Spread: not all in one quarter of the range (40 uniform draws all in one: 4 x 0.25^40).
    expect(Math.max(...untils) - Math.min(...untils)).toBeGreaterThan(7_500);
  });
});

describe("a claim within a lap", () => {
  it("takes nothing once the lap it names has ended (another run ended it), and stamps nothing", async () => {
    await listed(["wl-a", "wl-b", "wl-c"]);
    const first = await registry().claim(1); // run A: wl-a, in lap n
    expect(first.groups).toEqual(["wl-a"]);
    expect(await registry().claim(2)).toMatchObject({ groups: ["wl-b", "wl-c"], lapEnd: true, lap: first.lap }); // run B ends it
    const late = await registry().claim(1, first.lap); // A again
    expect(late).toEqual({ groups: [], lapEnd: false, lap: first.lap + 1 });
    // The next lap is whole for the next run: nothing was taken or stamped by A's refused claim.
    expect(await lap()).toEqual(["wl-a", "wl-b", "wl-c"]);
    expect((await registry().cron()).laps).toBe(first.lap + 2);
  });
});

describe("a lap's time", () => {
  it("lasts until the run that ended it has finished its audits, not just its last claim (a lap one run took whole was 0 s)", async () => {
    await listed(["lt-a", "lt-b"]);
    const startedMs = Date.now();
    expect(await registry().claim(8)).toMatchObject({ groups: ["lt-a", "lt-b"], lapEnd: true });
    await new Promise((r) => setTimeout(r, 50)); // the run's audits
    await registry().finishRun({ audited: 2, failed: 0, startedMs, endedMs: Date.now() }, true);
    const figures = await registry().cron();
    expect(figures.lastLapGroups).toBe(2);
    expect(figures.lastLapMs).toBeGreaterThanOrEqual(45);
    // A run that ended no lap leaves the last lap's time as it was.
    await registry().finishRun({ audited: 0, failed: 0, startedMs, endedMs: Date.now() + 10_000 }, false);
    expect((await registry().cron()).lastLapMs).toBe(figures.lastLapMs);
  });
});
