// Starts the built worker (dist/index.js from `wrangler deploy --dry-run --outdir dist`) under
// Miniflare directly, on a free loopback port: used by the e2e tests and the benchmark.
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare, convertV4MiniflareOptions } from "miniflare";

export const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** A TCP port nothing listens on now (for a server a test starts itself, as npm start). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

export interface ServerOptions {
  persistDir?: string;
  adminToken: string;
  clientTokens: string[];
  port?: number;
  rateLimitPerSec?: number;
  /** Enables fault injection (ALLOW_FAULTS=1). */
  faults?: boolean;
  /** The bench's worker (bench/dist/worker.js, with the unreplicated baseline) instead of dist/index.js. */
  baseline?: boolean;
  /** Another build of the worker (bench/compare.ts runs two builds side by side). */
  scriptPath?: string;
  /**
   * Serves public/ in front of the worker as wrangler.toml's [assets] does (default: unless
   * baseline). Under Miniflare that is a router and an asset worker before ours on every request,
   * about 700 µs of CPU per request here: compare and profile leave it out to measure our code.
   */
  assets?: boolean;
  /**
   * Requests go to a socket of the worker itself (Miniflare's unsafeDirectSockets), not through
   * Miniflare's entry worker: that hop is not on the platform and cost about 300 µs of CPU per
   * request here (713-843 against 993-1,407 µs per replicated put, 373-505 against 567-809 per
   * baseline put, 32 clients). The bench, compare and profile use it; the tests do not, to run
   * the worker as wrangler dev does.
   */
  direct?: boolean;
  /** Compatibility flags instead of wrangler.toml's (bench/compare.ts measures a flag's cost). */
  compatibilityFlags?: string[];
  /** Opens workerd's V8 inspector on this port (bench/profile.ts takes CPU profiles through it). */
  inspectorPort?: number;
}

export interface Server {
  url: string;
  mf: Miniflare;
  close(): Promise<void>;
}

function compatibilityDate(): string {
  const toml = readFileSync(join(root, "wrangler.toml"), "utf8");
  const m = /^compatibility_date\s*=\s*"([^"]+)"/m.exec(toml);
  if (!m) throw new Error("wrangler.toml has no compatibility_date");
  return m[1]!;
}

/** wrangler.toml's compatibility flags: the server runs the worker as it is deployed. */
export function compatibilityFlags(): string[] {
  const toml = readFileSync(join(root, "wrangler.toml"), "utf8");
  const m = /^compatibility_flags\s*=\s*(\[[^\]]*\])/m.exec(toml);
  return m ? (JSON.parse(m[1]!) as string[]) : [];
}

/**
 * wrangler.toml's [assets] run_worker_first patterns as Miniflare's router takes them (what
 * wrangler dev passes): the API's paths go to the worker without an asset lookup first.
 */
function workerFirst(): { static_routing?: { user_worker: string[]; asset_worker: string[] } } {
  const toml = readFileSync(join(root, "wrangler.toml"), "utf8");
  const m = /^run_worker_first\s*=\s*(\[[^\]]*\])/m.exec(toml);
  return m ? { static_routing: { user_worker: JSON.parse(m[1]!) as string[], asset_worker: [] } } : {};
}

export async function startServer(opts: ServerOptions): Promise<Server> {
  const scriptPath = opts.scriptPath ?? (opts.baseline ? join(root, "bench", "dist", "worker.js") : join(root, "dist", "index.js"));
  const mf = new Miniflare(convertV4MiniflareOptions({
    modules: true,
    scriptPath,
    compatibilityDate: compatibilityDate(),
    compatibilityFlags: opts.compatibilityFlags ?? compatibilityFlags(),
    host: "127.0.0.1",
    port: opts.port ?? 0,
    cf: false,
    bindings: {
      ADMIN_TOKEN: opts.adminToken,
      CLIENT_TOKENS: opts.clientTokens.join(","),
      RATE_LIMIT_PER_SEC: String(opts.rateLimitPerSec ?? 0),
      RATE_LIMIT_BURST: "1000",
      ...(opts.faults ? { ALLOW_FAULTS: "1" } : {}),
    },
    durableObjects: {
      SEQUENCER: { className: "SequencerObject", useSQLite: true },
      REPLICA: { className: "ReplicaObject", useSQLite: true },
      REGISTRY: { className: "RegistryObject", useSQLite: true },
      DIRECTORY: { className: "DirectoryObject", useSQLite: true },
      ...(opts.baseline ? { BASELINE: { className: "BaselineObject", useSQLite: true } } : {}),
    },
    // The static assets as wrangler.toml's [assets] serves them (the dashboard): a path that is no
    // file there goes on to the worker.
    ...(opts.baseline || opts.assets === false
      ? {}
      : { assets: { directory: join(root, "public"), routerConfig: { has_user_worker: true, ...workerFirst() }, assetConfig: { html_handling: "auto-trailing-slash", not_found_handling: "none" } } }),
    ...(opts.persistDir ? { resourcePersistencePath: opts.persistDir } : {}),
    unsafeTriggerHandlers: true,
    ...(opts.inspectorPort ? { inspectorPort: opts.inspectorPort } : {}),
    ...(opts.direct ? { unsafeDirectSockets: [{ entrypoint: "default", host: "127.0.0.1", port: 0 }] } : {}),
  }));
  const entry = await mf.ready;
  const url = (opts.direct ? await mf.unsafeGetDirectURL() : entry).toString().replace(/\/$/, "");
  return { url, mf, close: () => mf.dispose() };
}
