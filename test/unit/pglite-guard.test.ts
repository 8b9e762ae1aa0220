// The guard sits between pglite-socket and PGlite; these check its decisions
// with a fake PGlite so crash handling can be exercised deterministically.
import type { PGlite } from '@electric-sql/pglite';
import { describe, expect, it } from 'vitest';
import { installProtocolGuard, isAcceptableMessage, isCopyFromStdin, rewriteCopyFromStdin } from '../../src/embedded/pglite-guard.js';

function message(type: string, ...parts: Array<string | Buffer>): Uint8Array {
  const body = Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(`${p}\0`) : p)));
  const out = Buffer.alloc(5 + body.length);
  out.write(type, 0, 'latin1');
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

function fakeDb(impl: (msg: Uint8Array, onRawData: (d: Uint8Array) => void) => Promise<void>): PGlite {
  return { execProtocolRawStream: (msg: Uint8Array, opts: { onRawData: (d: Uint8Array) => void }) => impl(msg, opts.onRawData) } as unknown as PGlite;
}

describe('isCopyFromStdin', () => {
  it.each([
    'COPY users FROM STDIN',
    'copy public.users (id, email) from stdin with (format csv)',
    'SELECT 1; COPY users FROM stdin',
    '/* note */ COPY users\nFROM\tSTDIN',
  ])('matches %s', (sql) => expect(isCopyFromStdin(sql)).toBe(true));

  it.each([
    'COPY users TO STDOUT',
    "COPY users FROM '/tmp/users.csv'",
    'COPY (SELECT * FROM stdin) TO STDOUT',
    "INSERT INTO audit_notes (note) VALUES ('copy users from stdin')",
    'SELECT $$copy users from stdin$$',
    "SELECT E'it\\'s; copy x from stdin'",
    '-- copy users from stdin\nSELECT 1',
    'SELECT "copy" FROM stdin_table',
  ])('does not match %s', (sql) => expect(isCopyFromStdin(sql)).toBe(false));
});

describe('rewriteCopyFromStdin', () => {
  it('rewrites Query and Parse messages but keeps the statement name and parameter types', () => {
    const q = Buffer.from(rewriteCopyFromStdin(message('Q', 'COPY users FROM STDIN')));
    expect(q.readInt32BE(1)).toBe(q.length - 1);
    expect(q.toString('utf8', 5)).toMatch(/^DO \$dbward\$.*feature_not_supported.*\0$/);

    const types = Buffer.from([0, 1, 0, 0, 0, 23]);
    const p = Buffer.from(rewriteCopyFromStdin(message('P', 'stmt1', 'copy users from stdin', types)));
    expect(p.readInt32BE(1)).toBe(p.length - 1);
    expect(p.subarray(5, 11).toString()).toBe('stmt1\0');
    expect(p.subarray(p.length - 6)).toEqual(types);
  });

  it('returns other messages untouched', () => {
    const m = message('Q', 'SELECT 1');
    expect(rewriteCopyFromStdin(m)).toBe(m);
  });
});

describe('isAcceptableMessage', () => {
  it('accepts startup packets and regular frontend messages, rejects the rest', () => {
    const startup = Buffer.alloc(8);
    startup.writeInt32BE(8, 0);
    startup.writeInt32BE(196608, 4);
    expect(isAcceptableMessage(startup)).toBe(true);
    expect(isAcceptableMessage(message('Q', 'SELECT 1'))).toBe(true);
    expect(isAcceptableMessage(message('X'))).toBe(true);
    expect(isAcceptableMessage(message('p', 'secret'))).toBe(false);
    expect(isAcceptableMessage(message('Y'))).toBe(false);
  });
});

describe('installProtocolGuard', () => {
  it('turns a PGlite crash into a FATAL for every later message and reports it once', async () => {
    let calls = 0;
    const db = fakeDb(async () => {
      calls++;
      throw { name: 'ExitStatus', message: 'Program terminated with exit(1)' };
    });
    const fatals: unknown[] = [];
    const guard = installProtocolGuard(db, { onFatal: (e) => fatals.push(e) });
    const replies: string[] = [];
    const onRawData = (d: Uint8Array) => replies.push(Buffer.from(d).toString('latin1'));

    await db.execProtocolRawStream(message('Q', 'SELECT 1'), { onRawData });
    await db.execProtocolRawStream(message('Q', 'SELECT 2'), { onRawData });

    expect(calls).toBe(1); // the dead instance is not touched again
    expect(fatals).toHaveLength(1);
    expect(guard.isDead).toBe(true);
    expect(replies).toHaveLength(2);
    for (const r of replies) {
      expect(r[0]).toBe('E');
      expect(r).toContain('SFATAL\0');
      expect(r).toContain('exit(1)');
    }
  });

  it('never forwards invalid message types to PGlite', async () => {
    const seen: string[] = [];
    const db = fakeDb(async (m) => void seen.push(String.fromCharCode(m[0]!)));
    installProtocolGuard(db, { onFatal: () => undefined });
    const replies: Uint8Array[] = [];
    await db.execProtocolRawStream(message('p', 'secret'), { onRawData: (d) => replies.push(d) });
    await db.execProtocolRawStream(message('Q', 'SELECT 1'), { onRawData: (d) => replies.push(d) });
    expect(seen).toEqual(['Q']);
    expect(Buffer.from(replies[0]!).toString('latin1')).toContain('C08P01\0');
  });
});
