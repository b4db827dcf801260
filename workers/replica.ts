import { DurableObject } from "cloudflare:workers";
import type { ReadAnswer, ReplicaArgs, ReplicaMethod, ReplicaResult, SessionAnswer } from "../shared/protocol/io.js";
import type { AppendResponse, ReplicaPosition } from "../shared/protocol/types.js";
import type { Env } from "./env.js";
import { ReplicaHost, type ReplicaInit } from "./replica-host.js";

export type { ReadAnswer, ReplicaInit, SessionAnswer };

/**
 * A replica in an object of its own (named `group/id`): a thin shell around ReplicaHost. The
 * replica that shares the group's first sequencer object answers the same methods there
 * (SequencerObject), so a stub of either serves every caller.
 */
export class ReplicaObject extends DurableObject<Env> {
  private readonly replica: ReplicaHost;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.replica = new ReplicaHost({ storage: ctx.storage, logTable: "log", erase: () => ctx.storage.deleteAll() });
    ctx.blockConcurrencyWhile(async () => this.replica.load());
  }

  async replicaInit(cfg: ReplicaInit): Promise<ReplicaPosition | null> {
    return this.replica.init(cfg);
  }

  async appendText(incarnation: number, text: string): Promise<AppendResponse> {
    return this.replica.appendText(incarnation, text);
  }

  async call<K extends ReplicaMethod>(incarnation: number, method: K, args: ReplicaArgs<K>): Promise<ReplicaResult<K>> {
    return this.replica.call(incarnation, method, args);
  }

  override async fetch(request: Request): Promise<Response> {
    return this.replica.watch(request);
  }

  async corrupt(incarnation: number): Promise<string | null> {
    return this.replica.corrupt(incarnation);
  }

  async replicaDestroy(incarnation: number): Promise<void> {
    await this.replica.destroy(incarnation);
  }
}
