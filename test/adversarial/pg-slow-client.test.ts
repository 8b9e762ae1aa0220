// A client that stops reading must not make dbward buffer the result: dbward
// stops reading the server, so PostgreSQL's backend blocks on its write
// (wait_event ClientWrite) while dbward's memory stays flat.

import net from 'node:net';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { encodeStartup } from '../../src/proxy/postgres/startup.js';
import { startTestDaemon, type TestDaemon } from '../helpers/dbward.js';
import { requirePostgres } from '../helpers/services.js';

let d: TestDaemon;
beforeAll(async () => {
  await requirePostgres();
  d = await startTestDaemon();
});
afterAll(async () => d?.stop());

it('stops reading the server while the client does not read (200 MB result)', async () => {
  const sock = net.connect({ host: '127.0.0.1', port: d.port });
  await new Promise((r) => sock.once('connect', r));
  sock.on('error', () => undefined);
  let received = 0;
  let ready = false;
  sock.on('data', (b: Buffer) => {
    received += b.length;
    if (!ready && b.includes(Buffer.from([0x5a, 0, 0, 0, 5]))) {
      ready = true;
      sock.pause(); // from now on the client reads nothing
      sock.write(serialize.query("SELECT repeat('x', 1000) FROM generate_series(1, 200000)"));
    }
  });
  sock.write(encodeStartup({ user: 'slowpoke', database: 'test', application_name: 'slow-client' }));
  await expect.poll(() => ready, { timeout: 5000 }).toBe(true);
  const rssBefore = process.memoryUsage().rss;

  const direct = new pg.Client({ host: '127.0.0.1', port: 5432, database: 'test', user: 'root' });
  await direct.connect();
  try {
    await expect.poll(async () => (await direct.query(
      "SELECT wait_event FROM pg_stat_activity WHERE application_name LIKE 'dbward:slowpoke%' AND state = 'active'")).rows[0]?.wait_event,
    { timeout: 15_000, interval: 200 }).toBe('ClientWrite');
    await new Promise((r) => setTimeout(r, 500));
    const growth = process.memoryUsage().rss - rssBefore;
    expect(growth).toBeLessThan(64 * 1024 * 1024);
    expect(received).toBeLessThan(64 * 1024 * 1024);
  } finally {
    await direct.query("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'dbward:slowpoke%'");
    await direct.end();
    sock.destroy();
  }
});
