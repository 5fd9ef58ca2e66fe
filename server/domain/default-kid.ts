/** The kid of the key a JWT without a `kid` header is checked against (and of tokens issued before key rotation). */
export const DEFAULT_KID = 'default';
