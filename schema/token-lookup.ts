import { InvalidJwtError, NotFoundError, ValidationError } from '../server/domain/errors.js';
import type { TokenClaims } from '../server/domain/jwt.js';
import { findTokenByJwt, type TokenLookup } from '../server/domain/token-lookup.js';
import { builder } from './builder.js';
import { ErrorInterface } from './errors.js';
import { LoginModeEnum, RequestTokenRef } from './request-token.js';
import { DateTime, JSONScalar } from './scalars.js';

builder.objectType(InvalidJwtError, {
  name: 'InvalidJwtError',
  description: 'The text is not a JWT (TOKEN_MALFORMED) or was not signed by this service (TOKEN_SIGNATURE_INVALID).',
  interfaces: [ErrorInterface],
  fields: () => ({}),
});

const MODES = { n: 'NONE', r: 'REQUEST', s: 'SESSION' } as const;
const fromSeconds = (s: number | undefined) => (s === undefined ? null : new Date(s * 1000));

const JwtClaimsRef = builder.objectRef<TokenClaims>('JwtClaims').implement({
  description: "A token's JWT claims, decoded.",
  fields: (t) => ({
    tokenId: t.id({ description: 'jti', resolve: (c) => c.jti }),
    scope: t.string({ description: 'sub', resolve: (c) => c.sub }),
    loginMode: t.field({ type: LoginModeEnum, description: 'mod', resolve: (c) => MODES[c.mod] }),
    maxUses: t.int({ description: 'max', resolve: (c) => c.max }),
    userId: t.string({ nullable: true, description: 'aud', resolve: (c) => c.aud ?? null }),
    issuedAt: t.field({ type: DateTime, description: 'iat', resolve: (c) => fromSeconds(c.iat)! }),
    expiresAt: t.field({ type: DateTime, nullable: true, description: 'exp', resolve: (c) => fromSeconds(c.exp) }),
    notBefore: t.field({ type: DateTime, nullable: true, description: 'nbf', resolve: (c) => fromSeconds(c.nbf) }),
    raw: t.field({ type: JSONScalar, description: 'The payload as signed.', resolve: (c) => c }),
  }),
});

const RequestTokenLookupRef = builder.objectRef<TokenLookup>('RequestTokenLookup').implement({
  fields: (t) => ({
    token: t.field({
      type: RequestTokenRef,
      description: 'The stored token, whatever its status; its history is token.logs.',
      resolve: (l) => l.token,
    }),
    claims: t.field({ type: JwtClaimsRef, resolve: (l) => l.claims }),
  }),
});

builder.queryField('findRequestTokenByJwt', (t) =>
  t.field({
    type: RequestTokenLookupRef,
    description:
      'The token behind a JWT, also when expired, exhausted or revoked, as long as the signature is ours. Consumes nothing and logs nothing.',
    errors: {
      types: [InvalidJwtError, NotFoundError, ValidationError],
      union: { name: 'FindRequestTokenByJwtResult' },
    },
    args: { jwt: t.arg.string({ required: true }) },
    resolve: (_root, { jwt }, ctx) => findTokenByJwt(ctx, jwt),
  }),
);
