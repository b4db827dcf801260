// One row of a bench run, and the growth run's summary: the shape of bench/results.json.
import type { Storage } from "./storage.js";

export interface Run {
  /** smr-groups: the put load over several groups in one workerd; smr-sharded: the same over two workerd processes. */
  /** smr-separate: 3 replicas each in an object of its own (PUT colocate: false), the layout before leader-as-replica. */
  system: "smr" | "smr-separate" | "baseline" | "etcd" | "smr-groups" | "smr-sharded";
  replicas: number;
  clients: number;
  /** put-batch100: 100 puts per request (smr: one batch; etcd: one txn); ops count puts, latencies requests. */
  op: "put" | "put-batch100" | "get-sequential" | "get-linearizable";
  /** Groups the load is spread over (smr-groups, smr-sharded), and workerd processes hosting them. */
  groups?: number;
  processes?: number;
  /** Set on the sharded pairs' rows: where their servers kept their files (other rows: the run's storage). */
  storage?: Storage;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  ops: number;
  errors: number;
  seconds: number;
  /** CPU the server processes spent per operation (workerd; the three etcd processes), Linux only. */
  cpuUsPerOp: number | null;
  /** CPU the bench's own process (the load generator) spent per operation: it shares the cores with the servers. */
  loadCpuUsPerOp?: number | null;
  /** Which of the run's interleaved rounds the row belongs to (rows the ratios compare are repeated). */
  round?: number;
  /** The group's sequencer work per command ordered in the row (from its metrics), smr put rows. */
  work?: Work;
}

export interface Work {
  commands: number;
  /** Log writes that ordered commands: commands per flush is the batch the sequencer made. */
  commandsPerFlush: number;
  /** Append messages per command by RPC (each one an event and a storage commit at a replica), and by direct call (the co-located replica: neither). */
  rpcAppendsPerCommand: number;
  directAppendsPerCommand: number;
}

export interface Growth {
  ops: number;
  firstTenthOpsPerSec: number;
  lastTenthOpsPerSec: number;
  ratio: number;
  firstTenthCpuUsPerOp: number | null;
  lastTenthCpuUsPerOp: number | null;
}

/** The median of the rows of one kind (system, replicas, clients, op) over a run's rounds. */
export interface Median {
  system: Run["system"];
  replicas: number;
  clients: number;
  op: Run["op"];
  storage?: Storage;
  rows: number;
  opsPerSec: number;
  p99Ms: number;
  cpuUsPerOp: number | null;
  loadCpuUsPerOp?: number;
}
