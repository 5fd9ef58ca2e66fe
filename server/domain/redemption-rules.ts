import type { TokenStatus } from '../database/entities/request-token.js';
import type { RejectionCode } from './errors.js';
import { bindPlaceholders, placeholders, type SqlType } from './named-sql.js';
import { DEFAULT_KID } from './default-kid.js';

/**
 * The redemption rules, written once. A token redeems when it passes every check below; a refusal names the first
 * check it fails, in this order; its `status` is the first failing check among those that depend on the token alone.
 * Every statement that decides a redemption is generated from this list:
 *
 * - the success statement (`REDEEM_SQL`, and `REDEEM_ALONE_SQL` for a batch of one: all checks in the UPDATE's WHERE),
 * - the micro-batch statement (`REDEEM_BATCH_SQL`, server/domain/redeem-batch.ts: all checks per batch row),
 * - the refusal verdict (`VERDICT_CTE`: the first failing check's code; also what inspection answers),
 * - the derived status (`statusSql`, the `status` column of every token read: listings, `status` fields).
 *
 * A condition is SQL over the token's columns (`${t}.column`) and named parameters (`:name`, declared in
 * REDEMPTION_PARAMS or SHARED_PARAMS). It must say whether the token passes; an unknown (null) result counts as a
 * failure everywhere (a WHERE clause drops the row, the verdict takes `not coalesce(passes, false)`).
 */
export interface RedemptionCheck {
  code: RejectionCode;
  /** Whether the token passes, over its columns (prefixed by `t`) and named parameters. */
  passes: (t: string) => string;
  message: string;
  /** The token's status while it fails this check; only for checks that depend on the token alone (and the clock). */
  status?: Exclude<TokenStatus, 'ACTIVE'>;
  /**
   * A failing token is not the caller's to see: refused as TOKEN_NOT_FOUND without naming it (its id is not logged
   * and inspection shows no token).
   */
  hides?: boolean;
}

/** Parameters that differ between the redemptions of one batch statement; their types declare the placeholders. */
export const REDEMPTION_PARAMS = {
  tokenId: 'bigint',
  scope: 'text',
  /** The requested URL's host, path and query parameters (null host: no URL given). */
  host: 'text',
  path: 'text',
  params: 'jsonb',
  /** The user redeeming, if the application says. */
  userId: 'text',
  /** The caller's client; null for an admin key (every client). */
  tenant: 'bigint',
  /** The kid of the key that verified the JWT (DEFAULT_KID for a JWT without one). */
  kid: 'text',
} as const satisfies Record<string, SqlType>;

/** Parameters that are the same for every redemption of a process (configuration). */
export const SHARED_PARAMS = {
  /** CLOCK_TOLERANCE_SECONDS */
  tolerance: 'int',
} as const satisfies Record<string, SqlType>;

export type RedemptionParamName = keyof typeof REDEMPTION_PARAMS;
export type SharedParamName = keyof typeof SHARED_PARAMS;
export type CheckParams = Record<RedemptionParamName | SharedParamName, unknown>;

export const REDEMPTION_CHECKS: readonly RedemptionCheck[] = [
  {
    code: 'TOKEN_NOT_FOUND',
    hides: true,
    passes: (t) => `(:tenant is null or ${t}.client_id = :tenant)`,
    message: 'No such token.',
  },
  {
    // Another key's signature over the same claims is no proof: retiring a key must kill its tokens.
    code: 'TOKEN_SIGNATURE_INVALID',
    passes: (t) => `coalesce(${t}.kid, '${DEFAULT_KID}') = :kid`,
    message: 'The token signature or algorithm is not valid.',
  },
  {
    code: 'TOKEN_REVOKED',
    status: 'REVOKED',
    passes: (t) => `${t}.revoked_at is null`,
    message: 'The token has been revoked.',
  },
  {
    code: 'TOKEN_NOT_YET_VALID',
    status: 'NOT_YET_VALID',
    passes: (t) => `(${t}.not_before is null or ${t}.not_before <= now() + make_interval(secs => :tolerance))`,
    message: 'The token is not valid yet.',
  },
  {
    code: 'TOKEN_EXPIRED',
    status: 'EXPIRED',
    passes: (t) => `(${t}.expires_at is null or ${t}.expires_at > now() - make_interval(secs => :tolerance))`,
    message: 'The token has expired.',
  },
  {
    code: 'SCOPE_MISMATCH',
    passes: (t) => `${t}.scope = :scope`,
    message: 'The token is not valid for this scope.',
  },
  {
    code: 'TARGET_URL_MISMATCH',
    // Every query parameter the target binds carries exactly the target's values, in order: a repeated parameter
    // (`?list=daily&list=weekly` for `?list=weekly`) does not match, since the application may read either.
    // Parameters the target does not name are free.
    passes: (t) =>
      `(${t}.target_host is null or (${t}.target_host = :host and ${t}.target_path = :path and not exists (
        select from jsonb_each(${t}.target_params) bound where :params -> bound.key is distinct from bound.value)))`,
    message: 'The token is not valid for this URL.',
  },
  {
    code: 'AUDIENCE_MISMATCH',
    passes: (t) => `(:userId is null or ${t}.user_id is null or ${t}.user_id = :userId)`,
    message: 'The token was issued to another user.',
  },
  {
    code: 'MAX_USES_EXCEEDED',
    status: 'EXHAUSTED',
    passes: (t) => `${t}.used_to_date < ${t}.max_uses`,
    message: 'The token has no uses left.',
  },
];

// Checked once, at load: every placeholder is declared, and a status depends on nothing but the token and the clock
// (it is shown where no redemption is being asked about).
for (const check of REDEMPTION_CHECKS) {
  for (const name of placeholders(check.passes('t'))) {
    if (!(name in REDEMPTION_PARAMS) && !(name in SHARED_PARAMS)) {
      throw new Error(`redemption check ${check.code}: :${name} is not a declared parameter`);
    }
    if (check.status && !(name in SHARED_PARAMS)) {
      throw new Error(`redemption check ${check.code} has a status but depends on the redemption's :${name}`);
    }
  }
}

const conjunction = (checks: readonly RedemptionCheck[], t: string) =>
  checks.map((check) => check.passes(t)).join('\n      and ');

/**
 * Every check, joined by `and`, over `t`'s columns. Placeholders stay named (`:scope`); a statement binds them, with
 * `namedStatement` or `bindPlaceholders`.
 */
export const redeemableSql = (t: string): string => conjunction(REDEMPTION_CHECKS, t);

/**
 * The refusal verdict as a CTE named `verdict`: one row with the token's id (null when not found or not the caller's),
 * its client (else `:tenant`) and the first failing check's code (null when every check passes).
 */
export const verdictCte = (): string => {
  const hiding = REDEMPTION_CHECKS.filter((c) => c.hides);
  const shown = REDEMPTION_CHECKS.filter((c) => !c.hides);
  const whens = shown.map((c) => `when not coalesce(${c.passes('t')}, false) then '${c.code}'`);
  return `verdict as (
    select t.id, coalesce(t.client_id, :tenant) as client_id, case
      when t.id is null then 'TOKEN_NOT_FOUND'
      ${whens.join('\n      ')}
    end as code
    from (select 1) as one
    left join request_token t on t.id = :tokenId and ${conjunction(hiding, 't')}
  )`;
};

/**
 * A token's derived status over `t`'s columns: the first failing check that has a status, in the list's order, on the
 * database clock with the clock tolerance (`tolerance`: an SQL expression for it, such as a placeholder `:tolerance`
 * or `$3::int`).
 */
export const statusSql = (t: string, tolerance = ':tolerance'): string => {
  const whens = REDEMPTION_CHECKS.filter((c) => c.status).map(
    (c) => `when not coalesce(${c.passes(t)}, false) then '${c.status}'`,
  );
  const sql = `case ${whens.join(' ')} else 'ACTIVE' end`;
  return tolerance === ':tolerance' ? sql : bindPlaceholders(sql, (n) => (n === 'tolerance' ? tolerance : null));
};

/** The message of a refusal by one of the checks. */
export const CHECK_MESSAGES = Object.fromEntries(REDEMPTION_CHECKS.map((c) => [c.code, c.message])) as Partial<
  Record<RejectionCode, string>
>;
