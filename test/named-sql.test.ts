import { describe, expect, it } from 'vitest';
import { namedStatement } from '../server/domain/named-sql.js';
import { REDEEM_SQL } from '../server/domain/redeem.js';

// A named statement's values are read by a function generated for it (server/domain/named-sql.ts): checked here for
// the order of first appearance, JSON as text, and absent values as null.
describe('namedStatement', () => {
  const statement = namedStatement(
    'probe',
    'select :b::text, :a::bigint, :b::text, :data::jsonb, :when, :ids, :doc',
    { a: 'bigint', b: 'text', data: 'jsonb', when: 'timestamptz', ids: 'bigint[]', doc: 'json' },
  );

  it('numbers placeholders by first appearance and reads each parameter by name', () => {
    expect(statement.params).toEqual(['b', 'a', 'data', 'when', 'ids', 'doc']);
    expect(statement.text).toBe('select $1::text::text, $2::bigint::bigint, $1::text::text, $3::jsonb::jsonb, $4::timestamptz, $5::bigint[], $6::json');
    const when = new Date(Date.UTC(2026, 11, 1));
    expect(
      statement.values({ a: '7', b: 'x', data: { k: [1, 'two'] }, when, ids: ['1', '2'], doc: ['d'] }),
    ).toEqual(['x', '7', '{"k":[1,"two"]}', when, ['1', '2'], '["d"]']);
  });

  it('sends absent and undefined values as null, and JSON null as null (not the text "null")', () => {
    expect(statement.values({ a: undefined, b: null, data: null } as never)).toEqual([null, null, null, null, null, null]);
    expect(statement.values({ data: undefined } as never)[2]).toBeNull();
    // Falsy values are values.
    expect(statement.values({ a: 0, b: '', data: false } as never).slice(0, 3)).toEqual(['', 0, 'false']);
  });

  it('binds the redemption statement from one object, in its declared order', () => {
    const values = {
      tokenId: '42', scope: 's', host: null, path: null, params: { q: ['1'] }, userId: null, tenant: null, kid: 'default',
      clientIp: '198.51.100.1', userAgent: 'agent', tolerance: 0, key: null, fingerprint: null,
    };
    const bound = REDEEM_SQL.bind(values);
    expect(bound.name).toBe('redeem');
    expect(bound.values).toHaveLength(REDEEM_SQL.params.length);
    REDEEM_SQL.params.forEach((name, i) => {
      const given = (values as Record<string, unknown>)[name];
      expect(bound.values[i]).toEqual(REDEEM_SQL.types[name] === 'jsonb' || REDEEM_SQL.types[name] === 'json' ? JSON.stringify(given) : (given ?? null));
    });
  });
});
