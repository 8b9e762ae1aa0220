// ScramClient (SCRAM-SHA-256, RFC 5802 / RFC 7677) against an independent
// server-side verifier written here with node:crypto, plus RFC 7677's test vector.

import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ScramClient, ScramError } from '../../src/proxy/postgres/scram.js';

const hmac = (key: Buffer, data: string): Buffer => createHmac('sha256', key).update(data).digest();
const sha256 = (b: Buffer): Buffer => createHash('sha256').update(b).digest();
const xor = (a: Buffer, b: Buffer): Buffer => Buffer.from(a.map((x, i) => x ^ b[i]!));

function attrs(msg: string): Map<string, string> {
  return new Map(msg.split(',').map((p) => [p[0]!, p.slice(2)] as [string, string]));
}

/** What a PostgreSQL server stores for a SCRAM password (pg_authid.rolpassword). */
function verifier(password: string, salt: Buffer, iterations: number) {
  const salted = pbkdf2Sync(password, salt, iterations, 32, 'sha256');
  return { salt, iterations, storedKey: sha256(hmac(salted, 'Client Key')), serverKey: hmac(salted, 'Server Key') };
}

/** A minimal SCRAM-SHA-256 server: checks the client proof against StoredKey only. */
class ScramServer {
  private clientFirstBare = '';
  private serverFirst = '';
  private nonce = '';
  accepted = false;

  constructor(private readonly v: ReturnType<typeof verifier>, private readonly serverNonce = randomBytes(18).toString('base64')) {}

  first(clientFirst: string): string {
    expect(clientFirst.startsWith('n,,')).toBe(true); // gs2 header: no channel binding
    this.clientFirstBare = clientFirst.slice(3);
    const clientNonce = attrs(this.clientFirstBare).get('r')!;
    this.nonce = clientNonce + this.serverNonce;
    this.serverFirst = `r=${this.nonce},s=${this.v.salt.toString('base64')},i=${this.v.iterations}`;
    return this.serverFirst;
  }

  /** Returns server-final: v=signature if the proof checks out, e=invalid-proof if not. */
  final(clientFinal: string): string {
    const a = attrs(clientFinal);
    expect(a.get('c')).toBe('biws'); // base64("n,,")
    expect(a.get('r')).toBe(this.nonce);
    const withoutProof = clientFinal.slice(0, clientFinal.lastIndexOf(',p='));
    const authMessage = `${this.clientFirstBare},${this.serverFirst},${withoutProof}`;
    const proof = Buffer.from(a.get('p')!, 'base64');
    const clientKey = xor(proof, hmac(this.v.storedKey, authMessage));
    this.accepted = proof.length === 32 && timingSafeEqual(sha256(clientKey), this.v.storedKey);
    this.signature = `v=${hmac(this.v.serverKey, authMessage).toString('base64')}`;
    return this.accepted ? this.signature : 'e=invalid-proof';
  }

  /** The v= this server would send for the last exchange, whether or not it accepted the proof. */
  signature = '';
}

function exchange(clientPassword: string, v: ReturnType<typeof verifier>) {
  const client = new ScramClient(clientPassword);
  const server = new ScramServer(v);
  const serverFinal = server.final(client.clientFinal(server.first(client.clientFirst())));
  return { client, server, serverFinal };
}

const salt = Buffer.from('c2FsdHNhbHRzYWx0', 'base64');

describe('ScramClient against a SCRAM server', () => {
  it('sends a well-formed client-first-message with a fresh nonce', () => {
    const a = new ScramClient('pw').clientFirst();
    const b = new ScramClient('pw').clientFirst();
    expect(a).toMatch(/^n,,n=[^,]*,r=[\x21-\x2b\x2d-\x7e]{18,}$/);
    expect(attrs(a.slice(3)).get('r')).not.toBe(attrs(b.slice(3)).get('r'));
  });

  it('the correct password passes both ways', () => {
    const { client, server, serverFinal } = exchange('correct horse', verifier('correct horse', salt, 4096));
    expect(server.accepted).toBe(true);
    expect(serverFinal).toMatch(/^v=/);
    expect(() => client.verifyServerFinal(serverFinal)).not.toThrow();
  });

  it('works again with the same salt (salted-password cache) and with other iteration counts', () => {
    for (const iterations of [4096, 1, 10_000]) {
      const { client, server, serverFinal } = exchange('correct horse', verifier('correct horse', salt, iterations));
      expect(server.accepted, `i=${iterations}`).toBe(true);
      client.verifyServerFinal(serverFinal);
    }
  });

  it('a wrong password fails the server check, even right after the right one was cached', () => {
    exchange('correct horse', verifier('correct horse', salt, 4096));
    const { client, server, serverFinal } = exchange('correct horse!', verifier('correct horse', salt, 4096));
    expect(server.accepted).toBe(false);
    expect(() => client.verifyServerFinal(serverFinal)).toThrow(ScramError);
    expect(() => client.verifyServerFinal(serverFinal)).toThrow('server-final-message lacks a signature');
  });

  it('a server that does not know the password cannot forge its signature', () => {
    const client = new ScramClient('correct horse');
    const impostor = new ScramServer(verifier('something else', salt, 4096));
    expect(impostor.final(client.clientFinal(impostor.first(client.clientFirst())))).toBe('e=invalid-proof');
    // The impostor signs the real AuthMessage with the ServerKey it has, and claims success.
    expect(impostor.signature).toMatch(/^v=.{44}$/);
    expect(() => client.verifyServerFinal(impostor.signature)).toThrow('server signature does not match');
  });

  it.each([
    ['random bytes', `v=${randomBytes(32).toString('base64')}`],
    ['a short signature', `v=${randomBytes(16).toString('base64')}`],
    ['an empty signature', 'v='],
  ])('a forged server signature (%s) makes verifyServerFinal throw', (_name, forged) => {
    const { client, server } = exchange('pw', verifier('pw', salt, 4096));
    expect(server.accepted).toBe(true);
    expect(() => client.verifyServerFinal(forged)).toThrow(ScramError);
  });

  it('the genuine signature with one bit flipped is refused', () => {
    const { client, serverFinal } = exchange('pw', verifier('pw', salt, 4096));
    const sig = Buffer.from(serverFinal.slice(2), 'base64');
    sig[31]! ^= 1;
    expect(() => client.verifyServerFinal(`v=${sig.toString('base64')}`)).toThrow('server signature does not match');
  });

  it('verifyServerFinal before clientFinal throws', () => {
    expect(() => new ScramClient('pw').verifyServerFinal(`v=${randomBytes(32).toString('base64')}`)).toThrow(ScramError);
  });

  it.each([
    ['a different nonce', (_n: string) => 'r=AAAAAAAAAAAAAAAAAAAAAAAAserver,s=c2FsdA==,i=4096'],
    ['exactly the client nonce', (n: string) => `r=${n},s=c2FsdA==,i=4096`],
    ['a nonce the client nonce merely contains', (n: string) => `r=x${n}server,s=c2FsdA==,i=4096`],
    ['no nonce', (_n: string) => 's=c2FsdA==,i=4096'],
  ])('a server nonce that does not extend the client nonce throws (%s)', (_name, serverFirst) => {
    const client = new ScramClient('pw');
    const nonce = attrs(client.clientFirst().slice(3)).get('r')!;
    expect(() => client.clientFinal(serverFirst(nonce))).toThrow('server nonce does not extend the client nonce');
  });

  it.each(['s=c2FsdA==,i=0', 's=c2FsdA==,i=abc', 's=c2FsdA==,i=1.5', 'i=4096', 's=c2FsdA=='])(
    'a server-first-message with bad salt/iterations (%s) throws', (rest) => {
      const client = new ScramClient('pw');
      const nonce = attrs(client.clientFirst().slice(3)).get('r')!;
      expect(() => client.clientFinal(`r=${nonce}srv,${rest}`)).toThrow('server-first-message lacks salt or iteration count');
    });
});

describe('RFC 7677 test vector', () => {
  // RFC 7677 section 3: user "user", password "pencil".
  const clientNonce = 'rOprNGfwEbeRWgbNEkqO';
  const clientFirstBare = `n=user,r=${clientNonce}`;
  const serverFirst = 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096';
  const clientFinal = 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=';
  const serverFinal = 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=';

  it('the test verifier reproduces the RFC proof and signature', () => {
    const v = verifier('pencil', Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'), 4096);
    const server = new ScramServer(v, '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0');
    expect(server.first(`n,,${clientFirstBare}`)).toBe(serverFirst);
    expect(server.final(clientFinal)).toBe(serverFinal);
    expect(server.accepted).toBe(true);
  });

  it('ScramClient produces the RFC client-final and accepts the RFC server-final', () => {
    // The nonce is random and the username is "*" in ScramClient; pin both to the RFC's
    // values (test-only, via its private fields) so the whole computation is checked.
    const client = new ScramClient('pencil');
    Object.assign(client as unknown as Record<string, string>, { nonce: clientNonce, clientFirstBare });
    expect(client.clientFirst()).toBe(`n,,${clientFirstBare}`);
    expect(client.clientFinal(serverFirst)).toBe(clientFinal);
    expect(() => client.verifyServerFinal(serverFinal)).not.toThrow();
    expect(() => client.verifyServerFinal('v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=')).toThrow(ScramError);
  });
});
