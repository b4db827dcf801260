// One row of a bench run, and the growth run's summary: the shape of bench/results.json.

export interface Run {
  /** smr-groups: the put load over several groups in one workerd; smr-sharded: the same over two workerd processes. */
  system: "smr" | "baseline" | "etcd" | "smr-groups" | "smr-sharded";
  replicas: number;
  clients: number;
  /** put-batch100: 100 puts per request (smr: one batch; etcd: one txn); ops count puts, latencies requests. */
  op: "put" | "put-batch100" | "get-sequential" | "get-linearizable";
  /** Groups the load is spread over (smr-groups, smr-sharded), and workerd processes hosting them. */
  groups?: number;
  processes?: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  ops: number;
  errors: number;
  seconds: number;
  /** CPU the server processes spent per operation (workerd; the three etcd processes), Linux only. */
  cpuUsPerOp: number | null;
}

export interface Growth {
  ops: number;
  firstTenthOpsPerSec: number;
  lastTenthOpsPerSec: number;
  ratio: number;
  firstTenthCpuUsPerOp: number | null;
  lastTenthCpuUsPerOp: number | null;
}
