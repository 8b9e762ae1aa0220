// When a primary sink next writes what it has queued: at the end of this turn
// of the event loop (a commit is waiting), or after a delay (appended lines, a
// retry), whichever is due first. Shared by the file and PostgreSQL sinks.
//
// Under load a delayed flush is asked for about every APPEND_DELAY_MS, so one
// Timeout is kept and re-armed with refresh(): a clearTimeout and a new
// setTimeout each time showed in the profile (timer list churn, in code too
// cold to be optimized).

/** A sink's next flush: at most one is pending. */
export class FlushTimer {
  /** The Timeout of delayed flushes, kept between them; armed while `armed`. */
  private timer: NodeJS.Timeout | null = null;
  private timerDelay = -1;
  private armed = false;
  private immediate = false;
  /** A flush was asked for and has not started. */
  due = false;

  constructor(private readonly flush: () => void) {}

  /** Asks for a flush in `delayMs` (0: this turn); one already due as soon or sooner stands. */
  request(delayMs: number): void {
    if (this.due && (delayMs > 0 || this.immediate)) return;
    this.cancelTimer();
    this.due = true;
    this.immediate = delayMs === 0;
    if (delayMs === 0) {
      setImmediate(this.flush);
      return;
    }
    if (this.timer !== null && this.timerDelay === delayMs) {
      this.timer.refresh(); // re-arms a Timeout that has fired
    } else {
      this.timer = setTimeout(this.fire, delayMs);
      this.timerDelay = delayMs;
    }
    this.armed = true;
  }

  /** The flush is starting: nothing is due any more. */
  started(): void {
    this.due = false;
    this.cancelTimer();
  }

  /** Drops a delayed flush (the sink is closing); one asked for this turn still runs. */
  cancelTimer(): void {
    if (!this.armed) return;
    this.armed = false;
    // A cleared Timeout cannot be re-armed: the next delayed flush makes a new one.
    clearTimeout(this.timer!);
    this.timer = null;
  }

  private readonly fire = (): void => {
    this.armed = false;
    this.flush();
  };
}
