// How `smr` (cli/) and the dashboard (dashboard.js) word a time span and a size: one rule for both.
// Plain JS with JSDoc types, as health.js: the dashboard loads it as /units.js, the CLI imports it.

/**
 * "under 1 s", "40 s", "3 min", "2 h": a cron run's age, a lap's length.
 * @param {number} seconds
 * @returns {string}
 */
export function span(seconds) {
  if (seconds < 0.5) return "under 1 s"; // "took 0 s" (a probe)
  const s = Math.round(seconds);
  return s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
}

/**
 * "812 B", "3.4 MiB": a replica's storage, as `ls -h` would.
 * @param {number} n
 * @returns {string}
 */
export function bytesText(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  // Up a unit from what one decimal would show as 1024.0 (1,048,575 bytes was "1024.0 KiB").
  for (; v >= 1023.95 && i < units.length - 1; i++) v /= 1024;
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}
