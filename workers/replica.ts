import type { ReadAnswer, SessionAnswer } from "../shared/protocol/io.js";
import type { Env } from "./env.js";
import { sequencerAsleep, wakeSequencer } from "./groups.js";
import { ReplicaHost, type ReplicaInit, ReplicaServing } from "./replica-host.js";

export type { ReadAnswer, ReplicaInit, SessionAnswer };

/**
 * A replica in an object of its own (named `group/id`). The replica that shares the group's first
 * sequencer object answers the same methods there (SequencerObject extends ReplicaServing too).
 */
export class ReplicaObject extends ReplicaServing {
  protected readonly replica: ReplicaHost;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.replica = new ReplicaHost({ storage: ctx.storage, logTable: "log", erase: () => ctx.storage.deleteAll(), wakeSequencer: (group, incarnation) => wakeSequencer(env, group, incarnation), sequencerAsleep: (group, incarnation) => sequencerAsleep(env, group, incarnation) });
    ctx.blockConcurrencyWhile(async () => this.replica.load());
  }
}
