import { spawn } from 'node:child_process';
import { SignJWT } from 'jose';
import pg from 'pg';
import { ROOT } from './process.js';

/** A Django SECRET_KEY as `startproject` makes them: 50 characters. */
export const DJANGO_SECRET_KEY = 'django-insecure-8v$9y!x@k2#q0m^3w&z*e5r(t)u_i+o1p-a7s';

/**
 * django-request-token's tables, as its migrations up to 0012 leave them. `legacy` gives the layout of its early
 * releases: data as text holding JSON, a target_url column (before 0.4), client_ip as text.
 */
export function djangoTablesSql(schema: string, { legacy = false } = {}): string {
  const s = `"${schema}"`;
  return `
    create schema if not exists ${s};
    create table ${s}.request_token_requesttoken (
      id serial primary key,
      login_mode varchar(10) not null,
      user_id integer null,
      scope varchar(100) not null,
      expiration_time timestamptz null,
      not_before_time timestamptz null,
      data ${legacy ? 'text' : 'jsonb'} null,
      issued_at timestamptz null,
      max_uses integer not null,
      used_to_date integer not null${legacy ? ',\n      target_url varchar(200) not null' : ''}
    );
    create table ${s}.request_token_requesttokenlog (
      id serial primary key,
      token_id integer not null references ${s}.request_token_requesttoken (id) on delete cascade,
      user_id integer null,
      user_agent text not null,
      client_ip ${legacy ? 'text' : 'inet'} null,
      status_code integer null,
      timestamp timestamptz not null
    );`;
}

export interface DjangoToken {
  id: number;
  login_mode: 'None' | 'Request' | 'Session';
  user_id: number | null;
  scope: string;
  expiration_time: Date | null;
  not_before_time: Date | null;
  data: unknown;
  issued_at: Date | null;
  max_uses: number;
  used_to_date: number;
}

/**
 * The JWT django-request-token issues for a token: HS256 over the UTF-8 bytes of SECRET_KEY, header
 * {"alg":"HS256","typ":"JWT"} (PyJWT's), no kid; `jti` the id as a JSON number, `aud` the user's id (a number in
 * its 1.x, a string later), times in whole seconds.
 */
export function djangoJwt(token: DjangoToken, secret = DJANGO_SECRET_KEY, { numericAud = false } = {}): Promise<string> {
  const seconds = (d: Date) => Math.floor(d.getTime() / 1000);
  const claims: Record<string, unknown> = { max: token.max_uses, sub: token.scope, mod: token.login_mode[0].toLowerCase() };
  claims.jti = token.id;
  if (token.user_id !== null) claims.aud = numericAud ? token.user_id : String(token.user_id);
  if (token.expiration_time) claims.exp = seconds(token.expiration_time);
  if (token.issued_at) claims.iat = seconds(token.issued_at);
  if (token.not_before_time) claims.nbf = seconds(token.not_before_time);
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(new TextEncoder().encode(secret));
}

export async function insertDjangoTokens(db: pg.Client, schema: string, tokens: (DjangoToken & { target_url?: string })[]) {
  for (const t of tokens) {
    const legacy = 'target_url' in t;
    await db.query(
      `insert into "${schema}".request_token_requesttoken (id, login_mode, user_id, scope, expiration_time, not_before_time,
         data, issued_at, max_uses, used_to_date${legacy ? ', target_url' : ''})
       values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10${legacy ? ', $11' : ''})`,
      [
        t.id, t.login_mode, t.user_id, t.scope, t.expiration_time, t.not_before_time,
        typeof t.data === 'string' || t.data === null ? t.data : JSON.stringify(t.data),
        t.issued_at, t.max_uses, t.used_to_date, ...(legacy ? [t.target_url] : []),
      ],
    );
  }
  await db.query(
    `select setval(pg_get_serial_sequence('"${schema}".request_token_requesttoken', 'id'),
       (select max(id) from "${schema}".request_token_requesttoken))`,
  );
}

/** Runs `request-token <args>` in a child process, as an operator would. */
export function runCli(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['bin/request-token.mjs', ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NODE_ENV: 'test', ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
