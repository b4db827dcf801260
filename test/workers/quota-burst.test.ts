// A burst of small commands with large outputs against a small quota (a probe: 5,120 gets of one
// 64 KB value, each 30 bytes of command, were admitted on the last size measured and stored 65 KB
// each for the watch: 322 MiB per replica in a 16 MiB group, and about 10,000 deletes to recover).
// The watch's copies count in the retained log's bytes budget, so they go with it.
import { describe, expect, it } from "vitest";
import { api, clientToken, command, createGroup } from "./helpers.js";

describe("a burst of gets at a small quota", () => {
  it("stays near the quota, and a write goes once the burst is over", async () => {
    await createGroup("burst", { machine: "kv", storageQuotaMiB: 16 });
    const big = "x".repeat(65_000);
    expect((await command("burst", { op: "put", key: "big", value: big })).status).toBe(200);
    const batch = (n: number) => ({ client: `b${n}`, commands: Array.from({ length: 256 }, (_, i) => ({ request: i + 1, command: { op: "get", key: "big" } })) });
    const answers = await Promise.all(Array.from({ length: 10 }, (_, n) => api("POST", "/v1/groups/burst/commands", batch(n), clientToken)));
    expect(answers.every((a) => a.status === 200)).toBe(true);
    await api("POST", "/v1/groups/burst/audit");
    const status = (await api("GET", "/v1/groups/burst")).body;
    const most = Math.max(...status.replicas.map((r: { storageBytes?: number }) => r.storageBytes ?? 0));
    // 2,560 outputs of 65 KB: 166 MB kept before; now about the log's budget beside the value.
    expect(most).toBeLessThan(16 * 1024 * 1024);
    expect((await command("burst", { op: "put", key: "after", value: "small" })).status).toBe(200);
  });

  it("sequential batches of small puts are refused near the quota, not far past it: a cut by bytes stores the rows written (saved in batches of 8 MiB, they were not measured: a probe's group passed its quota by 44%)", async () => {
    await createGroup("batches", { machine: "kv", storageQuotaMiB: 16 });
    const value = "v".repeat(2_000);
    let refused = false;
    for (let b = 0; b < 200 && !refused; b++) {
      const body = { client: "w", commands: Array.from({ length: 64 }, (_, i) => ({ request: b * 64 + i + 1, command: { op: "put", key: `k${b * 64 + i}`, value } })) };
      const r = await api("POST", "/v1/groups/batches/commands", body, clientToken);
      refused = r.body.results.some((x: { error?: { reason?: string } }) => x.error?.reason === "storage_quota");
    }
    expect(refused).toBe(true);
    await api("POST", "/v1/groups/batches/audit"); // stores every row, and measures
    const status = (await api("GET", "/v1/groups/batches")).body;
    const most = Math.max(...status.replicas.map((r: { storageBytes?: number }) => r.storageBytes ?? 0));
    expect(most).toBeLessThan(1.15 * 16 * 1024 * 1024);
  });
});
