// The load generator's HTTP/1.1 client: one keep-alive connection per closed-loop client, each
// request written as one string and its answer parsed just far enough (status, Content-Length or
// chunked body). The bench's Node process shares this machine's two cores with the servers it
// measures, so its cost per request is taken from them: undici's `request` spent about 130 µs of
// CPU per request here (0.17 cores at 1,300 puts/s), this about a fifth of that (PERFORMANCE.md,
// "Costs of the harness"). Plain HTTP on loopback only, which is all the bench talks to.
import { type Socket, connect } from "node:net";

export interface Answer {
  status: number;
  body: string;
}

interface Waiting {
  resolve(a: Answer): void;
  reject(e: Error): void;
}

const headerEnd = Buffer.from("\r\n\r\n");

/** A parsed head: status, body length (null: chunked), whether the server closes after it. */
function parseHead(head: string): { status: number; length: number | null; close: boolean } {
  const lines = head.split("\r\n");
  const status = Number(lines[0]!.split(" ")[1]);
  if (!Number.isInteger(status)) throw new Error(`bad status line: ${lines[0]}`);
  let length = 0;
  let chunked = false;
  let close = false;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim().toLowerCase();
    if (name === "content-length") length = Number(value);
    else if (name === "transfer-encoding") chunked = value.includes("chunked");
    else if (name === "connection") close = value === "close";
  }
  return { status, length: chunked ? null : length, close };
}

/**
 * A chunked body's text if `buf` holds all of it (through the last chunk and the final CRLF),
 * with the bytes it took; null while incomplete.
 */
function parseChunked(buf: Buffer): { body: string; used: number } | null {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = buf.indexOf("\r\n", at);
    if (eol < 0) return null;
    const size = parseInt(buf.toString("latin1", at, eol), 16);
    if (!Number.isInteger(size)) throw new Error("bad chunk size");
    if (size === 0) {
      // No trailers are sent to the bench: the last chunk is followed by one CRLF.
      if (buf.length < eol + 4) return null;
      return { body: Buffer.concat(parts).toString("utf8"), used: eol + 4 };
    }
    if (buf.length < eol + 2 + size + 2) return null;
    parts.push(buf.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}

/** One keep-alive connection to host:port; one request at a time (the caller awaits each). */
export class Connection {
  private socket: Socket | null = null;
  private buf = Buffer.alloc(0);
  private waiting: Waiting | null = null;

  constructor(
    private readonly host: string,
    private readonly port: number,
  ) {}

  private open(): Socket {
    const s = connect({ host: this.host, port: this.port, noDelay: true });
    s.on("data", (d: Buffer) => this.onData(d));
    const fail = (e: Error) => this.fail(s, e);
    s.on("error", fail);
    s.on("close", () => fail(new Error("connection closed")));
    this.socket = s;
    this.buf = Buffer.alloc(0);
    return s;
  }

  private fail(s: Socket, e: Error): void {
    if (this.socket !== s) return;
    this.socket = null;
    s.destroy();
    const w = this.waiting;
    this.waiting = null;
    w?.reject(e);
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    const w = this.waiting;
    if (w === null) return;
    const end = this.buf.indexOf(headerEnd);
    if (end < 0) return;
    let head: ReturnType<typeof parseHead>;
    let body: string;
    let used: number;
    try {
      head = parseHead(this.buf.toString("latin1", 0, end));
      const rest = this.buf.subarray(end + 4);
      if (head.length === null) {
        const c = parseChunked(rest);
        if (c === null) return;
        body = c.body;
        used = end + 4 + c.used;
      } else {
        if (rest.length < head.length) return;
        body = rest.toString("utf8", 0, head.length);
        used = end + 4 + head.length;
      }
    } catch (e) {
      this.fail(this.socket!, e as Error);
      return;
    }
    this.buf = this.buf.subarray(used);
    this.waiting = null;
    if (head.close) this.fail(this.socket!, new Error("closed by the server"));
    w.resolve({ status: head.status, body });
  }

  /** Sends one request (a complete HTTP/1.1 head, and the body) and resolves with the answer. */
  send(head: string, body: string): Promise<Answer> {
    if (this.waiting !== null) return Promise.reject(new Error("one request at a time"));
    const s = this.socket ?? this.open();
    return new Promise<Answer>((resolve, reject) => {
      this.waiting = { resolve, reject };
      s.write(`${head}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    });
  }

  close(): void {
    const s = this.socket;
    this.socket = null;
    s?.destroy();
  }
}

/** The head of a POST to `url` with these headers, up to (not including) its Content-Length. */
export function postHead(url: URL, headers: Record<string, string>): string {
  let head = `POST ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n`;
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
  return head;
}
