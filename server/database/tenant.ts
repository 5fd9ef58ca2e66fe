import type { EntityData, EntityName } from '@mikro-orm/core';

import type { EntityManager, MikroORM } from '@mikro-orm/postgresql';

/**
 * Tenant confinement, in one place. Every tenant-owned entity (tokens, log rows) carries the `tenant` filter, on by
 * default: every find, count, update and delete through an EntityManager gets `client_id = <caller's client>`, and an
 * EntityManager that was not given a tenant fails its first query ("No arguments provided for filter 'tenant'")
 * instead of reading every tenant.
 */
export const TENANT_FILTER = 'tenant';

export interface TenantParams {
  /** The caller's client; null only for admin keys, which see every tenant. */
  clientId: string | null;
}

export const tenantFilter = {
  name: TENANT_FILTER,
  default: true,
  // The parameter is required (MikroORM throws when it is missing), so no query can run without a tenant.
  cond: (params: TenantParams) => (params.clientId === null ? {} : { clientId: params.clientId }),
};

/**
 * An EntityManager of its own, confined to `clientId`'s rows. The one place where the admin case (null) turns the
 * confinement off: the filter then adds no condition.
 */
export function tenantEm(orm: MikroORM, clientId: string | null): EntityManager {
  const em = orm.em.fork();
  em.setFilterParams(TENANT_FILTER, { clientId } satisfies TenantParams);
  return em;
}

/** What a service needs to read or write tenant-owned rows: a request's context carries both. */
export interface TenantDeps {
  orm: MikroORM;
  /** The caller's client (null: an admin key, every client); another client's rows read as missing. */
  tenant: string | null;
}

const requestForks = new WeakMap<object, EntityManager>();

/**
 * The request's EntityManager: forked on first use (requests that never reach the ORM, like redemptions, pay nothing),
 * then shared by every resolver of the request, with the caller's tenant set once.
 */
export function requestEm(request: TenantDeps): EntityManager {
  let em = requestForks.get(request);
  if (!em) {
    em = tenantEm(request.orm, request.tenant);
    requestForks.set(request, em);
  }
  return em;
}

/**
 * A QueryBuilder confined like `em`'s finds are (MikroORM applies filters to find/count/update/delete by itself, to a
 * QueryBuilder only when asked): the only way the domain creates one. It starts with the filter's condition, so add
 * conditions with `andWhere`. With `update`, it is an UPDATE setting those values (MikroORM wants that said first).
 */
export function tenantQueryBuilder<Entity extends object, Alias extends string>(
  em: EntityManager,
  entity: EntityName<Entity>,
  alias: Alias,
  update?: EntityData<Entity>,
) {
  const qb = em.createQueryBuilder<Entity, Alias>(entity, alias);
  if (update) qb.update(update);
  if (em.getMetadata().find(entity)?.filters[TENANT_FILTER]) {
    const params = em.getFilterParams<TenantParams>(TENANT_FILTER);
    if (!params) throw new Error(`No arguments provided for filter '${TENANT_FILTER}'`);
    qb.where(tenantFilter.cond(params) as never);
  }
  return qb;
}
