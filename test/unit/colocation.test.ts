// Which replica a new group hosts in its first sequencer object (leader-as-replica), as PUT decides it.
import { describe, expect, it } from "vitest";
import { createGroupBody, groupConfigFrom } from "../../shared/api/schemas.js";
import { creationConfig } from "../../shared/protocol/types.js";

const config = (body: Record<string, unknown>) => groupConfigFrom("g", createGroupBody.parse({ machine: "kv", ...body }));

describe("the co-located replica of a new group", () => {
  it("is r1 by default, for two replicas or more", () => {
    expect(config({}).colocated).toBe("r1");
    expect(config({ replicas: 2 }).colocated).toBe("r1");
    expect(config({ replicas: 5, locations: ["wnam", "weur", "apac", "enam", "oc"] }).colocated).toBe("r1");
  });

  it("is none for one replica (it would order every command alone) or when the PUT opts out", () => {
    expect(config({ replicas: 1 }).colocated).toBeUndefined();
    expect(config({ colocate: false }).colocated).toBeUndefined();
  });

  it("follows sequencerLocations: the first replica placed where the sequencer starts, else none", () => {
    expect(config({ locations: ["wnam", "weur", "weur"], sequencerLocations: ["weur", "wnam"] }).colocated).toBe("r2");
    expect(config({ locations: ["wnam", "weur", "apac"], sequencerLocations: ["enam"] }).colocated).toBeUndefined();
  });

  it("is not a setting a repeated PUT compares (groups made before it existed are still found)", () => {
    const withIt = config({});
    const { colocated: _c, ...without } = withIt;
    expect(JSON.stringify(creationConfig(withIt))).toBe(JSON.stringify(creationConfig(without)));
  });

  it("asked off, is part of what a repeated PUT compares: the default and an explicit false are different configs", () => {
    const same = (a: Record<string, unknown>, b: Record<string, unknown>) => JSON.stringify(creationConfig(config(a))) === JSON.stringify(creationConfig(config(b)));
    expect(same({ colocate: false }, {})).toBe(false);
    expect(same({ colocate: false }, { colocate: true })).toBe(false);
    expect(same({ colocate: true }, {})).toBe(true);
    expect(same({ colocate: false }, { colocate: false })).toBe(true);
  });

  it("is refused when not a boolean", () => {
    expect(createGroupBody.safeParse({ machine: "kv", colocate: "yes" }).success).toBe(false);
  });
});
