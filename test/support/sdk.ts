import type { RequestTokenClient } from '@request-token/sdk';

/** Issues a token through the SDK client, failing the test on anything but a success. */
export async function issueWith(rt: RequestTokenClient, input: Parameters<RequestTokenClient['createRequestToken']>[0]) {
  const issued = await rt.createRequestToken(input);
  if (issued.__typename !== 'CreateRequestTokenSuccess') throw new Error(issued.message);
  return issued;
}
