// `npm start` as a new user meets it: `dbward dev` prints a psql line, and that
// line (TLS required) gives working sessions on the seeded demo database,
// several at once; Ctrl-C stops dbward and its demo database.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { psql } from '../helpers/dbward.js';

const root = path.resolve(import.meta.dirname, '../..');
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbward-dev-'));
const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'dev', '--port', '0', '--admin-port', '0', '--state-dir', stateDir],
  { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
let stderr = '';
child.stderr.on('data', (b) => (stderr += b));
child.stdout.resume();

afterAll(() => {
  if (child.exitCode === null) child.kill('SIGKILL');
});

it('prints a psql line that works, for several sessions at once, and stops on SIGINT', async () => {
  await expect.poll(() => stderr, { timeout: 60_000, interval: 200 }).toMatch(/psql "[^"]+"/);
  const conninfo = /psql "([^"]+)"/.exec(stderr)![1]!;
  expect(conninfo).toContain('sslmode=require');
  const [one, two, three] = await Promise.all([
    psql(conninfo, ['-Atc', 'SELECT count(*) FROM users']),
    psql(conninfo, ['-Atc', "SELECT email FROM users ORDER BY id LIMIT 1"]),
    psql(conninfo, ['-Atc', 'SELECT count(*) FROM orders']),
  ]);
  expect(one.stdout.trim()).toBe('20');
  expect(two.stdout.trim()).toMatch(/@example\.(com|org|net)$/);
  expect(three.stdout.trim()).toBe('50');
  const audit = fs.readFileSync(path.join(stateDir, 'audit', 'dbward.jsonl'), 'utf8');
  expect(audit).toContain('SELECT count(*) FROM users');

  child.kill('SIGINT');
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  expect(code).toBe(0);
}, 90_000);
