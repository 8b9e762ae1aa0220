// The statement path's metrics are counted outside prom-client and handed over
// when read: /metrics must show the same series and values as prom-client's own.

import client from 'prom-client';
import { describe, expect, it } from 'vitest';
import { FastHistogram, Metrics } from '../../src/admin/metrics.js';

const BUCKETS = [0.00001, 0.0001, 0.001, 0.01];
// Below the first bound, on a bound, between bounds, past the last (only +Inf).
const VALUES = [0.000001, 0.00001, 0.00002, 0.0005, 0.001, 0.003, 0.01, 0.5, 7];

/** A registry's metrics as JSON, without prom-client's empty exemplar fields. */
async function json(registry: client.Registry): Promise<unknown> {
  return (await registry.getMetricsAsJSON()).map((m) => ({
    ...m, values: m.values.map((v) => ({ labels: v.labels, value: v.value, metricName: (v as { metricName?: string }).metricName })),
  }));
}

describe('FastHistogram', () => {
  it('exposes the same text as a prom-client Histogram fed the same values', async () => {
    const ours = new client.Registry();
    const theirs = new client.Registry();
    const fast = new FastHistogram(ours, 'dbward_test_seconds', 'A test histogram', BUCKETS);
    const reference = new client.Histogram({ name: 'dbward_test_seconds', help: 'A test histogram', buckets: BUCKETS, registers: [theirs] });
    expect(await ours.metrics()).toBe(await theirs.metrics());
    for (const v of VALUES) {
      fast.observe(v);
      reference.observe(v);
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
    expect(await json(ours)).toEqual(await json(theirs));
    ours.resetMetrics();
    theirs.resetMetrics();
    fast.observe(0.002);
    reference.observe(0.002);
    expect(await ours.metrics()).toBe(await theirs.metrics());
  });

  it('ignores a value that is not a finite number', async () => {
    const registry = new client.Registry();
    const fast = new FastHistogram(registry, 'dbward_test_seconds', 'A test histogram', BUCKETS);
    fast.observe(Number.NaN);
    fast.observe(Infinity);
    expect(await registry.metrics()).toMatch(/dbward_test_seconds_count 0/);
  });
});

describe('Metrics', () => {
  it('reports statements and audit events counted on the hot path, each once', async () => {
    const m = new Metrics();
    m.pgAllowed.inc();
    m.pgAllowed.inc();
    m.pgDenied.inc();
    const audit = m.auditObserver();
    audit.written?.(3, 0.00002);
    audit.written?.(1, 0.002);
    m.overhead.observe(0.0003);
    const first = await m.registry.metrics();
    expect(first).toMatch(/^dbward_statements_total\{engine="postgres",decision="allow"\} 2$/m);
    expect(first).toMatch(/^dbward_statements_total\{engine="postgres",decision="deny"\} 1$/m);
    expect(first).toMatch(/^dbward_audit_events_total 4$/m);
    expect(first).toMatch(/^dbward_audit_write_seconds_count 2$/m);
    expect(first).toMatch(/^dbward_audit_write_seconds_bucket\{le="0.0001"\} 1$/m);
    expect(first).toMatch(/^dbward_proxy_overhead_seconds_bucket\{le="0.0005"\} 1$/m);
    // Read again: nothing counted twice; new counts add to the old.
    m.pgAllowed.inc();
    audit.written?.(2, 0.00002);
    const second = await m.registry.metrics();
    expect(second).toMatch(/^dbward_statements_total\{engine="postgres",decision="allow"\} 3$/m);
    expect(second).toMatch(/^dbward_statements_total\{engine="postgres",decision="deny"\} 1$/m);
    expect(second).toMatch(/^dbward_audit_events_total 6$/m);
  });
});
