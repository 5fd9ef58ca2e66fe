/**
 * A tiny newsletter: it "sends" an issue by printing one unsubscribe link per subscriber (each issued through the
 * SDK) with its List-Unsubscribe headers, and serves /unsubscribe behind the requestToken middleware. Everything it
 * knows about tokens comes from '@request-token/sdk'; it never writes GraphQL.
 *
 * The link is scanner-safe (`confirm: true`): opening it shows a confirmation page, and only its button (a POST)
 * unsubscribes, so a mail scanner that fetches every link consumes nothing. Mail providers' own "Unsubscribe"
 * buttons POST `List-Unsubscribe=One-Click` to the same URL (RFC 8058), which unsubscribes at once.
 */
import express from 'express';
import {
  isRequestTokenClientError,
  listUnsubscribeHeaders,
  requestToken,
  type ListUnsubscribeHeaders,
  type RequestTokenClient,
} from '@request-token/sdk';

export interface Subscriber {
  id: string;
  email: string;
}

export interface NewsletterOptions {
  client: RequestTokenClient;
  /** This app's public origin, e.g. http://localhost:3000; the links point there. */
  publicUrl: string;
  subscribers: Subscriber[];
}

export function createNewsletterApp({ client, publicUrl, subscribers }: NewsletterOptions) {
  const app = express();
  const list = new Map(subscribers.map((s) => [s.id, s]));

  /** Issues one single-use unsubscribe link per subscriber, bound to that subscriber and to the /unsubscribe URL. */
  async function send(): Promise<{ email: string; link: string; headers: ListUnsubscribeHeaders }[]> {
    const mails = [];
    for (const subscriber of list.values()) {
      const issued = await client.createRequestToken({
        scope: 'unsubscribe',
        userId: subscriber.id,
        loginMode: 'REQUEST',
        maxUses: 1,
        targetUrl: new URL('/unsubscribe?list=weekly', publicUrl).toString(),
        data: { list: 'weekly' },
      });
      if (issued.__typename !== 'CreateRequestTokenSuccess') throw new Error(`could not issue: ${issued.message}`);
      mails.push({ email: subscriber.email, link: issued.url!, headers: listUnsubscribeHeaders(issued.url!) });
    }
    return mails;
  }

  app.get('/subscribers', (_req, res) => {
    res.json([...list.values()]);
  });

  // GET and HEAD get the confirmation page from the middleware; the handler runs for the POST that redeems.
  app.all(
    '/unsubscribe',
    requestToken({ client, scope: 'unsubscribe', required: true, publicUrl, confirm: true }),
    (req, res) => {
      // A REQUEST token names its user for this one request.
      const userId = req.requestToken!.authenticateAs!;
      const subscriber = list.get(userId);
      list.delete(userId);
      res.type('text/plain').send(`${subscriber?.email ?? 'You'} will get no more of this newsletter.\n`);
    },
  );

  // The service could not be reached: say so rather than serve the page unverified.
  app.use((error: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    res.status(isRequestTokenClientError(error) ? 503 : 500).type('text/plain').send('Please try again later.\n');
  });

  return { app, send };
}
