import type { TestServer } from './harness.js';

export const CREATE = /* GraphQL */ `
  mutation Create($input: CreateRequestTokenInput!) {
    createRequestToken(input: $input) {
      __typename
      ... on CreateRequestTokenSuccess {
        jwt
        url
        token { id scope targetUrl userId loginMode data maxUses usedToDate issuedAt notBefore expiresAt revokedAt status jwt }
      }
      ... on ValidationError { code message issues { path message } }
    }
  }
`;

export const REDEEM = /* GraphQL */ `
  mutation Redeem($input: RedeemRequestTokenInput!) {
    redeemRequestToken(input: $input) {
      __typename
      ... on Redemption { id loginMode authenticateAs data usesRemaining token { id usedToDate status } }
      ... on TokenRejectedError { code message tokenId logId }
      ... on ValidationError { code message issues { path message } }
    }
  }
`;

export const RECORD = /* GraphQL */ `
  mutation Record($input: RecordResponseStatusInput!) {
    recordResponseStatus(input: $input) {
      __typename
      ... on RecordResponseStatusSuccess { log { id statusCode errorCode } }
      ... on Error { code message }
    }
  }
`;

/** Issues a token and returns the success payload; fails the test on anything else. */
export async function issue(server: TestServer, input: Record<string, unknown>) {
  const res = await server.gql(CREATE, { input });
  const result = res.data?.createRequestToken;
  if (result?.__typename !== 'CreateRequestTokenSuccess') {
    throw new Error(`expected a token, got ${JSON.stringify(res)}`);
  }
  return result as { jwt: string; url: string | null; token: Record<string, any> & { id: string } };
}

export async function redeem(server: TestServer, input: Record<string, unknown>) {
  const res = await server.gql(REDEEM, { input });
  if (!res.data) throw new Error(`redeem failed: ${JSON.stringify(res)}`);
  return res.data.redeemRequestToken as Record<string, any>;
}

/** The token's row and its log rows, straight from the database. */
export async function tokenState(server: TestServer, id: string) {
  const [token] = await server.sql('select * from request_token where id = $1', [id]);
  const logs = await server.sql('select * from request_token_log where token_id = $1 order by id', [id]);
  return { usedToDate: token.used_to_date as number, logs };
}
