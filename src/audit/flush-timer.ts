// When a primary sink next writes what it has queued: at the end of this turn
// of the event loop (a commit is waiting), or after a delay (appended lines, a
// retry), whichever is due first. Shared by the file and PostgreSQL sinks.

/** A sink's next flush: at most one is pending. */
export class FlushTimer {
  private timer: NodeJS.Timeout | null = null;
  private immediate = false;
  /** A flush was asked for and has not started. */
  due = false;

  constructor(private readonly flush: () => void) {}

  /** Asks for a flush in `delayMs` (0: this turn); one already due as soon or sooner stands. */
  request(delayMs: number): void {
    if (this.due && (delayMs > 0 || this.immediate)) return;
    if (this.timer) clearTimeout(this.timer);
    this.due = true;
    this.immediate = delayMs === 0;
    if (delayMs === 0) {
      this.timer = null;
      setImmediate(this.flush);
    } else {
      this.timer = setTimeout(this.flush, delayMs);
    }
  }

  /** The flush is starting: nothing is due any more. */
  started(): void {
    this.due = false;
    this.cancelTimer();
  }

  /** Drops a delayed flush (the sink is closing); one asked for this turn still runs. */
  cancelTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
