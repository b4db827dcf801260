// What Ctrl-C (SIGINT), SIGTERM or a closed terminal (SIGHUP) must not leave behind: a half-written file, a hidden cursor, a
// command whose outcome is unknown without the way to retry it exactly once (a probe: each of
// these). While any cleanup is registered, the signal runs them all, then exits as the signal
// would (130, 143, 129); with none, the signal's default is left alone (watch handles its own).

const cleanups = new Set<() => void>();
// SIGHUP: an ssh session or a terminal closed under a download left its partial file (a review).
const exitCodes = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;

function onSignal(signal: keyof typeof exitCodes): void {
  for (const fn of [...cleanups]) {
    try {
      fn();
    } catch {
      // one cleanup failing must not keep the others from running
    }
  }
  // Dies by the signal, as without a handler: a shell loop (`for g in ...; do smr snapshot ...`)
  // stops on Ctrl-C only when its child was killed by SIGINT, not when it exited 130 (a review).
  for (const [sig, h] of Object.entries(handlers)) process.off(sig, h);
  process.kill(process.pid, signal);
  // Reached only if the signal was ignored (node as PID 1 in a container): end anyway, never carry on.
  process.exit(exitCodes[signal]);
}

const handlers = { SIGINT: () => onSignal("SIGINT"), SIGTERM: () => onSignal("SIGTERM"), SIGHUP: () => onSignal("SIGHUP") };

/** Runs `fn` (synchronous) if the process is interrupted while `work` is under way. */
export async function cleanupOnInterrupt<T>(fn: () => void, work: () => Promise<T>): Promise<T> {
  cleanups.add(fn);
  if (cleanups.size === 1) for (const [sig, h] of Object.entries(handlers)) process.on(sig, h);
  try {
    return await work();
  } finally {
    cleanups.delete(fn);
    if (cleanups.size === 0) for (const [sig, h] of Object.entries(handlers)) process.off(sig, h);
  }
}
