// A rule no test held until mutation testing (sequencer.ts pendingKey without its separator): the request index and the
// queue key (client, request) by `${request}:${client}`; without the ':' client "a"'s request 11 and
// client "1a"'s request 1 are one key, and the second command is answered as the first's retry and
// never ordered (client ids are any string: schemas.ts).
import { describe, expect, it } from "vitest";
import { Cluster } from "../support/cluster.js";

const put = { op: "put", key: "x", value: 1 };

describe("the sequencer's exactly-once index keys (client, request) pairs apart", () => {
  it("client a's request 11 and client 1a's request 1 are two requests: both ordered, queued or already in the index", () => {
    const c = Cluster.of("kv");
    expect(c.submit("a", 11, put).kind).toBe("queued");
    expect(c.submit("1a", 1, put).kind).toBe("queued"); // while the first is queued
    c.settle();
    expect(c.sequencer.commitSeq).toBe(2);
    expect(c.submit("1", 12, put).kind).toBe("queued"); // "121" once ordered: "12" + "1", "1" + "21"
    c.settle();
    expect(c.submit("21", 1, put).kind).toBe("queued"); // while the first is in the index
    c.settle();
    expect(c.sequencer.commitSeq).toBe(4);
  });
});
