// The bounded queue behind every secondary sink (PostgreSQL, NATS): lines go in
// without waiting, one background loop hands them to the sink in batches, in
// order, and retries a failed batch with backoff. Past `maxQueue` lines the
// oldest are dropped and counted: a secondary sink must never hold up a
// statement nor grow without bound while its server is away.

import type { Logger } from 'pino';
import type { SinkObserver } from './events.js';

/**
 * A batch that was delivered only in part: `delivered` lines from its front are
 * stored, the rest are retried.
 */
export class PartialDeliveryError extends Error {
  readonly code = 'AUDIT_PARTIAL_DELIVERY' as const;

  constructor(readonly delivered: number, cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.name = 'PartialDeliveryError';
  }
}

/** How a BatchQueue delivers and paces. */
export interface BatchQueueOptions {
  /** Sink name, for logs. */
  name: string;
  maxQueue: number;
  /** Most lines handed to `send` at once. */
  maxBatch: number;
  /** Stores the lines in order; rejects (a PartialDeliveryError when some were stored) to have the rest retried. */
  send(lines: readonly string[]): Promise<void>;
  observer: SinkObserver;
  log: Logger;
  retryMinMs?: number;
  retryMaxMs?: number;
}

/** Lines waiting for a secondary sink, and the loop that delivers them. */
export class BatchQueue {
  private lines: string[] = [];
  /** Index of the oldest queued line in `lines` (dropping and taking just move it). */
  private start = 0;
  private inFlight = 0;
  private ok = true;
  private closing = false;
  private stopped = false;
  private wake: (() => void) | null = null;
  private retryMs: number;
  private readonly loop: Promise<void>;
  private readonly idle: (() => void)[] = [];

  constructor(private readonly opts: BatchQueueOptions) {
    this.retryMs = opts.retryMinMs ?? RETRY_MIN_MS;
    this.loop = this.run();
  }

  /** False from a failed delivery until one succeeds. */
  get healthy(): boolean {
    return this.ok;
  }

  /** Lines queued or being delivered. */
  get depth(): number {
    return this.lines.length - this.start + this.inFlight;
  }

  /** Marks the sink failing before any delivery was tried (its server was unreachable at start). */
  failing(err: Error): void {
    this.ok = false;
    this.opts.observer.failed?.(err);
  }

  /** Queues lines; never throws. Lines given after close() are counted as dropped. */
  push(lines: readonly string[]): void {
    if (lines.length === 0) return;
    if (this.closing) {
      this.opts.observer.dropped?.(lines.length);
      return;
    }
    for (const l of lines) this.lines.push(l);
    this.enforceLimit();
    this.opts.observer.queueDepth?.(this.depth);
    this.wake?.();
  }

  /**
   * Delivers what is queued, waiting at most `timeoutMs`, then stops: runs
   * `teardown` (which ends a send still in flight, e.g. by closing the
   * connection), waits for the loop, and counts the lines left as dropped.
   */
  async close(timeoutMs: number, teardown: () => Promise<void>): Promise<void> {
    this.closing = true;
    if (this.depth > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((r) => this.idle.push(r)),
        new Promise<void>((r) => { timer = setTimeout(r, timeoutMs); }),
      ]);
      clearTimeout(timer);
    }
    const left = this.depth;
    this.stopped = true;
    this.wake?.();
    await teardown();
    await this.loop;
    if (left > 0) {
      this.opts.observer.dropped?.(left);
      this.opts.log.error({ lines: left, sink: this.opts.name }, `audit lines not delivered to the ${this.opts.name} sink before close`);
    }
  }

  private enforceLimit(): void {
    const over = this.depth - this.opts.maxQueue;
    if (over <= 0) return;
    // A batch in flight may still land; the oldest lines not yet taken go first.
    const drop = Math.min(over, this.lines.length - this.start);
    if (drop <= 0) return;
    this.start += drop;
    this.compact();
    this.opts.observer.dropped?.(drop);
  }

  private compact(): void {
    if (this.start > 1024 && this.start * 2 > this.lines.length) {
      this.lines = this.lines.slice(this.start);
      this.start = 0;
    }
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      if (this.lines.length === this.start) {
        this.settleIdle();
        await new Promise<void>((r) => { this.wake = r; });
        this.wake = null;
        continue;
      }
      const end = Math.min(this.lines.length, this.start + this.opts.maxBatch);
      const batch = this.lines.slice(this.start, end);
      this.start = end;
      this.compact();
      this.inFlight = batch.length;
      const started = performance.now();
      let delivered = batch.length;
      let failure: Error | null = null;
      try {
        await this.opts.send(batch);
      } catch (err) {
        failure = err instanceof Error ? err : new Error(String(err));
        delivered = err instanceof PartialDeliveryError ? Math.min(err.delivered, batch.length) : 0;
      }
      this.inFlight = 0;
      if (delivered > 0) this.opts.observer.written?.(delivered, (performance.now() - started) / 1000);
      if (failure === null) {
        if (!this.ok) this.opts.log.info({ sink: this.opts.name }, 'audit sink delivers again');
        this.ok = true;
        this.retryMs = this.opts.retryMinMs ?? RETRY_MIN_MS;
        this.opts.observer.queueDepth?.(this.depth);
        continue;
      }
      // Back to the front, ahead of lines queued meanwhile: the order is the chain's.
      const rest = batch.slice(delivered);
      this.lines = rest.concat(this.lines.slice(this.start));
      this.start = 0;
      this.enforceLimit();
      this.opts.observer.failed?.(failure);
      this.opts.observer.queueDepth?.(this.depth);
      // One log line per outage, not one per retry.
      if (this.ok) this.opts.log.error({ sink: this.opts.name, err: failure, queued: this.depth }, 'audit sink cannot deliver; queueing and retrying');
      this.ok = false;
      if (this.stopped) break;
      await this.sleep(this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, this.opts.retryMaxMs ?? RETRY_MAX_MS);
    }
    this.settleIdle(true);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((r) => {
      const timer = setTimeout(() => { this.wake = null; r(); }, ms);
      // close() ends the wait early; new lines do not (they would defeat the backoff).
      this.wake = () => {
        if (!this.stopped) return;
        clearTimeout(timer);
        this.wake = null;
        r();
      };
    });
  }

  private settleIdle(force = false): void {
    if (!force && this.depth > 0) return;
    for (const r of this.idle.splice(0)) r();
  }
}

const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 5000;
