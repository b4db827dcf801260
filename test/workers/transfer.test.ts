import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { ReplicaObject } from "../../workers/replica.js";
import { api, clientToken, command, createGroup, replicaObject } from "./helpers.js";

describe("state transfer inside workerd", () => {
  it("rebuilds a tampered replica holding 20,000 keys, in pages, and the audit then agrees", async () => {
    await createGroup("big-state", { machine: "kv", checkpointEvery: 1000 });
    const keys = 20_000;
    const concurrency = 100;
    for (let i = 0; i < keys; i += concurrency) {
      const batch = [];
      for (let j = i; j < i + concurrency; j++) batch.push(command("big-state", { op: "put", key: `key-${j}`, value: { j, pad: "x".repeat(30) } }, `loader-${j % 50}`, j + 1));
      const rs = await Promise.all(batch);
      expect(rs.filter((r) => r.status !== 200).map((r) => `${r.status} ${JSON.stringify(r.body)}`)).toEqual([]);
    }
    await runInDurableObject(replicaObject("big-state", "r2"), (_i: ReplicaObject, state) => {
      state.storage.sql.exec("UPDATE state SET v = ? WHERE k = ?", JSON.stringify("rot"), "m/key-777");
    });
    const report = (await api("POST", "/v1/groups/big-state/audit")).body;
    expect(report.replicas.map((r: any) => r.verdict)).toEqual(["agrees", "diverged", "agrees"]);
    let r2: any;
    for (let i = 0; i < 200; i++) {
      r2 = (await api("GET", "/v1/groups/big-state/replicas", undefined, clientToken)).body.replicas.find((r: any) => r.id === "r2");
      if (r2.status === "healthy") break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(r2.status).toBe("healthy");
    await command("big-state", { op: "put", key: "after", value: 1 }, "after", 1);
    const rows = await runInDurableObject(replicaObject("big-state", "r2"), (_i: ReplicaObject, state) => ({
      keys: state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM state WHERE k LIKE 'm/%'").one().n,
      rot: state.storage.sql.exec<{ v: string }>("SELECT v FROM state WHERE k = 'm/key-777'").one().v,
    }));
    expect(rows.keys).toBeGreaterThanOrEqual(keys);
    expect(JSON.parse(rows.rot)).toEqual({ j: 777, pad: "x".repeat(30) });
    const after = (await api("POST", "/v1/groups/big-state/audit")).body;
    expect(after.verdict).toBe("consistent");
    // The source dropped its frozen copy when the transfer ended (no table left locked by a cursor).
    for (const id of ["r1", "r3"]) {
      const left = await runInDurableObject(replicaObject("big-state", id), (_i: ReplicaObject, state) =>
        state.storage.sql.exec("SELECT name FROM sqlite_master WHERE name = 'snapshot'").toArray().length,
      );
      expect(left).toBe(0);
    }
  }, 180_000);
});
