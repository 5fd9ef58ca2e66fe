/**
 * request-token/sdk: issue, redeem and record status against a request-token service from any Node backend.
 * Everything here is safe to ship to other people's backends: it imports nothing from the service itself.
 */
export {
  createRequestTokenClient,
  type CallOptions,
  type OperationInput,
  type OperationName,
  type OperationResult,
  type RequestTokenClient,
  type RequestTokenClientOptions,
  type RequestTokenOperations,
  type RetryContext,
} from './client.js';
export {
  isRequestTokenClientError,
  RequestTokenClientError,
  type RequestTokenClientErrorKind,
  type RequestTokenClientGraphQLError,
} from './errors.js';
export {
  clientIp,
  DEFAULT_TOKEN_PARAM,
  extractToken,
  listUnsubscribeHeaders,
  normaliseIp,
  ONE_CLICK_BODY,
  tokenise,
  type ListUnsubscribeHeaders,
  type NodeRequestLike,
  type TrustProxy,
} from './links.js';
export { defaultConfirmationPage, defaultRejectionPage, prefersHtml } from './middleware/core.js';
export type {
  ConfirmationView,
  GuardClient,
  Inspection,
  InspectRequestTokenResult,
  GuardOptions,
  RedeemRequestTokenResult,
  Redemption,
  Rejection,
  RejectionCode,
} from './middleware/core.js';
export { requestToken, type NextFunction, type RequestTokenMiddlewareOptions } from './middleware/node.js';
export {
  withRequestToken,
  type RequestTokenContext,
  type RequestTokenHandler,
  type WithRequestTokenOptions,
} from './middleware/fetch.js';
// The schema's types as the operations see them (inputs, enums as string-literal unions, results), and the typed
// documents for the `request()` escape hatch.
export type * from './generated/graphql.js';
export * as documents from './generated/graphql.js';
