import { ERROR_CODES, NotFoundError, TokenRejection, ValidationError, type ValidationIssue } from '../server/domain/errors.js';
import { builder } from './builder.js';

export const ErrorCodeEnum = builder.enumType('ErrorCode', {
  description: 'Why an operation was refused.',
  values: ERROR_CODES,
});

export const ErrorInterface = builder.interfaceRef<{ message: string; code: (typeof ERROR_CODES)[number] }>('Error');
ErrorInterface.implement({
  description: 'Every expected failure is returned as a member of a result union that implements Error.',
  fields: (t) => ({
    message: t.exposeString('message'),
    code: t.expose('code', { type: ErrorCodeEnum }),
  }),
});

export const ValidationIssueRef = builder.objectRef<ValidationIssue>('ValidationIssue').implement({
  fields: (t) => ({
    path: t.exposeStringList('path', { description: 'Path of the offending input field, e.g. ["input", "maxUses"].' }),
    message: t.exposeString('message'),
  }),
});

export const ValidationErrorRef = builder.objectType(ValidationError, {
  name: 'ValidationError',
  interfaces: [ErrorInterface],
  fields: (t) => ({
    issues: t.field({ type: [ValidationIssueRef], resolve: (e) => e.issues }),
  }),
});

builder.objectType(NotFoundError, {
  name: 'NotFoundError',
  interfaces: [ErrorInterface],
  fields: () => ({}),
});

export const TokenRejectedErrorRef = builder.objectType(TokenRejection, {
  name: 'TokenRejectedError',
  description: 'A redemption was refused; no use of the token was consumed.',
  interfaces: [ErrorInterface],
  fields: (t) => ({
    tokenId: t.exposeID('tokenId', { nullable: true, description: 'The token concerned, when the JWT could be tied to one.' }),
    logId: t.exposeID('logId', {
      nullable: true,
      description: 'The log row of this attempt; pass it to recordResponseStatus to record the refusal page status.',
    }),
  }),
});
