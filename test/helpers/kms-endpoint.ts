/**
 * A KMS endpoint of a test's own in front of the stack's moto (the real KMS emulator, IAM
 * enforced): every request is forwarded to moto unchanged, except those a fail point claims. Like
 * the spec's kms_failpoint_server.py, it can answer the next requests with a network failure (the
 * connection reset, no response) or an HTTP 5xx; and like the spec's mock TLS servers, it can
 * listen with TLS under a certificate the test made. Moto itself, and every other test using it,
 * is untouched.
 */
import { request as httpRequest } from 'node:http';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import { stack } from './stack.js';

export interface KmsEndpoint {
  /** What AWS_KMS_ENDPOINT should be: http://127.0.0.1:port, or https://<host>:port with TLS. */
  url: string;
  port: number;
  /** Requests that arrived, forwarded or failed. */
  requests(): number;
  /** Requests a fail point failed (and so did not reach moto). */
  failed(): number;
  /** Connections accepted (with TLS, before any handshake: a refused certificate still counts). */
  connections(): number;
  /** The next `count` requests fail: `network` resets the connection; `http` answers `status`. */
  setFailPoint(kind: 'network' | 'http', count: number, status?: number): void;
  /** Fail points still armed. */
  pending(): number;
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

export async function startKmsEndpoint(
  t: Teardown,
  options: { tls?: { cert: string | Buffer; key: string | Buffer }; host?: string } = {},
): Promise<KmsEndpoint> {
  const moto = new URL(stack.kmsEndpoint);
  const sockets = new Set<Socket>();
  let requests = 0;
  let failed = 0;
  let connections = 0;
  let failPoint: { kind: 'network' | 'http'; count: number; status: number } | undefined;

  function forward(req: IncomingMessage, res: ServerResponse) {
    const upstream = httpRequest(
      { host: moto.hostname, port: Number(moto.port), method: req.method, path: req.url, headers: req.headers },
      (reply) => {
        res.writeHead(reply.statusCode ?? 502, reply.headers);
        reply.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  }

  function handle(req: IncomingMessage, res: ServerResponse) {
    requests++;
    if (failPoint !== undefined && failPoint.count > 0) {
      failPoint.count--;
      failed++;
      if (failPoint.kind === 'network') {
        // A TCP reset once the request is read: the client sees ECONNRESET, no answer at all.
        req.resume();
        req.on('end', () => req.socket.resetAndDestroy());
        return;
      }
      req.resume();
      req.on('end', () => {
        res.writeHead(failPoint!.status, { 'content-type': 'application/x-amz-json-1.1' });
        res.end(JSON.stringify({ __type: 'InternalFailure', message: 'fail point' }));
      });
      return;
    }
    forward(req, res);
  }

  const server = options.tls ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key }, handle) : createHttpServer(handle);
  server.on('connection', (socket: Socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  // TLS handshakes the client refuses end here; they are the point of the TLS tests, not errors.
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as { port: number }).port;
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  );
  return {
    url: `${options.tls ? 'https' : 'http'}://${options.host ?? '127.0.0.1'}:${port}`,
    port,
    requests: () => requests,
    failed: () => failed,
    connections: () => connections,
    setFailPoint(kind, count, status = 500) {
      failPoint = { kind, count, status };
    },
    pending: () => failPoint?.count ?? 0,
  };
}
