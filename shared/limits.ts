// Every limit of the system, in one place. Units last in every name.

/** Largest request body the router accepts (API.md: 256 KiB). */
export const bodyBytesMax = 256 * 1024;
/** How long the router waits for a request body to arrive in full before it answers 400. */
export const bodyReadTimeoutMs = 10_000;
/**
 * How much of a body past bodyBytesMax, chunked or declared, the router reads on (kept nowhere)
 * before its 413, within bodyReadTimeoutMs: a sender still sending gets the answer, not a reset
 * (cancelled at once, a 5 MB body's sender got EPIPE: a review). Past it, or late, the body is
 * cancelled (its sender may see a reset); one declared larger is refused unread (jsonBody).
 */
export const bodyDrainBytesMax = 8 * 1024 * 1024;
/**
 * Deepest nesting of arrays and objects a JSON body may have. Deeper input is refused at the edge
 * (400) rather than reaching recursive code (validation, canonical JSON) that would overflow the
 * stack: a value nested ~1,850 levels used to answer 500.
 */
export const jsonDepthMax = 100;
/**
 * Bytes (UTF-16 code units of keys and values, as stored) one reply page may carry: a kv list page,
 * a log page, a recovery's log read. Past it the page ends early with `next` (never a 500 from the
 * RPC's 32 MiB message limit, never a 503 that a retry could not fix).
 */
export const pageBytesMax = 4 * 1024 * 1024;
/**
 * Bytes (twice the UTF-16 code units of names, plus room for each number) a query's answer that is
 * not paged may take (bank's `balances`, which lists every account). Past it the answer is a 413
 * `too_large`: it would not fit one RPC message (32 MiB), and that failure looked like every
 * replica being unavailable, a 503 "safe to retry" that no retry could fix (an API audit, 260,000
 * accounts of 128-character names).
 */
export const queryResultBytesMax = 16 * 1024 * 1024;
/** Bytes of commands one append message may carry (at least one entry), well under one RPC message. */
export const appendBytesMax = 4 * 1024 * 1024;
/** Largest serialized value a kv command may carry (API.md: 64 KiB). */
export const valueBytesMax = 64 * 1024;
/**
 * Characters of JSON one command's output may take. It is stored whole in a session row and an
 * effects row, and Durable Object SQLite refuses a row over 2 MB (UTF-8 takes up to 3 bytes a
 * character): a kv txn of 64 gets of 64 KiB values has a 4 MiB output, which would have stopped
 * every replica at that entry. A larger output is replaced, on every replica alike, by
 * {"error":"output_too_large","chars":n,"limit":outputCharsMax} (and its top-level flags, a txn's
 * `succeeded`); the command's writes stand.
 */
export const outputCharsMax = 512 * 1024;
/**
 * Characters of an output the watch's copy (a replica's effects row, kept for the retained log)
 * keeps whole: one value's output and its wrapping. A larger one (a txn of many gets: a probe's
 * 459 K characters, stored with every entry of a 54 KB batch) keeps
 * {"error":"output_not_kept","chars":n,"limit":effectOutputCharsMax} and its top-level flags. The
 * effects row is not in the digest, so this changes what no replica must agree on. The session's
 * copy (a retry's answer, in the digest) has its own bound: sessionOutputFreeCharsDefault.
 */
export const effectOutputCharsMax = valueBytesMax + 1024;
/**
 * Characters of outputs one replica step applies and returns: an append's answer is one RPC
 * message (at most 32 MiB serialized). Committed entries past it are applied by the next message
 * (a heartbeat at the latest).
 */
export const stepOutputCharsMax = 8 * 1024 * 1024;
/**
 * Characters of outputs one batch's answer carries (one RPC message from the sequencer). An item
 * past it answers {"seq", "error": {"code": "too_large"}}: it was executed; sent again alone with
 * the same client and request, it answers its recorded output (the output_not_kept marker past
 * sessionOutputFreeCharsDefault).
 */
export const batchOutputCharsMax = 8 * 1024 * 1024;
/** kv keys are 1..512 UTF-8 bytes (API.md). */
export const keyBytesMax = 512;
/** Client ids are 1..128 characters (API.md). */
export const clientCharsMax = 128;
/** Bank account names. */
export const accountCharsMax = 128;
/** Lock and owner names of the lock machine are 1..256 characters. */
export const lockNameCharsMax = 256;
/** The longest lease the lock machine grants (1 hour): a crashed holder's lock frees itself. */
export const lockTtlMsMax = 3_600_000;
/**
 * The highest lock counter a restore loads (2^52). Tokens are JSON numbers: past 2^53 - 1,
 * counter + 1 rounds (2^53 + 1 is 2^53), so two grants got one token. A restored counter at most
 * this leaves 2^52 grants before that (a hundred thousand years at a million a second); apply()
 * is left as it is, since a change of what it does to an allowed command breaks replay.
 */
export const lockCounterRestoreMax = 2 ** 52;
/** Replicas per group (API.md: 1..7). */
export const replicasMax = 7;
export const replicasDefault = 3;
export const checkpointEveryDefault = 100;
export const checkpointEveryMin = 1;
export const checkpointEveryMax = 1_000_000;

/** Entries one append message carries; a replica catching up gets several messages. */
export const appendEntriesMax = 256;
/** Submits queued at the sequencer before it answers 503 unavailable (nothing is ordered then). */
export const pendingSubmitsMax = 10_000;
/**
 * ... and at most this many characters of their commands' canonical JSON (about bytes): 10,000
 * commands of 60 KiB would be 600 MB where a Durable Object has 128 MB. Past it a submit answers
 * 503 (Retry-After).
 */
export const pendingBytesMax = 16 * 1024 * 1024;
/** The sequencer's in-memory tail of recent entries (for appends) holds at most this many bytes. */
export const tailBytesMax = 2 * appendBytesMax;
/** How long a submit waits for its outcome before answering 504 timeout (outcome unknown). */
export const commandTimeoutMs = 10_000;
/**
 * How long the sequencer may hold a message to a replica back: a commit-only message (to a
 * replica that did not produce the first output) waiting for entries to ride along with, or new
 * entries waiting for another voter's ack so they go out with their commit (see
 * SequencerDriver.holdBack).
 */
export const holdMessageMs = 2;
/**
 * A turn of the co-located replica (its direct call, answered within microtasks unless a fault
 * slows it) longer than this makes the remote send loops stop waiting for its turns until one is
 * quick again (SequencerDriver.directSlow). Above any one step's CPU, well below a slow fault's delay.
 */
export const directTurnSlowMs = 50;
/** Entries are held for another voter's ack only while this many commands await their outcome. */
export const holdWhenWaitingMin = 4;
/**
 * A recovery's fence round waits this long for the other replicas once a quorum of every
 * membership has answered, instead of every straggler's full replicaRpcTimeoutMs (any fenced
 * quorum holds every committed entry; more answers only pick among more logs).
 */
export const fenceStragglersMs = 300;
/**
 * An idempotent call (a recovery's fence or log read, a retry's session lookup) is sent again to a
 * replica silent this long, within its window: a lost message or answer costs this, not the window.
 */
export const resendMs = 1_000;
/**
 * How long a cut-off sequencer with no replica in its own object looks up a committed command's
 * outcome before it answers 504 with cutOffMs: well within a router's call, which must see the
 * cut-off to fail the sequencer over (SequencerDriver.sessionHere).
 */
export const cutOffLookupMs = 1_000;
/**
 * How long a sequencer's recovery waits for the directory to keep its event (and with it the
 * event of the move or failover that named it); events are best effort, a recovery never fails
 * for one.
 */
export const eventKeepTimeoutMs = 3_000;
/** How long one append RPC to a replica may take before it counts as a missed contact. */
export const replicaRpcTimeoutMs = 3_000;
/**
 * How long a heartbeat round (SequencerDriver.confirm: a linearizable read past its lease, a
 * membership change) waits for a quorum to acknowledge a message sent after it began. Each
 * replica's messages go one at a time, so the round's heartbeat may wait behind the message in
 * flight: two round trips, each up to replicaRpcTimeoutMs. With one, a quorum answering in 2.5 s
 * committed every write while every linearizable read past the lease answered 503 (a probe).
 */
export const confirmWaitMs = 2 * replicaRpcTimeoutMs;
/** Retry pause after a failed append, doubled per consecutive miss, capped. */
export const replicaRetryBaseMs = 50;
export const replicaRetryMaxMs = 2_000;
/** Consecutive missed contacts before a replica is `suspect`, then `down`. */
export const suspectAfterMisses = 1;
export const downAfterMisses = 3;
/** A replica this many entries behind the sequencer's log is `lagging`. */
export const laggingEntriesMin = 1_000;

/**
 * Failure detection of the sequencer. It sends a heartbeat (an empty append) to every replica it
 * has sent nothing for heartbeatMs, so silence means failure, not idleness; a replica that has not
 * heard from the sequencer of its epoch for sequencerTimeoutMs votes it gone, and a new sequencer
 * is started only when a quorum of voters does (a PreVote). After a failover the group does not
 * fail over again for failoverHoldDownMs.
 */
export const sequencerTimeoutMs = 5_000;
export const heartbeatMs = 1_000;
/** How long a membership change waits for a starting sequencer to read its directory record, then 503. */
export const startSettleWaitMs = 2_000;
export const failoverHoldDownMs = 30_000;
/**
 * A group sleeps after this long without client work (a command, a linearizable read, a change):
 * its sequencer tells the replicas and stops its heartbeats, the cron audits it once a day, and
 * the platform evicts its objects (about 70 to 140 s after the last call), so an idle group costs
 * storage only. The next call wakes it. The var SLEEP_AFTER_SECONDS sets it ("0": never sleep).
 */
export const sleepAfterMsDefault = 5 * 60 * 1000;
/** A lost "awake" note to the registry is written again after a pause doubled per failure, at most this. */
export const sleepNoteRetryMaxMs = 60_000;
/**
 * A successor asks the sequencers before it to resign (workers/predecessors.ts) at once, then,
 * those that did not answer, after a pause that doubles from the first to the most.
 */
export const predecessorPauseMsFirst = 5_000;
export const predecessorPauseMsMax = 10 * 60_000;
/**
 * A sequencer that answers but reports no quorum for sequencerTimeoutMs is failed over only if it
 * still reports none this much later (failover.ts, cutOffVote): long enough for its append in
 * flight when replicas came back to time out, its retry backoff, and a heartbeat, so it has
 * reached them again by then.
 */
export const cutOffConfirmMs = replicaRpcTimeoutMs + replicaRetryMaxMs + heartbeatMs;
/**
 * While a cut-off vote waits, the router asks the sequencer again this often, and takes its first
 * answer that is no cut-off: one whose replicas came back reaches them within a heartbeat or two,
 * and every request waited out the whole vote (a location probe: writes and linearizable reads
 * held 6 s after the location came back, the status already healthy; 14.6 s without a write under
 * 5 s flaps).
 */
export const cutOffAskAgainMs = 500;
/**
 * How long a request waits on a failover round another request of its isolate began (two vote
 * rounds, the confirmation, the sequencer asked again, the successor's recovery); past it the
 * round counts as lost (workers/groups.ts, failover).
 */
export const failoverRoundMaxMs = 60_000;
/**
 * A sequencer answers a linearizable read's index without a round trip while a quorum of voters
 * acknowledged a message it sent within the last readLeaseMs: a successor serves nothing until
 * readLeaseMs after the last acknowledgement any replica it fenced gave an older epoch (recovery.ts),
 * and a PreVote on silence needs a quorum to have heard nothing for sequencerTimeoutMs besides.
 * Otherwise it confirms with one heartbeat round first (etcd's ReadIndex).
 */
export const readLeaseMs = sequencerTimeoutMs / 2;
/**
 * A router's call to the sequencer that has not answered in this long (a command waits at most
 * commandTimeoutMs there) counts as unreachable: the router may fail the sequencer over.
 */
export const sequencerCallTimeoutMs = commandTimeoutMs + 5_000;
/**
 * A sequencer move waits this long for the current sequencer to hand over (stop and forget); one
 * that does not answer makes the move a 503 (it may be unreachable: failover replaces it once a
 * quorum of voters has lost it too).
 */
export const handOverTimeoutMs = 5_000;
/**
 * A request that finds its group being deleted (not the DELETE itself) helps finish the delete
 * for at most this long, then answers 503: with a slow replica every such request waited for the
 * whole destroy (a probe: a GET 40 s, a command and a PUT past 30 s behind a 20 s replica).
 */
export const deleteWaitMs = 5_000;
/**
 * A sequencer gives a replica this long to destroy itself (a delete, a removal). One that does
 * not answer fails the delete (503, the record stays "deleting" and a retry or the next request
 * tries again) instead of holding the DELETE, and the sequencer's queue, for as long as it hangs.
 * Generous: a destroy of a large replica deletes all its storage.
 */
export const replicaDestroyTimeoutMs = 10_000;
/**
 * How long a removed replica's destroy, from when it is due (its removal committed, or a start
 * found it listed), keeps an idle group awake, tried again at each heartbeat until it succeeds: a
 * restart or a busy moment of its object is waited out. Past it, one out of reach is as a down
 * replica is: it no longer holds the group awake (a replica that never answers would hold it
 * for good), and is tried again when the group wakes, at each audit (the cron's, once a day while
 * asleep) and at each start of its sequencer (the directory lists it until it is destroyed).
 */
export const retireAwakeMs = 60_000;

/**
 * How long an add waits for its new replica's init (after that replica's destroy, bounded above):
 * the add holds the group's one change at a time through it, so an init that hung held every
 * change and restore (a review). Generous, as a local server's objects share one thread.
 */
export const replicaInitTimeoutMs = 10_000;

/**
 * How long a membership change waits for the directory to take its record (the write-ahead, or
 * the membership once committed). The writes stay in order, one at a time: only the waiting is
 * bounded, so a write that hung no longer held the group's one change at a time (every later
 * change was refused as "another membership change is not committed yet") while a late write
 * still cannot overtake a newer one and regress the record.
 */
export const directoryWriteTimeoutMs = 5_000;
/** Sequencers a router remembers as failing since some time (for a failover's downMs); oldest dropped first. */
export const unreachableNamesMax = 1_000;
/** How long such a memory counts: an older first failure is not taken as the start of an outage. */
export const unreachableMemoryMs = 5 * 60_000;

/** A `sequential` or `linearizable` read waits this long for the replica to catch up, then 504. */
export const readWaitMs = 2_000;
/**
 * A read's call to a replica that has not answered this long past the read's own wait is left for
 * the next replica (and that replica is asked last for slowReplicaAvoidMs by this router): a
 * replica's answer within a region takes milliseconds, across the world a few hundred.
 */
export const readAnswerSlackMs = 1_000;
export const slowReplicaAvoidMs = 10_000;
/** Replicas a router remembers as slow at once (the oldest mark goes first). */
export const slowReplicasMax = 4_096;
/** Reads waiting at one replica before it refuses more (503). */
export const readWaitersMax = 1_000;
/** kv list query page size. */
export const listLimitDefault = 100;
export const listLimitMax = 1_000;
/** GET /v1/groups page size (API.md: default 100, max 1000). */
export const groupsPageDefault = 100;
export const groupsPageMax = 1_000;
/**
 * GET /v1/metrics without ?group= covers every group (up to metricsScrapeGroupsMax), or with
 * ?after= / ?limit= one page of the registry's (the "# next:" comment says where to go on), gathering this many groups' figures at a time, each within
 * metricsCallTimeoutMs (a group that does not answer is smr_group_up 0, not a failed scrape).
 */
export const metricsPageDefault = 100;
/** Groups a plain scrape (no ?after=, ?limit=) covers: up to three subrequests each, of a paid plan's 10,000 per request. */
export const metricsScrapeGroupsMax = 2_000;
export const metricsPageMax = 1_000;
export const metricsConcurrencyMax = 16;
/** Of those, the ones that ask groups which did not answer a recent scrape (workers/metrics.ts, gather). */
export const metricsUnansweredWorkers = 4;
export const metricsCallTimeoutMs = 2_000;
/**
 * A call to the registry (one object: a page of names, or one row written) past this is a 503
 * (the cron logs it and stops claiming): a slow registry held scrapes, lists, creates and cron
 * runs as long as it was slow.
 */
export const registryCallTimeoutMs = 3_000;
/**
 * A scrape asks no group past this long: a group that had its call's time by then and did not
 * answer is smr_group_up 0, one asked later or not at all is left out (workers/metrics.ts, gather).
 * Under Prometheus's default scrape_timeout (10 s), past which it drops the whole scrape: 20 groups
 * of 300 behind a slow location (4 s each, 16 at a time) made one take 11.7 s. 7 s, not 8: with
 * every object on one thread (Miniflare), waking 612 idle groups fired the deadline's timers late
 * and a cold scrape answered after 9.1 to 9.4 s.
 */
export const metricsScrapeMs = 7_000;
/**
 * Groups of one scrape whose replicas are asked when their sequencer does not answer (each costs
 * a subrequest per replica and one for the audits): a region's outage must not take a scrape of
 * metricsScrapeGroupsMax groups past a request's subrequests. The others show smr_group_up 0 alone.
 */
export const metricsReplicaFallbacksMax = 200;
/**
 * How long a status (or metrics) call waits for the first answer of replicas a just-restarted
 * sequencer has not heard from yet (under metricsCallTimeoutMs), and how often it looks.
 */
export const statusContactWaitMs = 1_000;
/**
 * How long a replica a copy from did not sum to its digest is no repair source (unless a scrub
 * passes it first): two damaged alike were copied from in turn every 1 to 2 s (a probe); this
 * bounds the waste to a copy per source per this long, and a false suspect (the target's install
 * went wrong) to this long.
 */
export const copySuspectMs = 5 * 60_000;
/** Steps of scrubNow one judgement of a replica takes at most (an audit's rows each: 50,000, so 50 million rows: two passes of 25 million). */
export const scrubNowStepsMax = 1_000;
/** The longest a target whose installs keep failing from sound sources waits between rebuilds (copySuspectMs doubled per failure). */
export const installRetryMaxMs = 24 * 60 * 60_000;
/**
 * Asleep (no heartbeats), a status or metrics call asks again each replica last heard from longer
 * ago than this: the tracker's view from the sleep showed a replica cut off since as healthy until
 * the daily audit (a probe). Bounded so that a scrape costs each asleep group one round of its
 * replicas per this time at most. It was 30 s: a scrape every 30 to 60 s then started every
 * replica of every asleep group at each scrape, so none left memory (a probe); the platform evicts
 * after 70 to 140 s idle, so now they are out of memory most of the time, and a replica lost in a
 * sleep shows within 5 minutes (no write waits on it meanwhile).
 */
export const asleepContactStaleMs = 5 * 60_000;
/**
 * How long GET /v1/groups/{g} (and /replicas) waits for the sequencer before answering with what
 * the replicas say of themselves (workers/http.ts, statusForReaders).
 */
export const statusReadMs = 5_000;
/**
 * How long a read or a watch waits for the sequencer to say where its log ends (a position past
 * it is refused as another group's): past this nothing is refused, as when it cannot be reached.
 * It waited the sequencer call's whole timeout (15 s): a probe's watch reconnects with
 * Last-Event-ID stalled 15 s behind a slow sequencer that replicas could have served around.
 */
export const pastEndCheckMs = 1_000;
export const unheardPollMs = 10;
/**
 * Calls to Durable Objects (subrequests) one cron run may make: an invocation has a bounded number
 * (1,000 on the plan this was sized for, 50 on the free one; past it every call fails). A run
 * takes another group only while what it has used, plus cronGroupSubrequestsMax for it and for
 * each group still under way, fits; the next run goes on from there (the registry keeps where).
 * Each run walked every group from the first name: past about 500 groups the calls beyond the
 * limit failed, and the groups last in name order were never audited, nor their deletes finished.
 */
export const cronSubrequestsMax = 1_000;
/** What one group's audit may cost the cron at most: lookups, the audit, a failover's votes (resent) and recovery. */
export const cronGroupSubrequestsMax = 64;
/** A run takes no new group after this long, so that runs (one a minute) do not pile up behind slow groups. */
export const cronClaimMs = 45_000;
/**
 * How often the cron audits a group that is asleep (its sequencer has stopped its heartbeats for
 * lack of client activity, and told the registry): once a day, not each lap. A call each minute
 * kept its objects from ever being evicted (about $13 a month for an idle group); never auditing
 * it would leave silent corruption of its storage unfound (a scrub reads a bounded number of rows
 * per audit, so a large asleep state takes several days for a whole pass). Each such audit wakes
 * its objects for a few minutes.
 */
export const asleepAuditEveryMs = 24 * 60 * 60 * 1000;
/** Log route page size. */
export const logPageDefault = 100;
export const logPageMax = 1_000;

/** Requests remembered per client in the replicated session table (exactly-once window): at least this many. */
export const sessionRequestsMax = 1_024;
/**
 * A client's session rows are evicted this many at a time, once it holds sessionRequestsMax plus
 * this many: one scan per 64 commands instead of one per command.
 */
export const sessionEvictBatch = 64;
/**
 * A new group's sessions expire (GroupConfig.sessionIdleMs): a client with no command executed for
 * this long, by the log's clock, is forgotten on every replica (its book, remembered requests and
 * their outputs). Without it a group kept every client id it had seen, for its whole life (a
 * probe: 22,000 one-shot clients left 44,000 rows; 3,800 one-shot reads of a 60 KB value, 230 MB
 * per replica). Groups created before it keep their clients (their config has no window).
 * A day, not the 7 days it was: every command's session row (about 300 bytes with a small
 * output) stays for the window when its client id does not live long (an SmrClient per
 * invocation), and at 80 commands/s 7 days of them fill the 4 GiB default quota in two days, then
 * every write is refused until the oldest expire (a probe: 11 MB to 61.5 MB per replica over
 * 198,000 commands on 69 live keys). A day is still far past any client's retries (90 s).
 */
export const sessionIdleMsDefault = 24 * 60 * 60 * 1000;
/**
 * A group's storage quota (`storageQuotaMiB` at creation): while any member's object holds this
 * much, commands that write are refused (503) and only small ones that grow no state go (kv's
 * delete, a lock's release and renew: StateMachine.goesAtQuota), as
 * etcd's NOSPACE alarm does. A Durable Object stops taking writes at 10 GB, and a group whose
 * replicas are full can order nothing, not even a delete: a probe filled 231 MB per replica with
 * one 54 KB request (outputs of large reads, stored with the entry and the client's session).
 */
export const storageQuotaMiBDefault = 4096;
/**
 * The quota of a group whose config names none: made before 2026-12-06, when a new group's quota
 * was not stored and the default was 6,144 (a review: lowering the default would have cut every
 * such group's quota by a third on deploy, and filled those past 4 GiB at once).
 */
export const storageQuotaMiBUnstored = 6144;

/** A group's storage quota in MiB: its config's, or what groups made without one had. */
export function storageQuotaMiBOf(config: { storageQuotaMiB?: number }): number {
  return config.storageQuotaMiB ?? storageQuotaMiBUnstored;
}
/**
 * Room under the platform's 10 GB (9,536 MiB) for a frozen copy of the state (a transfer's source
 * and a download copy it into the same object, up to the quota again: at 8,192 a replica full of
 * state could be neither copied from nor downloaded, a review), and for what is admitted before a
 * replica's size is measured again (a queue of commands whose outputs are large: a review); and a
 * floor above what the retained log and sessions of small commands take, or a group refused
 * everything for good. Not above what sessions of large outputs take: three clients of 2 KB puts
 * (each session row keeps its `previous`) held a 16 MiB group at its quota with 120 KB of data (a
 * soak probe; docs/OPERATIONS.md, "Storage quota", says how to size a quota).
 */
export const storageQuotaMiBMax = 4608;
export const storageQuotaMiBMin = 16;
/**
 * Characters an output may take beyond what its entry brought (its command's JSON, and the old
 * values of the machine rows it overwrote or deleted) and still be kept whole in its session row (groups made since 2026-12-06: GroupConfig.sessionOutputFreeChars). A larger one,
 * mostly values read (a get, a txn of gets, a put's previous value), is answered whole the first
 * time; its session row keeps {"error":"output_not_kept","chars":n,"limit":...} and its top-level
 * flags, which is what a retry then answers. Before, a 7 KB batch of txns of gets kept 14.5 MB of
 * outputs per replica that no delete frees: one client held a group at its storage quota, every
 * writer refused, for the session window (a probe). Now a session row is at most 1 KiB more than
 * what the entry that made it brought: small commands no longer store 40 times their size (4 KiB allowed
 * that, a review), and writes fill a group little faster than their own size. Outputs of writes
 * (a put's previous value, an incr's value) are rarely larger than the command plus 1 KiB.
 */
export const sessionOutputFreeCharsDefault = 1024;
/**
 * The setting of groups made from 2026-12-06 10:36 to 10:54 (sessionOutputFreeChars 4096, the
 * default then, and never since): their rows counted the command alone, not the rows it replaced
 * (added at 11:06). Applying an entry must land where it did when the entry was first applied, or
 * a restart's replay misses the recorded digest and every replica quarantines itself (an upgrade
 * probe: a group of those builds stopped serving under today's). Their replicas keep that rule.
 */
export const sessionOutputFreeCharsCommandOnly = 4096;
/** The largest command (canonical JSON characters) that grows no state and is ordered at the quota: a few deletes. */
export const freeingCommandBytesMax = 4096;
/** The longest window a group may ask for (`sessionIdleSeconds`): ten years. */
export const sessionIdleSecondsMax = 10 * 366 * 24 * 60 * 60;
/** The idle index files clients in buckets of an eighth of the window: one index write per client per bucket. */
export const sessionIdleBuckets = 8;
/**
 * Rows and characters of idle clients one command's apply may delete: above the most one command
 * adds (a session row, a book and an index row; an output up to outputCharsMax), so forgetting
 * keeps up with any rate of one-shot clients, and no entry's apply does unbounded work.
 */
export const sessionForgetRowsMax = 64;
export const sessionForgetCharsMax = 2 * outputCharsMax;
/** Idle clients one entry's apply looks at (one scan of the index), and session rows read per scan of one. */
export const sessionForgetClientsMax = 16;
export const sessionForgetPageRows = 16;
/**
 * Clients whose highest session request a replica keeps in memory (a request above it has no
 * session row, and its lookup is skipped); clients past this many are looked up as before. At
 * most about 1 MB per replica (a client's prefix is up to 140 characters).
 */
export const sessionTopsMax = 4_096;
/**
 * A replica keeps the rows its applied entries wrote in memory and saves them to storage once
 * this many entries or rows are unsaved (the log makes them durable meanwhile): a restart
 * re-applies at most this many entries (about 0.2 s of CPU). Must stay well below
 * logRetentionEntries. Measured (200,000 puts, 128 clients, rows saved in key order): every 512 entries, 1,644 puts/s at the start and 1,290 at the end, 46 to
 * 76 KB written per put; every 4,096, 1,798 to 1,925 and 1,706, 17 to 27 KB: a save rewrites the
 * leaves its rows fall in, and fewer saves put more rows in each leaf they rewrite.
 */
export const stateSaveEntriesMax = 4_096;
export const stateSaveRowsMax = 16_384;
/**
 * ... or once the unsaved rows hold this many characters (keys and values), or the entries applied
 * since the last save do (what a restart re-applies): 4,096 puts of 64 KiB values, or session rows
 * of 512 Ki outputs, would otherwise hold gigabytes per replica, past a Durable Object's 128 MB of
 * memory; an object that dies of it re-applies the same entries on restart and dies again. 8 Mi
 * characters is at most 16 MB of JavaScript strings.
 */
export const stateSaveBytesMax = 8 * 1024 * 1024;
/** Checkpoints each replica keeps. */
export const checkpointsKeptMax = 64;
/** Audit reports and events each group keeps. */
export const auditHistoryMax = 100;
export const eventHistoryMax = 200;
export const eventsPageDefault = 50;
export const auditsPageDefault = 20;
/** How long an audit waits for one replica's answer before calling it unreachable. */
export const auditRpcTimeoutMs = 5_000;
/**
 * Rounds of an audit whose replicas answered but shared no position (a commit on its way to some,
 * before a first periodic checkpoint), and the pause between them after the commit is sent.
 */
export const auditTriesMax = 3;
export const auditRetryMs = 250;
/** Groups the cron audits concurrently. */
export const auditConcurrencyMax = 8;
/** Rows a scrub reads per SQL page while it recomputes a digest. */
export const scrubPageRows = 1_000;
/**
 * Stored rows one audit's scrub reads (DigestedState.scrubStep): a larger state is scrubbed over
 * several audits, so an audit holds the replica (and the sequencer, for the co-located one) for
 * a bounded time. At 2.5 million rows a whole pass took 11.5 s (about 4.6 µs a row): this is
 * about a quarter of a second, and a pass over a million rows takes 20 audits.
 */
export const scrubRowsPerAuditMax = 50_000;
/**
 * Characters (keys and values) one audit's scrub reads, at most: by rows alone, 50,000 rows of a
 * 60 KB session output each held an audit 6 to 8 s (a probe: a write beside it took 12 s). Rows
 * hash at about 35 MB/s here: this is about a quarter of a second too.
 */
export const scrubCharsPerAuditMax = 8 * 1024 * 1024;
/**
 * How long the router caches a group's routing info (replica ids, machine) per isolate; also how
 * long a revoked group token may still be accepted by a router that checked it just before.
 */
export const routeCacheMs = 2_000;
/**
 * Groups whose records a router keeps per isolate (the least recently read go first): it kept
 * every group it had ever looked up, up to the whole deployment's.
 */
export const routeCacheGroupsMax = 10_000;
/**
 * Group-token lookups a router caches per isolate: found tokens, and apart from them missing
 * ones (made-up tokens of the right shape must not push real ones out).
 */
export const tokenLookupsFoundMax = 10_000;
export const tokenLookupsMissingMax = 1_000;
/** Lookups of unknown group-token ids one caller address may cause (per router isolate), then 429. */
export const unknownTokenLookupsPerSec = 20;
export const unknownTokenLookupsBurst = 200;
/** The same, over every group: a new group name per made-up token passed the per-group bucket. */
export const unknownTokenLookupsAnyGroupPerSec = 40;
export const unknownTokenLookupsAnyGroupBurst = 400;
/** Keys (tokens, addresses) a rate limiter keeps buckets for; the least recently used goes. */
export const rateLimitKeysMax = 10_000;
/** Group tokens one group may have. */
export const groupTokensMax = 100;

/** The client's retries (shared/client): attempts per command, first pause, doubled per attempt up to the cap. */
/** How long the client library retries a command or a read from its first attempt. */
export const clientRetryForMs = 90_000;
/** How long the client retries a connection that could not be made (refused, no such host), or a command the API answers 500. */
export const clientRefusedRetryForMs = 10_000;
export const clientRetryBaseMs = 50;
export const clientRetryMaxMs = 2_000;

/** The longest Retry-After the client waits out before one retry. */
export const clientRetryAfterMaxMs = 30_000;
/**
 * How long one JSON request of the client library may go unanswered: above a command's usual
 * longest answer (a router waits up to sequencerCallTimeoutMs, fails the sequencer over, then
 * calls again: 25 s was shorter, a review), and inside clientRetryForMs so that a hung attempt is
 * retried (at 60 s of 60 it used the whole budget: a review).
 */
export const clientRequestTimeoutMs = 40_000;
/**
 * How long the client waits for a restore's answer once the whole file is sent: the server
 * installs the rows on a quorum of replicas first (a 21 MB file took 52 s with a replica slowed
 * by 2 s a call, a probe).
 */
export const clientRestoreAnswerMs = 5 * 60_000;
/** Groups whose latest bookmark a client keeps (for sequential reads); the least recently used goes. */
export const clientBookmarkGroupsMax = 1_000;
/** A client's watch reconnects without end (as EventSource does), its pause doubling up to this cap. */
export const watchRetryMaxMs = 5_000;
/**
 * A client's watch stream that brings no byte this long (keepalives come every watchKeepaliveMs,
 * API.md: at most 15 s) is taken for dead and reconnected: a connection cut without a close (a NAT
 * or proxy forgetting it, a laptop's sleep) brought nothing, and the watch waited on it for Node's
 * 300 s body timeout, and for ever where fetch has none (browsers, Workers).
 */
export const watchIdleMs = 45_000;

/** Log entries kept behind the applied position; older ones are compacted away (sequencer and replicas). */
export const logRetentionEntries = 10_000;
/**
 * Requests the sequencer's index keeps in memory (about 100 bytes each): the retained log's, with
 * room for a log whose compaction is held back. An older retry is ordered again and answered by
 * the replicas' session table as a duplicate.
 */
export const requestIndexMax = 4 * logRetentionEntries;
/** Compaction runs when this many entries beyond the retention window have accumulated. */
export const compactionSlackEntries = 1_000;
/**
 * Besides logRetentionEntries, each object's retained log (the sequencer's; a replica's with the
 * watch's effects rows) is kept to this share of the group's storage quota: a 16 MiB group of
 * 60 KB puts was held at its quota by 10,000 retained entries with no data left, and only about
 * 10,000 deletes brought it back (a probe). A co-located object holds two logs and the effects:
 * with the slack below, about a sixth of the quota at most.
 */
export const logRetentionQuotaShare = 1 / 16;
/** Bytes appended between two measures of the retained log (a share of its bytes budget). */
export const compactionSlackShare = 1 / 4;
/** A live watch holds a replica's cut by bytes back while the log from its position takes at most this many budgets. */
export const watchHoldBudgets = 2;
/** The first measure after a start comes once this much is appended (or the share, if less): not in the first answer's step. */
export const firstCutBytes = 64 * 1024;

/** The bytes budget of each object's retained log in a group of this quota (logRetentionQuotaShare). */
export function logRetentionBytesOf(quotaMiB: number): number {
  return Math.floor(quotaMiB * 1024 * 1024 * logRetentionQuotaShare);
}
/** State transfer page size (bytes of keys and values), well under one RPC message. */
export const transferPageBytes = 512 * 1024;

/** Commands one batch request may carry (API.md "Batches": 1 to 256). */
export const batchCommandsMax = 256;
/**
 * Commands `smr batch` takes from one file: sent batchCommandsMax (or a body's worth) a request,
 * in order, as the client library splits a batch (it refused a file of more than one request's).
 */
export const cliBatchCommandsMax = 10_000;
/** A kv txn's compares, and commands per branch (API.md "Transactions"). */
export const txnComparesMax = 64;
export const txnCommandsMax = 64;
/** Open watch streams one replica serves; past it a new watch is 503 (API.md "Watch"). */
export const watchersPerReplicaMax = 1_000;
/** A watch stream gets a `: keepalive` comment when it has been sent nothing this long (API.md: at most 15 s). */
export const watchKeepaliveMs = 10_000;
/**
 * A replica with as many watchers as it may sends a keepalive to each one sent nothing this long
 * before it refuses a new watch: a reader that went away is noticed only when a write to its
 * stream fails, so its place stayed taken until the next keepalive (up to 15 s). The refused
 * client's retry (Retry-After: 5 s, workers/replica-host.ts) finds the places of those who left
 * free. (Under `wrangler dev` its proxy holds a closed browser's stream open longer: a place
 * there was free about 10 s after the page left, a probe.)
 */
export const watchProbeMs = 1_000;
/**
 * A replica that has heard nothing from a serving sequencer this long (cut off from it, or on the
 * side of a sequencer cut off from the rest, as its appends say) ends the watch streams open that long,
 * and refuses a new watch while another replica can take it: its stream would only carry
 * keepalives while the group writes on elsewhere. Twice the failover timeout, so a failover's own
 * silence rarely ends a stream; checked with the keepalives (every watchKeepaliveMs / 2).
 */
export const watchSilenceMs = 2 * sequencerTimeoutMs;
/**
 * Entries a prefix watch may pass over (filtered out) before it is told where it stands: an `id:`
 * block with no event, which a reconnect's Last-Event-ID then carries (also sent with a
 * keepalive). Well inside logRetentionEntries, and with watchIdGapBytes inside a live watch's
 * hold on the log by bytes (ReplicaCore.heldForWatch), so a quiet prefix's watcher can resume.
 */
export const watchIdGapEntries = 1_000;
/** Or this many bytes of events passed over: well inside a small group's log budget (a sixteenth of 16 MiB). */
export const watchIdGapBytes = 64 * 1024;
/** Entries a watch stream reads from the log per page while it catches up. */
export const watchPageEntries = 256;
/** Pages one event reads for all of a replica's watchers (up to 2 MiB); the rest go on in later events. */
export const watchPumpPagesMax = 8;
/**
 * Bytes queued for one watcher that the network has not taken yet; past it nothing more is sent
 * to it until it drains, and then it reads on from the log: a slow reader skips nothing.
 */
export const watchQueueBytesMax = 1024 * 1024;
/**
 * Bytes queued for all of a replica's watchers together (1,000 stalled readers at 1 MiB each
 * would be 1 GB where a Durable Object has 128 MB). Past it no watcher is sent more until queues
 * drain, and a watcher whose reader took nothing for watchStallMs is dropped, what it had queued
 * discarded; its client resumes with Last-Event-ID, nothing skipped.
 */
export const watchQueuesBytesMax = 32 * 1024 * 1024;
/**
 * Past watchQueuesBytesMax, how long a reader may take nothing (with bytes queued) before it is
 * dropped. It was 30 s, and every other watch of the replica waited as long: 33 connections that
 * never read froze every live watch for 30 s, and reopened every 25 s, for as long as they came (a
 * probe, with a read token). Dropped, a slow reader resumes with Last-Event-ID; this applies only
 * while the shared bound is reached. A reader that cannot take one whole write (one large event)
 * in this time meanwhile makes no progress until the pressure ends (docs/PROTOCOL.md, "Watch").
 */
export const watchStallMs = 5_000;
/**
 * Past watchQueuesBytesMax, bytes more that readers keeping up (all they were sent taken, and
 * something read before) may be sent, a page each: readers that keep their queues full and take a
 * little now and then never count as stalled, and held every live watch back (a review).
 */
export const watchReserveBytes = 8 * 1024 * 1024;
/** While the shared bound holds the watchers back, how often the stalled are looked for (not only at the next keepalive tick). */
export const watchPressureCheckMs = 1_000;
/**
 * Characters of events one send to a watcher carries (a page read from the log): with 1,000
 * watchers catching up at once, pages of pageBytesMax each took gigabytes in flight.
 */
export const watchPageBytesMax = 256 * 1024;
/** Largest snapshot file a restore accepts (API.md "Snapshot and restore"). */
export const restoreBytesMax = 64 * 1024 * 1024;
/** Rows per page a snapshot or a restore moves between objects (bounded in bytes by transferPageBytes too). */
export const snapshotPageRows = 1_000;
/** Frozen copies one replica keeps for snapshot downloads at once; an idle one is dropped after snapshotIdleMs. */
export const snapshotsPerReplicaMax = 2;
export const snapshotIdleMs = 60_000;
/**
 * A snapshot download's page from its replica (512 KiB at most) within this long, or the download
 * ends as an error that says so: a replica that hung stalled the body with nothing logged (a review).
 */
export const exportPageTimeoutMs = 10_000;
/**
 * Once a quorum of voters has installed a restore, the other members get as long again as the
 * quorum took (at least this) before they are left to a state transfer: one replica slowed 2 s a
 * call held a 21 MB restore 52 s, and the group's commands with it, where the quorum took 7 s.
 */
export const restoreLaggardGraceMinMs = 2_000;
/**
 * A restore goes into a group whose log holds no-ops alone (recoveries: a move or a failover
 * before any write) after them; a log of more than this many is taken as one with entries, so
 * the check reads a bounded log.
 */
export const restoreNoopsMax = 1_024;

/** A slow fault's delay when its body gives no `ms` (tests only): it was 0, a fault that slowed nothing (a probe). */
export const slowFaultDefaultMs = 1_000;
