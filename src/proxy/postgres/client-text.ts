// How dbward reads the SQL text in a client's bytes: in the session's client_encoding,
// as the server will. Text the parser reads differently from the server could name a
// table or column no rule recognises, so where dbward cannot read the bytes exactly
// the statement is refused instead:
// - UTF8 (and SQL_ASCII, whose bytes the server checks against its own UTF-8) is read
//   as UTF-8, and bytes that are not valid UTF-8 are refused, as the server refuses them;
// - LATIN1 is read exactly (Node's latin1 is ISO 8859-1);
// - any other encoding the server allows may only carry ASCII text;
// - while a statement that may change client_encoding is in flight, the next ones too.

import { isUtf8 } from 'node:buffer';
import type { Analysis } from '../../analysis/facts.js';
import type { TextReader } from './frontend.js';

type Mode = 'utf8' | 'latin1' | 'ascii';

/** The session's reading of client text, following its client_encoding. */
export class ClientText {
  private mode: Mode = 'utf8';
  private encoding = 'UTF8';
  private changing = false;
  private problem: string | null = null;

  /** The server reported client_encoding (at login or after a change). */
  set(encoding: string): void {
    this.encoding = encoding;
    const e = encoding.toUpperCase().replace(/[-_\s]/g, '');
    this.mode = e === 'UTF8' || e === 'UNICODE' || e === 'SQLASCII' ? 'utf8' : e === 'LATIN1' || e === 'ISO88591' ? 'latin1' : 'ascii';
  }

  /** An admitted statement may change client_encoding: until the server is ready again, only ASCII is read. */
  noteStatement(analysis: Analysis): void {
    if (mayChangeEncoding(analysis)) this.changing = true;
  }

  /** The server is ready for the next request: any change it made has been reported. */
  ready(): void {
    this.changing = false;
  }

  /** Reads text; when the bytes cannot be read exactly, notes why (see `takeProblem`) and returns a best effort. */
  readonly read: TextReader = (b, start, end) => {
    const mode = this.changing ? 'ascii' : this.mode;
    if (mode === 'latin1') return b.toString('latin1', start, end);
    const s = b.toString('utf8', start, end);
    if (mode === 'utf8') {
      // U+FFFD is where invalid UTF-8 was, unless the client sent U+FFFD itself.
      if (s.includes('\uFFFD') && !isUtf8(b.subarray(start, end))) this.problem = 'statement text is not valid Unicode: it is not valid UTF-8';
      return s;
    }
    for (let i = start; i < end; i++) {
      if (b[i]! >= 0x80) {
        this.problem = this.changing
          ? 'statement text is not valid Unicode here: a statement that may change client_encoding is still running; send text beyond ASCII after it completes'
          : `statement text is not valid Unicode here: dbward reads only ASCII text in client_encoding ${this.encoding} (use UTF8 or LATIN1)`;
        break;
      }
    }
    return s;
  };

  /** Why the text read last cannot be trusted, once; null when it can. */
  takeProblem(): string | null {
    const p = this.problem;
    this.problem = null;
    return p;
  }
}

/** SET/RESET of client_encoding (SET NAMES too), RESET ALL, DISCARD ALL, set_config, or code dbward cannot see. */
function mayChangeEncoding(a: Analysis): boolean {
  if (!a.ok) return false;
  for (const s of a.statements) {
    const k = s.kinds[0];
    if (s.setting === 'client_encoding' || s.setting === 'all' || k === 'discard' || k === 'do' || k === 'call') return true;
    if (s.flags.includes('set_config') || s.flags.includes('dynamic_sql') || s.flags.includes('anonymous_code')) return true;
  }
  return false;
}
