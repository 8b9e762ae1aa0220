// A development identity provider: the real oidc-provider on loopback, for
// `npm start` and the tests. JWT access tokens through resource indicators,
// device flow, client credentials, the authorization-code flow of dbward's
// approval sign-in, demo accounts with groups. Nothing is mocked:
// user tokens come from driving the device flow over HTTP as a browser would.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair } from 'jose';
import Provider, { errors, type Configuration, type JWKS } from 'oidc-provider';

/** Resource indicator of dbward; its access tokens carry aud 'dbward'. */
export const DBWARD_RESOURCE = 'urn:dbward';
/** Another API on the same issuer, for wrong-audience tests (aud 'other-api'). */
export const OTHER_RESOURCE = 'urn:other-api';
/** Public device-flow client, as `dbward login` would use; it may refresh (offline_access). */
export const DEVICE_CLIENT_ID = 'dbward-cli';
/** Client-credentials client whose tokens say dbward_kind=agent and model=gpt-x. */
export const AGENT_CLIENT = { id: 'agent-bot', secret: 'agent-bot-secret-0123456789abcdef' } as const;
/**
 * Public client of dbward's approval sign-in (authorization code + PKCE). A native
 * client, so its loopback redirect URIs match on any port (RFC 8252 7.3): the admin
 * server may listen wherever it likes.
 */
export const APPROVALS_CLIENT_ID = 'dbward-approvals';
/** What the approval sign-in asks for: identity, groups, and an access token for dbward. */
export const APPROVALS_SCOPE = 'openid email profile groups dbward:connect';
/** Plain client-credentials client with no custom claims. */
export const SERVICE_CLIENT = { id: 'etl-service', secret: 'etl-service-secret-0123456789abcd' } as const;

/** Demo end-users, keyed by account id (the token's sub). */
export const ACCOUNTS: Record<string, { email: string; name: string; preferred_username: string; groups: string[] }> = {
  alice: { email: 'alice@example.com', name: 'Alice Admin', preferred_username: 'alice', groups: ['dba', 'developers'] },
  bob: { email: 'bob@example.com', name: 'Bob Builder', preferred_username: 'bob', groups: ['developers'] },
  carol: { email: 'carol@example.com', name: 'Carol Checker', preferred_username: 'carol', groups: ['dba', 'privacy-officers'] },
};

const RESOURCE_SCOPE = 'dbward:connect';
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

/** Options of startDevIssuer. */
export interface DevIssuerOptions {
  /** Access-token lifetime in seconds (default 3600). */
  accessTokenTTL?: number;
  /** Signing algorithm of access tokens (default ES256). */
  alg?: 'ES256' | 'RS256';
  /** Port to listen on (default 0: any free port). */
  port?: number;
}

/** A running issuer; close() when done. */
export interface DevIssuer {
  issuer: string;
  port: number;
  /** kid of the current signing key. */
  kid: string;
  /** A user access token obtained through the device flow (login + consent over HTTP). */
  mintToken(user: string, opts?: { resource?: string; extraClaims?: Record<string, unknown> }): Promise<string>;
  /** An access token from the client_credentials grant. */
  clientCredentialsToken(clientId: string, secret: string, scope?: string, resource?: string): Promise<string>;
  /** Replaces the signing key; the JWKS then publishes only the new key. */
  rotateKey(): Promise<void>;
  close(): Promise<void>;
}

async function signingJwks(alg: 'ES256' | 'RS256'): Promise<JWKS> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { keys: [{ ...jwk, alg, use: 'sig', kid: `k-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}` }] } as JWKS;
}

/** Claims the next user token gets on top of the account's (e.g. an nbf in the future). */
interface MintState { extra?: Record<string, unknown> }

function providerConfig(jwks: JWKS, opts: Required<DevIssuerOptions>, state: MintState): Configuration {
  const resourceServer = (audience: string) => ({
    scope: RESOURCE_SCOPE,
    audience,
    accessTokenTTL: opts.accessTokenTTL,
    accessTokenFormat: 'jwt' as const,
    jwt: { sign: { alg: opts.alg } },
  });
  return {
    jwks,
    // Explicit lifetimes keep the provider from logging a notice for each default.
    ttl: {
      AccessToken: opts.accessTokenTTL, ClientCredentials: opts.accessTokenTTL, IdToken: 3600,
      DeviceCode: 600, Interaction: 600, Session: 3600, Grant: 86400, RefreshToken: 86400,
    },
    clients: [
      {
        client_id: DEVICE_CLIENT_ID, token_endpoint_auth_method: 'none', application_type: 'native',
        grant_types: [DEVICE_GRANT, 'refresh_token'], response_types: [], redirect_uris: [],
      },
      {
        client_id: APPROVALS_CLIENT_ID, token_endpoint_auth_method: 'none', application_type: 'native',
        grant_types: ['authorization_code'], response_types: ['code'],
        redirect_uris: ['http://127.0.0.1/approvals/sign-in/callback', 'http://localhost/approvals/sign-in/callback'],
      },
      ...[AGENT_CLIENT, SERVICE_CLIENT].map((c) => ({
        client_id: c.id, client_secret: c.secret, grant_types: ['client_credentials'],
        response_types: [], redirect_uris: [], scope: RESOURCE_SCOPE,
      })),
    ],
    clientDefaults: { id_token_signed_response_alg: opts.alg },
    // offline_access is what makes the provider's default issueRefreshToken hand the
    // device client a refresh token (its grant types allow refresh_token).
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups', RESOURCE_SCOPE],
    claims: { openid: ['sub'], email: ['email'], profile: ['name', 'preferred_username'], groups: ['groups'] },
    async findAccount(_ctx, id) {
      const account = ACCOUNTS[id];
      if (!account) return undefined;
      return { accountId: id, claims: () => ({ sub: id, ...account }) };
    },
    features: {
      devInteractions: { enabled: true },
      deviceFlow: { enabled: true },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: (_ctx, _client, oneOf) => oneOf ?? DBWARD_RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo(_ctx, indicator) {
          if (indicator === DBWARD_RESOURCE) return resourceServer('dbward');
          if (indicator === OTHER_RESOURCE) return resourceServer('other-api');
          throw new errors.InvalidTarget();
        },
      },
    },
    // Access tokens (RFC 9068) carry no profile claims by default; dbward needs them in
    // the token itself because it never calls userinfo.
    async extraTokenClaims(_ctx, token) {
      if (token.kind === 'ClientCredentials') {
        return token.clientId === AGENT_CLIENT.id ? { dbward_kind: 'agent', model: 'gpt-x' } : undefined;
      }
      const account = token.accountId ? ACCOUNTS[token.accountId] : undefined;
      return account ? { ...account, ...state.extra } : undefined;
    },
  };
}

/** Minimal cookie jar: the provider's interaction cookies are scoped by path, but names are unique per step. */
class Browser {
  private readonly cookies = new Map<string, string>();
  async request(url: string, form?: Record<string, string>): Promise<Response> {
    const res = await fetch(url, {
      method: form ? 'POST' : 'GET',
      redirect: 'manual',
      headers: { cookie: [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ') },
      ...(form && { body: new URLSearchParams(form) }),
    });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const eq = pair!.indexOf('=');
      this.cookies.set(pair!.slice(0, eq), pair!.slice(eq + 1));
    }
    return res;
  }
}

function field(html: string, name: string): string | undefined {
  return new RegExp(`name="${name}" value="([^"]*)"`).exec(html)?.[1];
}

/** The JSON body of an OAuth endpoint's answer; its string members are all these flows read. */
async function json(res: Response): Promise<Record<string, string>> {
  const body = await res.json() as Record<string, string>;
  if (!res.ok) throw new Error(`issuer answered ${res.status}: ${JSON.stringify(body)}`);
  return body;
}

/**
 * Completes a pending device login as a browser would: enters the user code at the
 * verification page, confirms, logs in as accountId and consents. The device client's
 * next poll then gets its tokens.
 */
export async function completeDeviceLogin(verificationUri: string, userCode: string, accountId: string): Promise<void> {
  const b = new Browser();
  const form = await (await b.request(verificationUri)).text();
  const confirm = await (await b.request(verificationUri, { xsrf: field(form, 'xsrf')!, user_code: userCode })).text();
  let res = await b.request(verificationUri, { xsrf: field(confirm, 'xsrf')!, user_code: userCode, confirm: 'yes' });
  // Follow redirects; answer the login and consent prompts of the dev interactions.
  for (let step = 0; step < 20; step++) {
    const location = res.headers.get('location');
    if (location) { res = await b.request(new URL(location, verificationUri).href); continue; }
    const html = await res.text();
    const prompt = field(html, 'prompt');
    if (!prompt) {
      // The provider answers a finished flow with a success page; anything else (an
      // unknown code, an expired one) is an error page, which must not pass silently.
      if (!/success/i.test(html)) throw new Error(`device login did not complete: ${html.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 200)}`);
      return;
    }
    const action = new URL(/<form[^>]*action="([^"]+)"/.exec(html)![1]!, verificationUri).href;
    res = await b.request(action, prompt === 'login' ? { prompt, login: accountId, password: 'x' } : { prompt });
  }
  throw new Error('device login did not complete within 20 steps');
}

/** Runs the device flow end to end over HTTP and returns the access token. */
async function deviceFlow(base: string, accountId: string, resource: string): Promise<string> {
  const auth = await json(await fetch(`${base}/device/auth`, {
    method: 'POST',
    body: new URLSearchParams({ client_id: DEVICE_CLIENT_ID, scope: `openid email profile groups ${RESOURCE_SCOPE}`, resource }),
  }));
  await completeDeviceLogin(auth.verification_uri!, auth.user_code!, accountId);
  const token = await json(await fetch(`${base}/token`, {
    method: 'POST',
    body: new URLSearchParams({ grant_type: DEVICE_GRANT, device_code: auth.device_code!, client_id: DEVICE_CLIENT_ID }),
  }));
  return token.access_token!;
}

/** Starts an oidc-provider on 127.0.0.1 (random port) with the demo clients and accounts. */
export async function startDevIssuer(options: DevIssuerOptions = {}): Promise<DevIssuer> {
  const opts = { accessTokenTTL: options.accessTokenTTL ?? 3600, alg: options.alg ?? 'ES256', port: options.port ?? 0 };
  // The handler is swapped on rotation so the port (and thus the issuer URL) stays the same.
  let handler: http.RequestListener = (_req, res) => { res.statusCode = 503; res.end(); };
  const server = http.createServer((req, res) => handler(req, res));
  await new Promise<void>((resolve) => server.listen(opts.port, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const issuer = `http://127.0.0.1:${port}`;
  let kid = '';
  const state: MintState = {};
  const install = async () => {
    const jwks = await signingJwks(opts.alg);
    kid = jwks.keys[0]!.kid!;
    const provider = new Provider(issuer, providerConfig(jwks, opts, state));
    handler = provider.callback();
  };
  await install();
  return {
    issuer,
    port,
    get kid() { return kid; },
    async mintToken(user, o = {}) {
      const id = Object.keys(ACCOUNTS).find((k) => k === user || ACCOUNTS[k]!.email === user);
      if (!id) throw new Error(`unknown demo user ${user}`);
      state.extra = o.extraClaims;
      try {
        return await deviceFlow(issuer, id, o.resource ?? DBWARD_RESOURCE);
      } finally {
        state.extra = undefined;
      }
    },
    async clientCredentialsToken(clientId, secret, scope = RESOURCE_SCOPE, resource = DBWARD_RESOURCE) {
      const body = await json(await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`${clientId}:${secret}`).toString('base64')}` },
        body: new URLSearchParams({ grant_type: 'client_credentials', scope, resource }),
      }));
      return body.access_token!;
    },
    rotateKey: install,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
