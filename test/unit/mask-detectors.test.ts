// Content detectors: every detector's positives and look-alikes that must not
// trigger, detection inside free text, and how a compiled scanner picks one.
// Token-shaped fixtures are assembled at runtime so secret scanners leave this file alone.

import { describe, expect, it } from 'vitest';
import { compileDetectors, detectorNames } from '../../src/masking/detectors.js';
import type { DetectorName } from '../../src/masking/types.js';

const all = compileDetectors(detectorNames);
const detect = (text: string): DetectorName | null => all(Buffer.from(text, 'utf8'));
const only = (name: DetectorName, text: string): boolean => compileDetectors([name])(Buffer.from(text, 'utf8')) === name;

function cases(name: DetectorName, yes: string[], no: string[]): void {
  it.each(yes)(`${name} detects %j`, (v) => expect(only(name, v)).toBe(true));
  it.each(no)(`${name} ignores %j`, (v) => expect(only(name, v)).toBe(false));
}

describe('email', () => {
  cases(
    'email',
    ['alice@example.com', 'bob.smith+tag@mail.example.co.uk', 'contact me at x_y%z@ex-ample.org, thanks', 'Mail: ünï a@b.io'],
    ['', 'no at sign here', '@example.com', 'user@localhost', 'a@b.c', 'price 5@10.00', '@handle', 'user@@example.com', 'a@.com', 'a@-x.com'],
  );
});

describe('card', () => {
  cases(
    'card',
    [
      '4111111111111111',
      '4111 1111 1111 1111',
      '4111-1111-1111-1111',
      '378282246310005',
      '3782 822463 10005',
      '30569309025904',
      '6011111111111117',
      '2223003122003222',
      '4000000000006', // 13 digits
      '4000000000000000006', // 19 digits
      'paid with 4111 1111 1111 1111 yesterday',
      'card:5555555555554444;',
      '4111 1111 1111 1111 2024',
      'ref 12 4111 1111 1111 1111',
    ],
    [
      '4111111111111112', // Luhn fails
      '4111 1111 1111 1112',
      '400000000002', // 12 digits
      '40000000000000000002', // 20 digits, Luhn-valid
      '0000000000000000',
      '1732406400009', // epoch ms, Luhn-valid
      '3.4111111111111111',
      '4111111111111111.5',
      'abc4111111111111111',
      '4111111111111111x',
      '4111  1111  1111  1111', // double spaces split the number
      '4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1',
      '2026-11-24 10:30:00',
    ],
  );
});

describe('ssn', () => {
  cases(
    'ssn',
    ['123-45-6789', '123 45 6789', 'My SSN is 078-05-1120.', 'ssn=(665-12-3456)'],
    [
      '000-12-3456',
      '666-12-3456',
      '900-12-3401',
      '987-65-4321',
      '123-00-4567',
      '123-45-0000',
      '123456789',
      '123-45 6789',
      '1-123-45-6789',
      '123-45-6789-0',
      '123-45-67890',
      'x123-45-6789',
    ],
  );

  it('keeps looking past an invalid candidate', () => {
    expect(only('ssn', 'old 666-12-3456 new 123-45-6789')).toBe(true);
    expect(only('ssn', '000-12-3456')).toBe(false);
  });
});

describe('phone', () => {
  cases(
    'phone',
    [
      '+12025550101',
      '+44 20 7946 0958',
      '+1 (415) 555-2671',
      '+49.30.1234567',
      '+12345678', // 8 digits
      '(415) 555-2671',
      '(415)555-2671',
      '415-555-2671',
      '415.555.2671',
      'call 1-800-555-0199 now',
      'phone: +61491570156.',
    ],
    [
      '2026-11-24',
      '2024-01-03 09:15:00+00',
      '10:30:00+05:30',
      '12345678901',
      '20261124',
      '1.2.3+20240101',
      '+1234567', // 7 digits
      '+1234567890123456', // 16 digits
      '+0123456789',
      '3.14159265358',
      '12-415-555-2671',
      '415-555-26710',
      '192.168.100.200',
      '415 555 2671',
    ],
  );
});

describe('iban', () => {
  cases(
    'iban',
    [
      'DE89370400440532013000',
      'GB82WEST12345698765432',
      'FR1420041010050500013M02606',
      'NO9386011117947',
      'DE89 3704 0044 0532 0130 00',
      'gb82west12345698765432',
      'IBAN: GB82 WEST 1234 5698 7654 32, thanks',
    ],
    [
      'DE88370400440532013000', // wrong check digits
      'GB83WEST12345698765432',
      'XX89370400440532013000', // not a country
      'DE8937040044', // too short
      'xDE89370400440532013000',
      'DE89370400440532013000x9',
      'ORDER12ABCDEFGHIJKLMNOP',
    ],
  );
});

describe('jwt', () => {
  const jwt =
    'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c';
  cases(
    'jwt',
    [jwt, `Authorization: Bearer ${jwt}`, '{"token":"' + jwt + '"}', 'eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.'],
    ['eyJ', 'eyJhbGciOiJIUzI1NiJ9', 'eyJhbGciOiJIUzI1NiJ9.', 'abceyJhbGciOiJIUzI1NiJ9.eyJzdWIi.sig', 'a.b.c', 'hello.world.again'],
  );
});

describe('api_key', () => {
  const tail = (n: number): string => 'Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0UvWxYz0123456789'.repeat(2).slice(0, n);
  cases(
    'api_key',
    [
      'AKIA' + 'IOSFODNN7EXAMPLE',
      'aws_access_key_id = ' + 'AKIA' + 'IOSFODNN7EXAMPLE',
      'ghp' + '_' + tail(36),
      'gho' + '_' + tail(36),
      'ghs' + '_' + tail(36),
      'ghu' + '_' + tail(36),
      'github' + '_pat_' + tail(22) + '_' + tail(30),
      'xoxb' + '-123456789012-' + tail(24),
      'xoxp' + '-' + tail(30),
      'sk' + '_live_' + tail(24),
      'sk' + '_test_' + tail(24),
      'rk' + '_live_' + tail(24),
      'OPENAI_API_KEY=sk' + '-' + tail(48),
      'sk' + '-proj-' + tail(40),
      'AIza' + tail(35),
      '-----BEGIN RSA PRIVATE KEY-----\nMIIE...',
      '-----BEGIN PRIVATE KEY-----',
      'key: -----BEGIN OPENSSH PRIVATE KEY-----',
      '-----BEGIN ENCRYPTED PRIVATE KEY-----',
    ],
    [
      'AKIA1234',
      'xAKIA' + 'IOSFODNN7EXAMPLE',
      'ghp_short',
      'xoxb-short',
      'sk_live_short',
      'pk' + '_live_' + tail(24),
      'sk-short-key',
      'task-' + 'abcdefghijklmnopqrstuvwxyz',
      'AIza' + tail(20),
      'xAIza' + tail(35),
      '-----BEGIN PUBLIC KEY-----',
      '-----BEGIN CERTIFICATE-----',
      'just some ordinary text that is long enough',
    ],
  );
});

describe('compileDetectors', () => {
  it('lists every detector', () => {
    expect([...detectorNames].sort()).toEqual(['api_key', 'card', 'email', 'iban', 'jwt', 'phone', 'ssn']);
  });

  it('finds sensitive content anywhere in free text', () => {
    expect(detect('Customer note: please email jane.doe@example.com about the refund')).toBe('email');
    expect(detect('Customer note: card 4111 1111 1111 1111 was declined')).toBe('card');
    expect(detect('Customer note: SSN 123-45-6789 on file')).toBe('ssn');
    expect(detect('Customer note: call (415) 555-2671 after 5pm')).toBe('phone');
    expect(detect('Customer note: wire to DE89 3704 0044 0532 0130 00 please')).toBe('iban');
    expect(detect('{"note":"Orders older than 7 years are archived quarterly."}')).toBeNull();
    expect(detect('2024-01-03 09:15:00+00')).toBeNull();
    expect(detect('42')).toBeNull();
    expect(detect('')).toBeNull();
  });

  it('only runs the detectors it was given, in the order given', () => {
    const both = 'alice@example.com +12025550101';
    expect(compileDetectors(['phone'])(Buffer.from('alice@example.com'))).toBeNull();
    expect(compileDetectors(['email', 'phone'])(Buffer.from(both))).toBe('email');
    expect(compileDetectors(['phone', 'email'])(Buffer.from(both))).toBe('phone');
    expect(compileDetectors([])(Buffer.from(both))).toBeNull();
  });

  it('rejects unknown detector names', () => {
    expect(() => compileDetectors(['email', 'passport' as DetectorName])).toThrow(/unknown masking detector "passport"/);
    expect(() => compileDetectors(['toString' as DetectorName])).toThrow(/unknown masking detector/);
  });

  it('gives the same answer on repeated calls (no regex state carried over)', () => {
    const scan = compileDetectors(['ssn', 'iban']);
    for (let i = 0; i < 3; i++) {
      expect(scan(Buffer.from('a 123-45-6789 b'))).toBe('ssn');
      expect(scan(Buffer.from('123-45-6789'))).toBe('ssn');
      expect(scan(Buffer.from('GB82WEST12345698765432'))).toBe('iban');
    }
  });

  it('stays linear on long values with no match', () => {
    const long = Buffer.from('a'.repeat(200_000) + ' @ ' + '1-'.repeat(50_000) + 'eyJ' + 'b'.repeat(100_000));
    const started = performance.now();
    expect(all(long)).toBeNull();
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});
