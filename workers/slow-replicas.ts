// What this router (one isolate) has seen of replicas serving reads and watches: one that failed
// or did not answer in time is asked last for slowReplicaAvoidMs. Without it, every stale or
// sequential read near a replica that takes seconds per call waited those seconds (a probe: 4 s
// per read, while two other replicas were at the same position), because "nearest" knew only
// places, not health. What a replica answers (even a refusal) clears its mark: it is reachable.
import { slowReplicaAvoidMs, slowReplicasMax } from "../shared/limits.js";

/** `${group}/${id}` -> when it last failed or timed out, oldest first (a Map keeps insertion order). */
const marks = new Map<string, number>();

export function noteSlow(group: string, id: string, nowMs: number): void {
  const key = `${group}/${id}`;
  marks.delete(key);
  marks.set(key, nowMs);
  // A bound, as on every table: the oldest mark goes first (it is the nearest to expiring).
  if (marks.size > slowReplicasMax) marks.delete(marks.keys().next().value!);
}

export function noteAnswered(group: string, id: string): void {
  marks.delete(`${group}/${id}`);
}

export function isSlow(group: string, id: string, nowMs: number): boolean {
  const at = marks.get(`${group}/${id}`);
  if (at === undefined) return false;
  if (nowMs - at < slowReplicaAvoidMs) return true;
  marks.delete(`${group}/${id}`);
  return false;
}

/** The replicas in the same order, except those marked slow, which go last (in their order). */
export function slowLast<T extends { id: string }>(group: string, replicas: T[], nowMs: number): T[] {
  const slow = replicas.filter((r) => isSlow(group, r.id, nowMs));
  return slow.length === 0 ? replicas : [...replicas.filter((r) => !slow.includes(r)), ...slow];
}
