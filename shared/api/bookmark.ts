/** A bookmark names a log position (epoch, seq); opaque to clients. */
export interface Bookmark {
  epoch: number;
  seq: number;
}

const prefix = "b1.";

export function encodeBookmark(b: Bookmark): string {
  return `${prefix}${b.epoch.toString(36)}.${b.seq.toString(36)}`;
}

export function decodeBookmark(text: string): Bookmark | null {
  const m = /^b1\.([0-9a-z]{1,11})\.([0-9a-z]{1,11})$/.exec(text);
  if (!m) return null;
  const epoch = parseInt(m[1]!, 36);
  const seq = parseInt(m[2]!, 36);
  if (!Number.isSafeInteger(epoch) || !Number.isSafeInteger(seq)) return null;
  return { epoch, seq };
}
