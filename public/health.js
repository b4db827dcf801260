// A group's health, from a metrics scrape or from its status: the one rule that `smr groups status`
// (cli/metrics.ts) and the dashboard (dashboard.js) both show. Plain JS with JSDoc types: the
// dashboard has no build step and loads it as /health.js; the CLI imports this file as it is.

/** @typedef {{ name: string, labels: Record<string, string>, value: number }} Sample */
/** @typedef {{ id: string, status: string, storageBytes?: number, damaged?: boolean }} ReplicaState */
/** @typedef {{ verdict: string, at: string }} AuditMark */
/** @typedef {"ok" | "degraded" | "down"} Health */

/**
 * A sequencer that took this long to answer a status or a scrape is slow: every command waits at
 * least as long (a slow location keeps its office while it answers). Its group is degraded.
 */
export const slowAnswerMs = 1000;

/**
 * "sequencer slow (1.5 s to answer)" from slowAnswerMs, else null: the one wording of the CLI and the dashboard.
 * @param {number | null | undefined} answerMs
 * @returns {string | null}
 */
export function slowText(answerMs) {
  return answerMs !== null && answerMs !== undefined && answerMs >= slowAnswerMs ? `sequencer slow (${(answerMs / 1000).toFixed(1)} s to answer)` : null;
}

/**
 * "no quorum of replicas for 22 s (writes cannot commit)" while the sequencer answers but has heard
 * no quorum of voters (its status's noQuorumMs), else null: the one wording of the CLI and the dashboard.
 * @param {number | null | undefined} noQuorumMs
 * @returns {string | null}
 */
export function noQuorumText(noQuorumMs) {
  return noQuorumMs !== null && noQuorumMs !== undefined ? `no quorum of replicas for ${Math.round(noQuorumMs / 1000)} s (writes cannot commit)` : null;
}

/**
 * Which side a sequencer with no quorum is on, as the router saw its voters (its status's
 * noQuorumSide and silentVoters), in words; null: not known (a scrape's view, an older server).
 * The one wording of `smr groups status` and the dashboard's group view.
 * @param {"sequencer" | "replicas" | undefined} side
 * @param {string[] | undefined} silentVoters
 * @returns {string | null}
 */
export function noQuorumSideText(side, silentVoters) {
  // The sequencer is named, not "it": the dashboard shows this in a group's tooltip, where "it is
  // cut off" read as the group (a review).
  if (side === "sequencer") return "the voters answer the router: the sequencer is cut off, a failover replaces it";
  if (side !== "replicas") return null;
  const silent = silentVoters ?? [];
  // None silent: they answer, but too few may vote (quarantined ones have no vote until rebuilt).
  if (silent.length === 0) return "the voters answer the router, but too many are quarantined for a quorum: no failover can help";
  return `${silent.join(", ")} ${silent.length === 1 ? "answers" : "answer"} neither the sequencer nor the router: no failover can help`;
}

/** The share of its storage quota from which a replica's group is degraded: a warning before writes are refused. */
export const quotaWarnShare = 0.9;

/**
 * "storage quota reached: r1 holds 21.5 MiB of 16 MiB (writes refused)" once a replica's storage
 * is at its group's quota (the sequencer then refuses every write but small deletes), "storage
 * near the quota: r1 holds 15.8 MiB of 16.0 MiB (99%; writes are refused at the quota)" from
 * quotaWarnShare of it, else null: the one wording of the CLI and the dashboard. Such a group
 * showed ok (a probe), and near it, ok until its writes failed (an operator probe).
 * @param {ReplicaState[]} replicas
 * @param {number | null | undefined} quotaBytes
 * @returns {string | null}
 */
export function quotaText(replicas, quotaBytes) {
  if (quotaBytes === null || quotaBytes === undefined) return null;
  const worst = replicas.filter((r) => r.storageBytes !== undefined).sort((a, b) => (b.storageBytes ?? 0) - (a.storageBytes ?? 0))[0];
  const held = worst?.storageBytes ?? 0;
  if (!worst || held < quotaBytes * quotaWarnShare) return null;
  const mib = (/** @type {number} */ n) => `${(n / 1048576).toFixed(1)} MiB`;
  if (held >= quotaBytes) return `storage quota reached: ${worst.id} holds ${mib(held)} of ${mib(quotaBytes)} (writes refused)`;
  return `storage near the quota: ${worst.id} holds ${mib(held)} of ${mib(quotaBytes)} (${Math.floor((held / quotaBytes) * 100)}%; writes are refused at the quota)`;
}

/**
 * What is wrong with each replica, in words: "r2 down", "r2 damaged (its rows failed their scrub:
 * repair it)". A damaged replica's status may still read healthy (not quarantined while the group
 * has no healthy majority without it): only the audits named it (a probe).
 * @param {ReplicaState[]} replicas
 * @returns {string[]}
 */
export function replicaTrouble(replicas) {
  return replicas.flatMap((r) => [...(r.status !== "healthy" ? [`${r.id} ${r.status}`] : []), ...(r.damaged ? [`${r.id} damaged (its rows failed their scrub: repair it)`] : [])]);
}

/** Why a group stuck mid-delete is down: the one wording of the CLI and the dashboard. */
export const deletingText = "being deleted: not every one of its objects was destroyed yet (DELETE it again to finish, or with ?force=1 to leave what cannot be reached)";

/**
 * ok: its objects answered, every replica healthy, its last audit consistent (or none yet);
 * degraded: it answered, but slowly (slowAnswerMs), a replica is not healthy or is damaged
 * (replicaTrouble), or the last audit found no agreement, or a replica's storage is at
 * quotaWarnShare of the quota or more (quotaText); down: its sequencer or directory did not answer, or its sequencer has heard
 * no quorum of voters (noQuorumMs: no write can commit; it showed degraded, a probe).
 * @param {boolean} up
 * @param {ReplicaState[]} replicas
 * @param {AuditMark | null | undefined} lastAudit
 * @param {number | null | undefined} [answerMs] how long the sequencer took to answer
 * @param {number | null | undefined} [noQuorumMs] how long its sequencer has heard no quorum (null: it has one)
 * @param {number | null | undefined} [quotaBytes] the group's storage quota (replicas' storageBytes are compared with it)
 * @returns {Health}
 */
export function healthOf(up, replicas, lastAudit, answerMs, noQuorumMs, quotaBytes) {
  if (!up || noQuorumText(noQuorumMs) !== null) return "down";
  const fine = replicaTrouble(replicas).length === 0 && (!lastAudit || lastAudit.verdict === "consistent") && slowText(answerMs) === null && quotaText(replicas, quotaBytes) === null;
  return fine ? "ok" : "degraded";
}

/**
 * Prometheus text's samples (comments skipped): name, labels (escapes undone), value.
 * @param {string} text
 * @returns {Sample[]}
 */
export function samples(text) {
  /** @type {Sample[]} */
  const out = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    /** @type {Record<string, string>} */
    const labels = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

/**
 * @typedef {object} GroupHealth
 * @property {string} group
 * @property {Health} health
 * @property {boolean} up its sequencer and directory answered the scrape
 * @property {boolean} deleting being deleted, not every object destroyed yet (down, and why)
 * @property {number | null} epoch
 * @property {number | null} commitSeq
 * @property {ReplicaState[]} replicas
 * @property {number | null} lagMax the largest lag; null when a replica's is unknown (not heard from since this sequencer began: it read 0, a probe)
 * @property {AuditMark | null} lastAudit the newest report (null: none yet, or a group down: its directory's counts were not read)
 * @property {number | null} failovers
 * @property {number | null} answerMs how long the sequencer took to answer the scrape (null: not known)
 * @property {number | null} noQuorumMs how long its sequencer has heard no quorum of voters (null: it has one, or not known)
 * @property {number | null} quotaBytes its storage quota (null: not known)
 */

/**
 * Every group's health, in the order the scrape lists the groups.
 * @param {Sample[]} all
 * @returns {GroupHealth[]}
 */
export function groupsHealth(all) {
  /** @type {Map<string, Sample[]>} */
  const byGroup = new Map();
  for (const s of all) {
    const g = s.labels.group;
    if (g === undefined) continue;
    const mine = byGroup.get(g);
    if (mine) mine.push(s);
    else byGroup.set(g, [s]);
  }
  return [...byGroup].map(([group, mine]) => {
    /** @param {string} name */
    const one = (name) => mine.find((s) => s.name === name)?.value ?? null;
    const stored = new Map(mine.filter((s) => s.name === "smr_replica_storage_bytes").map((s) => [s.labels.replica ?? "", s.value]));
    const damaged = new Set(mine.filter((s) => s.name === "smr_replica_damaged" && s.value === 1).map((s) => s.labels.replica ?? ""));
    const replicas = mine
      .filter((s) => s.name === "smr_replica_status" && s.value === 1)
      .map((s) => {
        const id = s.labels.replica ?? "";
        const storageBytes = stored.get(id);
        return { id, status: s.labels.status ?? "", ...(storageBytes === undefined ? {} : { storageBytes }), ...(damaged.has(id) ? { damaged: true } : {}) };
      });
    const lags = mine.filter((s) => s.name === "smr_replica_lag_entries").map((s) => s.value);
    const audits = mine.filter((s) => s.name === "smr_audit_last_timestamp_seconds").sort((a, b) => b.value - a.value);
    const lastAudit = audits[0] ? { verdict: audits[0].labels.verdict ?? "", at: new Date(audits[0].value * 1000).toISOString() } : null;
    const answerS = one("smr_sequencer_answer_seconds");
    const answerMs = answerS === null ? null : Math.round(answerS * 1000);
    const noQuorumS = one("smr_group_no_quorum_seconds");
    const noQuorumMs = noQuorumS === null || noQuorumS === 0 ? null : Math.round(noQuorumS * 1000);
    const up = one("smr_group_up") === 1;
    const quotaBytes = one("smr_group_storage_quota_bytes");
    const health = healthOf(up, replicas, lastAudit, answerMs, noQuorumMs, quotaBytes);
    return { group, health, up, deleting: one("smr_group_deleting") === 1, epoch: one("smr_group_epoch"), commitSeq: one("smr_group_commit_seq"), replicas, lagMax: lags.length > 0 && lags.length >= replicas.length ? Math.max(...lags) : null, lastAudit, failovers: one("smr_failovers_total"), answerMs, noQuorumMs, quotaBytes };
  });
}
