/**
 * A bookmark names a log position (epoch, seq) of one life of one group; opaque to clients.
 * `b2.<tag>.<incarnation>.<epoch>.<seq>` (base 36): the tag is a hash of the group's name, so a
 * bookmark of another group, or of an earlier life of this one (deleted and created again), is
 * refused at once instead of being taken for a position of this log. A seq alone could not tell:
 * the new life reuses the old one's seqs, and a probe's sequential read with an old bookmark
 * answered 200 without the write it named. `b1.<epoch>.<seq>` (before) is still decoded (the
 * client compares kept ones); it names no group, so a sequential read with one is served
 * linearizable (workers/routes/commands.ts), not as a position of this log.
 */
export interface Bookmark {
  epoch: number;
  seq: number;
  /** Which group and life gave it (absent in a `b1` bookmark). */
  life?: { tag: string; incarnation: number };
}

export function encodeBookmark(group: string, incarnation: number, at: { epoch: number; seq: number }): string {
  return `b2.${groupTag(group)}.${incarnation.toString(36)}.${at.epoch.toString(36)}.${at.seq.toString(36)}`;
}

export function decodeBookmark(text: string): Bookmark | null {
  const two = /^b2\.([0-9a-z]{1,7})\.([0-9a-z]{1,11})\.([0-9a-z]{1,11})\.([0-9a-z]{1,11})$/.exec(text);
  const one = two ? null : /^b1\.([0-9a-z]{1,11})\.([0-9a-z]{1,11})$/.exec(text);
  const [epochText, seqText] = two ? [two[3]!, two[4]!] : one ? [one[1]!, one[2]!] : [null, null];
  if (epochText === null || seqText === null) return null;
  const epoch = parseInt(epochText, 36);
  const seq = parseInt(seqText, 36);
  const incarnation = two ? parseInt(two[2]!, 36) : 0;
  if (!Number.isSafeInteger(epoch) || !Number.isSafeInteger(seq) || !Number.isSafeInteger(incarnation)) return null;
  return two ? { epoch, seq, life: { tag: two[1]!, incarnation } } : { epoch, seq };
}

/** The group's name hashed (FNV-1a, 32 bits), base 36: short, and another group's differs but by chance. */
export function groupTag(group: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < group.length; i++) {
    h ^= group.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(36);
}
