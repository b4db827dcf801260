// The operator's dashboard (API.md, "OpenAPI, reference page, dashboard"): plain JS with no build
// step and no library, nothing from another origin. The admin token is asked once and kept in this
// tab's sessionStorage, never in the URL; every call sends it as a bearer token. The selected
// group is in the URL's fragment (#group=name), so a view can be linked to.
// A module (strict, deferred): the health rule is shared with the CLI.
import { deletingText, groupsHealth, healthOf, noQuorumSideText, noQuorumText, quotaText, replicaTrouble, samples, slowText } from "./health.js";
import { bytesText, span } from "./units.js";

/** Between the end of one refresh and the start of the next. */
const refreshMs = 2000;
/** A call not answered in this long fails ("network"); the server bounds its own calls well within it. */
const callTimeoutMs = 20000;
/** Rows shown in the audits and failovers tables. */
const auditsShown = 5;
const failoversShown = 5;
/** Rows of the other events (moves, recoveries, quarantines, repairs, replicas added or removed): they were on no page (a probe). */
const eventsShown = 10;
/**
 * Events read to find the failovers among them: every event a group keeps (the API's maximum). At
 * 100, 52 add/remove cycles pushed three failovers out and the page said "No failovers" (a probe).
 */
const eventsRead = 200;
/** A refresh waits at most this long for a Retry-After (429, 503): it asked 20 times in 10 s through a 30 s one. */
const retryAfterMaxMs = 60000;
/**
 * Groups listed at once: a page of GET /v1/groups (its maximum, 1,000), or `?limit=N` in the
 * page's address. Past a page, Next and Previous go through the rest: the first 1,000 were all
 * there was, and an unhealthy group past them was on no page (an operator probe at 1,012 groups).
 */
const groupsListed = pageSize(new URLSearchParams(location.search).get("limit"));
/** The listed page starts after this name (null: the first page), and the pages before it, for Previous. */
let listAfter = null;
const listBack = [];

function pageSize(asked) {
  const n = Number(asked);
  return Number.isInteger(n) && n >= 1 && n <= 1000 ? n : 1000;
}

/** `?limit=…&after=…` of the page listed (the list and its health scrape ask the same groups). */
function pageQuery() {
  return `limit=${groupsListed}${listAfter === null ? "" : `&after=${encodeURIComponent(listAfter)}`}`;
}
/**
 * How often every listed group's health is read: one metrics scrape of the list's page, which asks
 * every group's objects (far more than the 2 s refresh of one group should cost each time). The
 * selected group's own status, read every refresh, gives its health in between.
 */
const healthRefreshMs = 10000;
/** Hex digits of a replica's digest shown (enough to tell replicas apart at a glance). */
const digestShownChars = 12;
const tokenKey = "edge-smr.adminToken";

const $ = (selector, root = document) => root.querySelector(selector);

/** A failed call: the API's error code and message, or "network" when no answer came. */
class ApiFailure extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** `as`: "json" (the API's answers) or "text" (the metrics). */
async function call(path, as = "json") {
  let res;
  try {
    // Bounded: a call that never answers would stop the refresh loop, which waits for its calls.
    res = await fetch(path, { headers: { authorization: `Bearer ${sessionStorage.getItem(tokenKey)}` }, cache: "no-store", signal: AbortSignal.timeout(callTimeoutMs) });
  } catch (err) {
    throw new ApiFailure(0, "network", `no answer from the server (${err && err.message ? err.message : err})`);
  }
  const text = await res.text();
  if (res.ok && as === "text") return text;
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: reported below with the raw text
  }
  if (!res.ok) {
    const e = body && body.error;
    const retryAfterSec = Number(res.headers.get("retry-after"));
    // Not the API's answer (a proxy's HTML page): its text, not its markup (shown raw, a probe).
    const failure = e && e.code ? new ApiFailure(res.status, e.code, e.message || "") : new ApiFailure(res.status, `http_${res.status}`, `not an answer of the API: ${plainText(text) || res.statusText}`);
    if (retryAfterSec > 0) failure.retryAfterMs = Math.min(retryAfterSec * 1000, retryAfterMaxMs);
    throw failure;
  }
  return body;
}

/** A body's text without markup, on one line, cut to 200 characters. */
function plainText(text) {
  const t = text.replace(/<(script|style)[^>]*>[\s\S]*?<\/\1>/gi, " ").replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim();
  return t.length > 200 ? `${t.slice(0, 199)}…` : t;
}

// ---- small formatting helpers (text only: nothing from the API is ever parsed as HTML) ----------

function cell(row, field, text, title) {
  const td = document.createElement("td");
  td.dataset.field = field;
  td.textContent = text === null || text === undefined || text === "" ? "—" : String(text);
  if (title) td.title = title;
  row.append(td);
  return td;
}

/** Now, as the tables show times (UTC): the header showed local 12-hour time beside them (a probe). */
function clock(ms = Date.now()) {
  return new Date(ms).toISOString().slice(11, 19) + "Z";
}

function time(iso) {
  return iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : "—";
}

function ago(iso) {
  if (!iso) return "never";
  const sec = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  return sec < 60 ? `${sec.toFixed(1)} s ago` : sec < 3600 ? `${Math.floor(sec / 60)} min ago` : time(iso);
}

function duration(ms) {
  return typeof ms === "number" ? (ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`) : "—";
}

/** "15.8 MiB of 16 MiB quota (largest replica)": how near the group is to refusing writes (it was not shown: a probe). */
function storageText(status) {
  const sizes = status.replicas.map((r) => r.storageBytes).filter((b) => typeof b === "number");
  const quota = status.storageQuotaMiB === undefined ? "" : ` of ${status.storageQuotaMiB} MiB quota`;
  return sizes.length === 0 ? (quota ? `unknown${quota}` : null) : `${bytesText(Math.max(...sizes))}${quota} (largest replica)`;
}

function fill(dl, values) {
  for (const dd of dl.querySelectorAll("dd[data-field]")) {
    const v = values[dd.dataset.field];
    dd.textContent = v === null || v === undefined ? "—" : String(v);
  }
}

// ---- the token ------------------------------------------------------------------------------

function askToken() {
  $("#main").hidden = true;
  $("#sign-out").hidden = true;
  $("#token-form").hidden = false;
  $("#token").value = "";
  $("#token").focus();
  setLive("idle", "not connected");
}

/** The last token's data off the page: the next token's check showed it meanwhile (a probe). */
function forgetView() {
  listedGroups = "";
  listAfter = null;
  listBack.length = 0;
  $("#groups").replaceChildren();
  $("#groups-more").hidden = true;
  $("#group").hidden = true;
  delete $("#group").dataset.group;
  $("#group-loading").hidden = true;
  healthByGroup = new Map();
  cron = undefined;
  healthFailure = null;
  healthAtMs = 0;
  ownHealth = null;
  healthGeneration++;
  healthAsking = false;
  renderAuditor();
}

function connect() {
  $("#token-form").hidden = true;
  $("#main").hidden = false;
  $("#sign-out").hidden = false;
  refresh();
}

// ---- errors and the live indicator -------------------------------------------------------------

function showError(err) {
  const box = $("#error");
  box.dataset.code = err.code;
  $("[data-field=code]", box).textContent = err.code;
  $("[data-field=message]", box).textContent = err.message;
  box.hidden = false;
}

function clearError() {
  const box = $("#error");
  box.hidden = true;
  delete box.dataset.code;
  for (const el of box.querySelectorAll("[data-field]")) el.textContent = "";
}

function setLive(state, text) {
  const live = $("#live");
  live.dataset.state = state;
  live.textContent = text;
}

// ---- rendering ------------------------------------------------------------------------------

function selectedGroup() {
  const m = /^#group=([a-z0-9][a-z0-9-]{0,62})$/.exec(location.hash);
  return m ? m[1] : null;
}

let listedGroups = "";
function renderGroups(page) {
  const selected = selectedGroup();
  // Rebuilt only when the names change: a rebuild on every selection dropped the keyboard's focus
  // to the page (with 200 groups, Tab started again at the first, a probe).
  const key = JSON.stringify(page.groups);
  if (key !== listedGroups) {
    listedGroups = key;
    const list = $("#groups");
    list.replaceChildren();
    for (const name of page.groups) {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = `#group=${name}`;
      a.dataset.group = name;
      const badge = document.createElement("span");
      badge.className = "health";
      a.append(badge, document.createTextNode(name));
      li.append(a);
      list.append(li);
    }
    if (page.groups.length === 0) {
      const li = document.createElement("li");
      li.className = "hint";
      li.textContent = "No groups yet: create one with PUT /v1/groups/{name}.";
      list.append(li);
    }
  }
  markSelected(selected);
  renderHealth();
  // Each refresh: the last run's age moves on between scrapes.
  renderAuditor();
  const more = $("#groups-more");
  more.hidden = !page.next && listBack.length === 0;
  const first = listBack.length * groupsListed + 1;
  $("#groups-range").textContent = page.groups.length === 0 ? "No groups on this page." : `Groups ${first} to ${first + page.groups.length - 1}${page.next ? "; more follow" : ""}.`;
  $("#groups-prev").disabled = listBack.length === 0;
  $("#groups-next").disabled = !page.next;
  nextAfter = page.next ?? null;
}

/** Where the next page starts (the listed page's `next`). */
let nextAfter = null;

/** Another page of the list: its groups, and their health from a scrape of that page. */
function turnPage(after, back) {
  if (back) listAfter = listBack.pop() ?? null;
  else if (after !== null) listBack.push(listAfter), (listAfter = after);
  else return;
  listedGroups = "";
  healthByGroup = new Map();
  healthAtMs = 0;
  healthGeneration++;
  healthAsking = false;
  refresh();
}

function markSelected(selected) {
  for (const a of document.querySelectorAll("#groups a[data-group]")) {
    if (a.dataset.group === selected) a.setAttribute("aria-current", "true");
    else a.removeAttribute("aria-current");
  }
}

// ---- every group's health ---------------------------------------------------------------------

/** group -> { health: "ok" | "degraded" | "down", why }, from the last scrape, or the selected group's own status since. */
let healthByGroup = new Map();
/** Why the last scrape failed (null: it did not), and when one last ended. */
let healthFailure = null;
let healthAtMs = 0;
let healthAsking = false;
/** Bumped by forgetView: a scrape of the last token's still in flight is dropped, not drawn (a review). */
let healthGeneration = 0;
/** The selected group's health from its own status, and when that was asked: newer than a scrape begun before it, it wins. */
let ownHealth = null;
let scrapeStartedMs = 0;

/** One group's health (health.js: as `smr groups status` tells it) and why, in words. */
function judge(up, replicas, lastAudit, answerMs, noQuorumMs, quotaBytes, deleting = false, side = null) {
  const health = healthOf(up, replicas, lastAudit, answerMs, noQuorumMs, quotaBytes);
  if (!up) return { health, why: deleting ? deletingText : "its sequencer or directory did not answer" };
  // The group's own status says which side (noQuorumSide); a scrape does not.
  const sideText = side ? noQuorumSideText(side.noQuorumSide, side.silentVoters) : null;
  const noQuorum = noQuorumText(noQuorumMs) && (sideText ? `${noQuorumText(noQuorumMs)}: ${sideText}` : noQuorumText(noQuorumMs));
  const notHealthy = replicaTrouble(replicas);
  const slow = slowText(answerMs);
  const full = quotaText(replicas, quotaBytes);
  const audit = lastAudit ? `last audit ${lastAudit.verdict}, ${ago(lastAudit.at)}` : "no audit yet";
  return { health, why: [...(noQuorum ? [noQuorum] : []), ...(full ? [full] : []), ...notHealthy, ...(slow ? [slow] : []), audit].join("; ") };
}

/** group -> { health, why } from a metrics scrape's samples. */
function healthFromMetrics(all) {
  return new Map(groupsHealth(all).map((g) => [g.group, judge(g.up, g.replicas, g.lastAudit, g.answerMs, g.noQuorumMs, g.quotaBytes, g.deleting)]));
}

/** Scrapes the listed groups' health unless one is under way or the last is recent; not awaited by the refresh loop (a scrape may take seconds). */
async function refreshHealth() {
  if (healthAsking || Date.now() - healthAtMs < healthRefreshMs) return;
  healthAsking = true;
  const startedMs = Date.now();
  const mine = healthGeneration;
  let text = null;
  let failure = null;
  try {
    text = await call(`/v1/metrics?${pageQuery()}`, "text");
  } catch (err) {
    failure = err;
  }
  if (mine !== healthGeneration) return;
  healthAsking = false;
  healthAtMs = Date.now();
  healthFailure = failure;
  if (text !== null) {
    // Parsed once: the same scrape carries the groups' health and the cron's progress.
    const all = samples(text);
    healthByGroup = healthFromMetrics(all);
    // The cron's series are on the first page of a scrape only: a later page keeps the last known.
    if (listAfter === null || all.some((s) => s.name.startsWith("smr_cron_"))) cron = cronFromMetrics(all);
    scrapeStartedMs = startedMs;
  }
  renderHealth();
  renderAuditor();
}

/** Each listed group's badge: its health, or "?" (not scraped yet, left out of the scrape, or the scrape failed). */
function renderHealth() {
  for (const a of document.querySelectorAll("#groups a[data-group]")) {
    const own = ownHealth && ownHealth.group === a.dataset.group && ownHealth.atMs >= scrapeStartedMs ? ownHealth.health : null;
    const h = own || (healthFailure ? null : healthByGroup.get(a.dataset.group));
    const badge = $(".health", a);
    const health = h ? h.health : "unknown";
    if (badge.dataset.health === health && badge.title === (h ? h.why : "")) continue;
    badge.dataset.health = health;
    badge.textContent = h ? h.health : "?";
    badge.title = h ? h.why : healthFailure ? `health unknown: ${healthFailure.code}: ${healthFailure.message}` : "health not known yet";
  }
}

// ---- the cron auditor's progress ------------------------------------------------------------------

/** From the last scrape: the cron's progress, null before any run, undefined before any scrape. */
let cron;

/**
 * The smr_cron_* series (the first page of a scrape carries them: the list's is one); null while
 * the last run's time is absent or 0 (no run recorded yet).
 */
function cronFromMetrics(all) {
  const value = (name) => all.find((s) => s.name === name && !s.labels.group)?.value;
  // The registry did not answer for it: unknown, not "no run yet".
  if (value("smr_cron_known") === 0) return { unknown: true };
  const at = value("smr_cron_last_run_timestamp_seconds");
  if (!at) return null;
  return {
    atMs: at * 1000,
    tookS: value("smr_cron_last_run_duration_seconds"),
    audited: value("smr_cron_last_run_audited"),
    failed: value("smr_cron_last_run_failed"),
    lastLapS: value("smr_cron_last_lap_seconds"),
    lastLapGroups: value("smr_cron_last_lap_groups"),
    lapGroups: value("smr_cron_lap_groups"),
    asleep: value("smr_groups_asleep"),
  };
}

/** A value of the auditor's line, in a span a test (or a style) can find by its field. */
function field(name, value) {
  const el = document.createElement("span");
  el.dataset.field = name;
  el.textContent = value === null || value === undefined ? "?" : String(value);
  return el;
}

/**
 * "Last run 40 s ago: 12 audited, 0 failed; the last whole lap (12 groups awake then) took 2 min", as
 * `smr groups status` says it. While the scrape fails it says unknown: the last scrape's numbers,
 * shown with an age that keeps counting, would look live.
 */
function renderAuditor() {
  const box = $("#auditor");
  const line = $("#auditor-line");
  line.removeAttribute("title");
  if (healthFailure) {
    box.dataset.state = "unknown";
    line.textContent = `Unknown: the metrics could not be read (${healthFailure.code}: ${healthFailure.message}).`;
    return;
  }
  if (cron === undefined) {
    box.dataset.state = "unknown";
    line.textContent = "Not known yet.";
    return;
  }
  if (cron === null) {
    box.dataset.state = "none";
    line.textContent = "No cron run yet.";
    return;
  }
  if (cron.unknown) {
    box.dataset.state = "unknown";
    line.textContent = "Unknown: the registry did not answer for the cron's progress.";
    return;
  }
  box.dataset.state = cron.failed > 0 ? "failed" : "ok";
  line.title = `ended ${new Date(cron.atMs).toISOString()}${cron.tookS === undefined ? "" : `, took ${span(cron.tookS)}`}`;
  // The lap is of the groups awake then, the asleep count of now: "a lap over every awake group (7
  // groups)" next to "4 asleep" read as one moment (an operator probe: 9 groups in all).
  const lap = cron.lastLapS === undefined ? ["no whole lap yet"] : ["the last whole lap (", field("lastLapGroups", cron.lastLapGroups), " groups awake then) took ", field("lastLap", span(cron.lastLapS))];
  // 0: the last lap just ended, and the next run starts one.
  const underWay = cron.lapGroups > 0 ? ["; this lap: ", field("lapGroups", cron.lapGroups), " groups so far"] : [];
  // Asleep groups are left out of the laps (audited once a day): say how many.
  const asleep = cron.asleep > 0 ? ["; now ", field("asleep", cron.asleep), " asleep (audited once a day, not in laps)"] : [];
  line.replaceChildren("Last run ", field("lastRun", `${span(Date.now() / 1000 - cron.atMs / 1000)} ago`), ": ", field("audited", cron.audited), " audited, ", field("failed", cron.failed), " failed; ", ...lap, ...underWay, ...asleep, ".");
}

/**
 * A replica's rows, as its last audit found them, and its size, from its last append's answer or
 * audit. The status carries each only once known (the sequencer keeps the audit's across
 * restarts): absent (a new group, a sequencer new since a failover or move, a first scrub pass
 * not finished) is unknown, not 0.
 */
function sizeCells(tr, r, unreachable) {
  // While the sequencer cannot be reached the status is the replicas' own, which has no sizes.
  const unknown = unreachable
    ? "not known while the sequencer cannot be reached (it keeps what the audits found)"
    : "not known: no audit has counted it since this sequencer began (or its first scrub pass has not finished)";
  cell(tr, "stateRows", r.stateRows, r.stateRows === undefined ? unknown : "rows of its replicated state, from the last audit");
  cell(tr, "storageBytes", r.storageBytes === undefined ? null : bytesText(r.storageBytes), r.storageBytes === undefined ? unknown : `${r.storageBytes} bytes of storage${r.colocated ? " (with the sequencer's log)" : ""}, from its last append's answer or audit (writes are refused at the group's storage quota)`);
}

/** `askedMs`: when the answers drawn were asked for. */
function renderEvents(events) {
  const rows = $("#events tbody");
  rows.replaceChildren();
  for (const e of events) {
    const tr = document.createElement("tr");
    tr.dataset.kind = e.kind;
    cell(tr, "at", time(e.at));
    // With its action, as the CLI shows it: a restore's recovery, an operator's release.
    cell(tr, "kind", e.action ? `${e.kind} (${e.action})` : e.kind);
    cell(tr, "epoch", e.epoch);
    cell(tr, "message", e.message);
    rows.append(tr);
  }
  $("#events-none").hidden = events.length > 0;
}

/** The group's replicas, one row each (unreachable: the router could not reach its sequencer; unknown: nor any replica). */
function renderReplicas(status, unreachable, unknown) {
  const replicas = $("#replicas tbody");
  replicas.replaceChildren();
  for (const r of status.replicas) {
    const tr = document.createElement("tr");
    tr.dataset.replica = r.id;
    tr.dataset.status = r.status;
    cell(tr, "id", r.id);
    // A rebuild under way shows what it has copied so far (it showed "repairing" alone for as long as it took).
    // Damaged: its rows failed their scrub, though its status may read healthy (only the audits named it: a probe).
    const rebuild = r.rebuild ? `${r.status}: ${r.rebuild.rows} rows from ${r.rebuild.source}` : r.damaged ? `${r.status}, damaged` : r.status;
    const title = r.rebuild ? `state at seq ${r.rebuild.seq} copied from ${r.rebuild.source} since ${r.rebuild.since}` : r.damaged ? "its rows failed their digest at its last scrub: repair it (smr replicas repair)" : undefined;
    cell(tr, "status", rebuild, title).className = `status status-${r.damaged ? "damaged" : r.status}`;
    // Never heard from (no contact, no audit that reached it): its positions are unknown, not 0.
    // Reached only by an audit: its positions then, marked so, and no lag from them (a lag of 22
    // from a 5-minute-old audit was 2 in fact: a probe).
    const heard = r.lastContact !== null;
    const known = heard || r.audited !== undefined;
    const seen = heard ? "" : known ? `as the audit at ${r.audited} saw it` : "not heard from yet";
    cell(tr, "appliedSeq", known ? `${r.appliedSeq}${heard ? "" : " (audit)"}` : "?", seen);
    cell(tr, "lastSeq", known ? r.lastSeq : "?", seen);
    cell(tr, "commitSeq", unknown ? "?" : status.commitSeq);
    cell(tr, "lag", heard ? status.commitSeq - r.appliedSeq : "?", seen);
    // The zero digest of an audited one: that audit compared no digest at its position (unknown).
    const digestKnown = known && r.digest && (heard || !/^0+$/.test(r.digest));
    cell(tr, "digest", digestKnown ? r.digest.slice(0, digestShownChars) : known && heard ? "" : "?", heard ? r.digest : `${r.digest} ${seen}`).className = "mono";
    // The replicas' own view has no contact time for one that did not answer it, nor has a new
    // sequencer for one that never answered it (after a failover, the replica beside the old
    // one): "no answer" now, not "never" (a probe).
    const silent = unreachable || r.status === "down" || r.status === "suspect";
    cell(tr, "lastContact", r.lastContact === null && silent ? "no answer" : ago(r.lastContact), r.lastContact || "");
    cell(tr, "location", r.location);
    sizeCells(tr, r, unreachable);
    replicas.append(tr);
  }
}

function renderAudits(audits) {
  const auditRows = $("#audits tbody");
  auditRows.replaceChildren();
  for (const a of audits.slice(0, auditsShown)) {
    const tr = document.createElement("tr");
    tr.dataset.verdict = a.verdict;
    tr.dataset.seq = String(a.seq);
    cell(tr, "at", time(a.at));
    cell(tr, "seq", a.compared === false ? null : a.seq, a.compared === false ? "no position was compared" : "");
    cell(tr, "verdict", a.verdict).className = `verdict verdict-${a.verdict}`;
    cell(tr, "quarantined", (a.quarantined || []).join(", "));
    auditRows.append(tr);
  }
  $("#audits-none").hidden = audits.length > 0;
}

function renderFailovers(failovers) {
  const failoverRows = $("#failovers tbody");
  failoverRows.replaceChildren();
  for (const f of failovers) {
    const tr = document.createElement("tr");
    tr.dataset.epoch = String(f.epoch);
    cell(tr, "at", time(f.at));
    cell(tr, "from", f.from);
    cell(tr, "to", f.to);
    cell(tr, "downMs", duration(f.downMs));
    cell(tr, "epoch", f.epoch);
    failoverRows.append(tr);
  }
  $("#failovers-none").hidden = failovers.length > 0;
}

function renderGroup(status, audits, events, askedMs) {
  const section = $("#group");
  section.hidden = false;
  $("#group-loading").hidden = true;
  section.dataset.group = status.group;
  delete section.dataset.stale;
  $("#group-stale").hidden = true;
  $("#group-title").textContent = status.group;
  const s = status.sequencer || {};
  // While the router cannot reach the sequencer, the status is what the replicas say of
  // themselves (API: "reachable": false and a "problem"): say so rather than look healthy.
  const unreachable = s.reachable === false;
  // ... and with no replica answering either, its epoch and commit position are not known: they
  // were shown as 0 (a probe, at epoch 4 and seq 1217).
  const unknown = unreachable && status.replicas.every((r) => r.lastContact === null);
  fill($("#summary"), { ...(unknown ? { ...status, epoch: "?", commitSeq: "?" } : status), storage: storageText(status) });
  // One that answers but has no quorum (cut off) says for how long.
  const slow = slowText(s.answerMs) ? `yes, but slow: ${(s.answerMs / 1000).toFixed(1)} s to answer (every command waits as long)` : null;
  const reachable = unreachable ? `no: ${s.problem || "the sequencer did not answer"}` : s.noQuorumMs !== undefined ? `yes, but no quorum of replicas for ${Math.round(s.noQuorumMs / 1000)} s` : (slow ?? "yes");
  // Asleep: no client work for a while, so no heartbeats (the next command wakes it).
  const awake = s.asleepSince ? `asleep since ${time(s.asleepSince)}` : unreachable ? "?" : "yes";
  fill($("#sequencer"), { name: s.name, location: s.location, epoch: s.epoch, since: time(s.since), reachable, awake });
  $("#sequencer").dataset.reachable = unreachable ? "false" : "true";

  renderReplicas(status, unreachable, unknown);
  renderAudits(audits);
  renderFailovers(events.filter((e) => e.kind === "failover").slice(0, failoversShown));
  renderEvents(events.filter((e) => e.kind !== "failover").slice(0, eventsShown));

  // The selected group's health from what was just read, fresher than the last scrape.
  ownHealth = { group: status.group, health: judge(!unreachable, status.replicas, audits[0], s.answerMs, s.noQuorumMs, status.storageQuotaMiB === undefined ? null : status.storageQuotaMiB * 1048576, false, s), atMs: askedMs };
  renderHealth();
}

// ---- the refresh loop -------------------------------------------------------------------------

let timer = null;
/** Bumped by every refresh: an older one still in flight neither renders nor schedules. */
let generation = 0;

/** When the request of the group view on the page was sent (its data is at least that old). */
let shownAtMs = 0;
/** A refresh whose answers took longer than this says so beside its time. */
const slowRefreshMs = 5000;

async function refresh() {
  clearTimeout(timer);
  const mine = ++generation;
  // A tab in the background asks nothing; it refreshes when it is shown again.
  if (document.hidden) return;
  const group = selectedGroup();
  const startedMs = Date.now();
  selectView(group);
  // The list of groups (the registry's) and the selected group (its own objects) are asked for
  // together and each is drawn when it comes: while the registry did not answer, the group's view
  // froze too, though its objects answered (a probe; it waited for both before drawing either).
  const g = group ? encodeURIComponent(group) : null;
  void refreshHealth();
  const [listed, shown] = await Promise.allSettled([
    call(`/v1/groups?${pageQuery()}`).then((list) => {
      if (mine === generation) renderGroups(list);
    }),
    g
      ? Promise.all([call(`/v1/groups/${g}`), call(`/v1/groups/${g}/audits?limit=${auditsShown}`), call(`/v1/groups/${g}/events?limit=${eventsRead}`)]).then(([status, audits, events]) => {
          if (mine !== generation) return;
          renderGroup(status, audits.audits, events.events, startedMs);
          shownAtMs = startedMs;
        })
      : Promise.resolve(),
  ]);
  if (mine !== generation) return;
  const failures = [listed, shown].filter((r) => r.status === "rejected").map((r) => (r.reason instanceof ApiFailure ? r.reason : new ApiFailure(0, "error", String(r.reason))));
  if (shown.status === "rejected" && failures[failures.length - 1].status === 404 && selectedGroup() === group) {
    // Deleted meanwhile, or a link to none: said where its view was, and no longer asked for (it
    // was asked every refresh for ever, under "group view not updating", a probe).
    failures.pop();
    forgetGone(group);
  }
  // The time the answers were asked for: one that took 15 s was stamped with its arrival (a probe).
  const tookMs = Date.now() - startedMs;
  const asOf = `as of ${clock(startedMs)}${tookMs > slowRefreshMs ? ` (answers took ${(tookMs / 1000).toFixed(0)} s)` : ""}`;
  if (failures.length === 0) {
    clearError();
    setLive("live", `live · ${asOf}`);
  } else {
    // A refused token first: it is the reason for every failure.
    const failure = failures.find((f) => f.status === 401 || f.status === 403) || failures[0];
    showError(failure);
    if (failure.status === 401 || failure.status === 403) {
      // The token is wrong (or not the admin's): ask for it again rather than retrying it, and
      // nothing read with it stays on the page for the next (a review).
      setLive("error", "not updating");
      sessionStorage.removeItem(tokenKey);
      forgetView();
      askToken();
      return;
    }
    const groupRead = shown.status === "fulfilled" || selectedGroup() === null;
    if (!groupRead) groupFailed(group, failures[failures.length - 1]);
    setLive("error", failures.length === 2 || !selectedGroup() ? "not updating" : !groupRead ? "group view not updating" : `partly updated · ${asOf}`);
  }
  // A Retry-After is waited out (at most retryAfterMaxMs).
  const waitMs = Math.max(refreshMs, ...failures.map((f) => f.retryAfterMs || 0));
  if (mine === generation) timer = setTimeout(refresh, waitMs);
}

/** Before asking: another group selected, the last one's view goes at once (it stayed on screen under the new selection, "live", a probe). */
function selectView(group) {
  markSelected(group);
  const section = $("#group");
  const loading = $("#group-loading");
  if (!group) {
    section.hidden = true;
    loading.hidden = goneGroup === null;
    if (goneGroup !== null) loading.textContent = `There is no group ${goneGroup} (deleted, or never made): choose one from the list.`;
    delete section.dataset.group;
    return;
  }
  goneGroup = null;
  if (section.dataset.group === group) return;
  section.hidden = true;
  delete section.dataset.group;
  loading.hidden = false;
  loading.textContent = `Loading ${group}…`;
}

/** A group selected that does not exist (deleted meanwhile, or a link to none): said until another is chosen. */
let goneGroup = null;

/** The selected group answered 404: the selection goes (from the URL too), and the page says why. */
function forgetGone(group) {
  goneGroup = group;
  history.replaceState(null, "", location.pathname + location.search);
  selectView(null);
}

/**
 * The group's view could not be read: a view already shown is marked stale (dimmed, with when it
 * was read and why not since: a group that stopped answering stayed shown healthy, "0.2 s ago",
 * for minutes, a probe); none yet says so instead of "Loading".
 */
function groupFailed(group, failure) {
  const section = $("#group");
  const why = `${failure.code}: ${failure.message}`;
  if (section.dataset.group !== group) {
    $("#group-loading").textContent = `${group} could not be read: ${why}`;
    return;
  }
  section.dataset.stale = "true";
  // Its badge no longer from what the view says (the last scrape's, or "?").
  ownHealth = null;
  renderHealth();
  const stale = $("#group-stale");
  stale.hidden = false;
  stale.textContent = `Not updated since ${clock(shownAtMs)} (what follows is as it was then): ${why}`;
}

// ---- start --------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    // A pasted "Bearer <token>" is the token (it was sent as "Bearer Bearer ...", a probe).
    const token = $("#token").value.trim().replace(/^Bearer\s+/i, "");
    if (!token) return;
    // A token a header cannot carry (a character outside ASCII, a control character) failed every
    // call as "network: no answer from the server", with the form gone (a probe).
    if (!/^[\x21-\x7e]+$/.test(token)) {
      showError(new ApiFailure(0, "bad_token", "this token cannot be sent: it holds a space, a character outside ASCII or a control character"));
      askToken();
      return;
    }
    sessionStorage.setItem(tokenKey, token);
    clearError();
    connect();
  });
  $("#sign-out").addEventListener("click", () => {
    clearTimeout(timer);
    generation++;
    sessionStorage.removeItem(tokenKey);
    clearError();
    forgetView();
    askToken();
  });
  $("#groups-next").addEventListener("click", () => turnPage(nextAfter, false));
  $("#groups-prev").addEventListener("click", () => turnPage(null, true));
  window.addEventListener("hashchange", () => {
    if (sessionStorage.getItem(tokenKey)) refresh();
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && sessionStorage.getItem(tokenKey) && !$("#main").hidden) refresh();
  });
  if (sessionStorage.getItem(tokenKey)) connect();
  else askToken();
});
