// dbward logs in upstream with the target's own credentials, by every method a
// real PostgreSQL asks for (SCRAM-SHA-256, md5, cleartext), over TLS when the
// target says so, against a throwaway cluster configured for each.

import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Cluster, startCluster } from '../helpers/cluster.js';
import { conninfo, pgTarget, psql, startTestDaemon, type TestDaemon } from '../helpers/dbward.js';
import { testCertificate } from '../helpers/tls.js';

let cluster: Cluster;
let d: TestDaemon;
const secrets: Record<string, string> = {};

beforeAll(async () => {
  const cert = testCertificate();
  cluster = await startCluster([
    'hostssl all tls_user 127.0.0.1/32 scram-sha-256',
    'host all scram_user 127.0.0.1/32 scram-sha-256',
    'host all md5_user 127.0.0.1/32 md5',
    'host all clear_user 127.0.0.1/32 password',
  ], { ssl: 'on', ssl_cert_file: "'server.crt'", ssl_key_file: "'server.key'" },
  { 'server.crt': fs.readFileSync(cert.cert, 'utf8'), 'server.key': fs.readFileSync(cert.key, 'utf8') });
  cluster.sql("SET password_encryption = 'scram-sha-256'; CREATE ROLE scram_user LOGIN PASSWORD 'scram secret'; CREATE ROLE tls_user LOGIN PASSWORD 'tls secret'");
  cluster.sql("SET password_encryption = 'md5'; CREATE ROLE md5_user LOGIN PASSWORD 'md5 secret'; CREATE ROLE clear_user LOGIN PASSWORD 'clear secret'");
  // Passwords come from files, as an operator would configure them.
  for (const [name, pw] of Object.entries({ scram: 'scram secret', md5: 'md5 secret', clear: 'clear secret', tls: 'tls secret', wrong: 'not it' })) {
    secrets[name] = path.join(cluster.dir, `${name}.pw`);
    fs.writeFileSync(secrets[name]!, pw + '\n');
  }
  const target = (name: string, user: string, secret: string, tls: 'disable' | 'require' | 'verify-full' = 'disable', host = '127.0.0.1') =>
    pgTarget({ name, host, port: cluster.port, database: 'postgres', user, password: { file: secrets[secret]! }, tls: { mode: tls, ...(tls === 'verify-full' ? { ca: cert.cert } : {}) } });
  d = await startTestDaemon({
    targets: [
      target('scram', 'scram_user', 'scram'),
      target('md5', 'md5_user', 'md5'),
      target('clear', 'clear_user', 'clear'),
      target('tls', 'tls_user', 'tls', 'require'),
      target('tls_verified', 'tls_user', 'tls', 'verify-full', 'localhost'),
      target('tls_needed', 'tls_user', 'tls', 'disable'),
      target('wrong_password', 'scram_user', 'wrong'),
    ],
  });
}, 60_000);

afterAll(async () => {
  await d?.stop();
  cluster?.stop();
});

const via = (target: string, sql: string) => psql(conninfo(d.port).replace('dbname=test', `dbname=${target}`), ['-Atc', sql]);

describe('upstream login methods', () => {
  for (const [target, user] of [['scram', 'scram_user'], ['md5', 'md5_user'], ['clear', 'clear_user']]) {
    it(`logs in as ${user} with ${target} authentication`, async () => {
      const r = await via(target!, 'SELECT current_user');
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe(user);
    });
  }

  it('refuses the client with 08001 when the target password is wrong, without leaking the server message', async () => {
    const r = await via('wrong_password', 'SELECT 1');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('could not connect to the upstream database of target "wrong_password"');
    expect(r.stderr).not.toContain('password authentication failed');
  });
});

describe('upstream TLS', () => {
  it('connects over TLS when the target requires it (and the server sees an SSL session)', async () => {
    const r = await via('tls', 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
    expect(r.stdout.trim()).toBe('t');
  });

  it('verifies the server certificate and host name with verify-full', async () => {
    const r = await via('tls_verified', 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
    expect(r.stdout.trim()).toBe('t');
  });

  it('cannot reach a hostssl-only role without TLS', async () => {
    const r = await via('tls_needed', 'SELECT 1');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('could not connect to the upstream database of target "tls_needed"');
  });
});
