// A throwaway PostgreSQL cluster for tests that need server settings the shared
// one does not have (password auth methods, TLS). initdb/pg_ctl from
// `pg_config --bindir`, run as the postgres OS user when the tests run as root
// (PostgreSQL refuses to run as root), on a free port, removed afterwards.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface Cluster {
  port: number;
  dir: string;
  /** The server's stderr log (pg_ctl -l): with the default logging_collector=off, everything it logs. */
  logFile: string;
  /** Runs SQL as the cluster's superuser over the Unix socket. */
  sql(query: string): string;
  stop(): void;
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Starts a cluster with the given pg_hba.conf lines and postgresql.conf settings. */
export async function startCluster(hba: string[], settings: Record<string, string> = {}, files: Record<string, string> = {}): Promise<Cluster> {
  const bindir = execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim();
  const asRoot = process.getuid?.() === 0;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbward-cluster-'));
  const data = path.join(dir, 'data');
  const run = (cmd: string, args: string[]) =>
    asRoot ? execFileSync('runuser', ['-u', 'postgres', '--', path.join(bindir, cmd), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
      : execFileSync(path.join(bindir, cmd), args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (asRoot) execFileSync('chown', ['postgres:postgres', dir]);
  run('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync']);
  for (const [name, content] of Object.entries(files)) {
    const file = path.join(data, name);
    fs.writeFileSync(file, content, { mode: 0o600 });
    if (asRoot) execFileSync('chown', ['postgres:postgres', file]);
  }
  const port = await freePort();
  const conf = { listen_addresses: "'127.0.0.1'", port: String(port), unix_socket_directories: `'${dir}'`, fsync: 'off', ...settings };
  fs.appendFileSync(path.join(data, 'postgresql.conf'), Object.entries(conf).map(([k, v]) => `${k} = ${v}\n`).join(''));
  fs.writeFileSync(path.join(data, 'pg_hba.conf'), ['local all postgres trust', ...hba].join('\n') + '\n');
  const logFile = path.join(dir, 'log');
  run('pg_ctl', ['-D', data, '-l', logFile, '-w', '-t', '30', 'start']);
  const psql = path.join(bindir, 'psql');
  return {
    port,
    dir,
    logFile,
    sql: (query) => execFileSync(psql, ['-h', dir, '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-c', query], { encoding: 'utf8' }),
    stop: () => {
      try { run('pg_ctl', ['-D', data, '-m', 'immediate', 'stop']); } catch { /* already stopped */ }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
