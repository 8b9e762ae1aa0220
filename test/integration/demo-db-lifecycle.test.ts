// Start/stop edge cases of the demo database that need their own instances:
// on-disk persistence with idempotent seeding, and a port that is taken.
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startDemoDatabase, type DemoDatabase } from '../../src/embedded/demo-db.js';
import { SEED_COUNTS } from '../../src/embedded/seed.js';

const running: DemoDatabase[] = [];
const servers: net.Server[] = [];
let dataDir: string | undefined;

afterEach(async () => {
  await Promise.all(running.splice(0).map((d) => d.stop()));
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

afterAll(async () => {
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

async function start(opts: Parameters<typeof startDemoDatabase>[0]): Promise<DemoDatabase> {
  const d = await startDemoDatabase(opts);
  running.push(d);
  return d;
}

async function query<T extends pg.QueryResultRow>(d: DemoDatabase, sql: string): Promise<T[]> {
  const c = new pg.Client({ host: d.host, port: d.port, user: d.user, database: d.database });
  await c.connect();
  try {
    return (await c.query<T>(sql)).rows;
  } finally {
    await c.end();
  }
}

describe('demo database lifecycle', () => {
  it('persists to dataDir and seeds only once', async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'dbward-demo-'));
    const first = await start({ dataDir });
    await query(first, "INSERT INTO audit_notes VALUES (1000, 'test', 'survives a restart', now())");
    await first.stop();

    const second = await start({ dataDir });
    const [row] = await query<{ users: number; notes: number; mine: number }>(
      second,
      'SELECT (SELECT count(*)::int FROM users) AS users, (SELECT count(*)::int FROM audit_notes) AS notes, ' +
        '(SELECT count(*)::int FROM audit_notes WHERE id = 1000) AS mine',
    );
    expect(row).toEqual({ users: SEED_COUNTS.users, notes: SEED_COUNTS.audit_notes + 1, mine: 1 });
  }, 60_000);

  it('rejects with EADDRINUSE when the port is taken and releases the data directory', async () => {
    const busy = net.createServer();
    servers.push(busy);
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    const port = (busy.address() as net.AddressInfo).port;
    await expect(startDemoDatabase({ port, dataDir })).rejects.toMatchObject({ code: 'EADDRINUSE' });
    // The data directory was released: it can be opened again right away.
    const again = await start({ dataDir });
    expect((await query<{ n: number }>(again, 'SELECT count(*)::int AS n FROM users'))[0]!.n).toBe(SEED_COUNTS.users);
  }, 60_000);
});
