import type { ObjectRef } from '@pothos/core';
import type { Page } from '../server/domain/paging.js';
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
        resolve: (p) => p.nodes.map((n) => ({ node: n, cursor: p.cursorOf(n) })),
      }),
      pageInfo: t.field({ type: PageInfoRef, resolve: (p) => p as Page<unknown> }),
      totalCount: t.exposeInt('totalCount'),
    }),
  });
}
