// The HTML an approver's browser gets from an approval link: the confirmation
// form, the outcome, and refusals. Every value is escaped; the pages load
// nothing, run no script, cannot be framed, and post only to this server.

import type http from 'node:http';
import { shownStatement } from '../approvals/rules.js';
import type { ApprovalRequest } from '../approvals/types.js';
import type { Identity } from '../identity/types.js';

const CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const STYLE = 'body{font:15px/1.45 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}'
  + 'pre{background:#f4f4f4;padding:.75rem;white-space:pre-wrap;word-break:break-word}'
  + 'dt{font-weight:600;margin-top:.4rem}dd{margin-left:1rem}textarea{width:100%;min-height:4rem}'
  + 'button{font-size:1rem;padding:.5rem 1.2rem;margin-top:.6rem}.who{color:#555;font-size:.9rem}';

/** Sends a page; `cookies` are Set-Cookie values. */
export function sendPage(res: http.ServerResponse, status: number, title: string, body: string, cookies: string[] = []): void {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'content-security-policy': CSP,
    // same-origin, not no-referrer: with no-referrer a browser sends `Origin: null` on the form's post.
    'x-frame-options': 'DENY', 'referrer-policy': 'same-origin', 'x-content-type-options': 'nosniff',
    ...(cookies.length > 0 && { 'set-cookie': cookies }),
  }).end(`<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${esc(title)} · dbward</title><style>${STYLE}</style><h1>${esc(title)}</h1>${body}</html>`);
}

/** A refusal: what went wrong and what to do. */
export function refusalPage(res: http.ServerResponse, status: number, title: string, message: string, who: Identity | null = null, cookies: string[] = []): void {
  sendPage(res, status, title, `<p>${esc(message)}</p>${who ? signedInAs(who) : ''}`, cookies);
}

/** The request as an approver needs it to decide, and the form that posts the decision with the sign-in's CSRF token. */
export function confirmPage(res: http.ServerResponse, r: ApprovalRequest, action: 'approve' | 'deny', who: Identity, csrf: string, formAction: string): void {
  const verb = action === 'approve' ? 'Approve' : 'Deny';
  const reason = action === 'deny'
    ? '<label for="reason">Reason (the requester sees it)</label><textarea id="reason" name="reason" maxlength="2000" required></textarea>'
    : '<label for="reason">Reason (optional, e.g. a ticket)</label><textarea id="reason" name="reason" maxlength="2000"></textarea>';
  sendPage(res, 200, `${verb} request ${r.id}?`, `${details(r)}
<form method="post" action="${esc(formAction)}">
<input type="hidden" name="csrf" value="${esc(csrf)}">
${reason}
<button type="submit" name="decision" value="${action}">${verb} request ${esc(r.id)}</button>
</form>${signedInAs(who)}`);
}

/** After a decision: where the request stands now. */
export function decidedPage(res: http.ServerResponse, r: ApprovalRequest, action: 'approve' | 'deny', who: Identity): void {
  const approvals = r.decisions.filter((d) => d.decision === 'approve').length;
  const now = r.status === 'pending'
    ? `Your approval is recorded; the request waits for ${r.required - approvals} more approver(s) from ${r.approvers.join(', ')}.`
    : `The request is now <b>${esc(r.status)}</b>.`;
  sendPage(res, 200, `${action === 'approve' ? 'Approved' : 'Denied'}: request ${r.id}`, `<p>${r.status === 'pending' ? esc(now) : now}</p>${details(r)}${signedInAs(who)}`);
}

/** Without browser sign-in configured: the link is genuine, and this is the command that decides it. */
export function commandPage(res: http.ServerResponse, r: ApprovalRequest, action: 'approve' | 'deny'): void {
  sendPage(res, 200, `${action === 'approve' ? 'Approve' : 'Deny'} request ${r.id}`, `${details(r)}
<p>Approvers prove who they are with their own sign-in. Decide with:</p>
<pre>dbward approvals ${action} ${esc(r.id)} --reason "..."</pre>`);
}

function details(r: ApprovalRequest): string {
  const kind = r.requester.kind ? ` (${r.requester.kind}${r.requester.verified ? '' : ', unverified'})` : '';
  const decided = r.decisions.length === 0 ? 'nobody yet'
    : r.decisions.map((d) => `${esc(d.user)}: ${d.decision}${d.reason ? ` (${esc(d.reason)})` : ''}`).join('; ');
  return `<dl>
<dt>Requested by</dt><dd>${esc(r.requester.user)}${esc(kind)}</dd>
<dt>Target</dt><dd>${esc(r.target.name)} · ${esc(r.target.environment)} · database ${esc(r.target.database)}</dd>
<dt>Rule</dt><dd>${esc(r.rules.join(', ') || '(none)')}</dd>
<dt>Approvers</dt><dd>${r.required} from ${esc(r.approvers.join(', '))}; decided so far: ${decided}</dd>
<dt>Status</dt><dd>${esc(r.status)}; open until ${esc(r.expiresAt)}</dd>
<dt>Statement</dt><dd><pre>${esc(shownStatement(r))}</pre></dd>
</dl>`;
}

function signedInAs(who: Identity): string {
  return `<p class="who">Signed in as ${esc(who.user)} (${esc(who.issuer)}; groups: ${esc(who.groups.join(', ') || 'none')}).</p>`;
}

/** HTML-escaped text, attribute-safe. */
export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
