// The per-cell maskers: each strategy's output on ASCII, multi-byte UTF-8 and
// empty values, hash determinism and keying, derived-column downgrades, and the
// writer form (reads only its range, writes only its output, within MASK_SLACK).

import { describe, expect, it } from 'vitest';
import { derivedSpec, makeMasker, makeMaskWriter, MASK_SLACK, maskText } from '../../src/masking/strategies.js';
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
    expect(() => makeMaskWriter({ strategy: 'rot13' as never, rule: 'r9' }, KEY)).toThrow(/unknown strategy/);
  });

  it('returns a fresh buffer each call, even for a constant mask', () => {
    const m = makeMasker(spec({ strategy: 'redact' }), null);
    const a = m(Buffer.from('x'))!;
    a.fill(0x21);
    expect(m(Buffer.from('x'))!.toString()).toBe('****');
  });
});

describe('makeMaskWriter', () => {
  const specs: Omit<MaskSpec, 'rule'>[] = [
    { strategy: 'redact' }, { strategy: 'null' }, { strategy: 'email' }, { strategy: 'hash' },
    { strategy: 'partial', keepFirst: 2, keepLast: 2 }, { strategy: 'partial', keepLast: 4 }, { strategy: 'partial' },
  ];
  const values = ['', 'a', '@', 'a@', '@b', 'alice@example.com', 'x@y@z.org', 'jürgen@bücher.de', 'Chloé', '日本語テキスト',
    'a😀😀😀b', '4111111111111111', 'x'.repeat(1000), `${'é'.repeat(300)}@${'ü'.repeat(300)}`];
  // Bytes around the value that would change any mask that read past its range.
  const before = Buffer.from('@x😀@');
  const after = Buffer.from('@host.example😀');

  it.each(specs)('%o: reads only src[start, end), writes only out[at, end), as makeMasker does', (s) => {
    const write = makeMaskWriter(spec(s), KEY);
    const masker = makeMasker(spec(s), KEY);
    for (const v of values) {
      const value = Buffer.from(v, 'utf8');
      const src = Buffer.concat([before, value, after]);
      const out = Buffer.alloc(7 + value.length + MASK_SLACK + 9, 0xee);
      const end = write(src, before.length, before.length + value.length, out, 7);
      const want = masker(value);
      if (want === null) {
        expect(end, v).toBe(-1);
        expect(out.every((b) => b === 0xee), v).toBe(true);
        continue;
      }
      expect(out.subarray(7, end).toString('utf8'), v).toBe(want.toString('utf8'));
      expect(end - 7, `${v}: within MASK_SLACK`).toBeLessThanOrEqual(value.length + MASK_SLACK);
      expect(out.subarray(0, 7).every((b) => b === 0xee) && out.subarray(end).every((b) => b === 0xee), v).toBe(true);
    }
  });

  it('masks within a larger buffer exactly as the value alone', () => {
    const write = makeMaskWriter(spec({ strategy: 'email' }), null);
    const src = Buffer.from('bob@a.example|carol@b.example');
    const out = Buffer.alloc(64);
    const end = write(src, 0, 13, out, 0);
    expect(out.subarray(0, end).toString()).toBe('****@a.example');
    expect(out.subarray(0, write(src, 14, src.length, out, 0)).toString()).toBe('****@b.example');
    // No '@' inside the range: the one after it does not count.
    expect(out.subarray(0, write(src, 0, 3, out, 0)).toString()).toBe('****');
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
