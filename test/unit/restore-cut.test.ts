// A server killed while a restore installed left every replica halfway through the install
// (quarantined, rebuilding) and no replica to copy from: a probe's group answered 503 for good,
// through failovers, repairs and cron runs, until it was deleted. A group that holds nothing has
// the empty state at 0, and any group whose log holds every entry from the first can rebuild a
// replica from it and the log when there is nothing to copy.
import { describe, expect, it } from "vitest";
import type { SnapshotInfo } from "../../shared/protocol/replica.js";
import { directGroup } from "../support/direct.js";

const config = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "first" as const, checkpointEvery: 50 };
const retention = { entries: 10_000, slack: 1_000 };

describe("every replica halfway through a restore's install, the group holding nothing", () => {
  it("is rebuilt empty by its repairs, and takes commands again", async () => {
    const g = directGroup(config, retention);
    const restore: SnapshotInfo = { seq: 1, digest: "ab".repeat(32), logHash: "cd".repeat(32), entryEpoch: 1, timestamp: null, epoch: 1 };
    for (const id of ["r1", "r2", "r3"]) {
      expect(await g.link(id).beginInstall(restore, `restore:1:1:0:${id}`, 1)).toBe(true);
      expect(await g.link(id).installPage(`restore:1:1:0:${id}`, [["m/a", "1"]])).toBe(true);
    }
    const report = await g.driver.audit();
    expect(report.replicas.every((r) => r.verdict === "behind")).toBe(true);
    for (let i = 0; i < 50 && (await g.driver.submit("c", 1, { op: "put", key: "k", value: 1 })).kind !== "ok"; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await g.driver.submit("c", 1, { op: "put", key: "k", value: 1 })).toMatchObject({ kind: "ok" });
    for (const id of ["r1", "r2", "r3"]) {
      const p = (await g.link(id).position())!;
      expect(p.quarantined).toBe(false);
    }
    expect(g.events.filter((e) => e.kind === "repair").map((e) => e.message)).toEqual(expect.arrayContaining([expect.stringMatching(/rebuilt empty/)]));
    // No row of the restore that was cut off is left: the state is the command's alone.
    const r = await g.link("r2").query({ op: "list" }, 0, 1_000);
    expect(r).toMatchObject({ kind: "ok", result: { items: [["k", 1]] } });
    g.driver.stop();
  }, 20_000);
});
