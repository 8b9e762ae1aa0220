// CancelRegistry: a CancelRequest cancels exactly the session whose key it
// carries; forged, mismatched, mis-sized or revoked keys cancel nothing.
// Keys travel the real way: BackendKeyData numbers -> pg-protocol CancelRequest
// bytes -> decodeStartupPacket -> registry.

import { serialize } from 'pg-protocol';
import { describe, expect, it, vi } from 'vitest';
import { CancelRegistry, type CancelTarget } from '../../src/proxy/postgres/cancel.js';
import { decodeStartupPacket } from '../../src/proxy/postgres/startup.js';
import { i32 } from './pg-test-encode.js';

function target(): CancelTarget & { cancel: ReturnType<typeof vi.fn> } {
  return { cancel: vi.fn(async () => undefined) };
}

/** What a client sends back for a key: a CancelRequest, as dbward decodes it. */
function cancelRequest(pid: number, secret: number): { pid: number; secret: Buffer } {
  const p = decodeStartupPacket(serialize.cancel(pid, secret));
  if (p.kind !== 'cancel') throw new Error('not a cancel request');
  return p;
}

function setup(n = 3) {
  const reg = new CancelRegistry();
  const targets = Array.from({ length: n }, target);
  const keys = targets.map((t) => reg.issue(t));
  const cancelled = () => targets.map((t) => t.cancel.mock.calls.length);
  return { reg, targets, keys, cancelled };
}

describe('CancelRegistry', () => {
  it('issues distinct keys that fit BackendKeyData (positive int32 pid, int32 secret)', () => {
    const { keys } = setup(50);
    expect(new Set(keys.map((k) => k.pid)).size).toBe(50);
    for (const k of keys) {
      expect(Number.isInteger(k.pid) && k.pid >= 1 && k.pid <= 0x7fffffff).toBe(true);
      expect(Number.isInteger(k.secret) && k.secret >= -0x80000000 && k.secret <= 0x7fffffff).toBe(true);
    }
  });

  it('each issued key cancels exactly its own target', async () => {
    const { reg, keys, cancelled } = setup(3);
    const { pid, secret } = cancelRequest(keys[1]!.pid, keys[1]!.secret);
    await expect(reg.cancel(pid, secret)).resolves.toBe(true);
    expect(cancelled()).toEqual([0, 1, 0]);
    const k0 = cancelRequest(keys[0]!.pid, keys[0]!.secret);
    await expect(reg.cancel(k0.pid, k0.secret)).resolves.toBe(true);
    expect(cancelled()).toEqual([1, 1, 0]);
  });

  it('a key stays valid for repeated cancels until revoked', async () => {
    const { reg, keys, cancelled } = setup(1);
    const { pid, secret } = cancelRequest(keys[0]!.pid, keys[0]!.secret);
    await reg.cancel(pid, secret);
    await expect(reg.cancel(pid, secret)).resolves.toBe(true);
    expect(cancelled()).toEqual([2]);
  });

  it('a wrong secret cancels nothing (every single-bit change)', async () => {
    const { reg, keys, cancelled } = setup(2);
    for (let bit = 0; bit < 32; bit++) {
      const { pid, secret } = cancelRequest(keys[0]!.pid, keys[0]!.secret ^ (1 << bit));
      await expect(reg.cancel(pid, secret), `bit ${bit}`).resolves.toBe(false);
    }
    expect(cancelled()).toEqual([0, 0]);
  });

  it('a wrong pid cancels nothing, including another session\'s pid with this secret', async () => {
    const { reg, keys, cancelled } = setup(2);
    const mixed = cancelRequest(keys[1]!.pid, keys[0]!.secret);
    await expect(reg.cancel(mixed.pid, mixed.secret)).resolves.toBe(false); // 2^-32 chance the secrets collide
    const unknownPid = keys[0]!.pid === 1 ? 2 : keys[0]!.pid - 1;
    if (!keys.some((k) => k.pid === unknownPid)) {
      await expect(reg.cancel(unknownPid, i32(keys[0]!.secret))).resolves.toBe(false);
    }
    await expect(reg.cancel(0, i32(keys[0]!.secret))).resolves.toBe(false);
    await expect(reg.cancel(-keys[0]!.pid, i32(keys[0]!.secret))).resolves.toBe(false);
    expect(cancelled()[0]).toBe(0);
  });

  it('a secret of a different length cancels nothing, even with the right prefix', async () => {
    const { reg, keys, cancelled } = setup(1);
    const right = i32(keys[0]!.secret);
    for (const secret of [
      Buffer.alloc(0), right.subarray(0, 3), Buffer.concat([right, Buffer.alloc(4)]),
      Buffer.concat([right, right]), Buffer.concat([right, Buffer.alloc(252)]),
    ]) {
      await expect(reg.cancel(keys[0]!.pid, secret), `length ${secret.length}`).resolves.toBe(false);
    }
    // A protocol 3.2 CancelRequest with a 32-byte secret starting with the right bytes.
    const long = decodeStartupPacket(Buffer.concat([i32(44), i32(80877102), i32(keys[0]!.pid), right, Buffer.alloc(28)]));
    expect(long.kind).toBe('cancel');
    if (long.kind === 'cancel') await expect(reg.cancel(long.pid, long.secret)).resolves.toBe(false);
    expect(cancelled()).toEqual([0]);
  });

  it('a revoked key cancels nothing; other keys still work', async () => {
    const { reg, keys, cancelled } = setup(2);
    reg.revoke(keys[0]!.pid);
    const k0 = cancelRequest(keys[0]!.pid, keys[0]!.secret);
    await expect(reg.cancel(k0.pid, k0.secret)).resolves.toBe(false);
    const k1 = cancelRequest(keys[1]!.pid, keys[1]!.secret);
    await expect(reg.cancel(k1.pid, k1.secret)).resolves.toBe(true);
    expect(cancelled()).toEqual([0, 1]);
    reg.revoke(keys[0]!.pid); // revoking twice is harmless
    reg.revoke(123); // and so is revoking an unknown pid
    await expect(reg.cancel(k1.pid, k1.secret)).resolves.toBe(true);
  });

  it('a failing target.cancel() surfaces to the caller', async () => {
    const reg = new CancelRegistry();
    const key = reg.issue({ cancel: async () => { throw new Error('upstream unreachable'); } });
    await expect(reg.cancel(key.pid, i32(key.secret))).rejects.toThrow('upstream unreachable');
  });
});
