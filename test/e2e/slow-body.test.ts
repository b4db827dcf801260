// A declared Content-Length whose body never comes used to hang the request: it is a 400 once
// bodyReadTimeoutMs has passed (against the real server, over a raw socket).
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bodyReadTimeoutMs } from "../../shared/limits.js";
import { startServer, type Server } from "../support/server.js";

let server: Server;
beforeAll(async () => {
  server = await startServer({ adminToken: "slow-admin", clientTokens: ["slow-client"] });
});
afterAll(async () => {
  await server?.close();
});

describe("a body that never arrives", () => {
  it("is answered 400 within the read timeout, and the connection is not held forever", async () => {
    const url = new URL(server.url);
    const started = Date.now();
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(url.port), url.hostname, () => {
        socket.write(
          "POST /v1/groups/anything/commands HTTP/1.1\r\n" +
            `Host: ${url.host}\r\nAuthorization: Bearer slow-client\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"client":`,
        );
      });
      let data = "";
      socket.on("data", (d) => {
        data += d;
        if (data.includes("\r\n\r\n") && data.includes("}")) {
          socket.destroy();
          resolve(data);
        }
      });
      socket.on("error", reject);
      setTimeout(() => reject(new Error(`no answer in ${bodyReadTimeoutMs + 10_000} ms`)), bodyReadTimeoutMs + 10_000);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 400/);
    expect(answer).toMatch(/not received in full/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(bodyReadTimeoutMs - 500);
  }, 30_000);
});
