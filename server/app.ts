import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GraphQLError } from 'graphql';
import { createYoga } from 'graphql-yoga';
import { schema } from '../schema/index.js';
import { createContext, type Context, type Services } from './context.js';
import { TRANSIENT_MESSAGES, transientReason } from './db-errors.js';
import { handleDashboard } from './dashboard.js';
import { graphiqlTabs } from './graphiql-dashboard-tabs.js';
import { graphiqlExample } from './graphiql-example.js';

export interface App {
  server: Server;
  /** Bound address once listening. */
  url: string;
  listen(port: number, host: string): Promise<string>;
  /** Stops accepting, fails readiness, lets in-flight requests finish (up to the deadline), then closes. */
  stop(deadlineMs?: number): Promise<void>;
}

function unauthenticated(message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: 'UNAUTHENTICATED', http: { status: 401 } } });
}

export function createApp(services: Services): App {
  const { log } = services;
  let stopping = false;

  const yoga = createYoga<{ req: IncomingMessage; res: ServerResponse }, Context>({
    schema,
    graphqlEndpoint: '/graphql',
    landingPage: false,
    logging: false,
    graphiql: {
      title: 'request-token',
      defaultQuery: graphiqlExample,
      defaultTabs: graphiqlTabs,
      headers: JSON.stringify({ Authorization: 'Bearer <your API key: see DATA_DIR/admin-api-key>' }, null, 2),
    },
    // Deliberate GraphQL errors pass; anything else is logged in full and reaches the client as an opaque error.
    maskedErrors: {
      maskError(error, message) {
        const original = error instanceof GraphQLError ? error.originalError : error;
        if (error instanceof GraphQLError && (!original || original instanceof GraphQLError)) return error;
        const reason = transientReason(original ?? error);
        if (reason) {
          log.info(`retryable failure (${reason}): ${(original as Error | undefined)?.message ?? message}`);
          return new GraphQLError(TRANSIENT_MESSAGES[reason], {
            extensions: {
              code: 'SERVICE_UNAVAILABLE',
              reason,
              retryable: true,
              http: { status: 503, headers: { 'retry-after': '1' } },
            },
          });
        }
        log.error('unexpected error while serving a request', original ?? error);
        return new GraphQLError(message, { extensions: { code: 'INTERNAL_SERVER_ERROR' } });
      },
    },
    context: async ({ request }) => {
      const header = request.headers.get('authorization');
      if (!header) throw unauthenticated('Missing API key: send "Authorization: Bearer <api key>".');
      const match = /^Bearer\s+(\S+)$/i.exec(header);
      const caller = match ? await services.authenticator.authenticate(services.orm.em.fork(), match[1]) : null;
      if (!caller) throw unauthenticated('Invalid, expired or revoked API key.');
      return createContext(services, caller);
    },
  });

  const inFlight = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    inFlight.add(res);
    res.on('close', () => inFlight.delete(res));
    if (stopping) res.setHeader('connection', 'close');
    const path = req.url?.split('?')[0];
    if (path === '/healthz') {
      void health(services, stopping).then(({ status, body }) => {
        res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(JSON.stringify(body));
      });
      return;
    }
    if (path && handleDashboard(req, res, path)) return;
    if (path === '/' && req.method === 'GET') {
      res.writeHead(302, { location: '/graphql' });
      res.end();
      return;
    }
    void yoga(req, res, { req, res });
  });
  server.keepAliveTimeout = 5_000;

  const app: App = {
    server,
    url: '',
    listen(port, host) {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          const address = server.address() as AddressInfo;
          const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
          app.url = `http://${shownHost}:${address.port}`;
          resolve(app.url);
        });
      });
    },
    async stop(deadlineMs = 10_000) {
      stopping = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const deadline = new Promise<void>((resolve) => setTimeout(resolve, deadlineMs).unref());
      await Promise.race([closed, deadline]);
      server.closeAllConnections();
    },
  };
  return app;
}

async function health(services: Services, stopping: boolean) {
  if (stopping) return { status: 503, body: { status: 'stopping' } };
  try {
    await services.pool.query({ text: 'select 1', query_timeout: 2_000 } as never);
    return { status: 200, body: { status: 'ok' } };
  } catch {
    return { status: 503, body: { status: 'database unavailable' } };
  }
}
