// How `smr` and the dashboard write a time span and a size (public/units.js, shared by both).
import { describe, expect, it } from "vitest";
import { bytesText, span } from "../../public/units.js";

describe("units", () => {
  it("writes sizes in base 1024 with one decimal, going up a unit where one decimal would show 1024.0", () => {
    expect([0, 812, 1023, 1024, 3_481, 1_048_524, 1_048_575, 1_048_576, 5 * 2 ** 30].map(bytesText)).toEqual(["0 B", "812 B", "1023 B", "1.0 KiB", "3.4 KiB", "1023.9 KiB", "1.0 MiB", "1.0 MiB", "5.0 GiB"]);
  });

  it("writes spans in seconds below 2 min, minutes below 2 h, then hours", () => {
    expect([-3, 0.4, 0.5, 119, 120, 7_199, 7_200, 86_400].map(span)).toEqual(["under 1 s", "under 1 s", "1 s", "119 s", "2 min", "120 min", "2 h", "24 h"]);
  });
});
