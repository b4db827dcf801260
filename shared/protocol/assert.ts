/** A broken invariant: fail loudly (TigerBeetle style), never continue on corrupt assumptions. */
export class InvariantError extends Error {
  override name = "InvariantError";
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new InvariantError(message);
}
