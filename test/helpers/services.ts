// Checks that the real services a test needs are up. Tests never skip for a
// missing service: they fail with a message saying how to start it.

import net from 'node:net';

/** Resolves when host:port accepts a TCP connection; rejects with a clear message otherwise. */
export async function requireService(name: string, host: string, port: number): Promise<void> {
  const ok = await new Promise<boolean>((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
    s.setTimeout(2000, () => { s.destroy(); resolve(false); });
  });
  if (!ok) throw new Error(`${name} is not reachable at ${host}:${port}; start it (see .ci/run) before running the tests`);
}

export const PG = { host: '127.0.0.1', port: 5432, database: 'test', user: 'root' } as const;

/** Fails the test run when PostgreSQL is down. */
export function requirePostgres(): Promise<void> {
  return requireService('PostgreSQL', PG.host, PG.port);
}
