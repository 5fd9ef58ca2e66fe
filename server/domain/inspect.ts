import type { RejectionCode } from './errors.js';
import { queryPrepared } from '../database/prepared-query.js';
import { tokenColumns, tokenFromRow, type TokenRecord, type TokenRow } from './tokens.js';
import { validateRedeemInput, type RedeemDeps } from './redeem.js';
import { namedStatement } from './named-sql.js';
import { parseId } from './ids.js';
import { REDEMPTION_PARAMS, SHARED_PARAMS, verdictCte } from './redemption-rules.js';

/** A row of a left join: the joined side's columns may all be null. */
type Nullable<T> = { [K in keyof T]: T[K] | null };
import { tenantOf } from './api-keys.js';

export interface InspectInput {
  jwt: string;
  scope: string;
  url?: string | null;
  userId?: string | null;
}

export interface Inspection {
  /** True when redeeming now, with these parameters, would succeed. */
  redeemable: boolean;
  /** The code redemption would refuse with; null when redeemable. */
  code: RejectionCode | null;
  /** The token, when the JWT could be tied to one, as it stands now. */
  token: TokenRecord | null;
  usesRemaining: number | null;
}

// The refusal verdict (the rules' first failing check, on the same clock), with nothing written.
const INSPECT_SQL = namedStatement(
  'inspect',
  `with ${verdictCte()}
  select verdict.code as verdict, tok.*
  from verdict left join lateral (select ${tokenColumns()} from request_token where id = verdict.id) tok on true`,
  { ...REDEMPTION_PARAMS, ...SHARED_PARAMS },
);

/**
 * Runs every check that redemption runs and says how it would end, consuming nothing and logging nothing, so that
 * link scanners and confirmation pages can look at a token as often as they like. Bad input throws ValidationError.
 */
export async function inspectToken(deps: RedeemDeps, input: InspectInput): Promise<Inspection> {
  const { requested } = validateRedeemInput(input);
  const verified = await deps.codec.verify(input.jwt);
  if (!verified.ok) return { redeemable: false, code: verified.code, token: null, usesRemaining: null };

  const tokenId = parseId(verified.claims.jti) ?? '0';
  const { rows } = await queryPrepared<{ verdict: RejectionCode | null } & Nullable<TokenRow>>(
    deps.pool,
    INSPECT_SQL.bind({
      tokenId,
      scope: input.scope,
      host: requested?.host ?? null,
      path: requested?.path ?? null,
      params: requested?.params ?? {},
      userId: input.userId ?? null,
      // Another client's token inspects as TOKEN_NOT_FOUND, like at redemption.
      tenant: tenantOf(deps.caller),
      kid: verified.kid,
      tolerance: deps.config.clockToleranceSeconds,
    }),
  );
  const row = rows[0];
  const token = row.id === null ? null : tokenFromRow(row as TokenRow);
  return {
    redeemable: row.verdict === null,
    code: row.verdict,
    token,
    usesRemaining: token && Math.max(0, token.maxUses - token.usedToDate),
  };
}
