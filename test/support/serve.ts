// Runs the built worker under Miniflare as its own process (for tests that kill it):
// tsx test/support/serve.ts PERSIST_DIR ADMIN_TOKEN CLIENT_TOKEN  -> prints {"url": ...}
import { startServer } from "./server.js";

const [persistDir, adminToken, clientToken] = process.argv.slice(2);
if (!persistDir || !adminToken || !clientToken) {
  console.error("usage: serve.ts PERSIST_DIR ADMIN_TOKEN CLIENT_TOKEN");
  process.exit(2);
}
const server = await startServer({ persistDir, adminToken, clientTokens: [clientToken] });
console.log(JSON.stringify({ url: server.url }));
process.on("SIGTERM", () => void server.close().then(() => process.exit(0)));
