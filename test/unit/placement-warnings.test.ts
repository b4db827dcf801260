// What a creation's answer warns of (shared/protocol/types.ts placementWarnings): a location whose
// loss leaves fewer voters than a quorum, where no failover can help.
import { describe, expect, it } from "vitest";
import { createGroupBody, groupConfigFrom } from "../../shared/api/schemas.js";
import { placementWarnings } from "../../shared/protocol/types.js";

const config = (body: Record<string, unknown>) => groupConfigFrom("g", createGroupBody.parse({ machine: "kv", ...body }));

describe("a creation's placement warnings", () => {
  it("name a location that holds a majority of the voters, for three voters or more (a probe: two of three in weur, no write for the whole outage)", () => {
    expect(placementWarnings(config({ replicas: 3, locations: ["weur", "weur", "wnam"] }))).toEqual([
      "2 of the 3 voting replicas are placed in weur, a majority: if weur stops answering, no write commits and no failover can help until it answers again; spread the replicas so that no location holds half of them or more",
    ]);
    expect(placementWarnings(config({ replicas: 5, locations: ["apac", "weur", "apac", "wnam", "apac"] }))).toHaveLength(1);
  });

  it("say nothing of a spread placement, of hints left out, or of fewer than three voters", () => {
    expect(placementWarnings(config({ replicas: 3, locations: ["weur", "wnam", "apac"] }))).toEqual([]);
    expect(placementWarnings(config({ replicas: 5, locations: ["weur", "weur", "wnam", "wnam", "apac"] }))).toEqual([]);
    expect(placementWarnings(config({ replicas: 3 }))).toEqual([]);
    expect(placementWarnings(config({ replicas: 2, locations: ["weur", "weur"] }))).toEqual([]);
  });

  it("name a location holding half of an even count: without it no quorum is left (a review: four voters, two in weur, two left, three needed)", () => {
    expect(placementWarnings(config({ replicas: 4, locations: ["weur", "weur", "wnam", "apac"] }))).toHaveLength(1);
    expect(placementWarnings(config({ replicas: 6, locations: ["weur", "weur", "weur", "wnam", "apac", "eeur"] }))).toHaveLength(1);
  });

  it("say nothing of a location whose loss leaves a quorum", () => {
    expect(placementWarnings(config({ replicas: 4, locations: ["weur", "wnam", "apac", "eeur"] }))).toEqual([]);
    expect(placementWarnings(config({ replicas: 6, locations: ["weur", "weur", "wnam", "wnam", "apac", "eeur"] }))).toEqual([]);
  });
});
