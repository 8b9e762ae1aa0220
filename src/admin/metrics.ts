// Prometheus metrics for one daemon. A Registry of its own (no global default
// registry), so tests can run several daemons in one process.
//
// What the statement path updates (statements by decision, audit events, the
// audit batch size, the overhead and audit write histograms) is kept in plain
// fields: counts and the batch size are handed to prom-client when /metrics is
// read (its `collect` hook), the histograms are dbward's own (FastHistogram). A
// prom-client update hashes its labels and, for a histogram, builds a closure on
// every call, which showed in the profile at one to four updates per statement.
// The series and their values are the same as with per-statement updates, and
// are current whenever they are read.

import client from 'prom-client';
import type { SinkObserver } from '../audit/events.js';

/** The daemon's metrics; passed to the rooms that count things. */
export class Metrics {
  readonly registry = new client.Registry();
  readonly sessionsActive = new client.Gauge({ name: 'dbward_sessions_active', help: 'Client sessions open now', labelNames: ['engine'], registers: [this.registry] });
  readonly sessionsTotal = new client.Counter({ name: 'dbward_sessions_total', help: 'Client sessions by how they ended up', labelNames: ['engine', 'result'], registers: [this.registry] });
  readonly statements = new client.Counter({
    name: 'dbward_statements_total', help: 'Statements by decision', labelNames: ['engine', 'decision'], registers: [this.registry],
    collect: () => {
      this.pgAllowed.drain((n) => this.statements.inc({ engine: 'postgres', decision: 'allow' }, n));
      this.pgDenied.drain((n) => this.statements.inc({ engine: 'postgres', decision: 'deny' }, n));
    },
  });
  readonly bytes = new client.Counter({ name: 'dbward_bytes_total', help: 'Bytes relayed', labelNames: ['direction'], registers: [this.registry] });
  readonly overhead = new FastHistogram(this.registry, 'dbward_proxy_overhead_seconds',
    'Time dbward holds a statement before forwarding it (decision + audit write)',
    [0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05]);
  private readonly auditEventsWritten = new Tally();
  readonly auditEvents = new client.Counter({
    name: 'dbward_audit_events_total', help: 'Audit events written', registers: [this.registry],
    collect: () => this.auditEventsWritten.drain((n) => this.auditEvents.inc(n)),
  });
  readonly auditWriteSeconds = new FastHistogram(this.registry, 'dbward_audit_write_seconds', 'Audit group-commit write latency',
    [0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1]);
  private lastBatch = 0;
  readonly auditBatch: client.Gauge = new client.Gauge({
    name: 'dbward_audit_last_batch_events', help: 'Events in the last group commit', registers: [this.registry],
    collect: (): void => this.auditBatch.set(this.lastBatch),
  });
  readonly auditFailures = new client.Counter({ name: 'dbward_audit_write_failures_total', help: 'Failed audit writes', registers: [this.registry] });
  readonly sinkEvents = new client.Counter({ name: 'dbward_audit_sink_events_total', help: 'Events a secondary audit sink delivered', labelNames: ['sink'], registers: [this.registry] });
  readonly sinkFailures = new client.Counter({ name: 'dbward_audit_sink_failures_total', help: 'Failed deliveries of a secondary audit sink (retried)', labelNames: ['sink'], registers: [this.registry] });
  readonly sinkQueue = new client.Gauge({ name: 'dbward_audit_sink_queue', help: 'Events waiting for a secondary audit sink', labelNames: ['sink'], registers: [this.registry] });
  readonly sinkDropped = new client.Counter({ name: 'dbward_audit_sink_dropped_total', help: 'Events a secondary audit sink gave up on (queue full); the primary has them', labelNames: ['sink'], registers: [this.registry] });
  readonly policyRules = new client.Gauge({ name: 'dbward_policy_rules', help: 'Rules in the policy in force', registers: [this.registry] });
  readonly policyReloads = new client.Counter({ name: 'dbward_policy_reloads_total', help: 'Policy reloads; result=invalid left the previous policy in force', labelNames: ['result'], registers: [this.registry] });
  readonly authFailures = new client.Counter({ name: 'dbward_auth_failures_total', help: 'Failed session authentications by reason', labelNames: ['reason'], registers: [this.registry] });
  readonly approvalSteps = new client.Counter({ name: 'dbward_approval_events_total', help: 'Approval steps recorded (requested, decided, used, expired, withdrawn, notified, ...)', labelNames: ['step'], registers: [this.registry] });
  readonly refusals = new client.Counter({ name: 'dbward_statements_refused_total', help: 'Statements refused and why', labelNames: ['reason'], registers: [this.registry] });

  // Pre-bound children: a label lookup per update is measurable on the hot path.
  readonly clientBytes = this.bytes.labels('client_to_server');
  readonly serverBytes = this.bytes.labels('server_to_client');
  /** dbward_statements_total{engine="postgres",decision=...}, counted here and handed over when read. */
  readonly pgAllowed = new Tally();
  readonly pgDenied = new Tally();

  constructor() {
    client.collectDefaultMetrics({ register: this.registry, prefix: 'dbward_' });
  }

  /** An observer that feeds a secondary sink's metrics. */
  sinkObserver(sink: string): SinkObserver {
    return {
      written: (n) => this.sinkEvents.inc({ sink }, n),
      failed: () => this.sinkFailures.inc({ sink }),
      queueDepth: (d) => this.sinkQueue.set({ sink }, d),
      dropped: (n) => this.sinkDropped.inc({ sink }, n),
    };
  }

  /** An observer that feeds the audit metrics. */
  auditObserver(): SinkObserver {
    return {
      written: (n, s) => { this.auditEventsWritten.inc(n); this.auditWriteSeconds.observe(s); },
      failed: () => this.auditFailures.inc(),
      queueDepth: (d) => { this.lastBatch = d; },
    };
  }
}

/** A count the hot path increments; a metric's `collect` hook drains it into prom-client when /metrics is read. */
export class Tally {
  private n = 0;

  inc(by = 1): void {
    this.n += by;
  }

  /** Hands the count since the last drain to `to` (when there is any) and starts again from zero. */
  drain(to: (n: number) => void): void {
    if (this.n === 0) return;
    const n = this.n;
    this.n = 0;
    to(n);
  }
}

/**
 * A histogram without labels, for values observed on every statement: observe()
 * is a bucket search and three additions. Registered with a prom-client Registry
 * (which reads it through get(), like its own metrics) and exposed exactly as a
 * prom-client Histogram: cumulative `_bucket{le=...}` series, `+Inf`, `_sum` and
 * `_count`.
 */
export class FastHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  /** Observations per bucket (not cumulative); the last one is +Inf. */
  private readonly counts: Float64Array;
  private sum = 0;
  private count = 0;

  constructor(registry: client.Registry, readonly name: string, readonly help: string, private readonly buckets: readonly number[]) {
    this.counts = new Float64Array(buckets.length + 1);
    registry.registerMetric(this as unknown as client.Metric);
  }

  /** Records one value (seconds); one that is not a finite number is ignored, as it cannot be bucketed. */
  observe(value: number): void {
    if (!Number.isFinite(value)) return;
    const b = this.buckets;
    let i = 0;
    while (i < b.length && value > b[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }

  /** The metric's values, in prom-client's shape (what a Registry formats). */
  get(): Promise<{ name: string; help: string; type: 'histogram'; aggregator: 'sum'; values: { labels: Record<string, string | number>; value: number; metricName: string }[] }> {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    const bucket = `${this.name}_bucket`;
    let acc = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      acc += this.counts[i]!;
      values.push({ labels: { le: this.buckets[i]! }, value: acc, metricName: bucket });
    }
    values.push({ labels: { le: '+Inf' }, value: this.count, metricName: bucket });
    values.push({ labels: {}, value: this.sum, metricName: `${this.name}_sum` });
    values.push({ labels: {}, value: this.count, metricName: `${this.name}_count` });
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values });
  }

  reset(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
  }
}
