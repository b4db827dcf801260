// Reading an upload (a restore's file) part by part, each within bodyReadTimeoutMs, and what is
// left of a refused one. Request bodies of the JSON routes are read whole (http.ts readBody).
import { ApiError } from "../shared/api/errors.js";
import { bodyReadTimeoutMs, restoreBytesMax } from "../shared/limits.js";

/**
 * The next part of an upload, or a 400 once none has come for bodyReadTimeoutMs (the raw body is
 * then cancelled, so no read stays outstanding). Without a bound, an upload that stalled after its
 * header was never answered and held the group "restoring" (every command a 503) until the
 * staged restore idled out 60 s later, and a refused one waited for ever for its drain; a client
 * that went away was an internal error in the log (a probe). A lost connection is a 400 too.
 */
export async function nextPart(raw: ReadableStreamDefaultReader<Uint8Array>): Promise<ReadableStreamReadResult<Uint8Array>> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const idle = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      raw.cancel().catch(() => undefined);
      reject(new ApiError("bad_request", `body: nothing more received for ${bodyReadTimeoutMs / 1000} s; the upload was abandoned, send the file again`));
    }, bodyReadTimeoutMs);
  });
  try {
    return await Promise.race([raw.read(), idle]);
  } catch (err) {
    if (err instanceof ApiError) throw err;
    throw new ApiError("bad_request", `body: the upload was cut off (${err instanceof Error ? err.message : String(err)})`);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Reads what is left of a refused body (bounded, counting the bytes already read) before
 * answering: a client still sending its body into a connection the server stopped reading gets a
 * broken pipe instead of the answer. Stalled, it is cancelled.
 */
export async function drainRaw(reader: ReadableStreamDefaultReader<Uint8Array> | null, readBytes: number): Promise<void> {
  if (!reader) return;
  let bytes = readBytes;
  try {
    for (;;) {
      const { value, done } = await nextPart(reader);
      if (done) return;
      bytes += value.byteLength;
      if (bytes > restoreBytesMax) return;
    }
  } catch {
    // the client went away, or stalled (the reader is cancelled then)
  } finally {
    try {
      reader.releaseLock();
    } catch {
      // a read cancelled by the stall may still be settling
    }
  }
}
