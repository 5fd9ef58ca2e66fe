import { ApiKey, type Permission } from '../database/entities/api-key.js';
import { requestEm, type TenantDeps } from '../database/tenant.js';
import type { Caller } from './api-keys.js';

export interface Viewer {
  keyId: string;
  name: string;
  permissions: readonly Permission[];
}

/** The calling API key as it describes itself (never its secret or hash). */
export async function getViewer(deps: TenantDeps & { caller: Caller }): Promise<Viewer> {
  const key = await requestEm(deps).findOne(ApiKey, { id: deps.caller.keyId }, { fields: ['name'], disableIdentityMap: true });
  return { keyId: deps.caller.keyId, name: key?.name ?? '', permissions: deps.caller.permissions };
}
