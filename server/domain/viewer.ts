import type pg from 'pg';
import type { Permission } from '../database/entities/api-key.js';
import type { Caller } from './api-keys.js';

export interface Viewer {
  keyId: string;
  name: string;
  permissions: readonly Permission[];
}

/** The calling API key as it describes itself (never its secret or hash). */
export async function getViewer(deps: { pool: pg.Pool; caller: Caller }): Promise<Viewer> {
  const { rows } = await deps.pool.query('select name from api_key where id = $1', [deps.caller.keyId]);
  return { keyId: deps.caller.keyId, name: rows[0]?.name ?? '', permissions: deps.caller.permissions };
}
