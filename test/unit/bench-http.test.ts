// The bench's own HTTP/1.1 client (bench/http.ts): what it reads off a raw socket must be the
// answer the server sent, however the bytes are split, with either body framing, over many
// requests on one connection, and a closed connection must fail the request and be reopened.
import { type Server, type Socket, createServer } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { Connection, postHead } from "../../bench/http.js";

let server: Server | null = null;
afterEach(() => new Promise<void>((done) => (server ? server.close(() => done()) : done())));

/** A server that answers each request's body with reply(body, n) written in pieces of `piece` bytes. */
async function serve(reply: (body: string, n: number) => string, piece = Infinity): Promise<number> {
  let n = 0;
  server = createServer((socket: Socket) => {
    let buf = "";
    socket.on("data", (d) => {
      buf += d.toString("utf8");
      for (;;) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const length = Number(/content-length: (\d+)/i.exec(buf.slice(0, end))![1]);
        if (Buffer.byteLength(buf.slice(end + 4)) < length) return;
        const body = Buffer.from(buf.slice(end + 4)).subarray(0, length).toString("utf8");
        buf = Buffer.from(buf.slice(end + 4)).subarray(length).toString("utf8");
        const out = Buffer.from(reply(body, n++));
        for (let i = 0; i < out.length; i += Math.min(piece, out.length)) socket.write(out.subarray(i, i + Math.min(piece, out.length)));
        if (/connection: close/i.test(out.toString())) socket.end();
      }
    });
  });
  await new Promise<void>((done) => server!.listen(0, "127.0.0.1", () => done()));
  const address = server!.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

const sized = (status: number, body: string) => `HTTP/1.1 ${status} X\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
const chunked = (body: string) => {
  const half = Math.floor(body.length / 2);
  const chunks = [body.slice(0, half), body.slice(half)].filter((c) => c.length > 0).map((c) => `${Buffer.byteLength(c).toString(16)}\r\n${c}\r\n`);
  return `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${chunks.join("")}0\r\n\r\n`;
};

describe("bench HTTP client", () => {
  it("reads sized and chunked answers, split into 1-byte pieces, many on one connection", async () => {
    const port = await serve((body, n) => (n % 2 === 0 ? sized(201, `echo ${body}`) : chunked(`chunked ${body} ünïcode`)), 1);
    const c = new Connection("127.0.0.1", port);
    const head = postHead(new URL(`http://127.0.0.1:${port}/v1/x?y=1`), { "content-type": "application/json" });
    expect(head).toBe(`POST /v1/x?y=1 HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\n`);
    for (let i = 0; i < 6; i++) {
      const a = await c.send(head, `{"i":${i},"s":"é"}`);
      if (i % 2 === 0) expect(a).toEqual({ status: 201, body: `echo {"i":${i},"s":"é"}` });
      else expect(a).toEqual({ status: 200, body: `chunked {"i":${i},"s":"é"} ünïcode` });
    }
    c.close();
  });

  it("fails a request whose connection closes and opens a new one for the next", async () => {
    const port = await serve((body) => (body === "drop" ? "" : sized(200, body)));
    server!.on("connection", (s: Socket) => s.on("data", (d) => d.toString().endsWith("drop") && s.destroy()));
    const c = new Connection("127.0.0.1", port);
    const head = postHead(new URL(`http://127.0.0.1:${port}/`), {});
    expect(await c.send(head, "one")).toEqual({ status: 200, body: "one" });
    await expect(c.send(head, "drop")).rejects.toThrow(/closed/);
    expect(await c.send(head, "two")).toEqual({ status: 200, body: "two" });
    c.close();
  });

  it("hands over an answer that says Connection: close, then reconnects", async () => {
    const port = await serve((body) => `HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    const c = new Connection("127.0.0.1", port);
    const head = postHead(new URL(`http://127.0.0.1:${port}/`), {});
    expect(await c.send(head, "a")).toEqual({ status: 200, body: "a" });
    expect(await c.send(head, "b")).toEqual({ status: 200, body: "b" });
    c.close();
  });
});
