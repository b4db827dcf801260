// A retry's session lookup with outputs "first" (one answer decides) leaves out a replica whose rows
// failed their scrub while another can answer: reads refuse such a replica (`damaged`), and its
// session rows are state like any other. With another replica down the audit has no quorum to
// quarantine it, and a retry was answered from its damaged row.
import { describe, expect, it } from "vitest";
import type { SessionAnswer } from "../../shared/protocol/io.js";
import { directGroup } from "../support/direct.js";

const config = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "first" as const, checkpointEvery: 50 };

describe("a retry's session lookup, outputs first", () => {
  it("is not answered by a replica whose scrub failed while a sound one may answer; with every one damaged, they answer", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    expect(await g.driver.submit("c", 1, { op: "put", key: "a", value: "right" })).toMatchObject({ kind: "ok", seq: 1 });
    expect(await g.driver.submit("c", 2, { op: "put", key: "a", value: "next" })).toMatchObject({ kind: "ok", seq: 2, output: { previous: "right" } });
    // r1's session row for (c, 2) is damaged; its scrub found damage (the audit recorded it).
    const r1 = g.replicas.get("r1")!.core! as unknown as { session(c: string, r: number): SessionAnswer };
    const real = r1.session.bind(r1);
    r1.session = (c, r) => {
      const a = real(c, r);
      return a.kind === "found" ? { ...a, output: { previous: "damaged" } } : a;
    };
    (g.driver as unknown as { scrubFailed: Map<string, number> }).scrubFailed.set("r1", Date.now());
    g.down.add("r3");
    expect(await g.driver.submit("c", 2, { op: "put", key: "a", value: "next" })).toMatchObject({ kind: "ok", seq: 2, output: { previous: "right" }, replayed: true });
    // Every candidate's scrub failed (the audit's alarm): they answer, not a 504 for good.
    for (const id of ["r2", "r3"]) (g.driver as unknown as { scrubFailed: Map<string, number> }).scrubFailed.set(id, Date.now());
    expect(await g.driver.submit("c", 2, { op: "put", key: "a", value: "next" })).toMatchObject({ kind: "ok", seq: 2, replayed: true });
    g.driver.stop();
  });
});
