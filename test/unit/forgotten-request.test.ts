// A refusal of a request the sequencer's index no longer holds (compacted away): the request may
// be one it ordered, and a 503 must mean "certainly not ordered" (API.md). A review found an
// executed retry told 503 at the storage quota; the replicas' session tables now answer first.
import { describe, expect, it } from "vitest";
import { directGroup } from "../support/direct.js";

const mebibyte = 1024 * 1024;
const config = { group: "g", incarnation: 0, machine: "kv" as const, replicas: 3, locations: [], outputs: "first" as const, checkpointEvery: 50, storageQuotaMiB: 16 };

/** A group whose first command (c, 1), an incr, ran and was compacted out of the index, now at its quota. */
async function compactedAtQuota() {
  const g = directGroup(config, { entries: 5, slack: 2 });
  let bytes = 1 * mebibyte;
  for (const s of g.stores.values()) s.sizeBytes = () => bytes;
  expect(await g.driver.submit("c", 1, { op: "incr", key: "n", by: 1 })).toMatchObject({ kind: "ok", output: { value: 1 } });
  for (let i = 0; i < 40; i++) expect((await g.driver.submit("o", i + 1, { op: "put", key: `k${i}`, value: i })).kind).toBe("ok");
  for (let i = 0; i < 50 && g.driver.core.baseSeq < 2; i++) await new Promise((r) => setTimeout(r, 10));
  expect(g.driver.core.forgottenThroughSeq).toBeGreaterThanOrEqual(2);
  bytes = 16 * mebibyte;
  await g.driver.submit("o", 100, { op: "delete", key: "zz" });
  for (let i = 0; i < 100 && g.driver.core.storageRefusal() === null; i++) await new Promise((r) => setTimeout(r, 5));
  expect(g.driver.core.storageRefusal()).not.toBeNull();
  return g;
}

describe("a refused request the sequencer has forgotten", () => {
  it("that ran is answered its recorded output, not 503; the same id with another command is a 409; a new one is still the 503", async () => {
    const g = await compactedAtQuota();
    expect(await g.driver.submit("c", 1, { op: "incr", key: "n", by: 1 })).toMatchObject({ kind: "ok", seq: 1, output: { value: 1 } });
    expect(await g.driver.submit("c", 1, { op: "incr", key: "n", by: 5 })).toMatchObject({ kind: "conflict" });
    expect(await g.driver.submit("c", 2, { op: "incr", key: "n", by: 1 })).toMatchObject({ kind: "unavailable", storage: true });
    g.driver.stop();
  });

  it("with a replica in the sequencer's object, a new one is refused after that replica's word alone: no call over the network (a batch refused at the quota made 768, a review)", async () => {
    const g = await compactedAtQuota();
    Object.assign(g.io, { directReplica: "r1" });
    const remote = () => ["r2", "r3"].reduce((n, id) => n + (g.calls.get(`${id}:session`) ?? 0), 0);
    const before = remote();
    const answers = await Promise.all(g.driver.submitBatch("c", Array.from({ length: 50 }, (_, i) => ({ request: 100 + i, command: { op: "put", key: `n${i}`, value: i } }))));
    expect(answers.every((a) => a.kind === "unavailable")).toBe(true);
    expect(g.calls.get("r1:session") ?? 0).toBeGreaterThanOrEqual(50);
    expect(remote()).toBe(before);
    // One that ran is still answered its outcome.
    expect(await g.driver.submit("c", 1, { op: "incr", key: "n", by: 1 })).toMatchObject({ kind: "ok", seq: 1, output: { value: 1 } });
    g.driver.stop();
  });

  it("whose outcome the replicas no longer keep (below its client's evicted ids) is a 409 that says it may have run", async () => {
    const g = await compactedAtQuota();
    for (const id of ["r1", "r2", "r3"]) {
      const core = g.replicas.get(id)!.core!;
      // Its session row gone and its client's evicted ids past it, as an eviction leaves them.
      (core as unknown as { session: (c: string, r: number) => unknown }).session = (c, r) => (c === "c" && r <= 1 ? { kind: "missing", expired: true } : { kind: "missing" });
    }
    expect(await g.driver.submit("c", 1, { op: "incr", key: "n", by: 1 })).toMatchObject({ kind: "conflict", message: expect.stringMatching(/may have run already/) });
    g.driver.stop();
  });

  it("when no replica answers for it, is a 504 (it may have run), not a 503", async () => {
    const g = await compactedAtQuota();
    for (const id of ["r1", "r2", "r3"]) (g.replicas.get(id)!.core! as unknown as { session: () => never }).session = () => { throw new Error("unreachable"); };
    expect(await g.driver.submit("c", 1, { op: "incr", key: "n", by: 1 })).toMatchObject({ kind: "timeout", message: expect.stringMatching(/no longer holds the requests ordered through seq \d+.*may have run already/) });
    g.driver.stop();
  });
});

describe("a refused request the sequencer has forgotten, its group deleted during the lookup", () => {
  it("is answered deleted, not a 504 that has the client retry (into a group made again under the name)", async () => {
    const g = await compactedAtQuota();
    for (const id of ["r1", "r2", "r3"]) g.slow.set(id, 100);
    const answer = g.driver.submit("c", 2, { op: "incr", key: "n", by: 1 });
    await new Promise((r) => setTimeout(r, 20));
    g.driver.stop(true);
    expect(await answer).toMatchObject({ kind: "deleted" });
  });
});

describe("a forgotten request's id used again for another command (a probe)", () => {
  // (c, 1) put v1 ran at seq 1 and left the index; the same pair with v2 was then ordered (the
  // index no longer knew it) and refused by the replicas (409). Its retry was told seq 1's output,
  // "replayed", though v2 never ran; v1's own retry was a 409 for good.
  async function reused(outputs: "first" | "majority" = "first") {
    const g = directGroup({ ...config, outputs }, { entries: 5, slack: 2 });
    expect(await g.driver.submit("c", 1, { op: "put", key: "acct", value: "v1" })).toMatchObject({ kind: "ok", seq: 1 });
    for (let i = 0; i < 40; i++) expect((await g.driver.submit("o", i + 1, { op: "put", key: `k${i}`, value: i })).kind).toBe("ok");
    for (let i = 0; i < 50 && g.driver.core.forgottenThroughSeq < 2; i++) await new Promise((r) => setTimeout(r, 10));
    expect(g.driver.core.forgottenThroughSeq).toBeGreaterThanOrEqual(2);
    expect(await g.driver.submit("c", 1, { op: "put", key: "acct", value: "v2" })).toMatchObject({ kind: "conflict" });
    return g;
  }

  it("the reuse's retry is still a 409, never the first command's answer", async () => {
    const g = await reused();
    expect(await g.driver.submit("c", 1, { op: "put", key: "acct", value: "v2" })).toMatchObject({ kind: "conflict", message: "request 1 of client c was already used for a different command" });
    expect(await g.replicas.get("r1")!.query({ op: "get", key: "acct" }, g.driver.core.commitSeq, 1_000)).toMatchObject({ kind: "ok", result: { value: "v1" } });
    g.driver.stop();
  });

  it("the first command's retry is answered its first answer (seq 1, replayed), not a 409", async () => {
    const g = await reused();
    expect(await g.driver.submit("c", 1, { op: "put", key: "acct", value: "v1" })).toMatchObject({ kind: "ok", seq: 1, output: { previous: null }, replayed: true });
    // A pair used first within the retained log is still a plain 409 for another command.
    expect(await g.driver.submit("o", 40, { op: "put", key: "k39", value: "other" })).toMatchObject({ kind: "conflict" });
    g.driver.stop();
  });

  it("with no replica answering for the pair, the first command's retry is a 504 (retry), not a 409 that would have it sent again under a new id (a review)", async () => {
    const g = await reused();
    for (const id of ["r1", "r2", "r3"]) (g.replicas.get(id)!.core! as unknown as { session: () => never }).session = () => { throw new Error("unreachable"); };
    expect(await g.driver.submit("c", 1, { op: "put", key: "acct", value: "v1" })).toMatchObject({ kind: "timeout" });
    g.driver.stop();
  });

  it("the replica in the sequencer's object answers the first command's retry alone with outputs first; with majority, and the others silent, it is a 504, never a 409 (a review)", async () => {
    for (const outputs of ["first", "majority"] as const) {
      const g = await reused(outputs);
      Object.assign(g.io, { directReplica: "r1" });
      for (const id of ["r2", "r3"]) (g.replicas.get(id)!.core! as unknown as { session: () => never }).session = () => { throw new Error("unreachable"); };
      const answer = await g.driver.submit("c", 1, { op: "put", key: "acct", value: "v1" });
      expect(answer, outputs).toMatchObject(outputs === "first" ? { kind: "ok", seq: 1, replayed: true } : { kind: "timeout" });
      g.driver.stop();
    }
  });

  it("with a replica in the sequencer's object, plain conflicts are settled by it alone: no session call over the network (a batch of 100 made 300: a review)", async () => {
    const g = await reused();
    Object.assign(g.io, { directReplica: "r1" });
    const remote = () => ["r2", "r3"].reduce((n, id) => n + (g.calls.get(`${id}:session`) ?? 0), 0);
    const before = remote();
    const answers = await Promise.all(g.driver.submitBatch("o", Array.from({ length: 40 }, (_, i) => ({ request: i + 1, command: { op: "put", key: `k${i}`, value: "other" } }))));
    expect(answers.every((a) => a.kind === "conflict")).toBe(true);
    expect(remote()).toBe(before);
    // The first command's retry still gets its first answer.
    expect(await g.driver.submit("c", 1, { op: "put", key: "acct", value: "v1" })).toMatchObject({ kind: "ok", seq: 1, replayed: true });
    g.driver.stop();
  });
});
