// The names that go into a path (API.md): one definition for the router's checks and the client's,
// which must refuse a name that would take its request elsewhere (`../other` as a token id was a
// DELETE of the group `other`: a probe). No zod here: the client has no runtime dependencies.

/** A group's name. */
export const groupNamePattern = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** A replica's id in a path, e.g. r2. */
export const replicaIdPattern = /^r[1-9][0-9]{0,5}$/;
/** A group token's id in a path (8 hex digits). */
export const tokenIdPattern = /^[0-9a-f]{8}$/;
