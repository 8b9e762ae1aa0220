// Prometheus metrics for one daemon. A Registry of its own (no global default
// registry), so tests can run several daemons in one process.

import client from 'prom-client';
import type { SinkObserver } from '../audit/events.js';

/** The daemon's metrics; passed to the rooms that count things. */
export class Metrics {
  readonly registry = new client.Registry();
  readonly sessionsActive = new client.Gauge({ name: 'dbward_sessions_active', help: 'Client sessions open now', labelNames: ['engine'], registers: [this.registry] });
  readonly sessionsTotal = new client.Counter({ name: 'dbward_sessions_total', help: 'Client sessions by how they ended up', labelNames: ['engine', 'result'], registers: [this.registry] });
  readonly statements = new client.Counter({ name: 'dbward_statements_total', help: 'Statements by decision', labelNames: ['engine', 'decision'], registers: [this.registry] });
  readonly bytes = new client.Counter({ name: 'dbward_bytes_total', help: 'Bytes relayed', labelNames: ['direction'], registers: [this.registry] });
  readonly overhead = new client.Histogram({
    name: 'dbward_proxy_overhead_seconds',
    help: 'Time dbward holds a statement before forwarding it (decision + audit write)',
    buckets: [0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05],
    registers: [this.registry],
  });
  readonly auditEvents = new client.Counter({ name: 'dbward_audit_events_total', help: 'Audit events written', registers: [this.registry] });
  readonly auditWriteSeconds = new client.Histogram({
    name: 'dbward_audit_write_seconds', help: 'Audit group-commit write latency',
    buckets: [0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1], registers: [this.registry],
  });
  readonly auditBatch = new client.Gauge({ name: 'dbward_audit_last_batch_events', help: 'Events in the last group commit', registers: [this.registry] });
  readonly auditFailures = new client.Counter({ name: 'dbward_audit_write_failures_total', help: 'Failed audit writes', registers: [this.registry] });
  readonly sinkEvents = new client.Counter({ name: 'dbward_audit_sink_events_total', help: 'Events a secondary audit sink delivered', labelNames: ['sink'], registers: [this.registry] });
  readonly sinkFailures = new client.Counter({ name: 'dbward_audit_sink_failures_total', help: 'Failed deliveries of a secondary audit sink (retried)', labelNames: ['sink'], registers: [this.registry] });
  readonly sinkQueue = new client.Gauge({ name: 'dbward_audit_sink_queue', help: 'Events waiting for a secondary audit sink', labelNames: ['sink'], registers: [this.registry] });
  readonly sinkDropped = new client.Counter({ name: 'dbward_audit_sink_dropped_total', help: 'Events a secondary audit sink gave up on (queue full); the primary has them', labelNames: ['sink'], registers: [this.registry] });
  readonly policyRules = new client.Gauge({ name: 'dbward_policy_rules', help: 'Rules in the policy in force', registers: [this.registry] });
  readonly policyReloads = new client.Counter({ name: 'dbward_policy_reloads_total', help: 'Policy reloads; result=invalid left the previous policy in force', labelNames: ['result'], registers: [this.registry] });
  readonly authFailures = new client.Counter({ name: 'dbward_auth_failures_total', help: 'Failed session authentications by reason', labelNames: ['reason'], registers: [this.registry] });
  readonly refusals = new client.Counter({ name: 'dbward_statements_refused_total', help: 'Statements refused and why', labelNames: ['reason'], registers: [this.registry] });

  // Pre-bound children: a label lookup per statement is measurable on the hot path.
  readonly clientBytes = this.bytes.labels('client_to_server');
  readonly serverBytes = this.bytes.labels('server_to_client');
  readonly pgAllowed = this.statements.labels('postgres', 'allow');
  readonly pgDenied = this.statements.labels('postgres', 'deny');

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
      written: (n, s) => { this.auditEvents.inc(n); this.auditWriteSeconds.observe(s); },
      failed: () => this.auditFailures.inc(),
      queueDepth: (d) => this.auditBatch.set(d),
    };
  }
}
