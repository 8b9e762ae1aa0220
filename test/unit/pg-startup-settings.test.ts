import { describe, expect, it } from 'vitest';
import { PgError } from '../../src/proxy/postgres/errors.js';
import { optionSettings, startupSettings } from '../../src/proxy/postgres/startup-settings.js';

describe('optionSettings', () => {
  it('reads -c name=value, -cname=value and --name=value, dashes in names as underscores', () => {
    expect(optionSettings('-c a=1 -cb=2  --lock-timeout=3s')).toEqual([['a', '1'], ['b', '2'], ['lock_timeout', '3s']]);
  });

  it('keeps backslash-escaped whitespace in a value', () => {
    expect(optionSettings(String.raw`-c search_path=a,\ b`)).toEqual([['search_path', 'a, b']]);
  });

  it('refuses other switches, and -c without a name=value', () => {
    for (const o of ['-B 100', '-c', '-c =1', '-c x', 'plain']) expect(optionSettings(o), o).toBeInstanceOf(PgError);
  });
});

describe('startupSettings', () => {
  const settings = (params: Record<string, string>) => startupSettings(new Map(Object.entries(params)));

  it('passes settings, skips what is not one, and lets a later value win whatever its case', () => {
    expect(settings({ user: 'u', database: 'd', application_name: 'a', statement_timeout: '1s', '_pq_.x': 'y', options: '-c Statement_Timeout=2s' }))
      .toEqual(new Map([['Statement_Timeout', '2s']]));
  });

  it.each([
    [{ role: 'postgres' }, '28000'],
    [{ options: '-c ROLE=postgres' }, '28000'],
    [{ session_preload_libraries: 'x' }, '42501'],
    [{ standard_conforming_strings: 'off' }, '0A000'],
    [{ options: '-c client_encoding=SJIS' }, '0A000'],
    [{ 'bad name': '1' }, '42704'],
  ])('refuses %j with %s', (params, sqlstate) => {
    const r = settings(params);
    expect(r).toBeInstanceOf(PgError);
    expect((r as PgError).sqlstate).toBe(sqlstate);
  });
});
