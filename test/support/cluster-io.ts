// A DriverIO whose links call a Cluster's replica cores directly: recoveries and lifecycles driven
// over the cluster's replicas without a transport of their own.
import { type DriverIO, type ReplicaLink, type ReplicaTransport, linkOver, serve } from "../../shared/protocol/io.js";
import type { Cluster } from "./cluster.js";

export type ClusterIOOptions = {
  /** Replicas that answer; every other is unreachable (every one answers by default). */
  reach?: string[];
  /** readLog fails its first `lostReads` calls, over every replica (a page lost on the way). */
  lostReads?: number;
  /** Timers fire after at most this long (a test's waits stay short). */
  timerCapMs?: number;
};

/** The io, and how many readLog calls were made. */
export function clusterIO(c: Cluster, options: ClusterIOOptions = {}): { io: DriverIO; reads: () => number } {
  const { reach, lostReads = 0, timerCapMs = 20 } = options;
  let reads = 0;
  const io = {
    nowMs: () => 0,
    setTimer: (ms: number, fn: () => void) => {
      const t = setTimeout(fn, Math.min(ms, timerCapMs));
      return () => clearTimeout(t);
    },
    log: () => {},
    link: (id: string): ReplicaLink => {
      const transport: ReplicaTransport = async (method, args) => {
        if (reach && !reach.includes(id)) throw new Error(`${id} unreachable`);
        if (method === "readLog" && ++reads <= lostReads) throw new Error("lost on the way");
        return (await serve(c.replicas.get(id)! as never, method, args)) as never;
      };
      return linkOver(transport, async () => null);
    },
  } as unknown as DriverIO;
  return { io, reads: () => reads };
}
