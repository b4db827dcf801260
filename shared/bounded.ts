// A limit on every table an isolate keeps between requests (TigerBeetle's rule: a limit on every
// queue): a Map keeps insertion order, so the first key is the oldest (or least recently touched,
// for a caller that deletes a key before setting it again).

/** The map, its oldest entry dropped when it holds `max`: room for one more. */
export function bounded<K, V>(map: Map<K, V>, max: number): Map<K, V> {
  if (map.size >= max) map.delete(map.keys().next().value!);
  return map;
}
