// SCRAM-SHA-256 client (RFC 5802 / RFC 7677) for dbward's own upstream login.
// The salted password is cached per (password, salt, iterations): PBKDF2 with
// 4096 rounds costs milliseconds, and connection setup must stay cheap.

import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';

const saltedCache = new Map<string, Buffer>();
const SALTED_CACHE_MAX = 64;

export class ScramError extends Error {
  readonly code = 'SCRAM_FAILED';
}

/** One SCRAM exchange: clientFirst() -> clientFinal(serverFirst) -> verifyServerFinal(serverFinal). */
export class ScramClient {
  private readonly nonce = randomBytes(18).toString('base64');
  private readonly clientFirstBare = `n=*,r=${this.nonce}`;
  private expectedServerSignature: Buffer | null = null;

  constructor(private readonly password: string) {}

  /** The client-first-message (gs2 header: no channel binding). */
  clientFirst(): string {
    return `n,,${this.clientFirstBare}`;
  }

  /** The client-final-message for the server-first-message. */
  clientFinal(serverFirst: string): string {
    const attrs = parseAttributes(serverFirst);
    const nonce = attrs.get('r');
    const salt = attrs.get('s');
    const iterations = Number(attrs.get('i'));
    if (!nonce || !nonce.startsWith(this.nonce) || nonce.length === this.nonce.length) {
      throw new ScramError('server nonce does not extend the client nonce');
    }
    if (!salt || !Number.isInteger(iterations) || iterations < 1) {
      throw new ScramError('server-first-message lacks salt or iteration count');
    }
    const salted = saltedPassword(this.password, salt, iterations);
    const clientKey = hmac(salted, 'Client Key');
    const storedKey = createHash('sha256').update(clientKey).digest();
    const withoutProof = `c=biws,r=${nonce}`;
    const authMessage = `${this.clientFirstBare},${serverFirst},${withoutProof}`;
    const clientSignature = hmac(storedKey, authMessage);
    const proof = Buffer.alloc(clientKey.length);
    for (let i = 0; i < proof.length; i++) proof[i] = clientKey[i]! ^ clientSignature[i]!;
    this.expectedServerSignature = hmac(hmac(salted, 'Server Key'), authMessage);
    return `${withoutProof},p=${proof.toString('base64')}`;
  }

  /** Checks the server's signature: a server that cannot prove it knows the password is not trusted. */
  verifyServerFinal(serverFinal: string): void {
    const v = parseAttributes(serverFinal).get('v');
    if (!v || !this.expectedServerSignature) throw new ScramError('server-final-message lacks a signature');
    const got = Buffer.from(v, 'base64');
    if (got.length !== this.expectedServerSignature.length || !timingSafeEqual(got, this.expectedServerSignature)) {
      throw new ScramError('server signature does not match');
    }
  }
}

function parseAttributes(msg: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of msg.split(',')) {
    const eq = part.indexOf('=');
    if (eq === 1) out.set(part[0]!, part.slice(2));
  }
  return out;
}

function hmac(key: Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

function saltedPassword(password: string, saltB64: string, iterations: number): Buffer {
  const key = createHash('sha256').update(`${password}\0${saltB64}\0${iterations}`).digest('base64');
  let salted = saltedCache.get(key);
  if (!salted) {
    salted = pbkdf2Sync(password.normalize('NFKC'), Buffer.from(saltB64, 'base64'), iterations, 32, 'sha256');
    if (saltedCache.size >= SALTED_CACHE_MAX) saltedCache.delete(saltedCache.keys().next().value!);
    saltedCache.set(key, salted);
  }
  return salted;
}
