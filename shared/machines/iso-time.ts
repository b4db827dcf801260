// ISO-8601 timestamps <-> milliseconds since the epoch, in integer arithmetic: a machine compares
// entry timestamps without `Date` (which check-machine refuses, since `new Date()` reads the
// clock). Days from and to the civil calendar after Howard Hinnant's algorithms (proleptic
// Gregorian, UTC).

const isoPattern = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?Z$/;
const dayMs = 86_400_000;

function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month > 2 ? month - 3 : month + 9) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

function civilFromDays(days: number): [number, number, number] {
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1_460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  return [yoe + era * 400 + (month <= 2 ? 1 : 0), month, day];
}

/** Milliseconds since the epoch of "YYYY-MM-DDTHH:MM:SS(.sss)Z" (what the sequencer writes). */
export function isoToMs(iso: string): number {
  const m = isoPattern.exec(iso);
  if (!m) throw new Error(`not an ISO-8601 UTC timestamp: ${JSON.stringify(iso)}`);
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const ms = m[7] === undefined ? 0 : Number(m[7].padEnd(3, "0"));
  return daysFromCivil(year, month, day) * dayMs + ((hour * 60 + minute) * 60 + second) * 1_000 + ms;
}

const pad = (n: number, width: number) => String(n).padStart(width, "0");

/** "YYYY-MM-DDTHH:MM:SS.sssZ", as Date.prototype.toISOString writes it (years 0..9999). */
export function msToIso(ms: number): string {
  const days = Math.floor(ms / dayMs);
  const [year, month, day] = civilFromDays(days);
  let rest = ms - days * dayMs;
  const hour = Math.floor(rest / 3_600_000);
  rest -= hour * 3_600_000;
  const minute = Math.floor(rest / 60_000);
  rest -= minute * 60_000;
  const second = Math.floor(rest / 1_000);
  return `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)}T${pad(hour, 2)}:${pad(minute, 2)}:${pad(second, 2)}.${pad(rest - second * 1_000, 3)}Z`;
}
