// `npm start` end to end for an approver: alice's write to a PII table waits in
// psql; `dbward dev` prints the request's approve link; carol opens it in a
// browser, signs in at the development identity provider, confirms; the write runs.

import fs from 'node:fs';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { Browser, confirmForm, signInAtIssuer } from '../helpers/browser.js';
import { psql } from '../helpers/dbward.js';
import { startDev } from '../helpers/dev.js';

const { child, stateDir, stderr: output } = startDev('dbward-dev-apr-');

afterAll(() => {
  if (child.exitCode === null) child.kill('SIGKILL');
});

it('carol opens the printed link, signs in and approves; alice\'s held write then runs', async () => {
  await expect.poll(() => output(), { timeout: 60_000, interval: 200 }).toMatch(/psql "[^"]+"/);
  expect(output()).toContain('open one in a browser and sign in as carol@example.com');
  const [, token, conninfo] = /PGPASSWORD=(\S+) psql "([^"]+)"/.exec(output())!;
  expect(fs.statSync(path.join(stateDir, 'approval-link.key')).mode & 0o777).toBe(0o600);
  const run = psql(conninfo!, ['-c', "UPDATE users SET full_name = 'Renamed Person' WHERE id = 1"], { env: { PGPASSWORD: token! }, timeoutMs: 60_000 });

  await expect.poll(() => output(), { timeout: 15_000, interval: 100 }).toMatch(/approve: (http:\/\/127\.0\.0\.1:\d+\/approvals\/apr_\w+\/approve\?\S+)/);
  const link = /approve: (http:\/\/127\.0\.0\.1:\d+\/approvals\/apr_\w+\/approve\?\S+)/.exec(output())![1]!;
  const id = /\/approvals\/(apr_\w+)\//.exec(link)![1]!;
  expect(output()).toMatch(new RegExp(`approval ${id}: alice@example.com on demo \\(rule pii-writes-need-approval\\) waits for 1 approval\\(s\\) from privacy-officers`));

  const b = new Browser();
  const start = await b.request(link);
  expect(start.status).toBe(303);
  const callback = await signInAtIssuer(b, start.headers.get('location')!, 'carol');
  expect((await b.request(callback)).status).toBe(303);
  const page = await b.request(link);
  expect(page.status).toBe(200);
  const html = await page.text();
  expect(html).toContain('UPDATE users SET full_name = &#39;Renamed Person&#39; WHERE id = 1');
  const form = confirmForm(html);
  const posted = await b.request(new URL(form.action!, link).href, { form: { csrf: form.csrf!, reason: 'dev walkthrough' } });
  expect(posted.status).toBe(200);

  const r = await run;
  expect(r.stderr).toContain(id);
  expect(r.code).toBe(0);
  expect(r.stdout).toContain('UPDATE 1');
  await expect.poll(() => output(), { timeout: 5_000 }).toContain(`approval ${id} is now approved (carol@example.com approved via link)`);
  const audit = fs.readFileSync(path.join(stateDir, 'audit', 'dbward.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  expect(audit.find((e) => e.type === 'approval' && e.step === 'approved' && e.request.id === id)?.actor).toMatchObject({ user: 'carol@example.com', via: 'link' });

  child.kill('SIGINT');
  expect(await new Promise<number | null>((res) => child.once('exit', res))).toBe(0);
}, 120_000);
