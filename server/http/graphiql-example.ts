/** What GraphiQL opens with: issue a link, then redeem it. */
export const graphiqlExample = `# Welcome to request-token.
#
# The API key entered above is sent
# from every tab.
#
# 1. Run "Issue": the play button
#    offers each operation.
# 2. Copy the jwt from its result into
#    the variables of "Redeem", run it.
# 3. Run "Redeem" again: the second use
#    is refused.
# 4. Run "Logs" to see both attempts.
#
# The other tabs hold the dashboard's
# questions.

mutation Issue {
  createRequestToken(input: {
    scope: "unsubscribe"
    userId: "42"
    loginMode: REQUEST
    targetUrl: "https://news.example.com/unsubscribe?list=weekly"
    data: { list: "weekly" }
  }) {
    __typename
    ... on CreateRequestTokenSuccess { jwt url token { id status expiresAt } }
    ... on ValidationError { message issues { path message } }
  }
}

mutation Redeem($jwt: String! = "paste the jwt here") {
  redeemRequestToken(input: {
    jwt: $jwt
    scope: "unsubscribe"
    url: "https://news.example.com/unsubscribe?list=weekly&utm_source=mail"
    clientIp: "203.0.113.7"
    userAgent: "GraphiQL"
  }) {
    __typename
    ... on Redemption { id authenticateAs data usesRemaining token { status usedToDate } }
    ... on Error { code message }
  }
}

query Logs {
  requestTokenLogs(first: 10) {
    totalCount
    edges { node { timestamp errorCode userId clientIp statusCode token { id scope } } }
  }
}
`;
