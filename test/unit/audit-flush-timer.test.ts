// The sinks' flush scheduling: one Timeout re-armed between delayed flushes,
// an immediate flush overriding a delayed one, cancellation on close.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FlushTimer } from '../../src/audit/flush-timer.js';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

function timer(): { t: FlushTimer; flushes: () => number } {
  let n = 0;
  const t = new FlushTimer(() => {
    t.started();
    n++;
  });
  return { t, flushes: () => n };
}

describe('FlushTimer', () => {
  it('runs a delayed flush once per request, again and again (the kept Timeout is re-armed)', () => {
    const { t, flushes } = timer();
    for (let i = 1; i <= 3; i++) {
      t.request(5);
      t.request(5); // already due: stands
      expect(t.due).toBe(true);
      vi.advanceTimersByTime(4);
      expect(flushes()).toBe(i - 1);
      vi.advanceTimersByTime(1);
      expect(flushes()).toBe(i);
      expect(t.due).toBe(false);
    }
    vi.advanceTimersByTime(100);
    expect(flushes()).toBe(3);
  });

  it('runs an immediate flush instead of a pending delayed one, and a later delayed one still', () => {
    const { t, flushes } = timer();
    t.request(100);
    t.request(0);
    vi.runOnlyPendingTimers(); // the immediate
    expect(flushes()).toBe(1);
    vi.advanceTimersByTime(200);
    expect(flushes()).toBe(1);
    t.request(100);
    vi.advanceTimersByTime(100);
    expect(flushes()).toBe(2);
  });

  it('keeps a sooner request over a later one, and takes a different delay', () => {
    const { t, flushes } = timer();
    t.request(5);
    t.request(100);
    vi.advanceTimersByTime(5);
    expect(flushes()).toBe(1);
    t.request(100);
    vi.advanceTimersByTime(99);
    expect(flushes()).toBe(1);
    vi.advanceTimersByTime(1);
    expect(flushes()).toBe(2);
  });

  it('drops a delayed flush on cancelTimer, and arms anew after it', () => {
    const { t, flushes } = timer();
    t.request(5);
    t.cancelTimer();
    vi.advanceTimersByTime(50);
    expect(flushes()).toBe(0);
    t.started();
    t.request(5);
    vi.advanceTimersByTime(5);
    expect(flushes()).toBe(1);
  });
});
