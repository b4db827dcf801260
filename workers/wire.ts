// The append message as one JSON string. A sequencer sends the same entries to every replica:
// each entry is serialized once (and cached on the entry object), and the message is their
// concatenation, which crosses the RPC boundary as a single string instead of a structured clone
// of every entry per replica.
import type { AppendRequest } from "../shared/protocol/types.js";
import type { Entry } from "../shared/api/types.js";

const entryJson = new WeakMap<Entry, string>();

function jsonOf(e: Entry): string {
  let s = entryJson.get(e);
  if (s === undefined) {
    s = JSON.stringify(e);
    entryJson.set(e, s);
  }
  return s;
}

export function encodeAppend(msg: AppendRequest): string {
  // Every field but the entries, whatever the message carries: a list of fields once left out a
  // new one (the sleep notice never reached a replica).
  const { entries: _entries, ...fields } = msg;
  const head = JSON.stringify(fields);
  return `${head.slice(0, -1)},"entries":[${msg.entries.map(jsonOf).join(",")}]}`;
}

export function decodeAppend(text: string): AppendRequest {
  return JSON.parse(text) as AppendRequest;
}
