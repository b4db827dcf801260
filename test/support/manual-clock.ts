// A clock that moves only when a test says: advance() runs the timers then due, in order set.
export function manualClock(startMs = 1_000_000) {
  let now = startMs;
  let timers: { at: number; fn: () => void }[] = [];
  return {
    clock: {
      nowMs: () => now,
      setTimer: (ms: number, fn: () => void) => {
        const t = { at: now + ms, fn };
        timers.push(t);
        return () => void (timers = timers.filter((x) => x !== t));
      },
    },
    advance(ms: number) {
      now += ms;
      for (const t of timers.filter((x) => x.at <= now)) {
        timers = timers.filter((x) => x !== t);
        t.fn();
      }
    },
    /** Forgets every timer (an object's new start: its memory went with them). */
    clear: () => void (timers = []),
    pendingTimers: () => timers.length,
  };
}
