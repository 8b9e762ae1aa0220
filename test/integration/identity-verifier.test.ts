// TokenVerifier against a real in-process oidc-provider: genuine tokens from the
// device flow and client credentials, plus hand-built and tampered ones.

import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { SignJWT, base64url, decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IdentityError, TokenVerifier, type IdentityConfigInput, type VerifierOptions } from '../../src/identity/index.js';
import { AGENT_CLIENT, OTHER_RESOURCE, SERVICE_CLIENT, startTestIssuer, type TestIssuer } from '../helpers/oidc.js';

let idp: TestIssuer;
let aliceToken: string;

beforeAll(async () => {
  idp = await startTestIssuer();
  aliceToken = await idp.mintToken('alice@example.com');
});
afterAll(async () => { await idp?.close(); });

function verifier(over: Partial<IdentityConfigInput> = {}, opts: VerifierOptions = {}): TokenVerifier {
  return new TokenVerifier({ issuer: idp.issuer, audience: 'dbward', kind: { claim: 'dbward_kind' }, ...over }, opts);
}

/** Resolves to the IdentityError code the promise rejects with. */
async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(IdentityError);
    return (err as IdentityError).code;
  }
  throw new Error('expected verification to fail');
}

const enc = (v: unknown) => base64url.encode(JSON.stringify(v));

/** A compact JWS with the given header and payload and a junk signature. */
function handBuilt(header: object, payload: object, signature = 'c2lnbmF0dXJl'): string {
  return `${enc(header)}.${enc(payload)}.${signature}`;
}

/** Returns a free loopback port (listened on, then released). */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('TokenVerifier with a real issuer', () => {
  it('turns a device-flow user token into a human Identity with groups', async () => {
    const id = await verifier().verify(aliceToken, 'Alice@Example.com');
    expect(id).toMatchObject({
      subject: 'alice', user: 'alice@example.com', email: 'alice@example.com', name: 'Alice Admin',
      groups: ['dba', 'developers'], kind: 'human', issuer: idp.issuer, clientId: 'dbward-cli', verified: true,
    });
    expect(id.expiresAt).toBeGreaterThan(Date.now() / 1000);
    expect(id.claims.aud).toBe('dbward');
  });

  it('honours a different user claim and a dotted groups path', async () => {
    const id = await verifier({ userClaim: 'preferred_username', groupsClaim: 'nope.groups' }).verify(aliceToken, 'alice');
    expect(id.user).toBe('alice');
    expect(id.groups).toEqual([]);
  });

  it('maps the agent client to kind agent and keeps its model claim', async () => {
    const token = await idp.clientCredentialsToken(AGENT_CLIENT.id, AGENT_CLIENT.secret);
    const id = await verifier().verify(token, 'agent-bot');
    expect(id).toMatchObject({ kind: 'agent', user: 'agent-bot', subject: 'agent-bot', clientId: 'agent-bot', groups: [] });
    expect(id.claims.model).toBe('gpt-x');
  });

  it('treats a plain client-credentials token as a service', async () => {
    const token = await idp.clientCredentialsToken(SERVICE_CLIENT.id, SERVICE_CLIENT.secret);
    expect((await verifier().verify(token)).kind).toBe('service');
  });

  it('refuses a token for another user', async () => {
    expect(await codeOf(verifier().verify(aliceToken, 'bob@example.com'))).toBe('USER_MISMATCH');
  });

  it('refuses an expired token (injected clock)', async () => {
    const later = verifier({}, { now: () => Date.now() + 2 * 3600_000 });
    expect(await codeOf(later.verify(aliceToken))).toBe('TOKEN_EXPIRED');
  });

  it('refuses a token issued in the future beyond the tolerance', async () => {
    const earlier = verifier({}, { now: () => Date.now() - 10 * 60_000 });
    expect(await codeOf(earlier.verify(aliceToken))).toBe('TOKEN_NOT_YET_VALID');
    // Within the 30 s tolerance the same skew is fine.
    const skewed = verifier({}, { now: () => Date.now() - 20_000 });
    await expect(skewed.verify(aliceToken)).resolves.toMatchObject({ subject: 'alice' });
  });

  it('refuses a token whose nbf is in the future', async () => {
    const early = await idp.mintToken('bob@example.com', { extraClaims: { nbf: Math.floor(Date.now() / 1000) + 600 } });
    expect(await codeOf(verifier().verify(early))).toBe('TOKEN_NOT_YET_VALID');
    const inTenMinutes = verifier({}, { now: () => Date.now() + 11 * 60_000 });
    await expect(inTenMinutes.verify(early)).resolves.toMatchObject({ subject: 'bob' });
  });

  it('refuses a token minted for another resource (audience)', async () => {
    const other = await idp.clientCredentialsToken(SERVICE_CLIENT.id, SERVICE_CLIENT.secret, undefined, OTHER_RESOURCE);
    expect(decodeJwt(other).aud).toBe('other-api');
    expect(await codeOf(verifier().verify(other))).toBe('TOKEN_AUDIENCE');
    expect(await codeOf(verifier({ audience: ['x', 'y'] }).verify(aliceToken))).toBe('TOKEN_AUDIENCE');
  });

  it('refuses tokens of another issuer, also when iss is rewritten to ours', async () => {
    const second = await startTestIssuer();
    try {
      const foreign = await second.mintToken('alice@example.com');
      expect(await codeOf(verifier().verify(foreign))).toBe('TOKEN_ISSUER');
      const [h, p, s] = foreign.split('.');
      const forged = `${h}.${enc({ ...JSON.parse(Buffer.from(p!, 'base64url').toString()), iss: idp.issuer })}.${s}`;
      expect(await codeOf(verifier().verify(forged))).toBe('TOKEN_SIGNATURE');
    } finally {
      await second.close();
    }
  });

  it('refuses a tampered signature and a tampered payload', async () => {
    const [h, p, s] = aliceToken.split('.');
    const sig = Buffer.from(s!, 'base64url');
    sig[10] = sig[10]! ^ 0x01;
    expect(await codeOf(verifier().verify(`${h}.${p}.${sig.toString('base64url')}`))).toBe('TOKEN_SIGNATURE');
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString());
    const promoted = `${h}.${enc({ ...claims, groups: ['superuser'] })}.${s}`;
    expect(await codeOf(verifier().verify(promoted))).toBe('TOKEN_SIGNATURE');
  });

  it('never accepts alg none or HS256, even when configured', async () => {
    const claims = decodeJwt(aliceToken);
    const none = handBuilt({ alg: 'none', typ: 'at+jwt' }, claims, '');
    const lax = verifier({ algorithms: ['ES256', 'none', 'HS256'] });
    expect(await codeOf(verifier().verify(none))).toBe('TOKEN_ALGORITHM');
    expect(await codeOf(lax.verify(none))).toBe('TOKEN_ALGORITHM');
    const hs = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode('s3cret-s3cret-s3cret-s3cret-s3cret'));
    expect(await codeOf(verifier().verify(hs))).toBe('TOKEN_ALGORITHM');
    expect(await codeOf(lax.verify(hs))).toBe('TOKEN_ALGORITHM');
    expect(() => verifier({ algorithms: ['none', 'HS512'] })).toThrow(/no acceptable/);
  });

  it('refuses truncated and garbage tokens', async () => {
    expect(await codeOf(verifier().verify(aliceToken.slice(0, aliceToken.length - 20)))).toBe('TOKEN_SIGNATURE');
    expect(await codeOf(verifier().verify(aliceToken.slice(0, aliceToken.indexOf('.') + 30)))).toBe('TOKEN_MALFORMED');
    expect(await codeOf(verifier().verify(''))).toBe('TOKEN_MALFORMED');
    expect(await codeOf(verifier().verify('a.b.c'))).toBe('TOKEN_MALFORMED');
    expect(await codeOf(verifier().verify(`${aliceToken}.x`))).toBe('TOKEN_MALFORMED');
  });

  it('refuses a 1 MB token before any network access', async () => {
    // Pointed at a closed port: reaching the network would give ISSUER_UNAVAILABLE instead.
    const v = new TokenVerifier({ issuer: `http://127.0.0.1:${await freePort()}`, audience: 'dbward' });
    const huge = handBuilt({ alg: 'ES256' }, { pad: 'x'.repeat(1024 * 1024) });
    const t0 = Date.now();
    expect(await codeOf(v.verify(huge))).toBe('TOKEN_TOO_LARGE');
    expect(Date.now() - t0).toBeLessThan(200);
  });

  it('reports ISSUER_UNAVAILABLE for a closed port and for a silent issuer, within the timeout', async () => {
    const closed = `http://127.0.0.1:${await freePort()}`;
    const t0 = Date.now();
    const v = new TokenVerifier({ issuer: closed, audience: 'dbward', discoveryTimeoutMs: 500 });
    expect(await codeOf(v.verify(handBuilt({ alg: 'ES256' }, { iss: closed, sub: 'x', exp: 2e9 })))).toBe('ISSUER_UNAVAILABLE');
    expect(Date.now() - t0).toBeLessThan(1000);

    // Accepts TCP connections but never answers: only the timeout can end the wait.
    const held: net.Socket[] = [];
    const silent = net.createServer((sock) => { held.push(sock); });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    try {
      const t1 = Date.now();
      const sv = new TokenVerifier({ issuer: url, audience: 'dbward', discoveryTimeoutMs: 500 });
      expect(await codeOf(sv.verify(handBuilt({ alg: 'ES256' }, { iss: url, sub: 'x', exp: 2e9 })))).toBe('ISSUER_UNAVAILABLE');
      expect(Date.now() - t1).toBeLessThan(2000);
    } finally {
      for (const sock of held) sock.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });

  it('reports ISSUER_UNAVAILABLE when the JWKS cannot be refetched after discovery', async () => {
    const gone = await startTestIssuer();
    const v = new TokenVerifier({ issuer: gone.issuer, audience: 'dbward' }, { jwksCooldownMs: 0 });
    await expect(v.verify(await gone.mintToken('bob@example.com'))).resolves.toMatchObject({ subject: 'bob' });
    await gone.close();
    // An unknown kid makes jose refetch; the issuer is gone, so this is not the token's fault.
    const unknownKid = handBuilt({ alg: 'ES256', kid: 'never-seen' }, { iss: gone.issuer, sub: 'x', exp: 2e9 });
    expect(await codeOf(v.verify(unknownKid))).toBe('ISSUER_UNAVAILABLE');
  });

  it('retries discovery on the next verify after a failure', async () => {
    // A stand-in answers 503 first; the real issuer then takes over the same port.
    const standIn = http.createServer((_req, res) => { res.statusCode = 503; res.end(); });
    await new Promise<void>((r) => standIn.listen(0, '127.0.0.1', r));
    const port = (standIn.address() as AddressInfo).port;
    const url = `http://127.0.0.1:${port}`;
    const v = new TokenVerifier({ issuer: url, audience: 'dbward' });
    expect(await codeOf(v.verify(handBuilt({ alg: 'ES256' }, { iss: url, sub: 'x', exp: 2e9 })))).toBe('ISSUER_UNAVAILABLE');
    standIn.closeAllConnections();
    await new Promise<void>((r) => standIn.close(() => r()));
    const late = await startTestIssuer({ port });
    try {
      const token = await late.mintToken('bob@example.com');
      await expect(v.verify(token, 'bob@example.com')).resolves.toMatchObject({ subject: 'bob', groups: ['developers'] });
    } finally {
      await late.close();
    }
  });

  it('follows a key rotation: new tokens verify after a JWKS refetch, old ones then fail', async () => {
    const rot = await startTestIssuer();
    try {
      const v = new TokenVerifier({ issuer: rot.issuer, audience: 'dbward' }, { jwksCooldownMs: 0 });
      const oldToken = await rot.mintToken('alice@example.com');
      await expect(v.verify(oldToken)).resolves.toMatchObject({ subject: 'alice' });
      const oldKid = rot.kid;
      await rot.rotateKey();
      expect(rot.kid).not.toBe(oldKid);
      const newToken = await rot.mintToken('alice@example.com');
      // Unknown kid -> jose refetches the JWKS, which now holds only the new key.
      await expect(v.verify(newToken)).resolves.toMatchObject({ subject: 'alice' });
      expect(await codeOf(v.verify(oldToken))).toBe('TOKEN_SIGNATURE');
    } finally {
      await rot.close();
    }
  });

  it('remembers a verified token: a reconnect skips the issuer, but not the expiry or the user check', async () => {
    const own = await startTestIssuer();
    const token = await own.mintToken('bob@example.com');
    // Read after minting: with no clock tolerance, a clock read before it may be a second behind the token's iat.
    let now = Date.now();
    const v = new TokenVerifier({ issuer: own.issuer, audience: 'dbward', clockToleranceSec: 0 }, { now: () => now });
    const first = await v.verify(token, 'bob@example.com');
    expect(first).toMatchObject({ subject: 'bob' });
    await own.close();
    // The issuer is gone; the same token still verifies against the key set it was checked with,
    // from memory: the very identity of the first check, not a second signature check.
    expect(await v.verify(token, 'bob@example.com')).toBe(first);
    expect(await codeOf(v.verify(token, 'alice@example.com'))).toBe('USER_MISMATCH');
    // Past its exp it is checked again, and refused.
    now = (decodeJwt(token).exp! + 1) * 1000;
    expect(await codeOf(v.verify(token, 'bob@example.com'))).toBe('TOKEN_EXPIRED');
  });

  it('checks a remembered token again once the key set is past its cache age', async () => {
    const own = await startTestIssuer();
    try {
      const v = new TokenVerifier({ issuer: own.issuer, audience: 'dbward' }, { jwksCacheMaxAgeMs: 1 });
      const token = await own.mintToken('bob@example.com');
      const first = await v.verify(token, 'bob@example.com');
      await new Promise((r) => setTimeout(r, 5));
      // The keys are stale: jose fetches them again and the token is verified from scratch.
      const again = await v.verify(token, 'bob@example.com');
      expect(again).not.toBe(first);
      expect(again).toMatchObject({ subject: 'bob' });
    } finally {
      await own.close();
    }
  });
});
