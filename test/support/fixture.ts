// One real server per e2e test file (the built worker under Miniflare) and a JSON caller for it.
import { afterAll, beforeAll } from "vitest";
import { type ServerOptions, startServer, type Server } from "./server.js";

export interface Fixture {
  readonly admin: string;
  readonly client: string;
  url(): string;
  /** One run of the worker's cron (its scheduled handler), as the platform fires it each minute. */
  cron(): Promise<void>;
  call(method: string, path: string, token: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any }>;
}

export function serverFixture(name: string, options: Partial<ServerOptions> = {}): Fixture {
  const admin = `${name}-admin`;
  const client = `${name}-client`;
  let server: Server | undefined;
  beforeAll(async () => {
    server = await startServer({ adminToken: admin, clientTokens: [client], ...options });
  });
  afterAll(async () => {
    await server?.close();
  });
  return {
    admin,
    client,
    url: () => server!.url,
    async cron() {
      await (await server!.mf.getWorker()).scheduled({ cron: "* * * * *" });
    },
    async call(method, path, token, body, headers = {}) {
      const res = await fetch(server!.url + path, {
        method,
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...headers },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(30_000),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : null };
    },
  };
}
