import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ConfigError, loadConfig, parseConfig } from '../../src/config/load.js';
import { resolveSecret, SecretError } from '../../src/config/secrets.js';
import type { Config } from '../../src/config/types.js';
import { defaultApprovals } from '../../src/config/build.js';
import { readSchema, schemaProperties } from '../helpers/schema.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const SRC = path.resolve('/etc/dbward/dbward.yaml');
const DIR = path.dirname(SRC);
const MINIMAL = `listeners:
  - {}
targets:
  - { name: app, host: db.internal, user: dbward }
identity: { issuer: "https://login.example.com", audience: dbward }
policy: { path: policies }
`;
/** Appended to snippets that test something else, so they are not also missing identity. */
const UNVERIFIED = 'identity: { mode: unverified }\npolicy: { path: policy.yaml }\n';
const POLICY = 'policy: { path: policy.yaml }\n';

function withIdentity(text: string): string {
  if (/^identity:/m.test(text) || !/^targets/m.test(text)) return text;
  return `${text}${text.endsWith('\n') ? '' : '\n'}${UNVERIFIED}`;
}

/** The `file:line:col: field: message` lines of the ConfigError that parsing `text` throws. */
function errorLines(text: string, file = 'dbward.yaml'): string[] {
  try {
    parseConfig(withIdentity(text), file);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).message.split('\n');
  }
  throw new Error('expected a ConfigError');
}

let tmp: string;
beforeEach(() => {
  tmp = mkdtempSync(path.join(tmpdir(), 'dbward-config-'));
});
afterEach(() => {
  rmSync(tmp, { recursive: true, force: true });
  vi.unstubAllEnvs();
});

describe('parseConfig: valid files', () => {
  it('maps a full file to Config, resolving relative paths against the config directory', () => {
    const text = `listeners:
  - name: pg
    engine: postgres
    host: 0.0.0.0
    port: 7432
    tls: { cert: certs/server.crt, key: /abs/server.key }
    require_tls: false
targets:
  - name: app
    engine: postgres
    host: 10.0.0.5
    port: 5433
    database: app_prod
    user: dbward
    password: { file: secrets/app.pw }
    tls: { mode: verify-full, ca: certs/ca.pem }
    environment: production
    labels: { region: eu-west-1, "app.k8s.io/name": api }
    roles:
      - { group: dba, role: app_admin }
      - { group: dev, role: app_ro }
    default_role: app_ro
    connect_timeout_ms: 2500
  - name: reports
    host: 10.0.0.6
    user: reader
    password: { env: REPORTS_PW }
identity:
  issuer: https://login.example.com/realms/acme
  audience: [dbward, dbward-prod]
  user_claim: preferred_username
  groups_claim: realm_access.roles
  kind: { claim: dbward_kind, agent_clients: [bot], service_clients: [etl] }
  algorithms: [RS256]
  clock_tolerance_sec: 5
  discovery_timeout_ms: 2000
  expiry_grace_sec: 60
policy:
  path: [policies/base.yaml, /etc/dbward/extra]
  watch: false
audit:
  file: { path: /var/log/dbward/audit.jsonl, fsync: batch }
admin: { host: 0.0.0.0, port: 0 }
limits: { max_message_bytes: 1048576, max_startup_bytes: 20000, startup_timeout_ms: 3000 }
log: { level: debug }
shutdown: { drain_timeout_ms: 0 }
`;
    const expected: Config = {
      source: SRC,
      listeners: [
        {
          name: 'pg',
          engine: 'postgres',
          host: '0.0.0.0',
          port: 7432,
          tls: { cert: path.join(DIR, 'certs/server.crt'), key: path.resolve('/abs/server.key') },
          requireTls: false,
          allowPlaintextToken: false,
        },
      ],
      targets: [
        {
          name: 'app',
          engine: 'postgres',
          host: '10.0.0.5',
          port: 5433,
          database: 'app_prod',
          user: 'dbward',
          password: { file: path.join(DIR, 'secrets/app.pw') },
          tls: { mode: 'verify-full', ca: path.join(DIR, 'certs/ca.pem') },
          environment: 'production',
          labels: { region: 'eu-west-1', 'app.k8s.io/name': 'api' },
          connectTimeoutMs: 2500,
          roles: [{ group: 'dba', role: 'app_admin' }, { group: 'dev', role: 'app_ro' }],
          defaultRole: 'app_ro',
        },
        {
          name: 'reports',
          engine: 'postgres',
          host: '10.0.0.6',
          port: 5432,
          database: 'reports',
          user: 'reader',
          password: { env: 'REPORTS_PW' },
          tls: { mode: 'prefer' },
          environment: 'default',
          labels: {},
          connectTimeoutMs: 5000,
          roles: [],
          defaultRole: null,
        },
      ],
      identity: {
        mode: 'oidc',
        verifier: {
          issuer: 'https://login.example.com/realms/acme', audience: ['dbward', 'dbward-prod'], userClaim: 'preferred_username',
          groupsClaim: 'realm_access.roles', kind: { claim: 'dbward_kind', agentClients: ['bot'], serviceClients: ['etl'] },
          algorithms: ['RS256'], clockToleranceSec: 5, discoveryTimeoutMs: 2000,
        },
        expiryGraceSec: 60,
      },
      policy: { paths: [path.join(DIR, 'policies/base.yaml'), path.resolve('/etc/dbward/extra')], watch: false },
      audit: {
        primary: 'file', node: hostname(), redactLiterals: false,
        chain: { key: { generate: path.join(DIR, 'audit/chain.key') }, headFile: null, headIntervalMs: 1000 },
        file: { path: path.resolve('/var/log/dbward/audit.jsonl'), fsync: 'batch', rotateBytes: 268435456, rotateMs: 86400000 },
        postgres: null, nats: null,
      },
      masking: { hashKey: null, catalogMaxAgeMs: 30_000 },
      approvals: { ...defaultApprovals() },
      admin: { host: '0.0.0.0', port: 0, auditGroups: ['dbward-auditors'] },
      limits: { maxMessageBytes: 1048576, maxStartupBytes: 20000, startupTimeoutMs: 3000 },
      log: { level: 'debug' },
      shutdown: { drainTimeoutMs: 0 },
    };
    expect(parseConfig(text, SRC)).toEqual(expected);
  });

  it('applies every default to a minimal file', () => {
    expect(parseConfig(MINIMAL, SRC)).toEqual({
      source: SRC,
      listeners: [{ name: 'postgres', engine: 'postgres', host: '127.0.0.1', port: 6432, requireTls: false, allowPlaintextToken: false }],
      targets: [
        {
          name: 'app',
          engine: 'postgres',
          host: 'db.internal',
          port: 5432,
          database: 'app',
          user: 'dbward',
          password: { none: true },
          tls: { mode: 'prefer' },
          environment: 'default',
          labels: {},
          connectTimeoutMs: 5000,
          roles: [],
          defaultRole: null,
        },
      ],
      identity: {
        mode: 'oidc',
        verifier: {
          issuer: 'https://login.example.com', audience: 'dbward', userClaim: 'email', groupsClaim: 'groups',
          kind: { agentClients: [], serviceClients: [] }, algorithms: ['RS256', 'ES256', 'PS256', 'EdDSA'], clockToleranceSec: 30, discoveryTimeoutMs: 5000,
        },
        expiryGraceSec: 0,
      },
      policy: { paths: [path.join(DIR, 'policies')], watch: true },
      audit: {
        primary: 'file', node: hostname(), redactLiterals: false,
        chain: { key: { generate: path.join(DIR, 'audit/chain.key') }, headFile: null, headIntervalMs: 1000 },
        file: { path: path.join(DIR, 'audit/dbward.jsonl'), fsync: 'none', rotateBytes: 268435456, rotateMs: 86400000 },
        postgres: null, nats: null,
      },
      masking: { hashKey: null, catalogMaxAgeMs: 30_000 },
      approvals: { ...defaultApprovals() },
      admin: { host: '127.0.0.1', port: 6480, auditGroups: ['dbward-auditors'] },
      limits: { maxMessageBytes: 134217728, maxStartupBytes: 10000, startupTimeoutMs: 10000 },
      log: { level: 'info' },
      shutdown: { drainTimeoutMs: 30000 },
    } satisfies Config);
  });

  it('defaults require_tls to true when tls is set, and keeps admin port null', () => {
    const cfg = parseConfig(
      `listeners: [{ tls: { cert: a.crt, key: a.key } }]
targets: [{ name: app, host: h, user: u }]
admin: { port: null }
${UNVERIFIED}`,
      SRC,
    );
    expect(cfg.listeners[0]?.requireTls).toBe(true);
    expect(cfg.admin).toEqual({ host: '127.0.0.1', port: null, auditGroups: ['dbward-auditors'] });
  });

  it('accepts anchors and merge keys', () => {
    const text = `listeners: [{}]
targets:
  - &common { name: a, host: db, user: u, environment: staging }
  - { <<: *common, name: b, port: 6543 }
${UNVERIFIED}`;
    const targets = parseConfig(text, SRC).targets;
    expect(targets.map((t) => [t.name, t.host, t.port, t.environment])).toEqual([
      ['a', 'db', 5432, 'staging'],
      ['b', 'db', 6543, 'staging'],
    ]);
  });
});

describe('loadConfig', () => {
  it('reads the file and records its absolute path as source', () => {
    const file = path.join(tmp, 'dbward.yaml');
    writeFileSync(file, MINIMAL);
    const cfg = loadConfig(path.relative(process.cwd(), file));
    expect(cfg.source).toBe(file);
    expect(cfg.audit.file?.path).toBe(path.join(tmp, 'audit', 'dbward.jsonl'));
  });

  it('reports an unreadable file as a ConfigError', () => {
    const file = path.join(tmp, 'missing.yaml');
    expect(() => loadConfig(file)).toThrow(new ConfigError([{ file, line: 0, column: 0, field: '', message: 'cannot read config file (ENOENT)' }]));
    expect(() => loadConfig(file)).toThrow(`${file}: cannot read config file (ENOENT)`);
  });

  it('loads examples/dbward.yaml', () => {
    const file = path.join(root, 'examples/dbward.yaml');
    expect(readFileSync(file, 'utf8').split('\n')[0]).toBe('# yaml-language-server: $schema=../schemas/dbward.config.schema.json');
    vi.stubEnv('APP_DB_PASSWORD', 'example-secret');
    const cfg = loadConfig(file);
    expect(cfg.listeners.map((l) => `${l.name} ${l.host}:${l.port} tls=${String(l.requireTls)}`)).toEqual(['pg 127.0.0.1:6432 tls=false']);
    const target = cfg.targets[0];
    expect(target?.password).toEqual({ env: 'APP_DB_PASSWORD' });
    expect(target && resolveSecret(target.password)).toBe('example-secret');
    expect(cfg.audit.file?.path).toBe(path.join(root, 'examples/audit/dbward.jsonl'));
  });
});

describe('parseConfig: errors as file:line:col: field: message', () => {
  const TARGET = 'targets: [{ name: app, host: h, user: u }]\n';

  it('unknown field points at the key and lists the allowed ones', () => {
    expect(errorLines(`listeners:\n  - port: 6432\n    prot: 1\n${TARGET}`)).toEqual([
      'dbward.yaml:3:5: listeners[0].prot: unknown field (allowed: name, engine, host, port, tls, require_tls, allow_plaintext_token)',
    ]);
  });

  it('wrong type', () => {
    expect(errorLines(`listeners: [{}]\ntargets:\n  - name: app\n    host: h\n    user: u\n    port: "5432"\n`)).toEqual([
      'dbward.yaml:6:11: targets[0].port: must be an integer (got a string)',
    ]);
    expect(errorLines(`listeners: [{}]\n${TARGET}admin: { port: off }\n`)).toEqual([
      'dbward.yaml:3:16: admin.port: must be an integer or null (got a string)',
    ]);
  });

  it('out-of-range ports', () => {
    expect(errorLines(`listeners:\n  - { port: 65536 }\n${TARGET}admin: { port: -1 }\n`, 'conf/dbward.yaml')).toEqual([
      'conf/dbward.yaml:2:13: listeners[0].port: must be <= 65535',
      'conf/dbward.yaml:4:16: admin.port: must be >= 0',
    ]);
  });

  it('missing required field points at the mapping that lacks it', () => {
    expect(errorLines(`listeners: [{}]\ntargets:\n  - name: app\n    host: h\n`)).toEqual([
      'dbward.yaml:3:5: targets[0].user: required field is missing',
    ]);
    expect(errorLines(TARGET)).toEqual(['dbward.yaml:1:1: listeners: required field is missing']);
  });

  it('password literal is refused without echoing it', () => {
    const lines = errorLines(`listeners: [{}]\ntargets:\n  - name: app\n    host: h\n    user: u\n    password: hunter2\n`);
    expect(lines).toEqual([
      'dbward.yaml:6:15: targets[0].password: a literal password is not allowed; use { env: NAME } or { file: PATH }',
    ]);
    expect(lines.join('\n')).not.toContain('hunter2');
    expect(errorLines(`listeners: [{}]\ntargets: [{ name: a, host: h, user: u, password: { env: A, file: b } }]\n`)).toEqual([
      'dbward.yaml:2:50: targets[0].password: must have exactly one of env or file',
    ]);
  });

  it('YAML syntax error', () => {
    expect(errorLines(`listeners: [{}]\ntargets:\n  - name: app\n    host: h: x\n`)).toEqual([
      'dbward.yaml:4:11: Nested mappings are not allowed in compact mappings',
    ]);
  });

  it('duplicate target name points at the second name', () => {
    expect(errorLines(`listeners: [{}]\ntargets:\n  - { name: app, host: a, user: u }\n  - { name: app, host: b, user: u }\n`)).toEqual([
      'dbward.yaml:4:13: targets[1].name: duplicate target name "app" (already used by targets[0])',
    ]);
  });

  it('audit sinks that cannot work together', () => {
    expect(errorLines(`listeners: [{}]\n${TARGET}audit:\n  primary: postgres\n`)).toEqual([
      'dbward.yaml:4:12: audit.primary: is postgres but there is no audit.postgres section',
    ]);
    expect(errorLines(`listeners: [{}]\n${TARGET}audit:\n  primary: postgres\n  postgres: { host: h, user: u }\n  file: { path: a.jsonl }\n`)).toEqual([
      'dbward.yaml:6:9: audit.file: is only used as the primary sink; remove it or set primary: file',
    ]);
    expect(errorLines(`listeners: [{}]\n${TARGET}audit:\n  primary: none\n  nats: {}\n`)).toEqual([
      'dbward.yaml:5:9: audit.nats: has nothing to receive while audit.primary is none',
    ]);
    expect(errorLines(`listeners: [{}]\n${TARGET}audit:\n  chain: { key: { env: K, file: f } }\n`)).toEqual([
      'dbward.yaml:4:17: audit.chain.key: must have exactly one of env or file',
    ]);
  });

  it('duplicate listener names (including the default) and require_tls without tls', () => {
    expect(errorLines(`listeners:\n  - { port: 1 }\n  - { port: 2, require_tls: true }\n${TARGET}`)).toEqual([
      'dbward.yaml:3:5: listeners[1]: duplicate listener name "postgres" (already used by listeners[0]); names default to "postgres", so give each listener a name',
      'dbward.yaml:3:29: listeners[1].require_tls: is true but this listener has no tls (cert and key)',
    ]);
  });

  it('duplicate keys, empty files and non-mapping documents', () => {
    expect(errorLines(`listeners: [{}]\n${TARGET}log: { level: info }\nlog: { level: warn }\n`)).toEqual(['dbward.yaml:4:1: duplicate key "log"']);
    const empty = 'dbward.yaml:1:1: config file is empty; expected a mapping with listeners and targets';
    expect(errorLines('')).toEqual([empty]);
    expect(errorLines('# only a comment\n')).toEqual([empty]);
    expect(errorLines('- listeners\n')).toEqual(['dbward.yaml:1:1: top level must be a mapping of settings, got a list']);
    expect(errorLines('listeners: [{}]\n---\ntargets: []\n')).toEqual([
      'dbward.yaml:2:1: only one YAML document is allowed (remove the extra ---)',
    ]);
  });

  it('enum values and awkward label keys', () => {
    const text = `listeners: [{}]\ntargets:\n  - name: a\n    host: h\n    user: u\n    tls: { mode: strict }\n    labels: { "app.k8s.io/name": 1 }\n`;
    expect(errorLines(text)).toEqual([
      'dbward.yaml:6:18: targets[0].tls.mode: must be one of: disable, prefer, require, verify-full',
      'dbward.yaml:7:34: targets[0].labels["app.k8s.io/name"]: must be a string (got an integer)',
    ]);
  });

  it('reports every problem at once, in file order, with structured problems', () => {
    try {
      parseConfig(`log: { level: loud }\nlisteners: []\n${TARGET}${UNVERIFIED}`, 'x.yaml');
      expect.unreachable();
    } catch (err) {
      const e = err as ConfigError;
      expect(e.code).toBe('CONFIG_INVALID');
      expect(e.problems).toEqual([
        { file: 'x.yaml', line: 1, column: 15, field: 'log.level', message: 'must be one of: trace, debug, info, warn, error, fatal, silent' },
        { file: 'x.yaml', line: 2, column: 12, field: 'listeners', message: 'must have at least 1 entry' },
      ]);
    }
  });
});

describe('parseConfig: identity', () => {
  const LISTEN = 'listeners: [{ host: 0.0.0.0 }]\ntargets: [{ name: app, host: h, user: u }]\n';
  const parseErrors = (text: string): string[] => {
    try {
      parseConfig(/^policy:/m.test(text) ? text : `${text}${POLICY}`, 'dbward.yaml');
    } catch (err) {
      return (err as ConfigError).message.split('\n');
    }
    throw new Error('expected a ConfigError');
  };

  it('is required, so a file cannot silently run unauthenticated', () => {
    expect(parseErrors(LISTEN)).toEqual(['dbward.yaml:1:1: identity: required field is missing']);
  });

  it('needs issuer and audience in oidc mode', () => {
    expect(parseErrors(`${LISTEN}identity: { user_claim: sub }\n`)).toEqual([
      'dbward.yaml:3:11: identity.issuer: required field is missing',
      'dbward.yaml:3:11: identity.audience: required field is missing',
    ]);
  });

  it('refuses unverified mode and plaintext tokens on a non-loopback listener', () => {
    expect(parseErrors(`${LISTEN}identity: { mode: unverified }\n`)).toEqual([
      'dbward.yaml:1:21: listeners[0].host: must be a loopback address while identity.mode is unverified (sessions are not authenticated), not 0.0.0.0',
    ]);
    expect(parseErrors('listeners: [{ host: 0.0.0.0, allow_plaintext_token: true }]\ntargets: [{ name: app, host: h, user: u }]\nidentity: { issuer: "https://i", audience: a }\n')).toEqual([
      'dbward.yaml:1:53: listeners[0].allow_plaintext_token: is only allowed on a loopback host, not 0.0.0.0',
    ]);
    const cfg = parseConfig('listeners: [{ host: 127.0.0.1, allow_plaintext_token: true }]\ntargets: [{ name: app, host: h, user: u }]\nidentity: { mode: unverified }\npolicy: { path: p.yaml }\n', SRC);
    expect(cfg.identity).toEqual({ mode: 'unverified' });
    expect(cfg.listeners[0]?.allowPlaintextToken).toBe(true);
  });

  it('refuses an http issuer off loopback, none/HS algorithms and a default_role without roles', () => {
    expect(parseErrors(`${LISTEN}identity: { issuer: "http://idp.example.com", audience: a, algorithms: [HS256, none] }\n`)).toEqual([
      'dbward.yaml:3:21: identity.issuer: must use https (plain http only on a loopback host)',
      'dbward.yaml:3:73: identity.algorithms[0]: must be one of: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA',
      'dbward.yaml:3:80: identity.algorithms[1]: must be one of: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA',
    ]);
    expect(parseErrors('listeners: [{}]\ntargets: [{ name: app, host: h, user: u, default_role: r }]\nidentity: { mode: unverified }\n')).toEqual([
      'dbward.yaml:2:56: targets[0].default_role: has no effect without roles; remove it or add roles',
    ]);
  });
});

describe('resolveSecret', () => {
  const secretFile = (content: string): string => {
    const f = path.join(tmp, 'pw');
    writeFileSync(f, content);
    return f;
  };
  const failure = (fn: () => unknown): SecretError => {
    try {
      fn();
    } catch (err) {
      expect(err).toBeInstanceOf(SecretError);
      expect((err as SecretError).code).toBe('SECRET_UNAVAILABLE');
      return err as SecretError;
    }
    throw new Error('expected a SecretError');
  };

  it('reads environment variables', () => {
    vi.stubEnv('DBWARD_TEST_PW', 's3cret');
    expect(resolveSecret({ env: 'DBWARD_TEST_PW' })).toBe('s3cret');
    expect(resolveSecret({ env: 'X' }, { X: 'from-arg' })).toBe('from-arg');
    expect(resolveSecret({ none: true })).toBeUndefined();
  });

  it('names a missing or empty variable', () => {
    expect(failure(() => resolveSecret({ env: 'DBWARD_TEST_UNSET' }, {})).message).toBe('environment variable DBWARD_TEST_UNSET is not set');
    expect(failure(() => resolveSecret({ env: 'E' }, { E: '' })).message).toBe('environment variable E is empty');
  });

  it('reads files, trimming exactly one trailing newline', () => {
    expect(resolveSecret({ file: secretFile('pw\n') })).toBe('pw');
    expect(resolveSecret({ file: secretFile('pw\r\n') })).toBe('pw');
    expect(resolveSecret({ file: secretFile('pw\n\n') })).toBe('pw\n');
    expect(resolveSecret({ file: secretFile(' pw ') })).toBe(' pw ');
  });

  it('names a missing or empty file', () => {
    const missing = path.join(tmp, 'nope');
    expect(failure(() => resolveSecret({ file: missing })).message).toBe(`cannot read secret file ${missing} (ENOENT)`);
    const empty = secretFile('\n');
    expect(failure(() => resolveSecret({ file: empty })).message).toBe(`secret file ${empty} is empty`);
  });
});

describe('schema, docs and loader stay in sync', () => {
  const schema = readSchema('dbward.config.schema.json');
  const all = schemaProperties(schema);

  it('walks the whole format, including list entries and nested mappings', () => {
    const paths = all.map(([p]) => p);
    expect(paths).toEqual(expect.arrayContaining(['listeners', 'listeners[].tls.cert', 'targets[].password.env', 'admin.port', 'shutdown.drain_timeout_ms']));
    expect(paths.length).toBeGreaterThanOrEqual(40);
  });

  it('documents every schema property in docs/configuration.md', () => {
    const doc = readFileSync(path.join(root, 'docs/configuration.md'), 'utf8');
    expect(all.map(([p]) => p).filter((p) => !doc.includes(`\`${p}\``))).toEqual([]);
  });

  it('gives every property a description and closes every object', () => {
    expect(all.filter(([, s]) => !s.description).map(([p]) => p)).toEqual([]);
    const open = all.filter(([p, s]) => (s.items ?? s).type === 'object' && (s.items ?? s).additionalProperties !== false && p !== 'targets[].labels');
    expect(open.map(([p]) => p)).toEqual([]);
  });

  it('declares the same defaults the loader applies', () => {
    // Optional sections take their defaults once present.
    const cfg = parseConfig(`${MINIMAL}\naudit:\n  postgres: { host: h, user: u }\n  nats: {}\n`
      + 'approvals:\n  store: postgres\n  postgres: { host: h, user: u }\n  slack: { webhook_url: { env: X } }\n', SRC) as unknown as Record<string, unknown>;
    // store must be postgres above for its section to load; its default shows on a config without one.
    const bare = parseConfig(MINIMAL, SRC);
    const camel = (s: string): string => s.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
    // Verifier settings live under identity.verifier in Config; mode and grace stay on identity.
    const configPath = (p: string): string =>
      p.startsWith('identity.') && p !== 'identity.mode' && p !== 'identity.expiry_grace_sec' ? p.replace('identity.', 'identity.verifier.') : p;
    const actual = (p: string): unknown =>
      configPath(p).split('.').reduce<unknown>((v, seg) => {
        const obj = v as Record<string, unknown>;
        return seg.endsWith('[]') ? (obj[camel(seg.slice(0, -2))] as unknown[])[0] : obj[camel(seg)];
      }, cfg);
    const withDefaults = all.filter(([, s]) => s.default !== undefined);
    expect(withDefaults.length).toBeGreaterThan(15);
    for (const [p, s] of withDefaults) {
      // The audit path default is relative in the schema and resolved by the loader.
      const want = p === 'audit.file.path' ? path.join(DIR, String(s.default)) : s.default;
      if (p === 'audit.file.rotate_hours') expect(actual('audit.file.rotate_ms'), p).toBe(Number(want) * 3_600_000);
      else if (p === 'approvals.store') expect(bare.approvals.store, p).toBe(want);
      else expect(actual(p), p).toEqual(want);
    }
  });
});
