// Where things are: the Durable Object location hints, round-trip times between them, and the
// order in which to try replicas for a reader somewhere. Used by the router (nearest reads) and
// meant for the simulator's geography model.
//
// The round-trip times are rounded, typical figures between the regions the hints name, in
// milliseconds, after the public inter-region latency matrices for the big clouds' regions in
// those places (for example the AWS region-to-region matrix published at cloudping.co, with
// us-west-2 for wnam, us-east-1 for enam, sa-east-1 for sam, eu-west-1 for weur, eu-central-1 for
// eeur, ap-northeast-1 for apac, ap-southeast-2 for oc, af-south-1 for afr, me-south-1 for me).
// They order replicas; nothing depends on their exact values.

export const locationHints = ["wnam", "enam", "sam", "weur", "eeur", "apac", "oc", "afr", "me"] as const;
export type LocationHint = (typeof locationHints)[number];

export function isLocationHint(text: string): text is LocationHint {
  return (locationHints as readonly string[]).includes(text);
}

const rtt: Record<LocationHint, Record<LocationHint, number>> = {
  wnam: { wnam: 2, enam: 70, sam: 180, weur: 130, eeur: 150, apac: 100, oc: 140, afr: 270, me: 250 },
  enam: { wnam: 70, enam: 2, sam: 120, weur: 70, eeur: 90, apac: 150, oc: 200, afr: 230, me: 180 },
  sam: { wnam: 180, enam: 120, sam: 2, weur: 180, eeur: 200, apac: 260, oc: 310, afr: 340, me: 300 },
  weur: { wnam: 130, enam: 70, sam: 180, weur: 2, eeur: 25, apac: 210, oc: 260, afr: 160, me: 100 },
  eeur: { wnam: 150, enam: 90, sam: 200, weur: 25, eeur: 2, apac: 220, oc: 250, afr: 170, me: 90 },
  apac: { wnam: 100, enam: 150, sam: 260, weur: 210, eeur: 220, apac: 2, oc: 110, afr: 350, me: 160 },
  oc: { wnam: 140, enam: 200, sam: 310, weur: 260, eeur: 250, apac: 110, oc: 2, afr: 400, me: 200 },
  afr: { wnam: 270, enam: 230, sam: 340, weur: 160, eeur: 170, apac: 350, oc: 400, afr: 2, me: 180 },
  me: { wnam: 250, enam: 180, sam: 300, weur: 100, eeur: 90, apac: 160, oc: 200, afr: 180, me: 2 },
};

/** Round-trip time between two hints; an unknown place is as far as the farthest pair. */
export function rttMs(a: string | null, b: string | null): number {
  if (a === null || b === null || !isLocationHint(a) || !isLocationHint(b)) return 500;
  return rtt[a][b];
}

/** The items in the order a reader at `near` should try them: nearest first; ties keep a random rotation (spreading load). */
export function nearestFirst<T extends { location: string | null }>(items: T[], near: string | null, random: () => number = Math.random): T[] {
  const start = Math.floor(random() * items.length);
  const rotated = [...items.slice(start), ...items.slice(0, start)];
  if (near === null) return rotated;
  return rotated.map((item, i) => ({ item, i, d: rttMs(near, item.location) })).sort((x, y) => x.d - y.d || x.i - y.i).map((x) => x.item);
}

/** Cloudflare's request.cf fields this needs. */
export interface RequestPlace {
  continent?: string;
  longitude?: string | number;
  country?: string;
}

/** The hint nearest a caller, from where Cloudflare says the request came from (null: unknown, as locally). */
export function hintOf(place: RequestPlace | undefined | null): LocationHint | null {
  if (!place?.continent) return null;
  const lon = Number(place.longitude);
  switch (place.continent) {
    case "NA":
      return Number.isFinite(lon) && lon < -100 ? "wnam" : "enam";
    case "SA":
      return "sam";
    case "EU":
      return Number.isFinite(lon) && lon > 20 ? "eeur" : "weur";
    case "AF":
      return "afr";
    case "OC":
      return "oc";
    case "AS":
      return Number.isFinite(lon) && lon < 60 ? "me" : "apac";
    default:
      return null;
  }
}
