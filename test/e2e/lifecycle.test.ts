// Delete and recreate a group while 16 writers keep sending, against the real server (the built
// worker under Miniflare, real HTTP concurrency). Late RPCs of the deleted incarnation used to
// revive its sequencer inside the new one: every command then answered 504 for minutes, commitSeq
// stayed 0, and GET /log was a 500 ("no such table: log").
import { describe, expect, it } from "vitest";
import { serverFixture } from "../support/fixture.js";

const server = serverFixture("life");
const { admin, client, call } = server;

describe("delete and recreate under load", () => {
  it("the recreated group takes writes at once, from seq 1, and its log is readable (3 rounds, 16 writers)", async () => {
    for (let round = 0; round < 3; round++) {
      const group = `stall-${round}`;
      expect((await call("PUT", `/v1/groups/${group}`, admin, { machine: "kv" })).status).toBe(201);
      let stop = false;
      let acked = 0;
      // The pairs acknowledged before the DELETE was sent: the old incarnation's, in no log of the new one.
      let deleting = false;
      const oldPairs = new Set<string>();
      const writers = Array.from({ length: 16 }, async (_, w) => {
        for (let i = 1; !stop; i++) {
          const r = await call("POST", `/v1/groups/${group}/commands`, client, { client: `w${w}-${round}`, request: i, command: { op: "put", key: `k${w}`, value: i } }).catch(() => null);
          if (r?.status === 200) acked++;
          if (r?.status === 200 && !deleting) oldPairs.add(`w${w}-${round}/${i}`);
          expect([200, 404, 503, 504, undefined]).toContain(r?.status);
        }
      });
      while (acked < 100) await new Promise((r) => setTimeout(r, 5));
      deleting = true;
      expect((await call("DELETE", `/v1/groups/${group}`, admin)).status).toBe(204);
      const created = await call("PUT", `/v1/groups/${group}`, admin, { machine: "kv" });
      expect(created.status).toBe(201);
      const before = acked;
      const deadline = Date.now() + 10_000;
      while (acked < before + 100 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      stop = true;
      await Promise.all(writers);
      expect(acked, `round ${round}: writes after the recreate`).toBeGreaterThanOrEqual(before + 100);
      const status = await call("GET", `/v1/groups/${group}`, client);
      expect(status.body.commitSeq).toBeGreaterThan(0);
      const log = await call("GET", `/v1/groups/${group}/log?from=1&limit=1000`, admin);
      expect(log.status).toBe(200);
      expect(log.body.entries[0].seq).toBe(1);
      expect(oldPairs.size).toBeGreaterThanOrEqual(100);
      const carried = log.body.entries.filter((e: any) => oldPairs.has(`${e.client}/${e.request}`));
      expect(carried, `round ${round}: the old incarnation's entries in the new log`).toEqual([]);
      expect((await call("POST", `/v1/groups/${group}/audit`, admin)).body.verdict).toBe("consistent");
    }
  });
});
