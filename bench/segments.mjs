// Where a server's time goes per request, at one connection (redeem-low), measured inside the process: load it into
// both servers with `BENCH_SERVER_NODE_ARGS="--import ./bench/segments.mjs" BENCH_SCENARIOS=redeem-low npm run bench`.
// It timestamps each POST from Node's 'request' event to its body's end, to the first write on a database socket (any
// client socket that is not an HTTP response's), to the last data read on one, to `res.end()`, and to 'finish', and
// counts garbage collections. With one request at a time these segments are that request's. At exit each process
// writes one line of medians (the last 15,000 requests) to `segments-<pid>.txt` in the temporary directory. Runs of a
// few seconds still hold the warm-up's slow requests: use the bench's default rounds. Measurement code: it patches the
// http and net prototypes, so never load it into the service itself.
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';

const now = () => Number(process.hrtime.bigint()) / 1000;
const gc = { count: 0, ms: 0 };
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    gc.count++;
    gc.ms += entry.duration;
  }
}).observe({ entryTypes: ['gc'] });

let current = null;
const requests = [];
const emit = http.Server.prototype.emit;
http.Server.prototype.emit = function (event, ...args) {
  const [req, res] = args;
  if (event === 'request' && req.method === 'POST') {
    const r = (current = { start: now() });
    req.once('end', () => (r.body = now()));
    res.once('finish', () => {
      r.finish = now();
      if (requests.length < 1_000_000) requests.push(r);
    });
  }
  return emit.call(this, event, ...args);
};
const end = http.ServerResponse.prototype.end;
http.ServerResponse.prototype.end = function (...args) {
  if (current && current.end === undefined) current.end = now();
  return end.apply(this, args);
};
const write = net.Socket.prototype.write;
net.Socket.prototype.write = function (...args) {
  if (!this.server && !this._httpMessage && current && current.query === undefined) current.query = now();
  return write.apply(this, args);
};
const socketEmit = net.Socket.prototype.emit;
net.Socket.prototype.emit = function (event, ...args) {
  if (event === 'data' && !this.server && current && current.query !== undefined) current.answer = now();
  return socketEmit.call(this, event, ...args);
};

process.on('exit', () => {
  const done = requests.slice(-15_000).filter((r) => r.body && r.query && r.answer && r.end && r.finish);
  if (done.length === 0) return;
  const median = (f) => {
    const sorted = done.map(f).sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)].toFixed(1);
  };
  const line =
    `${process.argv[1].split('/').pop()}: ${done.length} requests, medians in µs: ` +
    `body ${median((r) => r.body - r.start)}, before the query ${median((r) => r.query - r.body)}, ` +
    `database ${median((r) => r.answer - r.query)}, after it ${median((r) => r.end - r.answer)}, ` +
    `end to finish ${median((r) => r.finish - r.end)}, total ${median((r) => r.finish - r.start)}; ` +
    `GC ${gc.count} times, ${((gc.ms * 1000) / requests.length).toFixed(1)} µs per request (start-up included)\n`;
  writeFileSync(join(tmpdir(), `segments-${process.pid}.txt`), line);
});
