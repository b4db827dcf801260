import { describe, expect, it } from "vitest";
import { bounded } from "../../shared/bounded.js";

describe("bounded tables", () => {
  it("drop the oldest entry to make room, and only when full", () => {
    const m = new Map<string, number>();
    for (let i = 0; i < 5; i++) bounded(m, 3).set(`k${i}`, i);
    expect([...m.keys()]).toEqual(["k2", "k3", "k4"]);
    bounded(m, 4).set("k5", 5);
    expect([...m.keys()]).toEqual(["k2", "k3", "k4", "k5"]);
  });
});
