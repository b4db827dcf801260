// A closed-loop load generator: c clients, each sends its next request when the previous one
// answered. Latencies are kept exactly (sorted at the end) for p50/p99/p99.9.
import { Connection, postHead } from "./http.js";

export interface LoadResult {
  ops: number;
  errors: number;
  seconds: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  /** Completions per tenth of the run, for the growth check. */
  perTenth: number[];
}

export interface LoadSpec {
  /** The target, per client (etcd clients talk to different members). */
  url: string | ((client: number) => string);
  clients: number;
  /** Stop after this many seconds, or after totalOps operations, whichever first. */
  seconds?: number;
  totalOps?: number;
  headers: Record<string, string>;
  /** The body of the i-th operation of client c. */
  body(client: number, i: number): string;
  /** Whether a 2xx answer's body is the expected kind of success. */
  ok?(status: number, body: string): boolean;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return Math.round(sorted[Math.max(0, i)]! * 100) / 100;
}

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const heads = new Map<string, string>();
  const headOf = (url: string) => {
    let head = heads.get(url);
    if (head === undefined) heads.set(url, (head = postHead(new URL(url), spec.headers)));
    return head;
  };
  const connections: Connection[] = [];
  const latencies: number[] = [];
  const completions: number[] = [];
  let errors = 0;
  let issued = 0;
  const started = performance.now();
  const deadline = started + (spec.seconds ?? 3600) * 1000;
  const limit = spec.totalOps ?? Infinity;
  const client = async (c: number) => {
    const url = typeof spec.url === "string" ? spec.url : spec.url(c);
    const { hostname, port } = new URL(url);
    const connection = new Connection(hostname, Number(port));
    connections.push(connection);
    const head = headOf(url);
    for (let i = 0; ; i++) {
      if (performance.now() >= deadline || issued >= limit) return;
      issued++;
      const t0 = performance.now();
      try {
        const { status, body: text } = await connection.send(head, spec.body(c, i));
        const t1 = performance.now();
        if (status >= 200 && status < 300 && (spec.ok?.(status, text) ?? true)) {
          latencies.push(t1 - t0);
          completions.push(t1 - started);
        } else {
          errors++;
          if (errors <= 3) console.error(`  ${status} ${text.slice(0, 200)}`);
        }
      } catch (err) {
        errors++;
        if (errors <= 3) console.error(`  ${String(err)}`);
      }
    }
  };
  await Promise.all(Array.from({ length: spec.clients }, (_, c) => client(c)));
  const seconds = (performance.now() - started) / 1000;
  for (const connection of connections) connection.close();
  const sorted = Float64Array.from(latencies).sort();
  const perTenth = Array.from({ length: 10 }, () => 0);
  const span = seconds * 1000;
  for (const t of completions) perTenth[Math.min(9, Math.floor((t / span) * 10))]!++;
  return {
    ops: latencies.length,
    errors,
    seconds: Math.round(seconds * 100) / 100,
    opsPerSec: Math.round(latencies.length / seconds),
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    p999Ms: percentile(sorted, 99.9),
    perTenth,
  };
}
