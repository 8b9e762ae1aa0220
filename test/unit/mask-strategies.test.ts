// The per-cell maskers: each strategy's output on ASCII, multi-byte UTF-8 and
// empty values, hash determinism and keying, and derived-column downgrades.

import { describe, expect, it } from 'vitest';
import { derivedSpec, makeMasker, maskText } from '../../src/masking/strategies.js';
import type { MaskSpec } from '../../src/masking/types.js';

const KEY = Buffer.from('k'.repeat(32));
const spec = (s: Omit<MaskSpec, 'rule'>): MaskSpec => ({ rule: 'r1', ...s });
const mask = (s: Omit<MaskSpec, 'rule'>, text: string, key: Buffer | null = KEY): string | null =>
  maskText(spec(s), key, text);

describe('redact', () => {
  it('is a constant that never reveals length', () => {
    for (const v of ['', 'a', 'secret', 'x'.repeat(1000), 'héllo wörld']) expect(mask({ strategy: 'redact' }, v)).toBe('****');
  });
});

describe('null', () => {
  it('returns SQL NULL', () => {
    expect(makeMasker(spec({ strategy: 'null' }), null)(Buffer.from('anything'))).toBeNull();
    expect(mask({ strategy: 'null' }, '')).toBeNull();
  });
});

describe('partial', () => {
  it('keeps the first and last characters and stars the middle', () => {
    expect(mask({ strategy: 'partial', keepFirst: 2, keepLast: 2 }, 'abcdefgh')).toBe('ab****gh');
    expect(mask({ strategy: 'partial', keepLast: 4 }, '4111111111111111')).toBe('************1111');
    expect(mask({ strategy: 'partial', keepFirst: 1 }, 'alice')).toBe('a****');
  });

  it('defaults both sides to 0 and ignores nonsense counts', () => {
    expect(mask({ strategy: 'partial' }, 'abc')).toBe('***');
    expect(mask({ strategy: 'partial', keepFirst: -3, keepLast: Number.NaN }, 'abc')).toBe('***');
    expect(mask({ strategy: 'partial', keepFirst: 1.9 }, 'abc')).toBe('a**');
  });

  it('counts code points, never splitting a multi-byte sequence', () => {
    expect(mask({ strategy: 'partial', keepFirst: 1, keepLast: 1 }, 'Chloé')).toBe('C***é');
    expect(mask({ strategy: 'partial', keepFirst: 2, keepLast: 1 }, 'éàüöx')).toBe('éà**x');
    expect(mask({ strategy: 'partial', keepFirst: 1, keepLast: 1 }, '日本語テキスト')).toBe('日*****ト');
    expect(mask({ strategy: 'partial', keepFirst: 1, keepLast: 1 }, 'a😀😀😀b')).toBe('a***b');
    expect(mask({ strategy: 'partial', keepLast: 1 }, '😀😀x😀')).toBe('***😀');
    const out = makeMasker(spec({ strategy: 'partial', keepFirst: 1, keepLast: 1 }), null)(Buffer.from('ü€😀€ü'));
    expect(out!.toString('utf8')).toBe('ü***ü');
    expect(Buffer.from(out!.toString('utf8'), 'utf8').equals(out!)).toBe(true);
  });

  it('fully masks values too short to hide anything', () => {
    expect(mask({ strategy: 'partial', keepFirst: 2, keepLast: 2 }, 'abcd')).toBe('****');
    expect(mask({ strategy: 'partial', keepFirst: 2, keepLast: 2 }, 'abc')).toBe('****');
    expect(mask({ strategy: 'partial', keepFirst: 2, keepLast: 2 }, '日本語')).toBe('****');
    expect(mask({ strategy: 'partial', keepFirst: 1 }, '')).toBe('****');
    expect(mask({ strategy: 'partial' }, '')).toBe('****');
  });

  it('returns a copy, not a view into the clear value', () => {
    const value = Buffer.from('abcdefgh');
    const out = makeMasker(spec({ strategy: 'partial', keepFirst: 2, keepLast: 2 }), null)(value)!;
    value.fill(0x21);
    expect(out.toString()).toBe('ab****gh');
  });
});

describe('hash', () => {
  const hash = (text: string, key: Buffer = KEY): string | null => mask({ strategy: 'hash' }, text, key);

  it('is 32 lowercase hex characters of HMAC-SHA256', async () => {
    const { createHmac } = await import('node:crypto');
    const want = createHmac('sha256', KEY).update('alice@example.com').digest('hex').slice(0, 32);
    expect(hash('alice@example.com')).toBe(want);
    expect(hash('alice@example.com')).toMatch(/^[0-9a-f]{32}$/);
  });

  it('is deterministic so joins and GROUP BY keep working', () => {
    const m = makeMasker(spec({ strategy: 'hash' }), KEY);
    const a = m(Buffer.from('bob'))!;
    const b = makeMasker(spec({ strategy: 'hash' }), Buffer.from(KEY))(Buffer.from('bob'))!;
    expect(a.equals(b)).toBe(true);
    expect(hash('bob')).not.toBe(hash('Bob'));
  });

  it('depends on the key', () => {
    expect(hash('bob')).not.toBe(hash('bob', Buffer.from('another key of some length')));
  });

  it('hashes empty and multi-byte values', () => {
    expect(hash('')).toMatch(/^[0-9a-f]{32}$/);
    expect(hash('Chloé')).not.toBe(hash('Chloe'));
  });

  it('copies the key so later changes to the config buffer do not change hashes', () => {
    const key = Buffer.from(KEY);
    const m = makeMasker(spec({ strategy: 'hash' }), key);
    key.fill(0);
    expect(m(Buffer.from('bob'))!.toString()).toBe(hash('bob'));
  });

  it('requires a hash key', () => {
    expect(() => makeMasker(spec({ strategy: 'hash' }), null)).toThrow(/masking hash key is required.*masking\.hash_key/);
    expect(() => makeMasker(spec({ strategy: 'hash' }), Buffer.alloc(0))).toThrow(/masking\.hash_key/);
    expect(() => makeMasker(spec({ strategy: 'hash' }), null)).toThrow(/"r1"/);
  });
});

describe('email', () => {
  it('keeps only the domain', () => {
    expect(mask({ strategy: 'email' }, 'alice.johnson@example.com')).toBe('****@example.com');
    expect(mask({ strategy: 'email' }, 'a@b.co')).toBe('****@b.co');
  });

  it('uses the last @', () => {
    expect(mask({ strategy: 'email' }, '"weird@local"@example.org')).toBe('****@example.org');
  });

  it('fully masks values without a domain', () => {
    for (const v of ['', 'no-at-sign', 'trailing@', '@']) expect(mask({ strategy: 'email' }, v)).toBe('****');
  });

  it('keeps multi-byte domains intact', () => {
    expect(mask({ strategy: 'email' }, 'jürgen@bücher.de')).toBe('****@bücher.de');
  });
});

describe('makeMasker', () => {
  it('rejects unknown strategies', () => {
    expect(() => makeMasker({ strategy: 'rot13' as never, rule: 'r9' }, KEY)).toThrow(/unknown strategy/);
  });
});

describe('derivedSpec', () => {
  it('keeps hash and null, redacts everything else under the same rule', () => {
    expect(derivedSpec(spec({ strategy: 'hash' }))).toEqual(spec({ strategy: 'hash' }));
    expect(derivedSpec(spec({ strategy: 'null' }))).toEqual(spec({ strategy: 'null' }));
    for (const s of [{ strategy: 'partial', keepFirst: 1, keepLast: 2 }, { strategy: 'email' }, { strategy: 'redact' }] as const) {
      expect(derivedSpec(spec(s))).toEqual({ strategy: 'redact', rule: 'r1' });
    }
  });
});
