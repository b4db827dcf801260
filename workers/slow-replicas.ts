// What this router (one isolate) has seen of replicas serving reads and watches: one that failed,
// or was overtaken by another replica's answer, is asked last for slowReplicaAvoidMs. Without it,
// every stale or sequential read near a replica that takes seconds per call waited those seconds
// (a probe: 4 s per read, while two other replicas were at the same position), because "nearest"
// knew only places, not health. A read that a replica refused, or whose position it did not
// reach in time, marks it too (workers/reads.ts); a read it served in time clears its mark. Marks
// are per incarnation: a group deleted and made again starts with none.
import { slowReplicaAvoidMs, slowReplicasMax } from "../shared/limits.js";
import { bounded } from "../shared/bounded.js";

/** Whose replicas: a group's incarnation (GroupConfig has both). */
export interface Incarnation {
  group: string;
  incarnation: number;
}

/** `${group}/${incarnation}/${id}` -> when it was last marked, oldest first (a Map keeps insertion order). */
const marks = new Map<string, number>();

const keyOf = (of: Incarnation, id: string) => `${of.group}/${of.incarnation}/${id}`;

export function noteSlow(of: Incarnation, id: string, nowMs: number): void {
  const key = keyOf(of, id);
  marks.delete(key);
  // The oldest mark goes first (it is the nearest to expiring).
  bounded(marks, slowReplicasMax).set(key, nowMs);
}

export function noteAnswered(of: Incarnation, id: string): void {
  marks.delete(keyOf(of, id));
}

export function isSlow(of: Incarnation, id: string, nowMs: number): boolean {
  const key = keyOf(of, id);
  const at = marks.get(key);
  if (at === undefined) return false;
  if (nowMs - at < slowReplicaAvoidMs) return true;
  marks.delete(key);
  return false;
}

/** The replicas in the same order, except those marked slow, which go last (in their order). */
export function slowLast<T extends { id: string }>(of: Incarnation, replicas: T[], nowMs: number): T[] {
  const slow = replicas.filter((r) => isSlow(of, r.id, nowMs));
  return slow.length === 0 ? replicas : [...replicas.filter((r) => !slow.includes(r)), ...slow];
}
