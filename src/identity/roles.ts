// Group -> database role: which upstream role a session runs as. Pure, so the
// rule (first mapping whose group the identity has, else the default) is tested
// without a database.

import type { SessionIdentity } from './types.js';

/** One group-to-role entry, in the order written in the config. */
export interface RoleMapping {
  group: string;
  role: string;
}

/** The role for an identity: a role name, null for "no SET ROLE", or undefined when the identity may not connect. */
export function roleFor(identity: SessionIdentity, roles: readonly RoleMapping[], defaultRole: string | null): string | null | undefined {
  if (roles.length === 0) return null;
  const groups = identity.verified ? identity.groups : [];
  for (const m of roles) if (groups.includes(m.group)) return m.role;
  // A mapping exists, so running as the login role would grant more than any mapped group: refuse.
  return defaultRole ?? undefined;
}
