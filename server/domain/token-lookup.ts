import { InvalidJwtError, Issues, NotFoundError } from './errors.js';
import type { JwtCodec, TokenClaims } from './jwt.js';
import { checkString } from './validation.js';
import { getToken, jwtClaims, type TokenReadDeps, type TokenRecord } from './tokens.js';

export interface TokenLookup {
  token: TokenRecord;
  claims: TokenClaims;
}

export interface LookupDeps extends TokenReadDeps {
  codec: JwtCodec;
}

// The claims that identify a token for good (its times of validity may be corrected by an operator).
const IDENTITY_CLAIMS = ['jti', 'sub', 'aud', 'iat'] as const;

/**
 * The stored token behind a pasted JWT, whatever its status (expired, exhausted, revoked), as long as the signature is
 * ours. Unlike a redemption this checks nothing else, consumes nothing and writes no log row.
 */
export async function findTokenByJwt(deps: LookupDeps, jwt: string): Promise<TokenLookup> {
  const issues = new Issues();
  checkString(issues, ['jwt'], jwt, { min: 1, max: 64 * 1024 });
  issues.throwIfAny();

  const verified = await deps.codec.verify(jwt.trim());
  if (!verified.ok) throw new InvalidJwtError(verified.code);
  const token = await getToken(deps, verified.claims.jti);
  if (!token) throw new NotFoundError('Token');
  // Ids restart when a database is recreated under the same secret: the row must be the one that was signed.
  const stored = jwtClaims(token);
  if (IDENTITY_CLAIMS.some((name) => stored[name] !== verified.claims[name])) {
    throw new NotFoundError('Token');
  }
  return { token, claims: verified.claims };
}
