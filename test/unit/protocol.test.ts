import { describe, expect, it } from "vitest";
import { decideAudit } from "../../shared/protocol/audit.js";
import { decodeBookmark, encodeBookmark, givenBy, groupTag } from "../../shared/api/bookmark.js";
import { entryHash } from "../../shared/protocol/entry.js";
import { bytesToHex, canonicalJson, hexToBytes, sha256Bytes, sha256Hex, zeroHash } from "../../shared/protocol/hash.js";
import { utf8Length } from "../../shared/text.js";
import { createHash } from "node:crypto";
import type { AuditInfo } from "../../shared/protocol/types.js";
import { replicaIds } from "../../shared/protocol/types.js";
import { SequencerCore } from "../../shared/protocol/sequencer.js";
import { Cluster } from "../support/cluster.js";
import { pageBytesMax, stepOutputCharsMax, valueBytesMax } from "../../shared/limits.js";

const put = (key: string, value: unknown) => ({ op: "put", key, value });

/** Seq 1 ordered and stored at r1; the message that completes its quorum at r2 (commitSeq 1), not yet delivered. */
function quorumAtR2() {
  const c = Cluster.of("kv");
  c.submit("a", 1, put("x", 1));
  c.sequencer.flush("t");
  c.deliver("r1", c.messageFor("r1")!);
  const toR2 = c.messageFor("r2")!;
  expect(toR2.commitSeq).toBe(1);
  return { c, toR2 };
}

/** Seven 64 KiB values stored (v0..v6), and a txn whose output holds all seven (about 459 KiB). */
function withBigValues() {
  const c = Cluster.of("kv");
  const big = "x".repeat(valueBytesMax - 2);
  for (let i = 0; i < 7; i++) c.submit("w", i + 1, put(`v${i}`, big));
  const gets = { op: "txn", compare: [], success: Array.from({ length: 7 }, (_, i) => ({ op: "get", key: `v${i}` })), failure: [] };
  return { c, gets };
}

describe("write path", () => {
  it("orders, replicates, commits on a majority and applies in order everywhere", () => {
    const c = Cluster.of("kv");
    for (let r = 1; r <= 5; r++) expect(c.submit("a", r, put(`k${r}`, r)).kind).toBe("queued");
    c.settle();
    expect(c.sequencer.commitSeq).toBe(5);
    for (const r of c.replicas.values()) {
      expect(r.appliedSeq).toBe(5);
      expect(r.query({ op: "list" })).toEqual({ items: [1, 2, 3, 4, 5].map((i) => [`k${i}`, i]) });
    }
    const digests = new Set([...c.replicas.values()].map((r) => r.position().digest));
    expect(digests.size).toBe(1);
    expect(c.outcome(3)).toEqual({ seq: 3, status: "ok", originalSeq: 3, output: { previous: null } });
    // The log is a hash chain.
    let prev = zeroHash;
    for (const e of c.seqStore.log) {
      expect(e.hash).toBe(entryHash(prev, e));
      prev = e.hash;
    }
  });

  it("the replica whose ack completes a quorum applies in that same step and answers with the output", () => {
    const c = Cluster.of("kv");
    c.submit("a", 1, put("x", 1));
    c.sequencer.flush("t");
    const toR1 = c.messageFor("r1")!;
    expect(toR1.commitSeq).toBe(0); // r1's ack alone is no quorum
    c.deliver("r1", toR1);
    expect(c.sequencer.commitSeq).toBe(0);
    const toR2 = c.messageFor("r2")!;
    expect(toR2.entries.map((e) => e.seq)).toEqual([1]);
    expect(toR2.commitSeq).toBe(1); // r1 holds it; with r2 that is a quorum
    const resp = c.deliver("r2", toR2)!;
    expect(resp.ok && resp.outputs).toEqual([{ seq: 1, status: "ok", originalSeq: 1, output: { previous: null } }]);
    expect(c.sequencer.commitSeq).toBe(1);
    expect(c.outcome(1)?.output).toEqual({ previous: null });
    expect(c.replicas.get("r2")!.appliedSeq).toBe(1);
    expect(c.replicas.get("r1")!.appliedSeq).toBe(0); // learns the commit later
  });

  it("a linearizable read's index covers a commit sent with an ack still on its way, and a restarted sequencer's whole log", () => {
    // r2 applies seq 1 in the step that completes its quorum; its ack is lost. A read at r2 sees
    // x = 1, so a later linearizable read (at r1, still at 0) must wait for 1, not read at 0.
    const { c, toR2 } = quorumAtR2();
    c.replicas.get("r2")!.append(toR2); // applied there; the answer never arrives
    expect(c.replicas.get("r2")!.appliedSeq).toBe(1);
    expect(c.sequencer.commitSeq).toBe(0);
    expect(c.sequencer.readIndexSeq).toBe(1);
    // Started again over the same storage: what it sent before is unknown, so its whole log.
    c.sequencer = new SequencerCore(c.seqStore, c.seqStore.meta!, 50);
    expect(c.sequencer.commitSeq).toBe(0);
    expect(c.sequencer.readIndexSeq).toBe(1);
  });

  it("a replica that stopped applying at its step's output budget is sent the commit again, not left for its next heartbeat", () => {
    const { c, gets } = withBigValues();
    c.settle();
    const n = Math.ceil((2 * stepOutputCharsMax) / (7 * valueBytesMax)) + 2; // over two steps' worth
    for (let i = 0; i < n; i++) c.submit("w", 100 + i, gets);
    c.settle(); // rounds of messages only: no heartbeat
    expect(c.sequencer.commitSeq).toBe(7 + n);
    for (const [id, r] of c.replicas) expect(r.appliedSeq, id).toBe(7 + n);
  });

  it("a watch page counts outputs toward pageBytesMax: large outputs come a few per page, none skipped", () => {
    const { c, gets } = withBigValues();
    for (let i = 0; i < 30; i++) c.submit("w", 100 + i, gets);
    c.settle();
    const r1 = c.replicas.get("r1")!;
    const seen: number[] = [];
    for (let from = 7, pages = 0; from < r1.appliedSeq; pages++) {
      const page = r1.readEvents(from, 256);
      expect(Array.isArray(page) && page.length > 0).toBe(true);
      const texts = page as { seq: number; text: string }[];
      expect(texts.reduce((n, t) => n + t.text.length, 0)).toBeLessThan(pageBytesMax + 2 * 7 * valueBytesMax);
      seen.push(...texts.map((t) => t.seq));
      from = texts[texts.length - 1]!.seq;
      expect(pages).toBeLessThan(30);
    }
    expect(seen).toEqual(Array.from({ length: 30 }, (_, i) => 8 + i));
  });

  it("takes the commit a replica applied when its ack arrives, even if a voter it counted was quarantined since", () => {
    const { c, toR2 } = quorumAtR2();
    c.sequencer.setQuarantined("r1", true);
    c.deliver("r2", toR2);
    expect(c.replicas.get("r2")!.appliedSeq).toBe(1);
    expect(c.sequencer.commitSeq).toBe(1);
  });

  it("asks to hold new entries back while another voter has them in flight, and only then", () => {
    const c = Cluster.of("kv");
    c.submit("a", 1, put("x", 1));
    c.settle(); // every replica has been heard from
    c.submit("a", 2, put("y", 2));
    c.sequencer.flush("t");
    const toR1 = c.messageFor("r1", true)!;
    expect(toR1.entries.map((e) => e.seq)).toEqual([2]); // nobody else has it: not held
    expect(c.sequencer.nextAppend("r2", true)).toEqual({ kind: "hold", why: "in-flight-elsewhere" });
    // The driver may refuse to hold (no load, or held long enough): it goes, without the commit.
    const toR2 = c.messageFor("r2", false)!;
    expect(toR2.entries.map((e) => e.seq)).toEqual([2]);
    expect(toR2.commitSeq).toBe(1);
  });

  it("commits with one replica of three down, and not with two down", () => {
    const c = Cluster.of("kv");
    c.down.add("r3");
    c.submit("a", 1, put("x", 1));
    c.settle();
    expect(c.sequencer.commitSeq).toBe(1);
    expect(c.outcome(1)?.status).toBe("ok");
    c.down.add("r2");
    c.submit("a", 2, put("x", 2));
    c.settle(5);
    expect(c.sequencer.commitSeq).toBe(1);
    expect(c.replicas.get("r1")!.appliedSeq).toBe(1);
    // Enough missed contacts and the sequencer refuses new work before ordering it.
    for (let i = 0; i < 5; i++) c.round();
    expect(c.submit("a", 3, put("x", 3)).kind).toBe("unavailable");
  });

  it("catches up a replica that missed appends (a gap) from the sequencer's log", () => {
    const c = Cluster.of("kv");
    c.down.add("r3");
    for (let r = 1; r <= 300; r++) c.submit("a", r, put(`k${r}`, r));
    c.settle();
    expect(c.replicas.get("r3")!.appliedSeq).toBe(0);
    c.down.delete("r3");
    c.submit("a", 301, put("last", 1));
    c.settle();
    const r3 = c.replicas.get("r3")!;
    expect(r3.appliedSeq).toBe(301);
    expect(r3.position().digest).toBe(c.replicas.get("r1")!.position().digest);
  });

  it("answers a gap message with its position and refuses a lower epoch", () => {
    const c = Cluster.of("kv");
    const r1 = c.replicas.get("r1")!;
    const gap = r1.append({ epoch: 1, prevSeq: 5, prevHash: zeroHash, entries: [], commitSeq: 0 });
    expect(gap).toMatchObject({ ok: false, reason: "gap", lastSeq: 0 });
    r1.append({ epoch: 3, prevSeq: 0, prevHash: zeroHash, entries: [], commitSeq: 0 });
    expect(r1.append({ epoch: 2, prevSeq: 0, prevHash: zeroHash, entries: [], commitSeq: 0 })).toMatchObject({
      ok: false,
      reason: "stale_epoch",
      epoch: 3,
    });
  });

  it("rejects an entry that does not chain to its predecessor and leaves nothing half-applied", () => {
    const c = Cluster.of("kv");
    const r1 = c.replicas.get("r1")!;
    const body = { seq: 1, epoch: 1, kind: "command" as const, client: "a", request: 1, command: put("x", 1), timestamp: "t" };
    const good = { ...body, hash: entryHash(zeroHash, body) };
    const bad = { ...body, seq: 2, request: 2, hash: "f".repeat(64) };
    expect(() => r1.append({ epoch: 1, prevSeq: 0, prevHash: zeroHash, entries: [good, bad], commitSeq: 2 })).toThrow(/chain/);
    expect(r1.position()).toMatchObject({ lastSeq: 0, appliedSeq: 0, digest: zeroHash });
    expect(c.replicaStores.get("r1")!.log.size).toBe(0);
  });

  it("applies only committed entries", () => {
    const c = Cluster.of("kv");
    c.submit("a", 1, put("x", 1));
    c.sequencer.flush("t");
    const msg = c.messageFor("r1")!;
    expect(msg.commitSeq).toBe(0);
    const resp = c.replicas.get("r1")!.append(msg);
    expect(resp).toMatchObject({ ok: true, lastSeq: 1, appliedSeq: 0 });
  });
});

describe("exactly-once", () => {
  it("a retry of an ordered request is not ordered again; a different command is a conflict", () => {
    const c = Cluster.of("kv");
    c.submit("a", 1, { op: "incr", key: "n", by: 1 });
    expect(c.submit("a", 1, { op: "incr", key: "n", by: 1 })).toMatchObject({ kind: "existing", seq: null, committed: false });
    c.settle();
    expect(c.submit("a", 1, { by: 1, key: "n", op: "incr" })).toMatchObject({ kind: "existing", seq: 1, committed: true });
    expect(c.submit("a", 1, { op: "incr", key: "n", by: 2 })).toMatchObject({ kind: "conflict", seq: 1 });
    expect(c.sequencer.lastLogSeq).toBe(1);
  });

  it("survives a sequencer restart: the request index is persistent", () => {
    const c = Cluster.of("kv");
    c.submit("a", 1, { op: "incr", key: "n", by: 1 });
    c.settle();
    c.restartSequencer();
    expect(c.submit("a", 1, { op: "incr", key: "n", by: 1 })).toMatchObject({ kind: "existing", seq: 1 });
  });

  it("rebuilds the request index from the log at start, bounded; an older retry is executed once all the same", () => {
    const c = Cluster.of("kv");
    for (let r = 1; r <= 20; r++) c.submit("a", r, { op: "incr", key: "n", by: 1 });
    c.settle();
    // Restarted with room for every request: a retry is known (its command hash read from the log).
    c.sequencer = new SequencerCore(c.seqStore, c.seqStore.meta!, 50);
    expect(c.sequencer.requestIndexSize).toBe(20);
    expect(c.sequencer.submit({ client: "a", request: 3, command: { op: "incr", key: "n", by: 1 } })).toMatchObject({ kind: "existing", seq: 3 });
    expect(c.sequencer.submit({ client: "a", request: 3, command: { op: "incr", key: "n", by: 5 } })).toMatchObject({ kind: "conflict", seq: 3 });
    // With room for 5 only, the 5 newest are known; an older retry is ordered again...
    c.sequencer = new SequencerCore(c.seqStore, c.seqStore.meta!, 5);
    expect(c.sequencer.requestIndexSize).toBe(5);
    expect(c.sequencer.submit({ client: "a", request: 19, command: { op: "incr", key: "n", by: 1 } })).toMatchObject({ kind: "existing", seq: 19 });
    expect(c.sequencer.submit({ client: "a", request: 2, command: { op: "incr", key: "n", by: 1 } }).kind).toBe("queued");
    c.settle();
    // ...and the replicas' session table answers it as the duplicate it is: executed once.
    expect(c.outcome(21)).toEqual({ seq: 21, status: "duplicate", originalSeq: 2, output: { value: 2 } });
    expect(c.replicas.get("r1")!.query({ op: "get", key: "n" })).toEqual({ value: 20 });
    // The index now names the re-ordered entry; a later restart still answers as the first did.
    c.sequencer = new SequencerCore(c.seqStore, c.seqStore.meta!, 50);
    expect(c.sequencer.submit({ client: "a", request: 2, command: { op: "incr", key: "n", by: 1 } })).toMatchObject({ kind: "existing", seq: 2 });
  });
});

describe("sequencer restart", () => {
  it("finishes replicating entries ordered before it lost its memory", () => {
    const c = Cluster.of("kv");
    c.submit("a", 1, put("x", 1));
    c.sequencer.flush("t");
    c.restartSequencer();
    c.settle();
    expect(c.sequencer.commitSeq).toBe(1);
    for (const r of c.replicas.values()) expect(r.appliedSeq).toBe(1);
  });

  it("a replica restarted from storage keeps its position and digest", () => {
    const c = Cluster.of("kv");
    for (let r = 1; r <= 10; r++) c.submit("a", r, put(`k${r}`, r));
    c.settle();
    const before = c.replicas.get("r2")!.position();
    c.restartReplica("r2");
    expect(c.replicas.get("r2")!.position()).toEqual(before);
  });
});

describe("an install's end asked again", () => {
  it("is answered with that install's outcome, not \"no such transfer\" (a lost answer: the rebuilt replica was told it is quarantined and rebuilt once more; a duplicate: read as a bad copy)", () => {
    const c = Cluster.of("kv");
    for (let r = 1; r <= 2; r++) c.submit("a", r, put(`k${r}`, r));
    c.settle();
    const source = c.replicas.get("r1")!;
    const info = source.beginSnapshot()!;
    const rows = source.snapshotPage(info.seq, null, 1 << 20)!;
    const r2 = c.replicas.get("r2")!;
    expect(r2.beginInstall(info, "t1", 1)).toBe(true);
    expect(r2.installPage("t1", rows)).toBe(true);
    const first = r2.endInstall("t1");
    expect(first).toMatchObject({ ok: true, digest: info.digest });
    expect(r2.endInstall("t1")).toMatchObject({ ok: true, digest: info.digest });
    // Another transfer's end is still no such transfer.
    expect(r2.endInstall("t0")).toEqual({ ok: false, digest: "" });
  });
});

describe("state transfer and a recovery's quorum", () => {
  // Found by the simulator (seed 1011823589): a corrupted replica's repair cleared its log, and a
  // failover's recovery counted that emptied log in its fenced quorum, so the entries it had
  // acknowledged (committed with it) were missing from every log the recovery could see.
  it("a replica being rebuilt accepts no fence, nor after it until its log is back past what it acknowledged", () => {
    const c = Cluster.of("kv");
    for (let r = 1; r <= 2; r++) c.submit("a", r, put(`k${r}`, r));
    c.settle();
    const source = c.replicas.get("r1")!;
    const info = source.beginSnapshot()!;
    expect(info.seq).toBe(2);
    const rows = source.snapshotPage(2, null, 1 << 20)!;
    for (let r = 3; r <= 6; r++) c.submit("a", r, put(`k${r}`, r));
    c.settle();
    const r2 = c.replicas.get("r2")!;
    expect(r2.position().lastSeq).toBe(6); // it acknowledged entries up to 6

    expect(r2.beginInstall(info, "t1", 1)).toBe(true);
    expect(c.replicaStores.get("r2")!.meta!.rejoinSeq).toBe(6);
    expect(r2.fence(2)).toMatchObject({ accepted: false, rebuilding: true, lastSeq: 0 });
    expect(r2.installPage("t1", rows)).toBe(true);
    expect(r2.endInstall("t1").ok).toBe(true);
    expect(r2.position().lastSeq).toBe(2);
    // Rebuilt at 2, it no longer holds 3..6: still no fence.
    expect(r2.fence(2).accepted).toBe(false);

    // Caught up from the log, it holds everything it acknowledged again, and may stand in a quorum.
    c.sequencer.beginRepair("r2");
    c.sequencer.endRepair("r2", 2, c.nowMs);
    c.settle();
    expect(r2.position().lastSeq).toBe(6);
    expect(r2.fence(2).accepted).toBe(true);
  });

  it("a replica accepts one recovery per epoch: that one again (a lost answer, a copy), no other", () => {
    const c = Cluster.of("kv");
    c.submit("a", 1, put("k", 1));
    c.settle();
    const r1 = c.replicas.get("r1")!;
    expect(r1.fence(5, "x").accepted).toBe(true);
    expect(r1.fence(5, "x")).toMatchObject({ accepted: true, epoch: 5, lastSeq: 1 });
    expect(r1.fence(5, "y").accepted).toBe(false);
    expect(r1.fence(5).accepted).toBe(false);
    expect(r1.fence(4, "x").accepted).toBe(false);
    // A newer epoch by another recovery: the old one is not accepted again, at either epoch.
    expect(r1.fence(6, "y").accepted).toBe(true);
    expect(r1.fence(6, "x").accepted).toBe(false);
    expect(r1.fence(5, "x").accepted).toBe(false);
    // Kept across a restart (it is in the replica's meta).
    expect(c.replicaStores.get("r1")!.meta!.fencedBy).toEqual({ epoch: 6, by: "y" });
  });
});

describe("output voting", () => {
  it("majority mode answers with the agreed output and reports the replica that differs", () => {
    const c = Cluster.of("kv", 3, "majority");
    c.submit("a", 1, put("x", 1));
    c.settle();
    // Corrupt r3's stored state behind its back (once its rows are stored): its next output differs.
    c.replicas.get("r3")!.saveState();
    c.replicaStores.get("r3")!.rows.put("m/x", JSON.stringify(999));
    c.submit("a", 2, { op: "get", key: "x" });
    c.settle();
    expect(c.outcome(2)?.output).toEqual({ value: 1 });
    expect(c.diverged).toEqual(["r3"]);
    expect(c.sequencer.replicaStatuses().find((r) => r.id === "r3")!.status).toBe("quarantined");
  });

  it("first mode answers from the first output", () => {
    const c = Cluster.of("kv", 3, "first");
    c.submit("a", 1, put("x", 1));
    c.settle();
    expect(c.decided.filter((d) => d.seq === 1)).toHaveLength(1);
  });
});

describe("checkpoints and audits", () => {
  function infoOf(c: Cluster, id: string): AuditInfo {
    return c.replicas.get(id)!.auditInfo();
  }

  it("records checkpoints every checkpointEvery entries; an audit of equal replicas is consistent", () => {
    const c = Cluster.of("kv", 3, "first", 4);
    for (let r = 1; r <= 9; r++) c.submit("a", r, put(`k${r}`, r));
    c.settle();
    const info = infoOf(c, "r1");
    expect(info.checkpoints.map((cp) => cp.seq)).toEqual([0, 4, 8, 9]);
    const infos = new Map([...c.replicas.keys()].map((id) => [id, infoOf(c, id)] as const));
    const { report, diverged } = decideAudit("g", "t", replicaIds(3), infos);
    expect(report.verdict).toBe("consistent");
    expect(report.seq).toBe(9);
    expect(diverged).toEqual([]);
  });

  // A probe: right after a failover's recovery an idle group's replicas stood at 41, 42 and 41
  // (the no-op's commit not yet heard by two), and the audit compared them at seq 0, the empty
  // state every replica lists, and called the group consistent with every replica "agrees".
  it("compares at a position a quorum shares, never at the empty state replicas have left; with none, insufficient", () => {
    const c = Cluster.of("kv", 3, "first", 100);
    let request = 0;
    const write = () => c.submit("a", ++request, put(`k${request}`, request));
    /** One more entry, committed by r1 and r2 and applied by `appliedBy` only (the others hold it unapplied or not at all). */
    const writeHeardBy = (appliedBy: string) => {
      write();
      c.down.add("r3");
      c.round(); // r1 and r2 store it: committed
      c.down = new Set(["r1", "r2", "r3"].filter((id) => id !== appliedBy));
      c.round(); // the commit reaches `appliedBy` only
      c.down.clear();
    };
    for (let i = 0; i < 41; i++) write();
    c.settle();
    writeHeardBy("r2");
    const applied = () => [...c.replicas.values()].map((r) => r.appliedSeq);
    expect(applied()).toEqual([41, 42, 41]);
    const infos = () => new Map([...c.replicas.keys()].map((id) => [id, infoOf(c, id)] as const));
    const { report } = decideAudit("g", "t", replicaIds(3), infos());
    expect(report.seq).toBe(41);
    expect(report.verdict).toBe("consistent");
    expect(report.replicas.map((r) => r.verdict)).toEqual(["agrees", "behind", "agrees"]);
    expect(report.replicas[1]!.reason).toBe("no checkpoint at seq 41 (applied 42, past it): not compared");
    expect(report.replicas[0]!.digest).toBe(c.replicas.get("r1")!.auditInfo().digest);

    // Settled: compared where they all stand.
    c.settle();
    expect(decideAudit("g", "t", replicaIds(3), infos()).report).toMatchObject({ seq: 42, verdict: "consistent" });

    // 41, 42, 40: no position a quorum shares (no periodic checkpoint yet): nothing is compared.
    const d = Cluster.of("kv", 3, "first", 100);
    for (let r = 1; r <= 40; r++) d.submit("a", r, put(`k${r}`, r));
    d.settle();
    d.down.add("r3");
    d.submit("a", 41, put("k41", 41));
    d.round(); // r1 and r2 store 41: committed
    d.submit("a", 42, put("k42", 42));
    d.round(); // r1 and r2 apply 41, store 42: committed
    d.down.add("r1");
    d.round(); // r2 applies 42
    d.down.clear();
    expect([...d.replicas.values()].map((r) => r.appliedSeq)).toEqual([41, 42, 40]);
    const none = decideAudit("g", "t", replicaIds(3), new Map([...d.replicas.keys()].map((id) => [id, infoOf(d, id)] as const)));
    expect(none.report.verdict).toBe("insufficient");
    expect(none.report.replicas.map((r) => r.verdict)).toEqual(["behind", "behind", "behind"]);
    expect(none.report.replicas[0]!.reason).toBe("no checkpoint that a quorum shares (applied 41): not compared");
    expect(none.diverged).toEqual([]);
    // Its seq 0 is no position compared, and the report says so (a probe read "seq 0" as one).
    expect(none.report).toMatchObject({ seq: 0, compared: false });
    // A group that has applied nothing is compared at its empty state, where every replica stands.
    const empty = Cluster.of("kv", 3, "first", 100);
    const emptyInfos = new Map([...empty.replicas.keys()].map((id) => [id, infoOf(empty, id)] as const));
    const atEmpty = decideAudit("g", "t", replicaIds(3), emptyInfos).report;
    expect(atEmpty).toMatchObject({ seq: 0, verdict: "consistent" });
    expect(atEmpty.compared).toBeUndefined(); // seq 0 was compared there
  });

  // Between periodic checkpoints, replicas under writes share no position: the audit said
  // `insufficient` (degraded, to the health) or called a replica a commit ahead `behind`. An audit
  // marks the next seq, which each replica records as it passes: the next audit compares them all.
  it("compares every replica at the seq an earlier audit marked, once they have all passed it", () => {
    const c = Cluster.of("kv", 3, "first", 100);
    const infos = (markSeq?: number) => new Map([...c.replicas.keys()].map((id) => [id, c.replicas.get(id)!.auditInfo(markSeq)] as const));
    for (let r = 1; r <= 40; r++) c.submit("a", r, put(`k${r}`, r));
    c.settle();
    expect(decideAudit("g", "t", replicaIds(3), infos(41)).report).toMatchObject({ seq: 40, verdict: "consistent" });
    // 41 and 42 reach all three; 43 is applied by r2 only.
    c.submit("a", 41, put("k41", 41));
    c.submit("a", 42, put("k42", 42));
    c.settle();
    c.down.add("r3");
    c.submit("a", 43, put("k43", 43));
    c.round(); // r1 and r2 store 43: committed
    c.down.add("r1");
    c.round(); // r2 applies 43
    c.down.clear();
    expect([...c.replicas.values()].map((r) => r.appliedSeq)).toEqual([42, 43, 42]);
    const { report } = decideAudit("g", "t", replicaIds(3), infos());
    expect(report).toMatchObject({ seq: 41, verdict: "consistent" });
    expect(report.replicas.map((r) => r.verdict)).toEqual(["agrees", "agrees", "agrees"]);
    // A mark is recorded once: the seq it named, not every later one.
    expect(c.replicas.get("r2")!.auditInfo().checkpoints.map((cp) => cp.seq)).toEqual([0, 41, 43]);
  });

  it("the scrub flags a replica whose rows were changed behind its digest", () => {
    const c = Cluster.of("kv");
    for (let r = 1; r <= 4; r++) c.submit("a", r, put(`k${r}`, r));
    c.settle();
    c.replicas.get("r2")!.saveState();
    c.replicaStores.get("r2")!.rows.put("m/k1", "12345");
    const infos = new Map([...c.replicas.keys()].map((id) => [id, infoOf(c, id)] as const));
    const { report, diverged } = decideAudit("g", "t", replicaIds(3), infos);
    expect(diverged).toEqual(["r2"]);
    expect(report.verdict).toBe("diverged");
    expect(report.replicas.find((r) => r.id === "r2")!.verdict).toBe("diverged");
    expect(report.replicas.filter((r) => r.verdict === "agrees").map((r) => r.id)).toEqual(["r1", "r3"]);
  });

  it("a minority digest at the compared checkpoint is diverged; unreachable and behind are reported", () => {
    const base = (seq: number, digest: string): AuditInfo => ({
      epoch: 1,
      lastSeq: seq,
      commitSeq: seq,
      appliedSeq: seq,
      digest,
      quarantined: false,
      checkpoints: [
        { seq: 0, digest: zeroHash, logHash: zeroHash },
        { seq, digest, logHash: "h" },
      ],
      scrub: { recordedDigest: digest, actualDigest: digest, rows: 1 },
    });
    const infos = new Map<string, AuditInfo | null>([
      ["r1", base(8, "aa")],
      ["r2", base(8, "aa")],
      ["r3", base(8, "bb")],
      ["r4", null],
      ["r5", base(8, "aa")],
    ]);
    const { report, diverged } = decideAudit("g", "t", replicaIds(5), infos);
    expect(report.seq).toBe(8);
    expect(diverged).toEqual(["r3"]);
    expect(report.replicas.find((r) => r.id === "r4")!.verdict).toBe("unreachable");

    const lagging = new Map<string, AuditInfo | null>([
      ["r1", base(8, "aa")],
      ["r2", base(8, "aa")],
      ["r3", { ...base(2, "cc"), checkpoints: [{ seq: 2, digest: "cc", logHash: "h" }] }],
    ]);
    const r2 = decideAudit("g", "t", replicaIds(3), lagging);
    expect(r2.report.seq).toBe(8);
    expect(r2.report.replicas.find((r) => r.id === "r3")!.verdict).toBe("behind");
    expect(r2.report.verdict).toBe("consistent");

    const rebuilding = new Map<string, AuditInfo | null>([
      ["r1", base(8, "aa")],
      ["r2", base(8, "aa")],
      ["r3", { ...base(1, "zz"), rebuilding: true, scrub: { recordedDigest: "x", actualDigest: "y", rows: 3 } }],
    ]);
    const rb = decideAudit("g", "t", replicaIds(3), rebuilding);
    expect(rb.diverged).toEqual([]);
    expect(rb.report.replicas.find((r) => r.id === "r3")).toMatchObject({ verdict: "behind", reason: "being rebuilt by state transfer" });

    const tooFew = new Map<string, AuditInfo | null>([
      ["r1", base(8, "aa")],
      ["r2", null],
      ["r3", null],
    ]);
    expect(decideAudit("g", "t", replicaIds(3), tooFew).report.verdict).toBe("insufficient");
  });

  it("never kills a group: when a quorum of voters fails the same check, nobody is quarantined and the report carries an alarm", () => {
    const c = Cluster.of("kv");
    for (let r = 1; r <= 4; r++) c.submit("a", r, put(`k${r}`, r));
    c.settle();
    for (const id of ["r1", "r2"]) {
      c.replicas.get(id)!.saveState();
      c.replicaStores.get(id)!.rows.put("m/k1", "12345");
    }
    const infos = new Map([...c.replicas.keys()].map((id) => [id, infoOf(c, id)] as const));
    const { report, diverged, alarm } = decideAudit("g", "t", replicaIds(3), infos);
    expect(diverged).toEqual([]);
    expect(report.quarantined).toEqual([]);
    expect(report.verdict).toBe("diverged");
    // Rows that fail their own digests: damaged storage or a bug, and the alarm says the way out.
    expect(alarm).toMatch(/^2 of 3 voters failed the same check \(r1, r2\): their rows do not match their digests \(damaged storage, or a bug\); .*release one with rebase/);
    expect(report.alarm).toBe(alarm);
    // Every replica failing (the lone-surrogate case) is the same: reported, nobody quarantined.
    c.replicas.get("r3")!.saveState();
    c.replicaStores.get("r3")!.rows.put("m/k2", "0");
    const all = decideAudit("g", "t", replicaIds(3), new Map([...c.replicas.keys()].map((id) => [id, infoOf(c, id)] as const)));
    expect(all.diverged).toEqual([]);
    expect(all.alarm).not.toBeNull();
  });

  it("only voters make the quorum: a joining replica neither completes one nor is outvoted by one", () => {
    const base = (digest: string): AuditInfo => ({
      epoch: 1, lastSeq: 8, commitSeq: 8, appliedSeq: 8, digest, quarantined: false,
      checkpoints: [{ seq: 8, digest, logHash: "h" }],
      scrub: { recordedDigest: digest, actualDigest: digest, rows: 1 },
    });
    // Voters r1..r3, r4 joining. r1 and r4 agree, r2 and r3 agree: the voters' quorum is r2, r3.
    const infos = new Map<string, AuditInfo | null>([["r1", base("aa")], ["r2", base("bb")], ["r3", base("bb")], ["r4", base("aa")]]);
    const r = decideAudit("g", "t", replicaIds(3), infos);
    expect(r.diverged.sort()).toEqual(["r1", "r4"]);
    // One voter and one joiner agreeing are no quorum of 3 voters: nobody is quarantined.
    const split = new Map<string, AuditInfo | null>([["r1", base("aa")], ["r2", base("bb")], ["r3", null], ["r4", base("aa")]]);
    const s = decideAudit("g", "t", replicaIds(3), split);
    expect(s.diverged).toEqual([]);
    expect(s.report.verdict).toBe("insufficient");
  });
});

describe("small pieces", () => {
  it("bookmarks round-trip and reject garbage", () => {
    expect(decodeBookmark(encodeBookmark("g", 2, { epoch: 3, seq: 123456 }))).toEqual({ epoch: 3, seq: 123456, life: { tag: groupTag("g"), incarnation: 2 } });
    // Another group's tag differs; a bookmark of before (b1) is still read, with no life.
    expect(groupTag("g")).not.toBe(groupTag("h"));
    expect(encodeBookmark("g", 2, { epoch: 3, seq: 5 })).not.toBe(encodeBookmark("g", 3, { epoch: 3, seq: 5 }));
    expect(decodeBookmark("b1.3.5")).toEqual({ epoch: 3, seq: 5 });
    expect(decodeBookmark("nonsense")).toBeNull();
    expect(decodeBookmark("b1.zzzzzzzzzzzzzzz.1")).toBeNull();
    // 64 bits of SHA-256: the names whose 32-bit FNV-1a tags collide (b2's) differ; a b2 is read with its own tag.
    expect(groupTag("tdp4n76xn")).not.toBe(groupTag("texf4jbso"));
    expect(encodeBookmark("a".repeat(63), 2 ** 40, { epoch: 2 ** 40, seq: 2 ** 50 }).length).toBeLessThanOrEqual(64);
    const b2 = decodeBookmark("b2.ypaetm.1.1.1")!;
    expect(b2).toEqual({ epoch: 1, seq: 1, life: { tag: "ypaetm", incarnation: 1, form: 2 } });
    expect([givenBy(b2.life!, "texf4jbso"), givenBy(b2.life!, "g")]).toEqual([true, false]);
    expect(givenBy(decodeBookmark(encodeBookmark("g", 1, { epoch: 1, seq: 1 }))!.life!, "g")).toBe(true);
    expect(decodeBookmark("b2.abcdefgh.1.1.1")).toBeNull(); // a b2 tag has at most 7 characters
  });

  it("sha256 equals node:crypto's on every length around the block edges, in any script", () => {
    const alphabet = ["a", "é", "€", "𝄞", "\u0000", "\n", "\ud800"];
    let seed = 7;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    for (let len = 0; len <= 300; len++) {
      const text = len % 3 === 0 ? "x".repeat(len) : Array.from({ length: len }, () => alphabet[rand(alphabet.length)]).join("");
      const expected = createHash("sha256").update(text, "utf8").digest("hex");
      expect(sha256Hex(text)).toBe(expected);
      expect(bytesToHex(sha256Bytes(text))).toBe(expected);
      expect(bytesToHex(hexToBytes(expected))).toBe(expected);
      expect(utf8Length(text)).toBe(Buffer.byteLength(text, "utf8"));
    }
    expect(sha256Hex("y".repeat(100_000))).toBe(createHash("sha256").update("y".repeat(100_000)).digest("hex"));
  });

  it("canonical JSON ignores key order", () => {
    expect(canonicalJson({ b: 1, a: [{ d: 1, c: 2 }] })).toBe(canonicalJson({ a: [{ c: 2, d: 1 }], b: 1 }));
  });
});
