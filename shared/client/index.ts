// A small TypeScript client for the replica set's HTTP API (API.md).
// - submit() retries with the same (client, request) on 503/504/network errors: exactly-once
//   makes that safe, so a retry never executes a command twice;
// - every answer's bookmark is kept and sent with `sequential` reads: read-your-writes.
import type { ErrorBody, ErrorCode } from "../api/errors.js";
import type { CommandResult, LogPage, QueryResult } from "../api/results.js";
import type { BankCommand, BankQuery } from "../machines/bank.js";
import type { KvCommand, KvQuery } from "../machines/kv.js";
import type { CommandOf, QueryOf, StateMachine } from "../machines/types.js";
import type { AuditReport, GroupStatus, ReplicaStatus, MachineName, OutputsMode } from "../api/types.js";

export type Consistency = "linearizable" | "sequential" | "stale";

export class ApiRequestError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode | "network",
    message: string,
  ) {
    super(`${status} ${code}: ${message}`);
  }
}

export interface ClientOptions {
  baseUrl: string;
  token: string;
  /** Stable id of this client for exactly-once; random by default. */
  clientId?: string;
  /** First request id to use (default 1); must be above every id this clientId used before. */
  firstRequest?: number;
  /** Attempts for a command before giving up (default 8). */
  attemptsMax?: number;
  /** First retry pause, doubled per attempt (default 50 ms). */
  retryBaseMs?: number;
  fetch?: typeof fetch;
}

export interface GroupSpec {
  machine: MachineName;
  replicas?: number;
  locations?: (string | null)[];
  outputs?: OutputsMode;
  checkpointEvery?: number;
}

function randomId(): string {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return "c-" + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export class SmrClient {
  readonly clientId: string;
  private nextRequest: number;
  /** The latest bookmark this client has seen (from a command or a read). */
  bookmark: string | undefined;
  private readonly doFetch: typeof fetch;

  constructor(private readonly opts: ClientOptions) {
    this.clientId = opts.clientId ?? randomId();
    this.nextRequest = opts.firstRequest ?? 1;
    this.doFetch = opts.fetch ?? ((...a) => fetch(...a));
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await this.doFetch(this.opts.baseUrl + path, {
        method,
        headers: { authorization: `Bearer ${this.opts.token}`, "content-type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    } catch (err) {
      throw new ApiRequestError(0, "network", String(err));
    }
    if (res.status === 204) return undefined as T;
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      // The connection died while the body was read: as much a network failure as no answer.
      throw new ApiRequestError(0, "network", String(err));
    }
    if (!res.ok) {
      let code: ErrorCode = "internal";
      let message = text;
      try {
        const e = (JSON.parse(text) as ErrorBody).error;
        code = e.code;
        message = e.message;
      } catch {
        // not our error body
      }
      throw new ApiRequestError(res.status, code, message);
    }
    return JSON.parse(text) as T;
  }

  // ---- groups (admin token) ------------------------------------------------------------------
  createGroup(group: string, spec: GroupSpec): Promise<GroupStatus> {
    return this.request("PUT", `/v1/groups/${group}`, spec);
  }
  listGroups(): Promise<{ groups: string[] }> {
    return this.request("GET", "/v1/groups");
  }
  group(group: string): Promise<GroupStatus> {
    return this.request("GET", `/v1/groups/${group}`);
  }
  deleteGroup(group: string): Promise<void> {
    return this.request("DELETE", `/v1/groups/${group}`);
  }
  replicas(group: string): Promise<{ replicas: ReplicaStatus[] }> {
    return this.request("GET", `/v1/groups/${group}/replicas`);
  }
  log(group: string, from?: number, limit?: number): Promise<LogPage> {
    const q = new URLSearchParams();
    if (from !== undefined) q.set("from", String(from));
    if (limit !== undefined) q.set("limit", String(limit));
    return this.request("GET", `/v1/groups/${group}/log?${q}`);
  }
  audit(group: string): Promise<AuditReport> {
    return this.request("POST", `/v1/groups/${group}/audit`);
  }
  audits(group: string, limit?: number): Promise<{ audits: AuditReport[] }> {
    return this.request("GET", `/v1/groups/${group}/audits${limit ? `?limit=${limit}` : ""}`);
  }

  // ---- commands and queries --------------------------------------------------------------------

  /** Submits a command exactly once, retrying with the same request id while the outcome is unknown. */
  async submit(group: string, command: unknown, request = this.nextRequest++): Promise<CommandResult> {
    const attempts = this.opts.attemptsMax ?? 8;
    let pauseMs = this.opts.retryBaseMs ?? 50;
    for (let attempt = 1; ; attempt++) {
      try {
        const r = await this.request<CommandResult>("POST", `/v1/groups/${group}/commands`, {
          client: this.clientId,
          request,
          command,
        });
        this.bookmark = r.bookmark;
        return r;
      } catch (err) {
        const retriable = err instanceof ApiRequestError && (err.code === "network" || err.status === 503 || err.status === 504 || err.status === 429);
        if (!retriable || attempt >= attempts) throw err;
        await new Promise((r) => setTimeout(r, pauseMs));
        pauseMs = Math.min(pauseMs * 2, 2_000);
      }
    }
  }

  async query(group: string, query: unknown, consistency: Consistency = "linearizable"): Promise<QueryResult> {
    const body: Record<string, unknown> = { query, consistency };
    if (consistency === "sequential" && this.bookmark) body.bookmark = this.bookmark;
    return this.request<QueryResult>("POST", `/v1/groups/${group}/query`, body);
  }

  kv(group: string) {
    const run = async <O>(c: KvCommand) => (await this.submit(group, c)).output as O;
    const read = async <O>(q: KvQuery, consistency?: Consistency) => (await this.query(group, q, consistency)).result as O;
    return {
      put: (key: string, value: unknown) => run<{ previous: unknown }>({ op: "put", key, value: value as never }),
      get: (key: string, consistency?: Consistency) => read<{ value: unknown }>({ op: "get", key }, consistency),
      getThroughLog: (key: string) => run<{ value: unknown }>({ op: "get", key }),
      delete: (key: string) => run<{ deleted: boolean }>({ op: "delete", key }),
      cas: (key: string, expected: unknown, value: unknown) =>
        run<{ ok: boolean; value: unknown }>({ op: "cas", key, expected: expected as never, value: value as never }),
      incr: (key: string, by: number) => run<{ value: number } | { error: string }>({ op: "incr", key, by }),
      list: (opts: { prefix?: string; after?: string; limit?: number } = {}, consistency?: Consistency) =>
        read<{ items: [string, unknown][]; next?: string }>({ op: "list", ...opts }, consistency),
    };
  }

  bank(group: string) {
    const run = async <O>(c: BankCommand) => (await this.submit(group, c)).output as O;
    return {
      open: (account: string, balance: number) => run<{ ok: boolean }>({ op: "open", account, balance }),
      transfer: (from: string, to: string, amount: number) =>
        run<{ ok: boolean; reason?: string }>({ op: "transfer", from, to, amount }),
      balances: async (consistency?: Consistency) =>
        (await this.query(group, { op: "balances" } satisfies BankQuery, consistency)).result as {
          accounts: Record<string, number>;
          total: number;
        },
    };
  }

  /**
   * Commands and queries typed by any machine's schemas: `smr.machine(group, lock)` (the value only
   * names the type; nothing of it is sent) or `smr.machine<typeof lock>(group)`.
   */
  machine<M extends StateMachine<any, any>>(group: string, _machine?: M) {
    return {
      submit: (command: CommandOf<M>) => this.submit(group, command),
      query: (query: QueryOf<M>, consistency?: Consistency) => this.query(group, query, consistency),
    };
  }
}
