// A small browser for the approval sign-in tests: fetch with redirects left to
// the test, and a cookie jar that keeps what a browser keeps (name and path;
// Max-Age=0 deletes; a cookie goes only to paths under its own). Every server
// here is on 127.0.0.1, and browsers share a host's cookies across ports, so
// the jar ignores the port as they do.

/** One Set-Cookie as received, attributes included, for assertions. */
export interface SetCookieSeen {
  name: string;
  value: string;
  attributes: Record<string, string>;
}

export class Browser {
  private readonly jar = new Map<string, { name: string; value: string; path: string }>();
  /** Every Set-Cookie received, in order. */
  readonly received: SetCookieSeen[] = [];

  /** GET (or POST `form`, urlencoded) without following redirects. */
  async request(url: string, o: { form?: Record<string, string>; headers?: Record<string, string> } = {}): Promise<Response> {
    const u = new URL(url);
    const cookie = [...this.jar.values()].filter((c) => pathMatches(u.pathname, c.path)).map((c) => `${c.name}=${c.value}`).join('; ');
    const res = await fetch(url, {
      method: o.form ? 'POST' : 'GET',
      redirect: 'manual',
      headers: { ...(cookie && { cookie }), ...o.headers },
      ...(o.form && { body: new URLSearchParams(o.form) }),
    });
    for (const line of res.headers.getSetCookie()) this.store(line, u);
    return res;
  }

  /** The value of cookie `name` now held, if any. */
  cookie(name: string): string | undefined {
    return [...this.jar.values()].find((c) => c.name === name)?.value;
  }

  /** Puts a cookie back as it was (replaying a captured one). */
  setCookie(name: string, value: string, path: string): void {
    this.jar.set(`${path}\0${name}`, { name, value, path });
  }

  private store(line: string, url: URL): void {
    const [pair, ...attrs] = line.split(';');
    const eq = pair!.indexOf('=');
    const name = pair!.slice(0, eq).trim();
    const value = pair!.slice(eq + 1).trim();
    const attributes: Record<string, string> = {};
    for (const a of attrs) {
      const i = a.indexOf('=');
      attributes[(i < 0 ? a : a.slice(0, i)).trim().toLowerCase()] = i < 0 ? '' : a.slice(i + 1).trim();
    }
    this.received.push({ name, value, attributes });
    const path = attributes.path?.startsWith('/') ? attributes.path : url.pathname.replace(/\/[^/]*$/, '') || '/';
    const key = `${path}\0${name}`;
    if (attributes['max-age'] !== undefined && Number(attributes['max-age']) <= 0) this.jar.delete(key);
    else this.jar.set(key, { name, value, path });
  }
}

function pathMatches(requestPath: string, cookiePath: string): boolean {
  return requestPath === cookiePath || (requestPath.startsWith(cookiePath) && (cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/'));
}

function field(html: string, name: string): string | undefined {
  return new RegExp(`name="${name}" value="([^"]*)"`).exec(html)?.[1];
}

/**
 * From `start` (the issuer URL dbward redirected to), follows the issuer's
 * redirects and answers its login and consent pages as `account`, as a person
 * would. Returns the first redirect that leaves the issuer (dbward's callback),
 * not followed, so a test can change it before the browser goes there.
 */
export async function signInAtIssuer(b: Browser, start: string, account: string): Promise<string> {
  const issuer = new URL(start).origin;
  let res = await b.request(start);
  for (let step = 0; step < 20; step++) {
    const location = res.headers.get('location');
    if (location) {
      const next = new URL(location, res.url || start);
      if (next.origin !== issuer) return next.href;
      res = await b.request(next.href);
      continue;
    }
    const html = await res.text();
    const prompt = field(html, 'prompt');
    if (!prompt) throw new Error(`the issuer answered ${res.status} without a prompt: ${html.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 300)}`);
    const action = new URL(/<form[^>]*action="([^"]+)"/.exec(html)![1]!, issuer).href;
    res = await b.request(action, { form: prompt === 'login' ? { prompt, login: account, password: 'x' } : { prompt } });
  }
  throw new Error('the sign-in did not leave the issuer within 20 steps');
}

/** The hidden CSRF token and the action of the confirmation form on a page. */
export function confirmForm(html: string): { csrf: string | undefined; action: string | undefined } {
  return { csrf: field(html, 'csrf'), action: /<form method="post" action="([^"]+)"/.exec(html)?.[1]?.replace(/&#38;/g, '&') };
}
