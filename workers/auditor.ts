import { auditConcurrencyMax, cronPageGroups } from "../shared/limits.js";
import type { Env } from "./env.js";
import { registryStub } from "./env.js";
import * as groups from "./groups.js";

/**
 * The cron: audits every group, a bounded number at a time, reading the registry a page at a time
 * (no unbounded call). One group's failure does not stop the rest. A lookup also finishes a
 * creation or deletion that died midway, and a sequencer without state recovers before its audit.
 */
export async function auditAll(env: Env): Promise<{ audited: number; failed: string[] }> {
  const failed: string[] = [];
  let audited = 0;
  let after: string | null = null;
  for (;;) {
    const page: { groups: string[]; next?: string } = await registryStub(env).list(after, cronPageGroups);
    let next = 0;
    const worker = async () => {
      while (next < page.groups.length) {
        const group = page.groups[next++]!;
        try {
          // The sequencer's audit() logs a change of verdict (shared/log.ts); a lasting one shows in the metrics.
          await groups.withSequencer(env, group, (s) => s.audit(), (r) => r === null);
          audited++;
        } catch (err) {
          if ((err as { code?: string }).code === "not_found") continue; // deleted meanwhile
          failed.push(group);
          console.error(`audit ${group} failed: ${String(err)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(auditConcurrencyMax, page.groups.length) }, worker));
    if (!page.next) break;
    after = page.next;
  }
  return { audited, failed };
}
