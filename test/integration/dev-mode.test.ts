// `npm start` as a new user meets it: `dbward dev` prints a ready token and a
// psql line, and that line (TLS required, the token as password) gives working,
// verified sessions on the seeded demo database, several at once; a wrong token
// is refused; Ctrl-C stops dbward, its demo database and its identity provider.

import fs from 'node:fs';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { psql } from '../helpers/dbward.js';
import { startDev } from '../helpers/dev.js';

const { child, stateDir, stderr: output } = startDev('dbward-dev-');

afterAll(() => {
  if (child.exitCode === null) child.kill('SIGKILL');
});

it('prints a token and a psql line that work, for several sessions at once, and stops on SIGINT', async () => {
  await expect.poll(() => output(), { timeout: 60_000, interval: 200 }).toMatch(/psql "[^"]+"/);
  const [, token, conninfo] = /PGPASSWORD=(\S+) psql "([^"]+)"/.exec(output())!;
  expect(conninfo).toContain('sslmode=require');
  expect(conninfo).toContain('user=alice@example.com');
  expect(fs.readFileSync(path.join(stateDir, 'alice.token'), 'utf8').trim()).toBe(token);
  expect(fs.statSync(path.join(stateDir, 'alice.token')).mode & 0o777).toBe(0o600);
  const env = { PGPASSWORD: token! };
  const [one, two, three] = await Promise.all([
    psql(conninfo!, ['-Atc', 'SELECT count(*) FROM users'], { env }),
    psql(conninfo!, ['-Atc', "SELECT email FROM users ORDER BY id LIMIT 1"], { env }),
    psql(conninfo!, ['-Atc', 'SELECT count(*) FROM orders'], { env }),
  ]);
  expect(one.stdout.trim()).toBe('20');
  expect(two.stdout.trim()).toMatch(/@example\.(com|org|net)$/);
  expect(three.stdout.trim()).toBe('50');
  const wrong = await psql(conninfo!, ['-Atc', 'SELECT 1'], { env: { PGPASSWORD: `${token!.slice(0, -4)}AAAA` } });
  expect(wrong.code).not.toBe(0);
  expect(wrong.stderr).toContain('password authentication failed for user "alice@example.com"');
  const audit = fs.readFileSync(path.join(stateDir, 'audit', 'dbward.jsonl'), 'utf8');
  expect(audit).toContain('SELECT count(*) FROM users');
  const start = audit.split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((e) => e.type === 'session_start');
  expect(start.identity).toMatchObject({ user: 'alice@example.com', verified: true, subject: 'alice', kind: 'human', groups: ['dba', 'developers'] });
  expect(audit).not.toContain(token);

  child.kill('SIGINT');
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  expect(code).toBe(0);
}, 90_000);
