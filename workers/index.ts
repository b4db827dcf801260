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
    const line = `cron audit: ${r.audited} groups audited, ${r.failed.length} failed, ${r.subrequests} subrequests`;
    if (r.failed.length > 0) console.error(line);
    else console.log(line);
  },
} satisfies ExportedHandler<Env>;
