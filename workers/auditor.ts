import { auditConcurrencyMax } from "../shared/limits.js";
import { sequencerName } from "../shared/protocol/types.js";
import { type Env, registryStub, sequencerStub } from "./env.js";

/** The cron: audits every group, a bounded number at a time. One group's failure does not stop the rest. */
export async function auditAll(env: Env): Promise<{ audited: number; failed: string[] }> {
  const groups = await registryStub(env).list();
  const failed: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < groups.length) {
      const group = groups[next++]!;
      try {
        const config = await registryStub(env).get(group);
        if (!config) continue;
        const seq = sequencerStub(env, sequencerName(config), config.sequencer?.location ?? null);
        let report = await seq.audit();
        // Listed but stateless: the sequencer lost its storage. Recover it, then audit.
        if (!report && (await seq.recover(config)).ok) report = await seq.audit();
        if (report && report.verdict !== "consistent") console.warn(`audit ${group}: ${report.verdict}`);
      } catch (err) {
        failed.push(group);
        console.error(`audit ${group} failed: ${String(err)}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(auditConcurrencyMax, groups.length) }, worker));
  return { audited: groups.length - failed.length, failed };
}
