/**
 * Counting proxies for W5 (and the W3 "no key-vault or KMS call per request" check):
 * - an HTTP proxy in front of moto that counts KMS calls by X-Amz-Target (TrentService.Decrypt …),
 *   forwarding every header as is (SigV4 signs the Host the SDK saw, so it must not change);
 * - a TCP proxy in front of MongoDB, used as the service's KEY_VAULT_URI, that decodes the client's
 *   OP_MSG commands and counts them by command name and collection (e.g. "find __keyVault").
 */
import http from 'node:http';
import net from 'node:net';
import { BSON } from 'mongodb';

export interface KmsProxy {
  url: string;
  counts: Record<string, number>;
  close(): Promise<void>;
}

export async function startKmsProxy(target: string): Promise<KmsProxy> {
  const upstream = new URL(target);
  const counts: Record<string, number> = {};
  const server = http.createServer((req, res) => {
    const op = String(req.headers['x-amz-target'] ?? `${req.method} ${req.url}`);
    counts[op] = (counts[op] ?? 0) + 1;
    const forward = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    forward.on('error', () => {
      res.statusCode = 502;
      res.end();
    });
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    counts,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface MongoCountingProxy {
  port: number;
  /** "<command> <collection>" → count, e.g. "find __keyVault". */
  counts: Record<string, number>;
  close(): Promise<void>;
}

const OP_MSG = 2013;

/** Count the commands of one client→server stream; returns the unparsed tail. */
function countMessages(buffer: Buffer, counts: Record<string, number>): Buffer {
  let offset = 0;
  while (buffer.length - offset >= 16) {
    const length = buffer.readInt32LE(offset);
    if (buffer.length - offset < length) break;
    const opCode = buffer.readInt32LE(offset + 12);
    if (opCode === OP_MSG && buffer[offset + 20] === 0) {
      try {
        const docLength = buffer.readInt32LE(offset + 21);
        const doc = BSON.deserialize(buffer.subarray(offset + 21, offset + 21 + docLength), { promoteBuffers: true });
        const command = Object.keys(doc)[0] ?? '?';
        const target = doc[command];
        const key = typeof target === 'string' ? `${command} ${target}` : command;
        counts[key] = (counts[key] ?? 0) + 1;
      } catch {
        counts['unparsed'] = (counts['unparsed'] ?? 0) + 1;
      }
    } else {
      counts[`opcode ${opCode}`] = (counts[`opcode ${opCode}`] ?? 0) + 1;
    }
    offset += length;
  }
  return buffer.subarray(offset);
}

export async function startMongoCountingProxy(target: { host: string; port: number }): Promise<MongoCountingProxy> {
  const counts: Record<string, number> = {};
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    sockets.add(client).add(upstream);
    let pending: Buffer = Buffer.alloc(0);
    client.on('data', (chunk: Buffer) => {
      pending = countMessages(pending.length === 0 ? chunk : Buffer.concat([pending, chunk]), counts);
      upstream.write(chunk);
    });
    upstream.pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    counts,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
