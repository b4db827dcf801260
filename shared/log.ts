// The one shape of a structured log line: one JSON object per line on the console, which Workers
// Logs ([observability] in wrangler.toml) indexes by field. Failovers, quarantines, repairs, audit
// verdict changes, a group's other events and 500s all log through here.

export interface LogLine {
  /** What happened: "failover", "quarantine", "repair", "audit-verdict", "internal-error", ... */
  event: string;
  group?: string;
  replica?: string;
  epoch?: number;
  seq?: number;
  requestId?: string;
  message?: string;
  [field: string]: unknown;
}

export type LogLevel = "log" | "warn" | "error";

/** The line as logged: the common fields first, in one order, then the event's own (undefined ones left out). */
export function logText(line: LogLine): string {
  const { event, group, replica, epoch, seq, requestId, message, ...rest } = line;
  return JSON.stringify({ event, group, replica, epoch, seq, requestId, message, ...rest });
}

export function logEvent(line: LogLine, level: LogLevel = "log"): void {
  console[level](logText(line));
}
