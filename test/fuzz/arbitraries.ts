import fc from 'fast-check';
import {
  getNamedType,
  getNullableType,
  isEnumType,
  isInputObjectType,
  isInterfaceType,
  isListType,
  isNonNullType,
  isObjectType,
  isScalarType,
  isUnionType,
  type GraphQLArgument,
  type GraphQLField,
  type GraphQLInputType,
  type GraphQLOutputType,
  type GraphQLSchema,
} from 'graphql';

/** Values the fuzzer mixes into every place a value goes: ids of both tenants, real JWTs, and hostile values. */
export interface Pools {
  ids: string[];
  jwts: string[];
  strings: string[];
}

const MEGABYTE = 'x'.repeat(1024 * 1024);
/** Under the body limit (256 KiB), so it reaches the resolvers. */
const LARGE = 'y'.repeat(200_000);

/** Ids out of every range PostgreSQL and JavaScript have, and ones that are not ids at all. */
const HOSTILE_IDS = [
  '9223372036854775807', // bigint max
  '9223372036854775808', // one past it
  '18446744073709551616', // 20 digits
  '99999999999999999999',
  '-1',
  '-9223372036854775809',
  '0',
  '00000000000000000001',
  '1e3',
  '1.5',
  ' 1',
  '0x10',
  '',
  'null',
  '1; drop table request_token',
];

const HOSTILE_STRINGS = [
  '',
  '\u0000',
  'a\u0000b',
  '\ud800', // lone high surrogate
  '\udc00x', // lone low surrogate
  '\u202e\u0000\ufeff',
  '%00',
  "'; select pg_sleep(10); --",
  '{"$gt": ""}',
  '../../etc/passwd',
  'https://evil.example/\u0000',
  'javascript:alert(1)',
  '𝕏'.repeat(300),
];

const HOSTILE_NUMBERS = [
  2147483648,
  -2147483649,
  9007199254740993,
  1e308,
  -1e308,
  0.5,
  -0.0,
  1.0000001,
  Number.MAX_SAFE_INTEGER,
  Number.MIN_SAFE_INTEGER,
];

/** JSON nested `depth` deep, or `width` wide: what a JSON scalar must survive. */
const deepJson = (depth: number): unknown => {
  let value: unknown = 'bottom';
  for (let i = 0; i < depth; i++) value = i % 2 ? [value] : { a: value };
  return value;
};
const wideJson = (width: number) => Object.fromEntries(Array.from({ length: width }, (_, i) => [`k${i}`, i]));

const hostileAny = (): fc.Arbitrary<unknown> =>
  fc.oneof(
    fc.constantFrom<unknown>(null, true, false, 0, -1, [], {}, [null], { unknown: 1 }),
    fc.constantFrom(...HOSTILE_STRINGS),
    fc.constantFrom(...HOSTILE_NUMBERS),
    fc.constantFrom(...HOSTILE_IDS),
  );

/** A value for a place of `type`: mostly of the right shape, often hostile, sometimes of the wrong type entirely. */
export function valueFor(
  schema: GraphQLSchema,
  type: GraphQLInputType,
  pools: Pools,
  depth = 0,
  typed = false,
): fc.Arbitrary<unknown> {
  const required = isNonNullType(type);
  const inner = getNullableType(type) as GraphQLInputType;
  const right = rightValue(schema, inner, pools, depth, typed);
  // Typed: hostile values of the right GraphQL type only, so that the operation gets past validation to the resolvers.
  if (typed) return required ? right : fc.oneof({ weight: 6, arbitrary: right }, { weight: 1, arbitrary: fc.constant(undefined) });
  return fc.oneof(
    { weight: 8, arbitrary: right },
    { weight: 1, arbitrary: required ? fc.constant(null) : fc.constantFrom(null, undefined) },
    { weight: 1, arbitrary: hostileAny() },
  );
}

function rightValue(
  schema: GraphQLSchema,
  type: GraphQLInputType,
  pools: Pools,
  depth: number,
  typed: boolean,
): fc.Arbitrary<unknown> {
  if (isListType(type)) {
    const item = valueFor(schema, type.ofType, pools, depth + 1, typed);
    if (typed) return fc.array(item, { maxLength: 4 });
    return fc.oneof(
      { weight: 6, arbitrary: fc.array(item, { maxLength: 4 }) },
      { weight: 1, arbitrary: item }, // a single value where a list goes (GraphQL coerces it)
      { weight: 1, arbitrary: fc.constant(Array.from({ length: 2000 }, () => null)) },
    );
  }
  if (isEnumType(type)) {
    if (typed) return fc.constantFrom(...type.getValues().map((v) => v.name));
    return fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom(...type.getValues().map((v) => v.name)) },
      { weight: 1, arbitrary: fc.constantFrom('NOT_A_VALUE', 'admin', '', 'ADMIN ') },
    );
  }
  if (isInputObjectType(type)) {
    if (depth > 3) return fc.constant({});
    const fields = Object.values(type.getFields());
    const shape = Object.fromEntries(fields.map((f) => [f.name, valueFor(schema, f.type, pools, depth + 1, typed)]));
    const requiredKeys = fields.filter((f) => isNonNullType(f.type) && f.defaultValue === undefined).map((f) => f.name);
    if (typed) return fc.record(shape, { requiredKeys });
    return fc
      .record(shape, { requiredKeys })
      .chain((object) =>
        fc.oneof(
          { weight: 8, arbitrary: fc.constant(object) },
          // unknown fields, and a required field missing
          { weight: 1, arbitrary: fc.constant({ ...object, notAField: 1, __proto__x: 'y' }) },
          {
            weight: 1,
            arbitrary: fc.constant(
              Object.fromEntries(Object.entries(object).filter(([k]) => k !== requiredKeys[0])),
            ),
          },
        ),
      );
  }
  if (isScalarType(type)) {
    switch (type.name) {
      case 'ID':
        if (typed) {
          return fc.oneof(
            { weight: 5, arbitrary: fc.constantFrom(...pools.ids) },
            { weight: 3, arbitrary: fc.constantFrom(...HOSTILE_IDS) },
            { weight: 1, arbitrary: fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map(String) },
          );
        }
        return fc.oneof(
          { weight: 5, arbitrary: fc.constantFrom(...pools.ids) },
          { weight: 3, arbitrary: fc.constantFrom(...HOSTILE_IDS) },
          { weight: 1, arbitrary: fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map(String) },
          { weight: 1, arbitrary: fc.integer().map((n) => n) }, // a number where GraphQL takes a string or an int
        );
      case 'Int':
        if (typed) return fc.oneof(fc.integer({ min: -5, max: 200 }), fc.integer(), fc.constantFrom(0, -1, 2147483647, -2147483648));
        return fc.oneof(
          { weight: 5, arbitrary: fc.integer({ min: -5, max: 200 }) },
          { weight: 2, arbitrary: fc.integer() },
          { weight: 2, arbitrary: fc.constantFrom(...HOSTILE_NUMBERS) },
          { weight: 1, arbitrary: fc.constantFrom('12', '1e2', 'NaN') },
        );
      case 'Float':
        return fc.oneof(fc.double(), fc.constantFrom(...HOSTILE_NUMBERS));
      case 'Boolean':
        if (typed) return fc.boolean();
        return fc.oneof({ weight: 5, arbitrary: fc.boolean() }, { weight: 1, arbitrary: fc.constantFrom('true', 1, 0) });
      case 'DateTime':
        if (typed) {
          return fc.oneof(
            fc.date({ min: new Date(-8.64e15), max: new Date(8.64e15), noInvalidDate: true }).map((d) => d.toISOString()),
            fc.integer({ min: -600, max: 6000 }).map((m) => new Date(Date.now() + m * 60_000).toISOString()),
          );
        }
        return fc.oneof(
          { weight: 4, arbitrary: fc.date({ min: new Date(-8.64e15), max: new Date(8.64e15), noInvalidDate: true }).map((d) => d.toISOString()) },
          { weight: 2, arbitrary: fc.integer({ min: -600, max: 6000 }).map((m) => new Date(Date.now() + m * 60_000).toISOString()) },
          {
            weight: 2,
            arbitrary: fc.constantFrom('2026-13-45T25:61:00Z', '0000-01-01T00:00:00Z', '+275760-09-13T00:00:00.001Z', 'yesterday', '', '2026-01-01'),
          },
          { weight: 1, arbitrary: fc.constantFrom(0, -1, 1e15, 8.64e15 + 1) },
        );
      case 'JSON':
        return fc.oneof(
          { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
          { weight: 1, arbitrary: fc.constantFrom(deepJson(3000), deepJson(64), wideJson(20_000), { big: MEGABYTE }) },
          { weight: 1, arbitrary: fc.constantFrom('\u0000', { '\u0000': '\ud800' }, [1, [2, [3]]]) },
        );
      default:
        return stringValue(pools, typed);
    }
  }
  return fc.constant(null);
}

function stringValue(pools: Pools, typed: boolean): fc.Arbitrary<unknown> {
  const strings = fc.oneof(
    { weight: 4, arbitrary: fc.string({ maxLength: 40 }) },
    { weight: 3, arbitrary: fc.constantFrom(...pools.strings) },
    { weight: 2, arbitrary: fc.constantFrom(...pools.jwts) },
    { weight: 2, arbitrary: fc.constantFrom(...HOSTILE_STRINGS) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
    { weight: 1, arbitrary: fc.constantFrom(MEGABYTE, LARGE) },
  );
  if (typed) return strings;
  return fc.oneof(
    { weight: 4, arbitrary: fc.string({ maxLength: 40 }) },
    { weight: 3, arbitrary: fc.constantFrom(...pools.strings) },
    { weight: 2, arbitrary: fc.constantFrom(...pools.jwts) },
    { weight: 2, arbitrary: fc.constantFrom(...HOSTILE_STRINGS) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) }, // lone surrogates included
    { weight: 1, arbitrary: fc.constantFrom(MEGABYTE, LARGE) },
    { weight: 1, arbitrary: fc.constantFrom(...HOSTILE_NUMBERS) }, // a number where a string goes
  );
}

/** A selection set for `type`: its scalar fields, nested objects to `depth`, every member of a union. */
export function selectionFor(type: GraphQLOutputType, depth = 0): string {
  const named = getNamedType(type);
  if (isScalarType(named) || isEnumType(named)) return '';
  if (depth > 2) return '{ __typename }';
  if (isUnionType(named) || isInterfaceType(named)) {
    const members = isUnionType(named) ? named.getTypes() : [];
    const own = isInterfaceType(named) ? fieldsOf(named.getFields(), depth) : '';
    return `{ __typename ${own} ${members.map((m) => `... on ${m.name} ${selectionFor(m, depth + 1)}`).join(' ')} }`;
  }
  if (isObjectType(named)) return `{ __typename ${fieldsOf(named.getFields(), depth)} }`;
  return '';
}

function fieldsOf(fields: Record<string, GraphQLField<unknown, unknown>>, depth: number): string {
  return Object.values(fields)
    .filter((f) => !f.args.some((a) => isNonNullType(a.type) && a.defaultValue === undefined))
    .map((f) => {
      const named = getNamedType(f.type);
      if (isScalarType(named) || isEnumType(named)) return f.name;
      // Nested pages: small, so one operation stays cheap enough for the cost limit.
      const args = f.args.some((a) => a.name === 'first') ? '(first: 2)' : '';
      return depth < 2 ? `${f.name}${args} ${selectionFor(f.type, depth + 1)}` : '';
    })
    .join(' ');
}

export interface Operation {
  field: string;
  query: string;
  variables: Record<string, unknown>;
}

/** Every query and mutation of the schema, each with its arguments as variables generated from their types. */
export function operations(schema: GraphQLSchema, pools: Pools): fc.Arbitrary<Operation> {
  const roots = [
    ['query', schema.getQueryType()!],
    ['mutation', schema.getMutationType()!],
  ] as const;
  const all: fc.Arbitrary<Operation>[] = [];
  for (const [kind, root] of roots) {
    for (const field of Object.values(root.getFields())) {
      all.push(operationFor(schema, kind, field, pools));
    }
  }
  return fc.oneof(...all);
}

function operationFor(
  schema: GraphQLSchema,
  kind: 'query' | 'mutation',
  field: GraphQLField<unknown, unknown>,
  pools: Pools,
): fc.Arbitrary<Operation> {
  const args: readonly GraphQLArgument[] = field.args;
  const declared = args.map((a) => `$${a.name}: ${a.type.toString()}`).join(', ');
  const passed = args.map((a) => `${a.name}: $${a.name}`).join(', ');
  const selection = selectionFor(field.type);
  const variablesOf = (typed: boolean) =>
    fc.record(
      Object.fromEntries(args.map((a) => [a.name, valueFor(schema, a.type, pools, 0, typed)])),
      { requiredKeys: [] },
    );
  // Two in three operations are well-typed (hostile values of the right type reach the resolvers); the rest are not.
  const variables = fc.oneof({ weight: 2, arbitrary: variablesOf(true) }, { weight: 1, arbitrary: variablesOf(false) });
  // Document-level hostility: the field repeated under an alias, an unknown field, a variable declared twice.
  const shapes = fc.oneof(
    { weight: 6, arbitrary: fc.constant('plain') },
    { weight: 1, arbitrary: fc.constantFrom('repeated', 'unknown-field', 'duplicate-variable', 'literal-null') },
  );
  return fc.tuple(variables, shapes).map(([vars, shape]) => {
    const call = `${field.name}${passed ? `(${passed})` : ''} ${selection}`;
    const header = declared ? `(${declared}${shape === 'duplicate-variable' && args[0] ? `, $${args[0].name}: String` : ''})` : '';
    const body =
      shape === 'repeated'
        ? `${call} again: ${call}`
        : shape === 'unknown-field'
          ? `${call} notAField`
          : shape === 'literal-null' && args[0]
            ? `${field.name}(${args.map((a, i) => `${a.name}: ${i === 0 ? 'null' : `$${a.name}`}`).join(', ')}) ${selection}`
            : call;
    return { field: field.name, query: `${kind}${header} { ${body} }`, variables: vars };
  });
}
