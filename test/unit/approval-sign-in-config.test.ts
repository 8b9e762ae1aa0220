// approvals.sign_in in the config file: how it loads, and the combinations that
// cannot work (no link key, no OIDC sessions, a scope without openid); and the
// Slack users map, which no longer exists.

import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../src/config/load.js';

const SRC = path.resolve('/etc/dbward/dbward.yaml');
const BASE = `listeners:
  - {}
targets:
  - { name: app, host: db.internal, user: dbward }
identity: { issuer: "https://login.example.com", audience: dbward }
policy: { path: policies }
`;

function problems(text: string): string[] {
  try {
    parseConfig(text, SRC);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => `${p.field}: ${p.message}`);
    throw err;
  }
  return [];
}

describe('approvals.sign_in', () => {
  it('loads with its defaults: a public client, openid profile email, no resource', () => {
    const c = parseConfig(`${BASE}approvals:\n  link_key: { env: K }\n  sign_in: { client_id: dbward-approvals }\n`, SRC);
    expect(c.approvals.signIn).toEqual({ clientId: 'dbward-approvals', clientSecret: { none: true }, scope: 'openid profile email', resource: null });
  });

  it('loads a confidential client, its secret file relative to the config', () => {
    const c = parseConfig(`${BASE}approvals:
  link_key: { env: K }
  sign_in: { client_id: c1, client_secret: { file: secrets/signin }, scope: "openid groups api://dbward/connect", resource: "urn:dbward" }
`, SRC);
    expect(c.approvals.signIn).toEqual({ clientId: 'c1', clientSecret: { file: '/etc/dbward/secrets/signin' }, scope: 'openid groups api://dbward/connect', resource: 'urn:dbward' });
  });

  it('is absent unless configured', () => {
    expect(parseConfig(BASE, SRC).approvals.signIn).toBeNull();
  });

  it('needs the link key and OIDC sessions, and a scope with openid', () => {
    expect(problems(`${BASE}approvals:\n  sign_in: { client_id: c1 }\n`)).toEqual([expect.stringMatching(/^approvals\.sign_in: needs approvals\.link_key/)]);
    const unverified = BASE.replace('identity: { issuer: "https://login.example.com", audience: dbward }', 'identity: { mode: unverified }');
    expect(problems(`${unverified}approvals:\n  link_key: { env: K }\n  sign_in: { client_id: c1 }\n`)).toEqual([expect.stringMatching(/^approvals\.sign_in: needs identity\.mode oidc/)]);
    expect(problems(`${BASE}approvals:\n  link_key: { env: K }\n  sign_in: { client_id: c1, scope: "profile email openidx" }\n`)).toEqual([expect.stringMatching(/^approvals\.sign_in\.scope/)]);
    expect(problems(`${BASE}approvals:\n  link_key: { env: K }\n  sign_in: {}\n`)).toEqual([expect.stringMatching(/^approvals\.sign_in\.client_id/)]);
  });
});

it('refuses approvals.slack.users: Slack accounts no longer decide', () => {
  expect(problems(`${BASE}approvals:\n  slack: { webhook_url: { env: H }, users: { U1: { user: carol, groups: [dba] } } }\n`))
    .toEqual([expect.stringMatching(/^approvals\.slack\.users: unknown field/)]);
});
