import { createServer, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One KMS call that went through the recorder. */
export interface KmsCall {
  /** The KMS action, as IAM names it: `kms:Encrypt`, `kms:Decrypt`, … */
  action: string;
  /** The access key id that signed the request (the identity's). */
  accessKeyId: string;
  /** `KeyId` as the request named it (absent for a Decrypt without one). */
  requestKeyId?: string;
  /** The key ARN KMS reports having used (`KeyId` of a successful answer). */
  responseKeyId?: string;
  status: number;
  /** The error type of a call that failed (`__type` of a JSON answer, or `<Code>` of an XML one: moto answers a refusal with `AccessDenied` in XML). */
  errorType?: string;
}

function header(headers: IncomingHttpHeaders, name: string): string {
  const value = headers[name];
  return Array.isArray(value) ? value.join(',') : (value ?? '');
}

function jsonOf(body: Buffer): Record<string, unknown> {
  try {
    const parsed = JSON.parse(body.toString('utf8'));
    return parsed !== null && typeof parsed === 'object' ? parsed : {};
  } catch {
    return {};
  }
}

/**
 * A pass-through HTTP endpoint on loopback in front of moto that records every KMS call (action,
 * signer, key named, key used, outcome): what an integration test needs to say which KMS calls the
 * service really made. Requests and answers pass unchanged (the Host header too, so the SigV4
 * signature moto checks is the one the client computed).
 */
export async function startKmsRecorder(upstream: string): Promise<{ url: string; calls: KmsCall[]; close(): Promise<void> }> {
  const target = new URL(upstream);
  const calls: KmsCall[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      // One upstream connection per call (no pooled socket moto may have dropped meanwhile); the
      // hop-by-hop Connection header is not signed and not passed on.
      const { connection: _hop, ...headers } = req.headers;
      const forward = httpRequest(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers, agent: false },
        (answer) => {
          const answerChunks: Buffer[] = [];
          answer.on('data', (chunk: Buffer) => answerChunks.push(chunk));
          answer.on('end', () => {
            const answerBody = Buffer.concat(answerChunks);
            const sent = jsonOf(body);
            const got = jsonOf(answerBody);
            const status = answer.statusCode ?? 0;
            const call: KmsCall = {
              action: `kms:${header(req.headers, 'x-amz-target').replace(/^TrentService\./, '')}`,
              accessKeyId: /Credential=([^/]+)\//.exec(header(req.headers, 'authorization'))?.[1] ?? '',
              status,
            };
            if (typeof sent.KeyId === 'string') call.requestKeyId = sent.KeyId;
            if (status === 200 && typeof got.KeyId === 'string') call.responseKeyId = got.KeyId;
            if (status !== 200) call.errorType = String(got.__type ?? /<Code>([^<]+)<\/Code>/.exec(answerBody.toString('utf8'))?.[1] ?? 'unknown');
            calls.push(call);
            res.writeHead(status, answer.headers);
            res.end(answerBody);
          });
        },
      );
      forward.on('error', () => {
        res.writeHead(502);
        res.end();
      });
      forward.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
