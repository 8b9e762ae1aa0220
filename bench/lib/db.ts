// The dedicated dbward_bench database: created and initialised once per scale.
import { exec, pgEnv, psql, type Target } from './pgbench.js';

/** Create `t.database` if missing and run `pgbench -i` unless it already holds exactly `scale`. */
export async function ensureBenchDb(t: Target, scale: number): Promise<void> {
  const exists = await psql({ ...t, database: 'postgres' }, `select 1 from pg_database where datname = '${t.database}'`);
  if (exists !== '1') {
    console.log(`creating database ${t.database}`);
    await exec('createdb', [t.database], pgEnv(t));
  }
  // Both tables are checked so a half-finished earlier init (killed mid-load) is redone.
  // Separate statement: a query naming a missing table fails at parse time, even inside a CASE.
  const tables = await psql(t, `select count(*) from pg_tables where tablename in ('pgbench_accounts', 'pgbench_branches')`);
  const current =
    tables === '2' ? await psql(t, `select (select count(*) from pgbench_branches) || ',' || (select count(*) from pgbench_accounts)`) : '';
  if (current === `${scale},${scale * 100_000}`) {
    console.log(`${t.database} already initialised at scale ${scale}`);
    return;
  }
  console.log(`initialising ${t.database} at scale ${scale} (pgbench -i)`);
  await exec('pgbench', ['-i', '-q', '-s', String(scale)], pgEnv(t));
}

/** What pgbench's own pre-run vacuum does, run directly so every TPC-B leg starts from the same state. */
export async function resetTpcb(t: Target): Promise<void> {
  await psql(t, 'vacuum pgbench_branches', 'vacuum pgbench_tellers', 'truncate pgbench_history');
}
