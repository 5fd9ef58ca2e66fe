import { graphiqlExample } from './graphiql-example.js';

const usageStats = `# Usage per UTC day (or HOUR) and per
# scope: issued, redeemed, refused by
# code, recorded statuses. Leave out
# "since" for the last 30 days (48 hours
# by the HOUR); add "scope" to narrow.

fragment Counts on UsageCounts {
  issued
  redemptions
  refusals
  refusalsByCode { code count }
  responseStatuses { status2xx status3xx status4xx status5xx unrecorded }
}

query UsageStats($filter: UsageStatsFilter, $bucket: StatsBucket!) {
  usageStats(filter: $filter, bucket: $bucket) {
    bucket timeZone since until
    totals { ...Counts }
    scopes { scope ...Counts }
    buckets { start end ...Counts }
  }
}
`;

const logsByToken = `# Every attempt on one token, newest
# first (20 a page: pass
# pageInfo.endCursor as "after"). Other
# filters: scope, userId, statusCode,
# failed, since, until.

query LogsByToken($tokenId: ID!, $after: String) {
  requestTokenLogs(filter: { tokenId: $tokenId }, first: 20, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { id timestamp errorCode userId clientIp userAgent statusCode } }
  }
}
`;

const lookupByJwt = `# "Why didn't my link work?" Paste the
# JWT (the rt=… part of the link): the
# token behind it, whatever its status,
# with its claims decoded and its
# history. Looking up consumes nothing
# and logs nothing.

query LookupByJwt($jwt: String!) {
  findRequestTokenByJwt(jwt: $jwt) {
    __typename
    ... on RequestTokenLookup {
      claims { tokenId scope loginMode maxUses userId issuedAt expiresAt notBefore }
      token {
        id status usedToDate maxUses revokedAt targetUrl
        logs(first: 10) { totalCount edges { node { timestamp errorCode statusCode clientIp } } }
      }
    }
    ... on Error { code message }
  }
}
`;

const housekeeping = `# Admin: revoke many tokens at once, and
# trim the redemption log (also: npx
# request-token logs truncate).

mutation RevokeForUser($userId: String!) {
  revokeRequestTokens(filter: { userId: $userId }) {
    __typename
    ... on RevokeRequestTokensSuccess { revokedCount }
    ... on ValidationError { message }
  }
}

mutation TruncateLogs {
  truncateRequestTokenLogs(maxDays: 90, maxCount: 1000000) {
    __typename
    ... on TruncateRequestTokenLogsSuccess { deletedCount oldestDeleted newestDeleted }
    ... on ValidationError { message }
  }
}
`;

/** The tabs GraphiQL opens with (when the browser has none stored): getting started, then the dashboard questions. */
export const graphiqlTabs = [
  { query: graphiqlExample },
  { query: usageStats, variables: JSON.stringify({ bucket: 'DAY', filter: {} }, null, 2) },
  { query: logsByToken, variables: JSON.stringify({ tokenId: '1' }, null, 2) },
  { query: lookupByJwt, variables: JSON.stringify({ jwt: 'paste the jwt here' }, null, 2) },
  { query: housekeeping, variables: JSON.stringify({ userId: '42' }, null, 2) },
];
