import type { MikroORM } from '@mikro-orm/postgresql';
import type pg from 'pg';
import type { Config } from './config.js';
import type { JwtCodec } from './jwt.js';
import type { Authenticator, Caller } from './services/api-keys.js';
import type { RefusalLog } from './services/refusal-log.js';

/** What the process holds once: built by the composition root (server/main.ts) or a test. */
export interface Services {
  config: Config;
  orm: MikroORM;
  pool: pg.Pool;
  codec: JwtCodec;
  authenticator: Authenticator;
  log: Logger;
  /** Batched, off-request-path writer of refusals that no token can be tied to. */
  refusalLog: RefusalLog;
}

export interface Logger {
  info(message: string): void;
  error(message: string, error?: unknown): void;
}

/** A GraphQL request's context. Needs no HTTP request, so tests can build one directly. */
export interface Context extends Services {
  caller: Caller;
}

export function createContext(services: Services, caller: Caller): Context {
  return { ...services, caller };
}
