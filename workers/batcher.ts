// Group commit at the edge: the commands one router isolate receives for a group in the same turn
// of its event loop go to the sequencer in one RPC. Each command still gets its own answer; the
// sequencer orders them into the same batch of entries either way, so this only saves the
// per-call cost of a Durable Object RPC (the largest fixed cost of a write after HTTP itself).
import { commandTimeoutMs, submitBatchBytesMax, submitBatchLingerMs, submitBatchMax } from "../shared/limits.js";
import { assert } from "../shared/protocol/assert.js";
import type { BatchAnswer, SubmitAnswer, SubmitItem } from "../shared/protocol/io.js";

interface Waiting {
  item: SubmitItem;
  bytes: number;
  resolve(answer: SubmitAnswer): void;
  reject(err: unknown): void;
}

/** Past the sequencer's own timeout and the batch's linger: the batch is lost, not slow. */
const batchAnswerOverdueMs = commandTimeoutMs + submitBatchLingerMs + 5_000;

export type SendBatch = (items: SubmitItem[]) => Promise<BatchAnswer[]>;
export type SendOne = (item: SubmitItem) => Promise<SubmitAnswer>;

export class SubmitBatcher {
  private queue: Waiting[] = [];
  private queuedBytes = 0;
  private scheduled = false;

  constructor(
    private readonly sendBatch: SendBatch,
    private readonly sendOne: SendOne,
    private readonly batchMax = submitBatchMax,
    private readonly batchBytesMax = submitBatchBytesMax,
  ) {}

  /** bytes: about how large the command is (its request body), to bound a batch's message. */
  submit(item: SubmitItem, bytes: number): Promise<SubmitAnswer> {
    return new Promise<SubmitAnswer>((resolve, reject) => {
      // The batch's RPC belongs to the request that sent it. A request waiting on someone else's
      // I/O looks hung to workerd (which cancels it), so each one keeps a timer of its own; it
      // doubles as the bound on a batch that never answers.
      const overdue = setTimeout(() => reject(new Error("the sequencer did not answer a batched command")), batchAnswerOverdueMs);
      this.queue.push({
        item,
        bytes,
        resolve: (a) => (clearTimeout(overdue), resolve(a)),
        reject: (err) => (clearTimeout(overdue), reject(err)),
      });
      this.queuedBytes += bytes;
      if (this.queue.length >= this.batchMax || this.queuedBytes >= this.batchBytesMax) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        // Requests that arrive before this timer fires join the batch.
        setTimeout(() => this.flush(), 0);
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    let count = 0;
    let bytes = 0;
    while (count < this.queue.length && count < this.batchMax && (count === 0 || bytes + this.queue[count]!.bytes <= this.batchBytesMax)) {
      bytes += this.queue[count]!.bytes;
      count++;
    }
    const batch = this.queue.splice(0, count);
    this.queuedBytes -= bytes;
    if (this.queue.length > 0 && !this.scheduled) {
      this.scheduled = true;
      setTimeout(() => this.flush(), 0);
    }
    if (batch.length === 0) return;
    if (batch.length === 1) {
      const [w] = batch;
      this.sendOne(w!.item).then(w!.resolve, w!.reject);
      return;
    }
    this.sendBatch(batch.map((w) => w.item)).then(
      (answers) => {
        assert(answers.length === batch.length, `batch of ${batch.length} answered ${answers.length} times`);
        batch.forEach((w, i) => {
          const a = answers[i]!;
          // Not answered in the batch's time: alone, it waits on the same outcome (exactly-once).
          if (a.kind === "open") this.sendOne(w.item).then(w.resolve, w.reject);
          else w.resolve(a);
        });
      },
      (err) => {
        for (const w of batch) w.reject(err);
      },
    );
  }
}
