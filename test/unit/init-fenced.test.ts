// An init (a retried PUT, or a lookup finishing a creation) that a fencing overtakes while it makes
// the replicas: fenced() is not queued behind it and drops the driver, which the init then
// dereferenced (a TypeError: a 500). Now a 503 to retry (a review).
import { describe, expect, it } from "vitest";
import { SequencerLifecycle } from "../../shared/protocol/lifecycle.js";
import type { ReplicaLink } from "../../shared/protocol/io.js";
import type { GroupConfig } from "../../shared/protocol/types.js";
import { directGroup } from "../support/direct.js";

const config: GroupConfig = { group: "g", incarnation: 2, machine: "kv", replicas: 3, locations: [], outputs: "first", checkpointEvery: 50, sequencer: { name: "g~s1", location: null, no: 1 } } as never;

describe("an idempotent init overtaken by a fencing", () => {
  it("answers unavailable (retry) instead of throwing", async () => {
    const g = directGroup(config, { entries: 10_000, slack: 1_000 });
    // Replica inits take a moment (a remote call).
    const link = g.io.link.bind(g.io);
    g.io.link = (id: string): ReplicaLink =>
      new Proxy(link(id), { get: (t, name) => (name === "init" ? async () => (await new Promise((r) => setTimeout(r, 30)), { epoch: 1, lastSeq: 0 }) : (t as never)[name]) }) as ReplicaLink;
    const lifecycle = new SequencerLifecycle({
      storage: () => g.seqStore,
      prepare: () => {},
      wipe: async () => {},
      io: () => g.io,
      inOffice: async () => false, // deposed: the fencing's recovery is refused, it stays wiped
    });
    lifecycle.start(g.seqStore.meta!, [], config, false);
    const init = lifecycle.init(config); // the PUT retried (or finishCreate from a lookup)
    await new Promise((r) => setTimeout(r, 5));
    // A newer epoch fenced it meanwhile (an append answered stale_epoch).
    lifecycle.driver!.stopForNewEpoch();
    await expect(init).resolves.toMatchObject({ kind: "unavailable", reason: expect.stringMatching(/fenced by a newer epoch/) });
  });
});

describe("an init that lands after its group's DELETE and a restart of the sequencer's object", () => {
  // The closed lives are memory: restarted, the object took such an init for a new group and made
  // a deleted life's sequencer and replicas, storage nothing would free (a review).
  const fresh = (creatable: () => Promise<boolean>) => {
    const made: string[] = [];
    const lifecycle = new SequencerLifecycle({
      storage: () => {
        throw new Error("nothing may be stored");
      },
      prepare: () => void made.push("prepare"),
      wipe: async () => {},
      io: () => {
        throw new Error("no replica may be called");
      },
      creatable,
    });
    return { lifecycle, made };
  };

  it("is refused as overtaken when the directory's record is of another life or being deleted, and makes nothing", async () => {
    const gone = fresh(async () => false);
    await expect(gone.lifecycle.init(config)).resolves.toEqual({ kind: "conflict" });
    expect(gone.made).toEqual([]);
  });

  it("is refused for a retry when the directory cannot be read", async () => {
    const unread = fresh(async () => Promise.reject(new Error("directory unreachable")));
    await expect(unread.lifecycle.init(config)).resolves.toEqual({ kind: "unavailable", reason: expect.stringMatching(/directory cannot be read \(Error: directory unreachable\)/) });
    expect(unread.made).toEqual([]);
  });
});
