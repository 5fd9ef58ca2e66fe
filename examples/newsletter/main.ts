/**
 * Runs the newsletter example against a running request-token service:
 *
 *   REQUEST_TOKEN_URL=http://localhost:4000/graphql REQUEST_TOKEN_API_KEY=rt_… PORT=3000 npm run example:newsletter
 */
import type { AddressInfo } from 'node:net';
import { createRequestTokenClient } from '@request-token/sdk';
import { createNewsletterApp } from './app.js';

const url = process.env.REQUEST_TOKEN_URL ?? 'http://localhost:4000/graphql';
const apiKey = process.env.REQUEST_TOKEN_API_KEY;
if (!apiKey) {
  console.error('Set REQUEST_TOKEN_API_KEY (the service writes its admin key to DATA_DIR/admin-api-key).');
  process.exit(1);
}
const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? '127.0.0.1';

const client = createRequestTokenClient({ url, apiKey });
const subscribers = [
  { id: '1', email: 'ada@example.com' },
  { id: '2', email: 'alan@example.com' },
  { id: '3', email: 'grace@example.com' },
];

const server = createNewsletterApp({ client, publicUrl: `http://${host}:${port}`, subscribers });
const listener = server.app.listen(port, host, () => {
  const { port: bound } = listener.address() as AddressInfo;
  console.log(`newsletter listening on http://${host}:${bound}`);
  server.send().then(
    (mails) =>
      mails.forEach((mail) =>
        console.log(
          `To: ${mail.email}  Unsubscribe: ${mail.link}\n` +
            Object.entries(mail.headers)
              .map(([name, value]) => `  ${name}: ${value}`)
              .join('\n'),
        ),
      ),
    (error) => {
      console.error('could not send the newsletter:', error);
      process.exit(1);
    },
  );
});

const stop = () => listener.close(() => process.exit(0));
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
