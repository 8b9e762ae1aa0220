// Every event a real session leaves validates against the shipped schema
// (schemas/audit-event.schema.json), and the trail is ordered: each statement
// is written before its outcome.

import fs from 'node:fs';
import path from 'node:path';
import { Ajv } from 'ajv';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { pgTarget, startTestDaemon, type TestDaemon } from '../helpers/dbward.js';
import { requirePostgres } from '../helpers/services.js';

const schema = JSON.parse(fs.readFileSync(path.resolve(import.meta.dirname, '../../schemas/audit-event.schema.json'), 'utf8'));
let d: TestDaemon;

beforeAll(async () => {
  await requirePostgres();
  d = await startTestDaemon({ targets: [pgTarget(), pgTarget({ name: 'down', port: 1 })] });
});
afterAll(async () => d?.stop());

it('writes schema-valid events for sessions, statements, outcomes and refusals', async () => {
  const c = new pg.Client({ host: '127.0.0.1', port: d.port, database: 'test', user: 'auditor', application_name: 'audit-test' });
  await c.connect();
  await c.query('SELECT 1');
  await c.query('SELECT $1::text', ['x']);
  await c.query('SELECT nope').catch(() => undefined);
  await c.query('BEGIN');
  await c.query('SELECT 2');
  await c.query('COMMIT');
  await c.end();
  const refused = new pg.Client({ host: '127.0.0.1', port: d.port, database: 'down', user: 'auditor' });
  await refused.connect().catch(() => undefined);
  await expect.poll(() => d.audit().some((e) => e.type === 'session_end' && e.identity.user === 'auditor')).toBe(true);
  await expect.poll(() => d.audit().some((e) => e.type === 'session_refused')).toBe(true);

  const validate = new Ajv({ allErrors: true }).compile(schema);
  const events = d.audit();
  for (const e of events) expect(validate(e), JSON.stringify(validate.errors)).toBe(true);
  expect(new Set(events.map((e) => e.type))).toEqual(new Set(['policy_reload', 'session_start', 'statement', 'statement_outcome', 'transaction_end', 'session_end', 'session_refused']));

  const position = new Map(events.map((e, i) => [e.id, i]));
  for (const o of events.filter((e) => e.type === 'statement_outcome')) {
    expect(position.get(o.statement_id)).toBeLessThan(position.get(o.id)!);
  }
  const failed = events.find((e) => e.type === 'statement' && e.statement.text === 'SELECT nope')!;
  expect(events.find((e) => e.statement_id === failed.id)!.outcome).toMatchObject({ status: 'error', sqlstate: '42703' });
  expect(validate({ ...failed, extra: 1 })).toBe(false);
  // Every line is sealed into the chain, and the statement event names the client.
  expect(events.every((e, i) => e.chain?.seq === i + 1)).toBe(true);
  expect(failed.client).toMatchObject({ address: '127.0.0.1', application: 'audit-test', tls: false });
});
