// Statements that carry a credential are marked `secret`, and no credential reaches the
// audit trail: not through the normalized text of a statement that parses, nor through
// scrubSecrets for one that does not, nor through the parser's error about it
// (scrubMessage). Every credential below is `hunter2`.

import { beforeAll, describe, expect, it } from 'vitest';
import { analyzePg, loadPgParser } from '../../src/analysis/pg/analyze.js';
import { fingerprintPg, normalizePg } from '../../src/analysis/pg/normalize.js';
import { pgFingerprint } from '../../src/analysis/pg/parser.js';
import { scrubMessage, scrubParsedSecrets, scrubSecrets } from '../../src/analysis/secrets.js';
import type { StatementFacts } from '../../src/analysis/facts.js';
import { PG_HOSTILE_STATEMENTS } from '../fixtures/pg-hostile-statements.js';
import { DEFAULT_CTX } from '../fixtures/pg-statements.js';

beforeAll(async () => {
  await loadPgParser();
});

function facts(sql: string): StatementFacts[] {
  const a = analyzePg(sql, DEFAULT_CTX);
  if (!a.ok) throw new Error(`${sql}: ${a.error}`);
  return a.statements;
}

const SECRET: readonly string[] = [
  "CREATE ROLE app LOGIN PASSWORD 'hunter2'",
  "CREATE USER app WITH PASSWORD 'hunter2' VALID UNTIL 'infinity'",
  "ALTER USER app WITH ENCRYPTED PASSWORD 'hunter2'",
  "ALTER ROLE app PASSWORD E'hunter2'",
  'ALTER ROLE app PASSWORD $$hunter2$$',
  // What psql's \password sends.
  "ALTER USER app PASSWORD 'SCRAM-SHA-256$4096:hunter2$hunter2:hunter2'",
  "CREATE USER MAPPING FOR app SERVER remote OPTIONS (user 'app', password 'hunter2')",
  "CREATE USER MAPPING IF NOT EXISTS FOR CURRENT_USER SERVER remote OPTIONS (PASSWORD 'hunter2')",
  "ALTER USER MAPPING FOR app SERVER remote OPTIONS (SET password 'hunter2')",
  "ALTER USER MAPPING FOR PUBLIC SERVER remote OPTIONS (ADD sslpassword 'hunter2')",
  "CREATE SERVER remote FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'db', password 'hunter2')",
  'ALTER SERVER remote OPTIONS (ADD "password" \'hunter2\')',
  "CREATE SERVER odbc FOREIGN DATA WRAPPER odbc_fdw OPTIONS (odbc_DSN 'x', odbc_PWD 'hunter2')",
  "CREATE SERVER mysql FOREIGN DATA WRAPPER mysql_fdw OPTIONS (dsn 'host=db user=app password=hunter2')",
  "SELECT dblink_connect('host=db user=app password=hunter2')",
  "SELECT dblink_connect('conn', 'dbname=app PASSWORD = hunter2')",
  "SELECT dblink_connect_u('conn', 'dbname=app password=hunter2')",
  "SELECT * FROM dblink('host=db password=hunter2', 'SELECT 1') AS t(a int)",
  "SELECT dblink_exec('host=db password=hunter2', 'DROP TABLE t')",
  "SELECT dblink_send_query('host=db password=hunter2', 'SELECT 1')",
  "SELECT extensions.dblink_connect('postgresql://app:hunter2@db/app')",
  "SELECT 1 WHERE EXISTS (SELECT dblink_exec('host=db password=hunter2', 'x'))",
  "CREATE VIEW v AS SELECT * FROM dblink('host=db password=hunter2', 'SELECT 1') AS t(a int)",
  "PREPARE p AS SELECT dblink_connect('host=db password=hunter2')",
  "EXPLAIN SELECT dblink_connect('host=db password=hunter2')",
  "DO $$BEGIN EXECUTE format('ALTER ROLE app PASSWORD %L', 'hunter2'); END$$",
  "DO LANGUAGE plpgsql 'BEGIN PERFORM dblink_connect(''password=hunter2''); END'",
  "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $f$BEGIN EXECUTE 'ALTER ROLE app PASSWORD ''hunter2'''; END$f$",
  "CREATE PROCEDURE p() LANGUAGE sql AS $$SELECT dblink_exec('password=hunter2', 'x')$$",
  "CREATE SUBSCRIPTION sub CONNECTION 'host=db password=hunter2' PUBLICATION pub",
  "ALTER SUBSCRIPTION sub CONNECTION 'host=db password=hunter2'",
  "COPY t FROM PROGRAM 'PGPASSWORD=hunter2 psql -h db -c \"COPY x TO STDOUT\"'",
  "SET app.password = 'hunter2'",
  "SET app.password = U&'hunter\\0032' UESCAPE '!'",
  "ALTER SYSTEM SET app.db_password TO 'hunter2'",
  // Out of quotes, where libpg_query does not normalize.
  'ALTER SYSTEM SET app.password = hunter2',
  'ALTER ROLE app IN DATABASE db SET app.password = "hunter2"',
  'ALTER DATABASE db SET app.api_secret = 12345678; SELECT 1',
  // ALTER ROLE/DATABASE ... SET keep a value out of quotes as written: TO names it as = does.
  'ALTER ROLE app SET app.password TO hunter2',
  'ALTER DATABASE db SET app.password TO hunter2',
  'ALTER FUNCTION f() SET app.password TO hunter2',
  'SET LOCAL app.password TO hunter2',
  "SELECT set_config('app.password', 'hunter2', false)",
  // Tokens and keys are credentials too.
  "SET app.api_token = 'hunter2'",
  "ALTER ROLE app SET app.api_key TO 'hunter2'",
  "ALTER USER MAPPING FOR app SERVER remote OPTIONS (ADD private_key 'hunter2')",
];

describe('StatementFacts.secret', () => {
  it.each(SECRET)('marks %s', (sql) => {
    const [s] = facts(sql);
    expect(s!.secret).toBe(true);
  });

  it.each(SECRET)('records no credential in the normalized text or fingerprint input of %s', (sql) => {
    const normalized = normalizePg(sql);
    expect(normalized).not.toBeNull();
    expect(normalized).not.toMatch(/hunter2/);
    expect(fingerprintPg(sql)).toMatch(/^[0-9a-f]{16}$/);
    expect(scrubParsedSecrets(sql)).not.toMatch(/hunter2/);
    expect(scrubSecrets(sql)).not.toMatch(/hunter2/);
  });

  it.each([
    // PASSWORD NULL removes a password: the text carries none.
    'ALTER ROLE app PASSWORD NULL',
    'CREATE ROLE app WITH LOGIN PASSWORD NULL',
    // A column named password is data, not a credential; redact_literals covers its values.
    'SELECT password FROM users',
    "UPDATE users SET password_hash = 'x' WHERE id = 1",
    "INSERT INTO users (name, password) VALUES ('bob', crypt('x', gen_salt('bf')))",
    "SELECT * FROM users WHERE password = 'x'",
    // Options and settings named after passwords that hold none.
    "SET password_encryption = 'scram-sha-256'",
    "ALTER SERVER remote OPTIONS (ADD password_required 'false')",
    "ALTER USER MAPPING FOR app SERVER remote OPTIONS (ADD passfile '/var/lib/pgpass')",
    // A connection string without a password, a URI without one.
    "SELECT dblink_connect('host=db user=app')",
    "SELECT dblink_connect('postgresql://app@db:5432/app')",
    "CREATE SUBSCRIPTION sub CONNECTION 'host=db user=rep' PUBLICATION pub",
    'DO $$BEGIN PERFORM 1; END$$',
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "COMMENT ON ROLE app IS 'service account'",
    // A column named token is data, as a column named password is.
    "SELECT token FROM sessions WHERE token = 'x'",
  ])('does not mark %s', (sql) => {
    for (const s of facts(sql)) expect(s.secret).toBeUndefined();
  });

  it('marks only the statements of a multi-statement text that carry one', () => {
    const ss = facts("SELECT 1; CREATE ROLE app PASSWORD 'hunter2'; SELECT password FROM users; SELECT dblink_connect('password=hunter2')");
    expect(ss.map((s) => s.secret === true)).toEqual([false, true, false, true]);
    expect(normalizePg(ss[1]!.text)).toBe('CREATE ROLE app PASSWORD $1');
  });

  it('marks EXECUTE of a PREPAREd statement that handles a credential: its arguments may be the credential', () => {
    const ss = facts("PREPARE setpw(text) AS SELECT set_config('app.password', $1, false); EXECUTE setpw('hunter2')");
    expect(ss.map((s) => s.secret === true)).toEqual([true, true]);
    expect(ss[1]!.kinds).toEqual(['execute', 'select']);
  });
});

describe('scrubParsedSecrets (text that parses)', () => {
  it.each([
    "UPDATE users SET password = crypt('x', gen_salt('bf')) WHERE id = $1",
    'SELECT * FROM users WHERE password = $1',
    'SELECT password, name, email FROM users',
    'ALTER TABLE users RENAME COLUMN password TO pwd_hash',
    'ALTER TABLE users ADD COLUMN password_hash text NOT NULL DEFAULT \'\'',
    'CREATE INDEX ON users (password)',
    'UPDATE users SET password = DEFAULT;',
    // TO after a setting's name introduces its value; after other names it does not.
    'GRANT SET ON PARAMETER app.password TO app',
    "ALTER TABLE users ALTER COLUMN password SET DEFAULT 'x'",
    'UPDATE t SET a = 1, password_hash = 2 WHERE x = 3',
  ])('leaves the fingerprint of %s as libpg_query computes it', (sql) => {
    expect(fingerprintPg(sql)).toMatch(/^[0-9a-f]{16}$/);
    expect(fingerprintPg(sql)).toBe(pgFingerprint(sql));
  });

  it('leaves the fingerprint of every hostile-statement fixture that carries no credential', () => {
    for (const { sql } of PG_HOSTILE_STATEMENTS) {
      const a = analyzePg(sql, DEFAULT_CTX);
      if (!a.ok) continue;
      const fp = fingerprintPg(sql);
      if (a.statements.some((st) => st.secret)) expect(fp, sql).toMatch(/^[0-9a-f]{16}$/);
      else expect(fp, sql).toBe(pgFingerprint(sql));
    }
  });
});

describe('scrubSecrets (text that does not parse)', () => {
  it.each([
    // The literal after PASSWORD, any quoting.
    ["ALTER ROLE app PASSWORD 'hunter2' VALID UNTILL 'x'", "ALTER ROLE app PASSWORD '***' VALID UNTILL 'x'"],
    ["ALTER USER app WITH ENCRYPTED PASSWORD E'hun\\'ter2' oops", "ALTER USER app WITH ENCRYPTED PASSWORD E'***' oops"],
    ['ALTER ROLE app password $$hunter2$$ oops', "ALTER ROLE app password '***' oops"],
    ['ALTER ROLE app PASSWORD $pw$hun$$ter2$pw$ oops', "ALTER ROLE app PASSWORD '***' oops"],
    ["ALTER ROLE app PASSWORD U&'hunter2' oops", "ALTER ROLE app PASSWORD U&'***' oops"],
    // Written for backslash escapes: the literal runs to its later end.
    ["ALTER ROLE app PASSWORD 'hun\\'ter2' oops", "ALTER ROLE app PASSWORD '***' oops"],
    // A literal continued on the next line is one value.
    ["ALTER ROLE app PASSWORD 'hun'\n  'ter2' oops", "ALTER ROLE app PASSWORD '***'\n  '***' oops"],
    ["ALTER ROLE app PASSWORD 'hunter2", "ALTER ROLE app PASSWORD '***'"],
    ['ALTER ROLE app PASSWORD $$hunter2', "ALTER ROLE app PASSWORD '***'"],
    // Options and settings named after a credential.
    ["CREATE SERVER s OPTIONS (host 'db', password 'hunter2' oops", "CREATE SERVER s OPTIONS (host 'db', password '***' oops"],
    ["CREATE USER MAPPING FOR app OPTIONS (\"password\" 'hunter2', sslpassword 'hunter2'", "CREATE USER MAPPING FOR app OPTIONS (\"password\" '***', sslpassword '***'"],
    ["SET app.password TO 'hunter2' oops", "SET app.password TO '***' oops"],
    ["SELECT set_config('app.password', 'hunter2' oops", "SELECT set_config('***', '***' oops"],
    // Connection strings and URIs with a password, comments that mention one.
    ["SELECT dblink_connect('host=db password=hunter2' oops", "SELECT dblink_connect('***' oops"],
    ["SELECT dblink('postgres://app:hunter2@db/app', 'x' oops", "SELECT dblink('***', '***' oops"],
    ['SELECT 1 -- my password is hunter2\nFRM t', 'SELECT 1 -- ***\nFRM t'],
    ['SELECT 1 /* password: /* hunter2 */ */ FRM t', 'SELECT 1 /* *** */ FRM t'],
    // Out of its quotes after password= (a backslash-escaped quote read the other way).
    ["SELECT 'a\\' password=hunter2' oops", "SELECT 'a\\' password=***"],
    // A value out of quotes, which the parser refuses: everything up to the next , ) or ;.
    ['ALTER ROLE app PASSWORD hunter2', 'ALTER ROLE app PASSWORD ***'],
    ['CREATE USER app PASSWORD "hunter2"', 'CREATE USER app PASSWORD ***'],
    ['ALTER USER app WITH ENCRYPTED PASSWORD hunter2 VALID UNTIL x', 'ALTER USER app WITH ENCRYPTED PASSWORD ***'],
    ['ALTER ROLE app PASSWORD\n  hunter2', 'ALTER ROLE app PASSWORD\n  ***'],
    ['ALTER ROLE app PASSWORD hun-ter2.x', 'ALTER ROLE app PASSWORD ***'],
    ['ALTER ROLE app PASSWORD 2hunter2', 'ALTER ROLE app PASSWORD ***'],
    ['ALTER ROLE app PASSWORD !hunter2', 'ALTER ROLE app PASSWORD ***'],
    ['ALTER ROLE app PASSWORD hun ter2', 'ALTER ROLE app PASSWORD ***'],
    ["ALTER ROLE app PASSWORD hun'ter2", 'ALTER ROLE app PASSWORD ***'],
    ['ALTER ROLE app PASSWORD hun(ter2) x; SELECT 1', 'ALTER ROLE app PASSWORD ***; SELECT 1'],
    ['ALTER ROLE app PASSWORD U&"hunter2"', 'ALTER ROLE app PASSWORD ***'],
    ["ALTER ROLE app PASSWORD 'x' PASSWORD hunter2", "ALTER ROLE app PASSWORD '***' PASSWORD ***"],
    ['ALTER ROLE app PASSWORD = hunter2', 'ALTER ROLE app PASSWORD = ***'],
    ['CREATE USER MAPPING FOR app SERVER s OPTIONS (password hunter2)', 'CREATE USER MAPPING FOR app SERVER s OPTIONS (password ***)'],
    ["CREATE USER MAPPING FOR app SERVER s OPTIONS (password \"hunter2\", user 'x')", "CREATE USER MAPPING FOR app SERVER s OPTIONS (password ***, user 'x')"],
    ['SET app.password = hunter2 oops', 'SET app.password = ***'],
    ['SET app.password TO "hunter2" oops', 'SET app.password TO ***'],
    ['SET app.password hunter2', 'SET app.password ***'],
    ['CREATE SUBSCRIPTION s CONNECTION host=db password=hunter2 PUBLICATION p', 'CREATE SUBSCRIPTION s CONNECTION host=db password=***'],
    ['SELECT dblink_connect(host=db password=hunter2)', 'SELECT dblink_connect(host=db password=***)'],
  ])('%s', (sql, want) => {
    expect(scrubSecrets(sql)).toBe(want);
    expect(scrubSecrets(sql)).not.toMatch(/hunter2|ter2/);
  });

  it('scrubs each statement of a multi-statement text and leaves the others as written', () => {
    expect(scrubSecrets("SELECT 'a'; ALTER ROLE app PASSWORD 'hunter2'; SELECT dblink_connect('password=hunter2'); SELECT 'b' FRM"))
      .toBe("SELECT 'a'; ALTER ROLE app PASSWORD '***'; SELECT dblink_connect('***'); SELECT 'b' FRM");
  });

  it('leaves a text without credentials unchanged (the same string)', () => {
    for (const sql of [
      'SELECT password FROM users WHERE id = 1 FRM',
      "SELECT 'it''s', E'\\\\', $$x$$, $1, \"Quoted\", U&\"d\\0061t\\+000061\" FRM",
      "ALTER ROLE app PASSWORD NULL oops",
      // A column named password, followed by SQL rather than a value.
      'SELECT password, password_hash FROM users ORDER BY password DESC FRM',
      "SELECT * FROM users WHERE password IS NULL AND name LIKE 'a%' FRM",
      '',
    ]) {
      expect(scrubSecrets(sql)).toBe(sql);
    }
  });

  it('never throws, on non-strings and on random text', () => {
    expect(scrubSecrets(undefined as unknown as string)).toBe('');
    expect(scrubSecrets(42 as unknown as string)).toBe('');
    const tokens = ["'", "E'", 'U&\'', 'U&"', '"', '$$', '$a$', '$1', '--', '/*', '*/', '\n', ' ', '\\', '=', ',', 'password', 'TO', 'x', 'é', '\uD800', '://u:p@'];
    let seed = 1;
    for (let i = 0; i < 2_000; i++) {
      let s = '';
      for (let j = 0; j < 30; j++) {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
        s += tokens[seed % tokens.length];
      }
      expect(typeof scrubSecrets(s)).toBe('string');
      expect(typeof scrubParsedSecrets(s)).toBe('string');
    }
  });

  it('scans hostile text of 1 MB in linear time', () => {
    const MB = 1 << 20;
    for (const unit of ["'", "E'\\'", '$a$', '/*', '--\n', '\\', 'password=', 'password ', "password='", 'password==a b', '://u:', '"', ',', 'x', '=']) {
      const s = unit.repeat(Math.ceil(MB / unit.length));
      // Also right after `password =`, where a value may follow out of quotes.
      for (const text of [s, `password =${s} y`]) {
        expect(typeof scrubSecrets(text)).toBe('string');
        expect(typeof scrubParsedSecrets(text)).toBe('string');
      }
    }
    // Every opening quote after PASSWORD is read both ways, for the literal's later end.
    const s = "ALTER ROLE r PASSWORD '" + "\\'".repeat(MB / 2);
    expect(scrubSecrets(s)).toBe("ALTER ROLE r PASSWORD '***'");
  });
});

// What reaches the trail of a text the parser refuses: the text scrubbed, and the
// parser's error, which quotes the token it stopped at (often the password itself).
const UNPARSABLE: readonly string[] = [
  'ALTER ROLE app PASSWORD hunter2',
  'CREATE USER app PASSWORD "hunter2"',
  "CREATE ROLE app PASSWORD 'hunter2",
  'CREATE ROLE app PASSWORD $$hunter2',
  "ALTER ROLE app PASSWORD E'hunter2",
  'ALTER USER app WITH ENCRYPTED PASSWORD hunter2 VALID UNTIL x',
  'ALTER ROLE app PASSWORD 2hunter2',
  'ALTER ROLE app PASSWORD hunter2-x',
  "ALTER ROLE app PASSWORD 'x' PASSWORD hunter2",
  'CREATE USER MAPPING FOR app SERVER s OPTIONS (password hunter2)',
  'CREATE USER MAPPING FOR app SERVER s OPTIONS (password "hunter2")',
  "CREATE USER MAPPING FOR app SERVER s OPTIONS (password 'hunter2",
  "CREATE USER MAPPING FOR app SERVER s OPTIONS (user 'a' password 'hunter2')",
  "CREATE SUBSCRIPTION sub CONNECTION 'host=db password=hunter2 PUBLICATION pub",
  'CREATE SUBSCRIPTION sub CONNECTION host=db password=hunter2 PUBLICATION pub',
  "CREATE SUBSCRIPTION sub CONNECTION 'host=db password=hunter2' PUBLICATON pub",
  "SELECT set_config('app.password', 'hunter2', false",
  'SET app.password = hunter2 oops',
  "SET app.password TO 'hunter2",
  'SET app.password TO "hunter2" oops',
  'ALTER SYSTEM SET app.password hunter2',
  "SELECT dblink_connect('host=db password=hunter2",
  'SELECT dblink_connect(host=db password=hunter2)',
  "SELECT dblink_connect('postgres://u:hunter2@db/x' oops",
];

describe('a text that does not parse', () => {
  it.each(UNPARSABLE)('records neither the text nor the error of %s with the password', (sql) => {
    const a = analyzePg(sql, DEFAULT_CTX);
    expect(a.ok).toBe(false);
    if (a.ok) return;
    expect(scrubSecrets(sql)).not.toMatch(/hunter2/);
    expect(scrubMessage(sql, a.error)).not.toMatch(/hunter2/);
  });

  it('keeps what the error says, without what it quotes', () => {
    const cases: [string, string][] = [
      ['ALTER ROLE app PASSWORD hunter2', 'syntax error at or near "***"'],
      ['CREATE USER app PASSWORD "hunter2"', 'syntax error at or near "***"'],
      ["CREATE ROLE app PASSWORD 'hunter2", 'unterminated quoted string at or near "***"'],
      ['ALTER ROLE app PASSWORD 2hunter2', 'trailing junk after numeric literal at or near "***"'],
      ["SELECT set_config('app.password', 'hunter2', false", 'syntax error at end of input'],
    ];
    for (const [sql, want] of cases) {
      const a = analyzePg(sql, DEFAULT_CTX);
      expect(a.ok ? null : scrubMessage(sql, a.error), sql).toBe(want);
    }
  });

  it('leaves the error about a text that mentions no credential as it is', () => {
    const sql = 'SELECT name FRM users';
    const a = analyzePg(sql, DEFAULT_CTX);
    expect(a.ok ? null : scrubMessage(sql, a.error)).toBe('syntax error at or near "users"');
  });

  it('drops what an error puts in quotes or parentheses, whatever its form', () => {
    const sql = 'ALTER ROLE app PASSWORD x';
    expect(scrubMessage(sql, 'option "a" and "hunter2" not recognized')).toBe('option "***" not recognized');
    expect(scrubMessage(sql, 'statement could not be analyzed (hunter2 "x")')).toBe('statement could not be analyzed (***)');
    expect(scrubMessage(sql, 'cut short at "hunter2')).toBe('cut short at "***"');
    expect(scrubMessage(sql, 'statement text contains a NUL character')).toBe('statement text contains a NUL character');
    expect(scrubMessage('SELECT 1', 42 as unknown as string)).toBe('');
    expect(scrubMessage(undefined as unknown as string, 'near "hunter2"')).toBe('near "***"');
  });
});

// A value given to a setting named like a credential, in every form PostgreSQL
// accepts: libpg_query's normalization replaces only constants, so a value written as
// an identifier, a column, an expression or a call would stay in the normalized text.
describe('the value of a credential-named setting', () => {
  // set_config(name, value, is_local) with a value that is not a constant.
  const SET_CONFIG: readonly string[] = [
    "SELECT set_config('app.password', hunter2, false)",
    "SELECT set_config('app.password', hunter2)",
    "SELECT set_config('app.password', a.hunter2, false)",
    'SELECT set_config(\'app.password\', "hunter2", false)',
    "SELECT set_config('app.password', (hunter2), false)",
    "SELECT set_config('app.password', hunter2 || 'x', false)",
    "SELECT set_config('app.password', 'x' || hunter2, false)",
    "SELECT set_config('app.password', 'hun' || 'ter2', false)",
    "SELECT set_config('app.password', hunter2::text, false)",
    "SELECT set_config('app.password', 'hunter2'::text, false)",
    "SELECT set_config('app.password', CAST('hunter2' AS text), false)",
    "SELECT set_config('app.password', md5('hunter2'), false)",
    "SELECT set_config('app.password', hunter2(), false)",
    "SELECT set_config('app.password', ARRAY[hunter2, 'x']::text, false)",
    "SELECT set_config('app.password', (SELECT hunter2 FROM t), false)",
    "SELECT set_config('app.password', /* why */ hunter2, false)",
    "SELECT set_config('app.password', $$hunter2$$, false)",
    "SELECT set_config('app.password', E'hunter2', false)",
    // The setting's name in odd forms.
    "SELECT set_config('App.PassWord', hunter2, false)",
    "SELECT set_config(' app.pwd ', hunter2, false)",
    "SELECT set_config(E'app.pass\\x77ord', hunter2, false)",
    "SELECT set_config('app.api_token', hunter2, false)",
    // The call in odd forms.
    "SELECT pg_catalog.set_config('app.password', hunter2, false)",
    'SELECT "set_config"(\'app.password\', hunter2, false)',
    "SELECT SET_CONFIG /* why */ ('app.password', hunter2, false)",
    "SELECT set_config(setting_name => 'app.password', new_value => hunter2, is_local => false)",
    "SELECT set_config(new_value => hunter2, setting_name => 'app.password', is_local => false)",
    "SELECT set_config('app.password', new_value => hunter2, is_local => false)",
    "SELECT * FROM set_config('app.password', hunter2, false)",
    "SELECT 1 FROM t WHERE set_config('app.password', hunter2, false) IS NOT NULL",
    "SELECT set_config('app.password', hunter2, false); SELECT 1",
    "SELECT 'é', set_config('app.password', hunter2, false)",
    "PREPARE p AS SELECT set_config('app.password', hunter2, false)",
    // One call names a credential; another's name cannot be read, so neither can its value be told safe.
    "SELECT set_config('app.password', 'x', false), set_config($1, hunter2, false)",
    "SELECT set_config('app.password', 'x', false), set_config('app.' || 'password', hunter2, false)",
  ];
  // SET and ALTER ... SET: values are always constants there (a bare word is a string).
  const SET: readonly string[] = [
    'SET app.password = hunter2',
    'SET app.password TO "hunter2"',
    'SET LOCAL app.password = hunter2',
    'SET SESSION app.password TO hunter2',
    'SET "App.PassWord" = hunter2',
    'SET app."PassWord" TO $$hunter2$$',
    "SET app.api_token = E'hunter2'",
    'ALTER ROLE app SET app.password = hunter2',
    'ALTER ROLE ALL SET app.password TO "hunter2"',
    'ALTER ROLE app IN DATABASE db SET "App.PassWord" = hunter2',
    'ALTER USER app SET app.api_token TO hunter2',
    'ALTER DATABASE db SET app.password = "hunter2"',
    'ALTER SYSTEM SET app.password = hunter2',
    'ALTER SYSTEM SET app.password TO "hunter2"',
    'CREATE FUNCTION f() RETURNS int LANGUAGE sql SET app.password = hunter2 AS $$SELECT 1$$',
  ];

  it.each([...SET_CONFIG, ...SET])('marks %s and records no trace of the value', (sql) => {
    expect(facts(sql).some((s) => s.secret === true)).toBe(true);
    const normalized = normalizePg(sql);
    expect(normalized).not.toBeNull();
    expect(normalized).not.toMatch(/hunter2|ter2/);
    // Were the parser restarting, the text would be scrubbed as one that does not parse.
    expect(scrubSecrets(sql)).not.toMatch(/hunter2|ter2/);
  });

  it.each([...SET_CONFIG, ...SET])('fingerprints %s without its value: a guess cannot be confirmed', (sql) => {
    const fp = fingerprintPg(sql);
    expect(fp).toMatch(/^[0-9a-f]{16}$/);
    expect(fingerprintPg(sql.replaceAll('hunter2', 'guess77').replaceAll("'hun'", "'gue'"))).toBe(fp);
  });

  it('records no value of a SET that gives several', () => {
    expect(normalizePg('SET app.password = hunter2, "hunter2", 12345678')).toBe('SET app.password = $1, $2, $3');
  });

  it('records a set_config value as one parameter, and keeps a parameter given as the value', () => {
    expect(normalizePg("SELECT set_config('app.password', hunter2, false)")).toBe('SELECT set_config($1, $2, $3)');
    expect(normalizePg("SELECT set_config('app.password', md5(hunter2 || 'x'), false) FROM t")).toBe('SELECT set_config($1, $2, $3) FROM t');
    expect(normalizePg("SELECT set_config(new_value => hunter2, setting_name => 'App.PassWord', is_local => false)"))
      .toBe('SELECT set_config(new_value => $1, setting_name => $2, is_local => $3)');
    expect(normalizePg("SELECT set_config('app.password', $1, false)")).toBe('SELECT set_config($2, $1, $3)');
  });

  it('leaves the value of a setting that is no credential where normalization leaves it', () => {
    expect(normalizePg("SELECT set_config('app.user', current_user, false)")).toBe('SELECT set_config($1, current_user, $2)');
    expect(normalizePg("SELECT set_config('app.tenant', t.id::text, true) FROM t")).toBe('SELECT set_config($1, t.id::text, $2) FROM t');
  });

  // The same forms in text that does not parse: each value out of quotes up to the next , ) or ;.
  it.each([
    ["SELECT set_config('app.password', hunter2", "SELECT set_config('***', ***"],
    ["SELECT set_config('app.password', hunter2, false", "SELECT set_config('***', ***, false"],
    ['SELECT set_config(\'app.password\', "hunter2"', "SELECT set_config('***', ***"],
    ["SELECT set_config('app.password', a.hunter2 oops", "SELECT set_config('***', ***"],
    ["SELECT set_config('app.password', 'hunter2'::text oops", "SELECT set_config('***', ***"],
    ["SELECT set_config('app.password', 'hun' || 'ter2' oops", "SELECT set_config('***', ***"],
    ["SELECT set_config('app.password', md5('hunter2') oops", "SELECT set_config('***', ***"],
    ["SELECT set_config('app.password', ARRAY['hun', 'ter2'] oops", "SELECT set_config('***', ***"],
    ["SELECT set_config('app.password', 'hun'ter2', false)", "SELECT set_config('***', ***"],
    ["SELECT set_config('app.password', $$hunter2", "SELECT set_config('***', '***'"],
    ["SELECT set_config('app.password', E'hunter2", "SELECT set_config('***', '***'"],
    ["SELECT set_config('App.PassWord', hunter2", "SELECT set_config('***', ***"],
    ["SELECT set_config(' app.pwd ', hunter2", "SELECT set_config(' app.pwd ', ***"],
    ["SELECT set_config('app.api_token', 'hunter2' oops", "SELECT set_config('app.api_token', '***' oops"],
    ["SELECT pg_catalog.set_config('app.password', hunter2 oops", "SELECT pg_catalog.set_config('***', ***"],
    ['SELECT "set_config"(\'app.password\', hunter2 oops', 'SELECT "set_config"(\'***\', ***'],
    ["SELECT set_config /* why */ ('app.password', hunter2 oops", "SELECT set_config /* why */ ('***', ***"],
    // A name that is not one plain literal: nothing of the call can be told safe.
    ["SELECT set_config($1, 'hunter2'", 'SELECT set_config(***'],
    ["SELECT set_config(lower('APP.PASSWORD'), 'hunter2' oops", 'SELECT set_config(***'],
    ["SELECT set_config('app.' || 'password', hunter2 oops", 'SELECT set_config(***'],
    ["SELECT set_config(E'app.pass\\x77ord', hunter2 oops", 'SELECT set_config(***'],
    ["SELECT set_config(new_value => hunter2, setting_name => 'app.password'", 'SELECT set_config(***'],
    ["SELECT set_config($1, hunter2) FRM t; SELECT 'a'", "SELECT set_config(***) FRM t; SELECT 'a'"],
    // SET with a value that is no constant.
    ["SET app.password = 'x' || hunter2 oops", 'SET app.password = ***'],
    ["SET app.password TO 'hun'ter2' oops", 'SET app.password TO ***'],
    ["ALTER ROLE app SET app.password = 'hun' || 'ter2' oops", 'ALTER ROLE app SET app.password = ***'],
  ])('scrubs %s', (sql, want) => {
    expect(analyzePg(sql, DEFAULT_CTX).ok).toBe(false);
    expect(scrubSecrets(sql)).toBe(want);
  });

  it('leaves a set_config of a setting that is no credential as written', () => {
    for (const sql of ["SELECT set_config('app.user', 'x', false) FRM t", "SELECT set_config('search_path', a || b) FRM t"]) {
      expect(scrubSecrets(sql)).toBe(sql);
    }
  });

  it('drops what the parser error quotes of a set_config, whose setting the text may not name', () => {
    for (const sql of ['SELECT set_config($1, hun ter2)', "SELECT set_config(lower('X'), 'hun' ter2)"]) {
      const a = analyzePg(sql, DEFAULT_CTX);
      expect(a.ok ? null : scrubMessage(sql, a.error), sql).toBe('syntax error at or near "***"');
    }
  });
});
