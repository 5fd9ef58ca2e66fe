import type { RejectionCode } from './errors.js';
import { TOKEN_COLUMNS, tokenFromRow, type TokenRecord } from './tokens.js';
import { validateRedeemInput, VERDICT_CTE, type RedeemDeps } from './redeem.js';
import { tenantOf } from './api-keys.js';
import { isDatabaseId } from './ids.js';

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

// The very checks of the refusal statement, in the same order, on the same clock, with nothing written. The verdict
// numbers its parameters like redemption; $7 and $8 (client IP, user agent) are only logged there, typed here so
// PostgreSQL can prepare the statement.
const INSPECT_SQL = `with ${VERDICT_CTE}
  select verdict.code as verdict, $7::text as unused_ip, $8::text as unused_agent, tok.*
  from verdict left join lateral (select ${TOKEN_COLUMNS} from request_token where id = verdict.id) tok on true`;

/**
 * Runs every check that redemption runs and says how it would end, consuming nothing and logging nothing, so that
 * link scanners and confirmation pages can look at a token as often as they like. Bad input throws ValidationError.
 */
export async function inspectToken(deps: RedeemDeps, input: InspectInput): Promise<Inspection> {
  const { requested } = validateRedeemInput(input);
  const verified = await deps.codec.verify(input.jwt);
  if (!verified.ok) return { redeemable: false, code: verified.code, token: null, usesRemaining: null };

  const tokenId = isDatabaseId(verified.claims.jti) ? verified.claims.jti : '0';
  const { rows } = await deps.pool.query({
    name: 'inspect',
    text: INSPECT_SQL,
    values: [
      tokenId,
      input.scope,
      requested?.host ?? null,
      requested?.path ?? null,
      JSON.stringify(requested?.params ?? {}),
      input.userId ?? null,
      null,
      null,
      deps.config.clockToleranceSeconds,
      // Another client's token inspects as TOKEN_NOT_FOUND, like at redemption.
      tenantOf(deps.caller),
      verified.kid,
    ],
  });
  const row = rows[0];
  const token = row.id === null ? null : tokenFromRow(row);
  return {
    redeemable: row.verdict === null,
    code: row.verdict,
    token,
    usesRemaining: token && Math.max(0, token.maxUses - token.usedToDate),
  };
}
