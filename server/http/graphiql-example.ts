/** What GraphiQL opens with: issue a link, then redeem it. */
export const graphiqlExample = `# Welcome to the request-token service.
#
# 1. Put your API key in the Headers tab below:
#      { "Authorization": "Bearer rt_..." }
#    A first start prints an admin key and writes it to DATA_DIR/admin-api-key (./.data/admin-api-key).
# 2. Run "Issue" (the play button offers each operation), copy the jwt from the result into the
#    variables of "Redeem", and run it. Run "Redeem" again: the second use is refused.
# 3. Run "Logs" to see both attempts.

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
