// The load generator, always in a process of its own with the same settings for both sides, so that its share of
// the two cores is the same whichever server it drives. Reads a job (JSON file), prints one JSON result line.
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';

interface Job {
  url: string;
  path: string;
  headers: Record<string, string>;
  /** Request bodies, handed out round-robin across all connections. */
  bodies: string[];
  connections: number;
  seconds: number;
}

const job = JSON.parse(readFileSync(process.argv[2], 'utf8')) as Job;
let next = 0;
const result = await autocannon({
  url: job.url,
  connections: job.connections,
  duration: job.seconds,
  requests: [
    {
      method: 'POST',
      path: job.path,
      headers: { 'content-type': 'application/json', ...job.headers },
      setupRequest: (request: any) => ({ ...request, body: job.bodies[next++ % job.bodies.length] }),
    },
  ],
});
process.stdout.write(
  `${JSON.stringify({
    rps: result.requests.average,
    total: result.requests.total,
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
  })}\n`,
);
