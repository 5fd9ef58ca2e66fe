/**
 * Type-level tests. `npm test` runs `tsc --noEmit` first, so each @ts-expect-error below must be a compile error or
 * the run fails; the expectTypeOf checks are compile-time assertions too.
 */
import type express from 'express';
import { describe, expectTypeOf, it } from 'vitest';
import {
  createRequestTokenClient,
  requestToken,
  withRequestToken,
  type CreateRequestTokenInput,
  type LoginMode,
  type OperationResult,
  type RedeemRequestTokenInput,
  type Redemption,
  type RequestTokenClientError,
  type RequestTokenClientErrorKind,
} from '@request-token/sdk';

const rt = createRequestTokenClient({ url: 'http://127.0.0.1:1/graphql', apiKey: 'rt_1_x' });

describe('the client types', () => {
  it('takes the input object itself and resolves to the result union', () => {
    expectTypeOf(rt.createRequestToken).parameter(0).toEqualTypeOf<CreateRequestTokenInput>();
    expectTypeOf(rt.redeemRequestToken).parameter(0).toEqualTypeOf<RedeemRequestTokenInput>();
    expectTypeOf(rt.revokeRequestToken).parameter(0).toEqualTypeOf<{ id: string }>();
    type Redeemed = OperationResult<'redeemRequestToken'>;
    expectTypeOf<Redeemed['__typename']>().toEqualTypeOf<'Redemption' | 'TokenRejectedError' | 'ValidationError'>();
    expectTypeOf<Extract<Redeemed, { __typename: 'Redemption' }>['usesRemaining']>().toEqualTypeOf<number>();
    expectTypeOf<OperationResult<'createRequestToken'>['__typename']>().toEqualTypeOf<
      'CreateRequestTokenSuccess' | 'ValidationError'
    >();
    expectTypeOf<OperationResult<'requestToken'>>().toMatchTypeOf<{ id: string } | null>();
  });

  it('makes enums string-literal unions', () => {
    expectTypeOf<LoginMode>().toEqualTypeOf<'NONE' | 'REQUEST' | 'SESSION'>();
    expectTypeOf<RequestTokenClientError['kind']>().toEqualTypeOf<RequestTokenClientErrorKind>();
  });

  it('narrows on __typename', () => {
    const use = async () => {
      const issued = await rt.createRequestToken({ scope: 'unsubscribe', userId: '42' });
      if (issued.__typename === 'CreateRequestTokenSuccess') expectTypeOf(issued.url).toEqualTypeOf<string | null>();
      else expectTypeOf(issued.issues).toBeArray();
    };
    expectTypeOf(use).toBeFunction();
  });

  it('refuses wrong inputs at compile time', () => {
    const compileOnly = () => {
      // @ts-expect-error scope is required
      void rt.createRequestToken({ userId: '42' });
      // @ts-expect-error an unknown login mode
      void rt.createRequestToken({ scope: 's', loginMode: 'FOREVER' });
      // @ts-expect-error the input object itself, not { input }
      void rt.redeemRequestToken({ input: { jwt: 'j', scope: 's' } });
      // @ts-expect-error maxUses is an Int
      void rt.createRequestToken({ scope: 's', maxUses: '3' });
      // @ts-expect-error no such operation
      void rt.deleteEverything();
    };
    expectTypeOf(compileOnly).toBeFunction();
  });
});

describe('the middleware types', () => {
  it('requires scope and required', () => {
    const compileOnly = () => {
      // @ts-expect-error scope is mandatory
      requestToken({ client: rt, required: true });
      // @ts-expect-error required is mandatory
      requestToken({ client: rt, scope: 'unsubscribe' });
      // @ts-expect-error required is mandatory
      withRequestToken(() => new Response(), { client: rt, scope: 'unsubscribe' });
      // @ts-expect-error scope is mandatory
      withRequestToken(() => new Response(), { client: rt, required: false });
    };
    expectTypeOf(compileOnly).toBeFunction();
  });

  it('fits Express and types req.requestToken', () => {
    const handler: express.RequestHandler = (req, res) => {
      expectTypeOf(req.requestToken).toEqualTypeOf<Redemption | undefined>();
      res.end();
    };
    const middleware = requestToken<express.Request, express.Response>({
      client: rt,
      scope: 'unsubscribe',
      required: true,
      getUserId: (req) => req.get('x-user'),
      login: (userId, { res }) => void res.cookie('user', userId),
    });
    expectTypeOf(middleware).toMatchTypeOf<express.RequestHandler>();
    expectTypeOf(handler).toBeFunction();
  });

  it('gives the fetch handler a non-null redemption only when the token is required', () => {
    withRequestToken((_request, { redemption }) => {
      expectTypeOf(redemption).toEqualTypeOf<Redemption>();
      return new Response();
    }, { client: rt, scope: 's', required: true });
    withRequestToken((_request, { redemption }) => {
      expectTypeOf(redemption).toEqualTypeOf<Redemption | null>();
      return new Response();
    }, { client: rt, scope: 's', required: false });
  });
});
