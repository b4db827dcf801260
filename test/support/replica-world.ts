// One replica driver on a manual clock, for unit tests of its timers: start() is a new start of
// its object (memory gone, its timers too; storage kept), advance() runs the timers now due.
import { machineFor } from "../../shared/machines/index.js";
import { MemoryReplicaStorage } from "../../shared/protocol/memory.js";
import { ReplicaCore, newReplicaMeta } from "../../shared/protocol/replica.js";
import { ReplicaDriver } from "../../shared/protocol/replica-driver.js";
import { manualClock } from "./manual-clock.js";

export function replicaWorld() {
  const { clock, advance, clear, pendingTimers } = manualClock();
  const storage = new MemoryReplicaStorage();
  storage.saveMeta(newReplicaMeta("g", "r2", "kv", 50));
  /** Calls of the driver's wakeSequencer (a PreVote while its sequencer sleeps). */
  const wakes = { n: 0 };
  return {
    storage,
    wakes,
    start: () => {
      clear();
      const d = new ReplicaDriver(new ReplicaCore(storage, storage.meta!, machineFor("kv")), clock);
      d.wakeSequencer = () => void wakes.n++;
      return d;
    },
    advance,
    pendingTimers,
  };
}
