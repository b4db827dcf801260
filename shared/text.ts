// Text helpers shared by every layer (machines, protocol, storage): no imports.
const encoder = new TextEncoder();

export function utf8Length(text: string): number {
  return encoder.encode(text).length;
}

/** Compares by Unicode code point, which is the order SQLite's BINARY collation gives UTF-8 text. */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x < y ? -1 : 1;
    if (x > 0xffff) i++;
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

/** The smallest string greater than every string starting with prefix (null: no bound). */
export function prefixUpperBound(prefix: string): string | null {
  const cps = [...prefix].map((c) => c.codePointAt(0)!);
  while (cps.length > 0 && cps[cps.length - 1] === 0x10ffff) cps.pop();
  if (cps.length === 0) return null;
  let last = cps.pop()! + 1;
  if (last === 0xd800) last = 0xe000;
  cps.push(last);
  return String.fromCodePoint(...cps);
}
