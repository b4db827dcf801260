// A text/event-stream reader (the WHATWG "server-sent events" parsing rules): `id:`, `event:`,
// `data:` and `retry:` fields, `:` comments, events ended by a blank line, lines ended by CRLF,
// LF or CR. Written here rather than taken from a library because EventSource cannot send an
// Authorization header, and the client must stay free of runtime dependencies.

export interface SseEvent {
  /** The last event id seen on the stream so far (it carries over to events without `id:`). */
  id: string | undefined;
  event: string;
  data: string;
}

export interface SseFrame {
  /** An event, or a `retry:` reconnection time the server asked for, or a new last event id without an event. */
  event?: SseEvent;
  retryMs?: number;
  /**
   * Set by an `id:` block with no data: the standard makes it the id a reconnect sends, so a server
   * can say where a stream stands (e.g. past entries a prefix filtered out) without an event.
   */
  lastId?: string;
  /** A `:` comment (a keep-alive): the stream is alive, though nothing happened. */
  comment?: true;
}

export class SseParser {
  private buffer = "";
  private lastId: string | undefined;
  private dispatchedId: string | undefined;
  private type = "";
  private data: string[] = [];
  private sawCr = false;

  /** Feeds one chunk of text; returns what it completed. */
  push(text: string): SseFrame[] {
    const out: SseFrame[] = [];
    let i = 0;
    if (this.sawCr && text.length > 0) {
      if (text.charCodeAt(0) === 10) i = 1; // the LF of a CRLF split across chunks
      this.sawCr = false;
    }
    let start = i;
    for (; i < text.length; i++) {
      const ch = text.charCodeAt(i);
      if (ch !== 10 && ch !== 13) continue;
      this.line(this.buffer + text.slice(start, i), out);
      this.buffer = "";
      if (ch === 13) {
        if (i + 1 === text.length) this.sawCr = true;
        else if (text.charCodeAt(i + 1) === 10) i++;
      }
      start = i + 1;
    }
    this.buffer += text.slice(start);
    return out;
  }

  private line(line: string, out: SseFrame[]): void {
    if (line === "") {
      if (this.data.length > 0) out.push({ event: { id: this.lastId, event: this.type || "message", data: this.data.join("\n") } });
      else if (this.lastId !== this.dispatchedId && this.lastId !== undefined) out.push({ lastId: this.lastId });
      this.dispatchedId = this.lastId;
      this.data = [];
      this.type = "";
      return;
    }
    if (line.startsWith(":")) {
      out.push({ comment: true }); // a comment (keep-alive)
      return;
    }
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "data":
        this.data.push(value);
        break;
      case "event":
        this.type = value;
        break;
      case "id":
        if (!value.includes("\0")) this.lastId = value;
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) out.push({ retryMs: Number(value) });
        break;
      // other fields are ignored, as the standard says
    }
  }
}

/**
 * The frames of an event stream's body, as they arrive. When no byte comes for idleMs (if given)
 * it throws, the stream cancelled: a keepalive comment counts, so only a dead connection is quiet.
 */
export async function* sseFrames(body: ReadableStream<Uint8Array>, idleMs?: number): AsyncGenerator<SseFrame> {
  const parser = new SseParser();
  const decoder = new TextDecoder();
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await readWithin(reader, idleMs);
      if (done) break;
      yield* parser.push(decoder.decode(value, { stream: true }));
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

/** One read of the stream, or an error when nothing came within idleMs. */
async function readWithin(reader: ReadableStreamDefaultReader<Uint8Array>, idleMs: number | undefined): Promise<ReadableStreamReadResult<Uint8Array>> {
  if (idleMs === undefined) return reader.read();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const idle = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no byte (not even a keepalive) for ${idleMs} ms`)), idleMs);
  });
  try {
    return await Promise.race([reader.read(), idle]);
  } finally {
    clearTimeout(timer);
  }
}
