// The names a client gives its prepared statements and portals, as dbward last
// saw the server take them. Bind and Execute are judged by what these hold, so an
// entry must never stand for something other than what the server would run:
// it is set when its Parse or Bind is forwarded (whatever is pipelined behind it
// runs only if that succeeds), put back when the server refuses it, and dropped
// whenever the server's object of that name may be gone or replaced: SQL PREPARE,
// DEALLOCATE, DISCARD and CLOSE, and for portals the end of their transaction.

import type { Analysis } from '../../analysis/facts.js';
import type { Admission, Ruling } from '../session.js';
import type { RowLimit } from './tracker.js';

const MAX_STATEMENTS = 10_000;
const MAX_PORTALS = 1_000;

/** A prepared statement or a bound portal, as dbward judged it. */
export interface Prepared {
  text: string;
  decision: Ruling;
  /** A bound portal's row cap, shared by all its Executes. */
  limit?: RowLimit;
  /** A bound portal's parameters (format codes and values, copied), kept when its statement needs approval. */
  params?: Buffer;
  /** A bound portal's statement event, written when it was bound; its first Execute settles it. */
  admission?: Admission;
  /** A bound portal: the count of Binds before it, to tell which transaction it belongs to. */
  bound?: number;
}

/** The session's prepared statement and portal names. */
export class ProtocolNames {
  readonly statements = new Map<string, Prepared>();
  readonly portals = new Map<string, Prepared>();
  private binds = 0;

  /** Records a Parse being forwarded; returns what undoes it if the server refuses the Parse. */
  parsed(name: string, entry: Prepared): () => void {
    return set(this.statements, name, entry, MAX_STATEMENTS);
  }

  /** Records a Bind being forwarded; returns what undoes it if the server refuses the Bind. */
  bound(portal: string, entry: Prepared): () => void {
    entry.bound = this.binds++;
    return set(this.portals, portal, entry, MAX_PORTALS);
  }

  /** Binds so far: stamped on each request that may end a transaction. */
  get mark(): number {
    return this.binds;
  }

  /**
   * The server went idle after a request stamped `mark` (undefined: not known):
   * the transaction that held the portals bound before it is over, and they are
   * gone on the server. Calls `dropped` for each one forgotten.
   */
  idle(mark: number | undefined, dropped: (p: Prepared) => void): void {
    for (const [name, p] of this.portals) {
      if (mark !== undefined && (p.bound ?? 0) >= mark) continue;
      this.portals.delete(name);
      dropped(p);
    }
  }

  /** Forgets the names an admitted SQL statement string may replace or remove on the server. */
  sqlAdmitted(analysis: Analysis, dropped: (p: Prepared) => void): void {
    if (!analysis.ok) return;
    for (const s of analysis.statements) {
      switch (s.kinds[0]) {
        case 'prepare':
          // Statements and SQL PREPARE share the server's namespace: the name now holds what dbward did not see parsed.
          if (s.prepared !== undefined) this.statements.delete(s.prepared);
          break;
        case 'deallocate':
          if (s.prepared !== undefined) this.statements.delete(s.prepared);
          else this.statements.clear();
          break;
        case 'discard':
          this.statements.clear();
          this.idle(undefined, dropped);
          break;
        case 'close':
          // CLOSE name, or CLOSE ALL: a portal is a cursor to SQL, and a new cursor may take its name.
          this.idle(undefined, dropped);
          break;
        default:
      }
    }
  }
}

function set(map: Map<string, Prepared>, name: string, entry: Prepared, max: number): () => void {
  const before = map.get(name);
  map.delete(name);
  map.set(name, entry);
  if (map.size > max) map.delete(map.keys().next().value!);
  return () => {
    if (map.get(name) !== entry) return;
    // The server drops the unnamed one before it reads a new one, and keeps a named one on a clash.
    if (name === '' || before === undefined) map.delete(name);
    else map.set(name, before);
  };
}
