import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// The sources sit two levels below the repository (server/http/), the bundle one (dist/): look upwards for the page.
const PAGE_DIR = findPageDir(dirname(fileURLToPath(import.meta.url)));
const CHART_JS = join(dirname(createRequire(import.meta.url).resolve('chart.js')), 'chart.umd.min.js');

/** Everything the page loads, served from this package and node_modules: it works offline, with no CDN. */
const ASSETS: Record<string, { file: string; type: string }> = {
  '/dashboard': { file: join(PAGE_DIR, 'index.html'), type: 'text/html; charset=utf-8' },
  '/dashboard/dashboard.css': { file: join(PAGE_DIR, 'dashboard.css'), type: 'text/css; charset=utf-8' },
  '/dashboard/dashboard.js': { file: join(PAGE_DIR, 'dashboard.js'), type: 'text/javascript; charset=utf-8' },
  '/dashboard/vendor/chart.umd.min.js': { file: CHART_JS, type: 'text/javascript; charset=utf-8' },
  '/dashboard/favicon.svg': { file: join(PAGE_DIR, 'favicon.svg'), type: 'image/svg+xml' },
};

// The page talks to /graphql only; it runs no inline script and loads nothing from elsewhere.
const HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};

const cache = new Map<string, Buffer>();

/** Serves /dashboard and its assets; returns false for any other path so the caller handles it. */
export function handleDashboard(req: IncomingMessage, res: ServerResponse, path: string): boolean {
  if (path !== '/dashboard' && !path.startsWith('/dashboard/')) return false;
  if (path === '/dashboard/') {
    res.writeHead(301, { location: '/dashboard' });
    res.end();
    return true;
  }
  const asset = ASSETS[path];
  if (!asset) {
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', ...HEADERS });
    res.end('Not found\n');
    return true;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
    res.end('Method not allowed\n');
    return true;
  }
  const cached = cache.get(asset.file);
  const body = cached ? Promise.resolve(cached) : readFile(asset.file);
  body.then(
    (content) => {
      cache.set(asset.file, content);
      res.writeHead(200, { 'content-type': asset.type, 'content-length': content.length, ...HEADERS });
      res.end(req.method === 'HEAD' ? undefined : content);
    },
    () => {
      res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('Dashboard asset missing\n');
    },
  );
  return true;
}

function findPageDir(from: string): string {
  for (let dir = from; dir !== dirname(dir); dir = dirname(dir)) {
    if (existsSync(join(dir, 'dashboard', 'index.html'))) return join(dir, 'dashboard');
  }
  throw new Error(`dashboard/index.html not found above ${from}`);
}
