import type { ObjectRef } from '@pothos/core';
import { Kind, type GraphQLResolveInfo, type SelectionSetNode } from 'graphql';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, type Page } from '../server/domain/paging.js';
import { builder } from './builder.js';

export const PageInfoRef = builder.objectRef<Page<unknown>>('PageInfo').implement({
  fields: (t) => ({
    hasNextPage: t.exposeBoolean('hasNextPage'),
    hasPreviousPage: t.exposeBoolean('hasPreviousPage'),
    startCursor: t.string({
      nullable: true,
      resolve: (p) => (p.nodes.length ? p.cursorOf(p.nodes[0]) : null),
    }),
    endCursor: t.string({
      nullable: true,
      resolve: (p) => (p.nodes.length ? p.cursorOf(p.nodes[p.nodes.length - 1]) : null),
    }),
  }),
});

/**
 * The cost of a page field (server/http/query-cost.ts): two statements (the page and its count), and what is selected
 * below it once per row it may return, as many as `first` asks (a variable's value included).
 */
export const pageCost = (args: { first?: number | null }) => ({
  field: 2,
  multiplier: Math.min(Math.max(args.first ?? DEFAULT_PAGE_SIZE, 0), MAX_PAGE_SIZE),
});

/** A Relay-style connection type (edges, pageInfo, totalCount) over a Page of `node`. */
export function connectionType<T>(name: string, node: ObjectRef<any, T>) {
  const Edge = builder.objectRef<{ node: T; cursor: string }>(`${name}Edge`).implement({
    fields: (t) => ({
      node: t.field({ type: node, resolve: (e) => e.node as never }),
      cursor: t.exposeString('cursor'),
    }),
  });
  return builder.objectRef<Page<T>>(`${name}Connection`).implement({
    fields: (t) => ({
      edges: t.field({
        type: [Edge],
        // Its rows are counted by the page field's multiplier.
        complexity: { field: 0, multiplier: 1 },
        resolve: (p) => p.nodes.map((n) => ({ node: n, cursor: p.cursorOf(n) })),
      }),
      pageInfo: t.field({ type: PageInfoRef, resolve: (p) => p as Page<unknown> }),
      totalCount: t.int({ resolve: (p) => (typeof p.totalCount === 'function' ? p.totalCount() : p.totalCount) }),
    }),
  });
}

/**
 * Whether the connection field being resolved selects `totalCount` (through fragments too), so that a page asked for
 * without it skips the count: on a large log the count of a filter costs hundreds of times its page.
 */
export function selectsTotalCount(info: GraphQLResolveInfo): boolean {
  const seen = new Set<string>();
  const search = (set: SelectionSetNode | undefined): boolean =>
    !!set?.selections.some((s) => {
      if (s.kind === Kind.FIELD) return s.name.value === 'totalCount';
      if (s.kind === Kind.INLINE_FRAGMENT) return search(s.selectionSet);
      if (seen.has(s.name.value)) return false;
      seen.add(s.name.value);
      return search(info.fragments[s.name.value]?.selectionSet);
    });
  return info.fieldNodes.some((field) => search(field.selectionSet));
}

/**
 * The names of the fields selected at `path` below the field being resolved (through fragments and inline fragments,
 * aliases ignored, whatever their directives say: a field skipped at run time is still counted, which only ever reads
 * more), e.g. ['edges', 'node', 'token'] for the token of each row of a page. Empty when nothing is selected there.
 */
export function selectedFieldNames(info: GraphQLResolveInfo, path: readonly string[]): Set<string> {
  const names = new Set<string>();
  const visit = (set: SelectionSetNode | undefined, depth: number, seen: Set<string>) => {
    for (const s of set?.selections ?? []) {
      if (s.kind === Kind.FIELD) {
        if (depth === path.length) names.add(s.name.value);
        else if (s.name.value === path[depth]) visit(s.selectionSet, depth + 1, new Set());
      } else if (s.kind === Kind.INLINE_FRAGMENT) {
        visit(s.selectionSet, depth, seen);
      } else if (!seen.has(s.name.value)) {
        seen.add(s.name.value);
        visit(info.fragments[s.name.value]?.selectionSet, depth, seen);
      }
    }
  };
  for (const field of info.fieldNodes) visit(field.selectionSet, 0, new Set());
  return names;
}
