// A query's trip to the replicas, nearest first (API.md "Locations and nearest reads"): the
// first replica that can serve answers. A replica that has not answered readAnswerSlackMs past the
// read's wait is overtaken: the next is asked too, and whichever answers first serves (the slow
// call goes on, and its answer still counts). A refusal moves on at once. Once the last replica
// is asked, every call still running has until that one's wait plus a call's timeout, so a group
// whose every replica is slow (one replica, a large page, a far router) still answers, and no
// read waits past that. Before, a read waited on each replica in turn for as long as it took, and
// a version that gave up on a slow call instead answered 503 when every replica was slow (a
// review); the next gave each late refusal a fresh window (up to 21 s: another review).
import { readAnswerSlackMs, replicaRpcTimeoutMs } from "../shared/limits.js";
import type { GroupConfig } from "../shared/protocol/types.js";
import { type Env, realClock, replicaStub, rpc } from "./env.js";
import type { ReadAnswer } from "./replica.js";
import { noteAnswered, noteSlow } from "./slow-replicas.js";

type Timeout = Extract<ReadAnswer, { kind: "timeout" }>;
/** A replica's answer, or `failed` (busy) when the call itself failed (unreachable). */
type Asked = { answer: ReadAnswer; failed: boolean };
/** A call under way: its answer, its place in the order asked, and when it was due. */
type Running = { call: Promise<Asked>; no: number; dueMs: number; waitMs: number; endMs: number; evenDamaged: boolean };

export interface ReadPlan {
  query: unknown;
  /** The position the replica must have applied (0: any). */
  minSeq: number;
  /** How long a replica may wait to reach minSeq (0 for stale reads). */
  waitMs: number;
  /** Called once, at the first replica that did not reach minSeq in time (it may throw a 400). */
  onFirstTimeout?: () => Promise<void>;
}

/** A replica to ask; `evenDamaged`: asked again, to serve though its rows failed its last scrub. */
type Place = { id: string; location: string | null; evenDamaged?: true };

/**
 * The read from the nearest replica that serves it. One whose rows failed its last scrub refuses
 * ("damaged") and goes to the back of the queue, asked again to serve anyway only once no other
 * is running (every replica damaged is the audit's alarm, and the group serves on as it did),
 * while one damaged replica among sound ones served its damage (a probe). Such a read can take as
 * long as two rounds (a sound replica that hangs is waited for to its end), and onFirstTimeout
 * applies to the whole of it (a second round dropped it: a review).
 */
export async function readNearest(env: Env, config: GroupConfig, order: { id: string; location: string | null }[], plan: ReadPlan): Promise<ReadAnswer> {
  const running = new Map<string, Running>();
  const left: Place[] = [...order];
  let last: ReadAnswer = { kind: "busy", replica: "" };
  let timedOut: Timeout | null = null;
  let nextAtMs = 0; // when the next replica is asked: at once at first, and after a refusal
  let deadlineMs = Infinity; // set when the last replica is asked
  for (let no = 0; ; ) {
    const nowMs = Date.now();
    // A damaged replica asked again waits for every other still running, slow ones too (any may
    // be sound): it overtook a sound replica 1 s late with its damage (a review). Not for another
    // damaged one asked again: those overtake each other as any replicas do.
    const held = left[0]?.evenDamaged === true && [...running.values()].some((r) => !r.evenDamaged);
    if (left.length > 0 && nowMs >= nextAtMs && !held) {
      // Once one replica did not reach the position in time, the next are asked without waiting:
      // one already there serves (API.md). A slow replica's timeout used to be the answer, a 504,
      // while two others were far past the position (a probe: 9 of 60 reads).
      const wait = timedOut ? 0 : plan.waitMs;
      const r = left.shift()!;
      running.set(r.id, { call: ask(env, config, r, [plan.query, plan.minSeq, wait, r.evenDamaged === true]), no: no++, dueMs: nowMs + wait + readAnswerSlackMs, waitMs: wait, endMs: nowMs + wait + replicaRpcTimeoutMs, evenDamaged: r.evenDamaged === true });
      nextAtMs = nowMs + wait + readAnswerSlackMs;
      if (left.length === 0) deadlineMs = nowMs + wait + replicaRpcTimeoutMs;
    }
    if (running.size === 0) break;
    const untilMs = held ? Math.max(...[...running.values()].filter((r) => !r.evenDamaged).map((r) => r.endMs)) : left.length > 0 ? nextAtMs : deadlineMs;
    const got = await firstOf(running, Math.max(0, untilMs - Date.now()));
    if (got === null) {
      // The others ran out of time: the damaged replica is what is left.
      if (held) for (const [id, r] of running) if (!r.evenDamaged) noteSlow(config, id, Date.now()), running.delete(id);
      if (left.length > 0) continue;
      break;
    }
    const winner = running.get(got.id)!;
    running.delete(got.id);
    // Every replica would say the same (the answer's size, the machine's own bug): not retried,
    // and no replica marked slow for it.
    if (got.answer.kind === "too_large" || got.answer.kind === "query_wrote") return got.answer;
    if (got.answer.kind === "ok") {
      // Overtaken: asked before it and still running. It was slow itself if it answered late.
      for (const [id, r] of running) if (r.no < winner.no) noteSlow(config, id, Date.now());
      if (Date.now() > winner.dueMs) noteSlow(config, got.id, Date.now());
      else noteAnswered(config, got.id);
      return got.answer;
    }
    // A refusal (quarantined, rebuilding, full) or a position not reached in the read's whole
    // wait: it cannot serve such reads now, so the next go to the others first. Cleared as
    // answered, a replica being rebuilt was asked first by every read, each paying its delay (a
    // probe: reads at 1.5 to 3 s for 8 s, a third of the rate). One asked without a wait (after
    // another's timeout) may be a few ms behind: not marked (a review). A failed call was marked by `ask`.
    if (got.answer.kind === "damaged") left.push({ ...order.find((r) => r.id === got.id)!, evenDamaged: true });
    const missedWait = got.answer.kind === "timeout" && winner.waitMs < plan.waitMs;
    if (!got.failed && !missedWait) noteSlow(config, got.id, Date.now());
    nextAtMs = 0;
    if (got.answer.kind === "timeout") {
      if (!timedOut) await plan.onFirstTimeout?.();
      timedOut ??= got.answer;
    } else last = got.answer;
  }
  for (const id of running.keys()) noteSlow(config, id, Date.now());
  return timedOut ?? last;
}

function ask(env: Env, config: GroupConfig, r: { id: string; location: string | null }, args: [unknown, number, number, boolean]): Promise<Asked> {
  const stub = replicaStub(env, config, r.id, r.location);
  return rpc<ReadAnswer>(stub.call(config.incarnation, "query", args)).then(
    (answer) => ({ answer, failed: false }),
    () => {
      noteSlow(config, r.id, Date.now());
      return { answer: { kind: "busy", replica: r.id }, failed: true };
    },
  );
}

/** The first of the running calls to answer within `ms`, or null. */
function firstOf(running: Map<string, Running>, ms: number): Promise<({ id: string } & Asked) | null> {
  return new Promise((resolve) => {
    const cancel = realClock.setTimer(ms, () => resolve(null));
    for (const [id, r] of running) {
      void r.call.then((asked) => {
        cancel();
        resolve({ id, ...asked });
      });
    }
  });
}
