import { auditAll } from "./auditor.js";
import type { Env } from "./env.js";
import { app } from "./router.js";

export { SequencerObject } from "./sequencer.js";
export { ReplicaObject } from "./replica.js";
export { RegistryObject } from "./registry.js";
export { DirectoryObject } from "./directory.js";

export default {
  fetch: app.fetch,
  async scheduled(_controller: ScheduledController, env: Env): Promise<void> {
    const r = await auditAll(env);
    if (r.failed.length > 0) console.error(`cron audit: ${r.failed.length} groups failed`);
  },
} satisfies ExportedHandler<Env>;
