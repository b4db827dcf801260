import { sha256Words } from "../protocol/hash.js";

/**
 * A bookmark names a log position (epoch, seq) of one life of one group; opaque to clients.
 * `b3.<tag>.<incarnation>.<epoch>.<seq>` (base 36): the tag is 64 bits of the SHA-256 of the
 * group's name, so a bookmark of another group, or of an earlier life of this one (deleted and
 * created again), is refused at once instead of being taken for a position of this log. A seq
 * alone could not tell: the new life reuses the old one's seqs, and a probe's sequential read with
 * an old bookmark answered 200 without the write it named. `b2` (2026-12-05 to 12-07) had a 32-bit
 * FNV-1a tag, whose collisions a search finds in seconds: two groups so named took each other's
 * bookmarks (a probe); it is still read, with its own tag. `b1.<epoch>.<seq>` (before) is still
 * decoded (the client compares kept ones); it names no group, so a sequential read with one is
 * served linearizable (workers/routes/commands.ts), not as a position of this log.
 */
export interface Bookmark {
  epoch: number;
  seq: number;
  /** Which group and life gave it (absent in a `b1` bookmark); `form`: 2 for a `b2`'s tag. */
  life?: { tag: string; incarnation: number; form?: 2 };
}

export function encodeBookmark(group: string, incarnation: number, at: { epoch: number; seq: number }): string {
  return `b3.${groupTag(group)}.${incarnation.toString(36)}.${at.epoch.toString(36)}.${at.seq.toString(36)}`;
}

export function decodeBookmark(text: string): Bookmark | null {
  const life = /^b([23])\.([0-9a-z]{1,13})\.([0-9a-z]{1,11})\.([0-9a-z]{1,11})\.([0-9a-z]{1,11})$/.exec(text);
  const one = life ? null : /^b1\.([0-9a-z]{1,11})\.([0-9a-z]{1,11})$/.exec(text);
  const [epochText, seqText] = life ? [life[4]!, life[5]!] : one ? [one[1]!, one[2]!] : [null, null];
  if (epochText === null || seqText === null) return null;
  if (life && life[1] === "2" && life[2]!.length > 7) return null;
  const epoch = parseInt(epochText, 36);
  const seq = parseInt(seqText, 36);
  const incarnation = life ? parseInt(life[3]!, 36) : 0;
  if (!Number.isSafeInteger(epoch) || !Number.isSafeInteger(seq) || !Number.isSafeInteger(incarnation)) return null;
  if (!life) return { epoch, seq };
  return { epoch, seq, life: { tag: life[2]!, incarnation, ...(life[1] === "2" ? { form: 2 as const } : {}) } };
}

/** Whether the bookmark's life was given by this group (its tag, by the bookmark's form). */
export function givenBy(life: NonNullable<Bookmark["life"]>, group: string): boolean {
  return life.tag === (life.form === 2 ? fnvTag(group) : groupTag(group));
}

/**
 * The same position in the form the version before this one's read (`b3` to `b2`, `b2` to `b1`),
 * or null for a `b1` (or text that is no bookmark). For a server of an earlier version (a
 * rollout's old router, a rollback), which answers a form it does not know 400 "malformed": the
 * client dropped the bookmark and told the app its write was gone, which it was not.
 */
export function olderForm(group: string, text: string): string | null {
  const b = decodeBookmark(text);
  // Only one this group gave: another group's, relabelled with this group's tag, was read by an
  // old server as a position of this group's log (a review).
  if (!b?.life || !givenBy(b.life, group)) return null;
  const at = `${b.epoch.toString(36)}.${b.seq.toString(36)}`;
  return b.life.form === 2 ? `b1.${at}` : `b2.${fnvTag(group)}.${b.life.incarnation.toString(36)}.${at}`;
}

/** 64 bits of the group's name's SHA-256, base 36 (up to 13 characters). */
export function groupTag(group: string): string {
  const h = sha256Words(group);
  return ((BigInt(h[0]! >>> 0) << 32n) | BigInt(h[1]! >>> 0)).toString(36);
}

/** A `b2` bookmark's tag: the group's name hashed (FNV-1a, 32 bits), base 36. */
function fnvTag(group: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < group.length; i++) {
    h ^= group.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(36);
}
