// The dbward config the bench runs against: generated, or an operator's file.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { freePort } from './procs.js';

export interface DbwardSetup {
  configPath: string;
  host: string;
  port: number;
  /** Absolute path of the JSONL audit file, if the config has one. */
  auditPath: string | null;
}

/** Where the generated config sends audit events: nowhere (primary none), or the file sink with an fsync mode. */
export type BenchAudit = { primary: 'none' } | { primary: 'file'; fsync: 'none' | 'batch' };

/** Write the minimal bench config (plain TCP, warn logging, by default an audit file without fsync) into `dir`. */
export async function generateConfig(dir: string, database: string, audit: BenchAudit = { primary: 'file', fsync: 'none' }): Promise<DbwardSetup> {
  const port = await freePort();
  let admin = await freePort();
  while (admin === port) admin = await freePort();
  mkdirSync(dir, { recursive: true });
  const auditPath = audit.primary === 'file' ? path.join(dir, 'audit.jsonl') : null;
  const configPath = path.join(dir, 'dbward.bench.yaml');
  // Allow everything (statements are still parsed and decided): the throughput bench measures the proxy path.
  const policyPath = path.join(dir, 'policy.allow.yaml');
  writeFileSync(policyPath, 'default: allow\n');
  // fsync none and log warn by default: the bench measures the proxy path, not disk flushes or log volume.
  const auditYaml = audit.primary === 'none' ? '{ primary: none }' : `\n  file: { path: ${JSON.stringify(auditPath)}, fsync: ${audit.fsync} }`;
  const yaml = `listeners:
  - { name: pg, host: 127.0.0.1, port: ${port}, require_tls: false }
targets:
  - { name: ${database}, host: 127.0.0.1, port: 5432, database: ${database}, user: root, tls: { mode: disable } }
identity: { mode: unverified }
policy: { path: ${JSON.stringify(policyPath)}, watch: false }
audit: ${auditYaml}
admin: { host: 127.0.0.1, port: ${admin} }
log: { level: warn }
`;
  writeFileSync(configPath, yaml);
  return { configPath, host: '127.0.0.1', port, auditPath };
}

interface RawListener {
  host?: unknown;
  port?: unknown;
  require_tls?: unknown;
  tls?: unknown;
}

// require_tls defaults to true only when the listener has tls configured.
const plainTcp = (l: RawListener): boolean => l.require_tls === false || (l.require_tls === undefined && l.tls === undefined);

/** Read listener address and audit path from an operator's config (first plain-TCP listener wins). */
export function readOperatorConfig(file: string): DbwardSetup {
  const configPath = path.resolve(file);
  const doc = parse(readFileSync(configPath, 'utf8')) as {
    listeners?: RawListener[];
    audit?: { file?: { path?: unknown } };
  };
  const listeners = doc.listeners ?? [];
  const l = listeners.find(plainTcp);
  // pgbench runs with PGSSLMODE=disable so the three endpoints stay comparable.
  if (l === undefined) throw new Error(`${file}: the bench needs a listener that does not require TLS`);
  if (typeof l.port !== 'number' || l.port === 0) {
    throw new Error(`${file}: the bench needs a plain-TCP listener with a fixed, non-zero port`);
  }
  const host = typeof l.host === 'string' && l.host !== '0.0.0.0' && l.host !== '::' ? l.host : '127.0.0.1';
  const audit = doc.audit?.file?.path;
  const auditPath = typeof audit === 'string' ? path.resolve(path.dirname(configPath), audit) : null;
  return { configPath, host, port: l.port, auditPath };
}
