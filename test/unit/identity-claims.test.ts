// Claims -> Identity mapping: user claim, dotted groups path, kind rules.

import { describe, expect, it } from 'vitest';
import { claimAt, groupsFrom, identityFromClaims, kindOf, resolveIdentityConfig, userMatches } from '../../src/identity/index.js';

const config = resolveIdentityConfig({ issuer: 'https://idp.example.com', audience: 'dbward' });
const base = { iss: 'https://idp.example.com', aud: 'dbward', exp: 2_000_000_000, iat: 1_900_000_000 };
const alice = { ...base, sub: 'u-1', email: 'alice@example.com', name: 'Alice', groups: ['dba', 'developers'], client_id: 'dbward-cli' };

describe('resolveIdentityConfig', () => {
  it('fills the documented defaults', () => {
    expect(config).toEqual({
      issuer: 'https://idp.example.com', audience: 'dbward', userClaim: 'email', groupsClaim: 'groups', kind: {},
      algorithms: ['RS256', 'ES256', 'PS256', 'EdDSA'], clockToleranceSec: 30, discoveryTimeoutMs: 5000,
    });
  });
});

describe('claimAt', () => {
  it('walks dotted paths and stops at non-objects', () => {
    const c = { realm_access: { roles: ['a'] }, s: 'x' };
    expect(claimAt(c, 'realm_access.roles')).toEqual(['a']);
    expect(claimAt(c, 'realm_access.missing')).toBeUndefined();
    expect(claimAt(c, 's.length')).toBeUndefined();
    expect(claimAt(c, '__proto__')).toBeUndefined();
    expect(claimAt(c, 'constructor.name')).toBeUndefined();
  });
});

describe('groupsFrom', () => {
  it('accepts arrays (dropping non-strings) and space/comma separated strings', () => {
    expect(groupsFrom(['a', 1, '', 'b', null])).toEqual(['a', 'b']);
    expect(groupsFrom('a b,c')).toEqual(['a', 'b', 'c']);
    expect(groupsFrom(undefined)).toEqual([]);
    expect(groupsFrom({ a: 1 })).toEqual([]);
  });
});

describe('identityFromClaims', () => {
  it('maps a human token', () => {
    expect(identityFromClaims(alice, config)).toEqual({
      subject: 'u-1', user: 'alice@example.com', email: 'alice@example.com', name: 'Alice', groups: ['dba', 'developers'],
      kind: 'human', issuer: base.iss, clientId: 'dbward-cli', claims: alice, expiresAt: base.exp, verified: true,
    });
  });

  it('reads groups from a dotted path and the user from another claim', () => {
    const c = { ...base, sub: 'u-2', preferred_username: 'carol', realm_access: { roles: ['ops'] } };
    const id = identityFromClaims(c, { ...config, userClaim: 'preferred_username', groupsClaim: 'realm_access.roles' });
    expect(id).toMatchObject({ user: 'carol', name: 'carol', groups: ['ops'], kind: 'human' });
    expect(id.email).toBeUndefined();
  });

  it('names a client-credentials caller by its client id', () => {
    const id = identityFromClaims({ ...base, sub: 'etl', client_id: 'etl' }, config);
    expect(id).toMatchObject({ user: 'etl', kind: 'service', clientId: 'etl', groups: [] });
  });

  it('falls back to azp for the client id', () => {
    expect(identityFromClaims({ ...alice, client_id: undefined, azp: 'web' }, config).clientId).toBe('web');
  });

  it('throws without sub, iss or exp', () => {
    expect(() => identityFromClaims({ ...alice, sub: undefined }, config)).toThrow(/sub/);
    expect(() => identityFromClaims({ ...alice, exp: '2' }, config)).toThrow();
    expect(() => identityFromClaims({ ...alice, iss: '' }, config)).toThrow();
  });
});

describe('kindOf', () => {
  const k = (claims: Record<string, unknown>, kind = {}, userClaim = 'email') => kindOf(claims, { kind, userClaim });

  it('prefers a valid kind claim', () => {
    expect(k({ ...alice, dbward_kind: 'agent' }, { claim: 'dbward_kind' })).toBe('agent');
    expect(k({ ...alice, meta: { kind: 'service' } }, { claim: 'meta.kind' })).toBe('service');
  });

  it('ignores an invalid kind claim value', () => {
    expect(k({ ...alice, dbward_kind: 'root' }, { claim: 'dbward_kind' })).toBe('human');
    expect(k({ ...alice, dbward_kind: ['agent'] }, { claim: 'dbward_kind' })).toBe('human');
  });

  it('uses the client lists, agent before service', () => {
    const bot = { ...base, sub: 'bot', client_id: 'bot' };
    expect(k(bot, { agentClients: ['bot'] })).toBe('agent');
    expect(k(bot, { agentClients: ['bot'], serviceClients: ['bot'] })).toBe('agent');
    expect(k({ ...alice, client_id: 'etl' }, { serviceClients: ['etl'] })).toBe('service');
    // A human signing in through a client listed as an agent is driven by that agent.
    expect(k(alice, { agentClients: ['dbward-cli'] })).toBe('agent');
  });

  it('treats tokens without an end-user as services', () => {
    expect(k({ ...base, sub: 'svc', client_id: 'svc' })).toBe('service');
    expect(k({ ...base, sub: 'opaque-id', client_id: 'x' })).toBe('service');
    expect(k({ ...base, sub: 'u-3', preferred_username: 'dave' }, {}, 'preferred_username')).toBe('human');
  });

  it('defaults to human when an end-user is present', () => {
    expect(k(alice)).toBe('human');
  });
});

describe('userMatches', () => {
  it('compares emails case-insensitively and other names exactly', () => {
    expect(userMatches('alice@example.com', 'Alice@Example.COM')).toBe(true);
    expect(userMatches('alice@example.com', 'bob@example.com')).toBe(false);
    expect(userMatches('alice', 'Alice')).toBe(false);
    expect(userMatches('alice', 'alice')).toBe(true);
  });
});
