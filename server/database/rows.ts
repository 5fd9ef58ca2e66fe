/**
 * Row types derived from the entities: a hand-written statement's row has the entity's properties under their column
 * names (MikroORM's default naming: camelCase → snake_case) with the entity's types, so renaming or retyping a
 * property breaks the mappers that read it at compile time.
 */

/** `usedToDate` → `used_to_date`, as MikroORM's UnderscoreNamingStrategy names columns. */
export type ColumnName<S extends string> = S extends `${infer Head}${infer Rest}`
  ? `${Head extends Lowercase<Head> ? Head : `_${Lowercase<Head>}`}${ColumnName<Rest>}`
  : S;

export const columnName = <S extends string>(property: S): ColumnName<S> =>
  property.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`) as ColumnName<S>;

/** The columns of `fields` as a row from `pg` holds them, typed by the entity. */
export type RowOf<E, K extends keyof E & string> = { [P in K as ColumnName<P>]: E[P] };

/** `t.column, t.other, …` for a select list. */
export const columnList = (t: string, fields: readonly string[]): string =>
  fields.map((f) => `${t}.${columnName(f)}`).join(', ');
