import type { Env as WorkerEnv } from "../../workers/env.js";

// Types `env` from "cloudflare:test" with the worker's bindings.
declare global {
  namespace Cloudflare {
    interface Env extends WorkerEnv {}
  }
}
