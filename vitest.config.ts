import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

// Two projects: plain Node (the pure core, the machines, the simulator, the e2e tests against a
// real server) and workerd (Durable Objects, the router, the cron) through the Cloudflare plugin.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "node",
          include: ["test/unit/**/*.test.ts", "test/sim/**/*.test.ts", "test/e2e/**/*.test.ts"],
          environment: "node",
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        plugins: [
          cloudflareTest({
            wrangler: { configPath: "./wrangler.toml" },
            miniflare: {
              bindings: {
                ADMIN_TOKEN: "test-admin-token",
                CLIENT_TOKENS: "test-client-token,test-client-token-2",
                // Load tests send thousands of requests per second; the 429 test sets its own limits.
                RATE_LIMIT_PER_SEC: "0",
                // Fault injection for the failover tests (never set in wrangler.toml).
                ALLOW_FAULTS: "1",
              },
            },
          }),
        ],
        test: {
          name: "workers",
          include: ["test/workers/**/*.test.ts"],
          testTimeout: 30_000,
        },
      },
    ],
  },
});
