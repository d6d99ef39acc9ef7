import type { FastifyInstance } from 'fastify';
import { encryptBodySchema, encryptResponseSchema } from '../schemas/http/crypto.js';
import { commonErrors, errorResponses } from '../schemas/http/common.js';
import type { AlgorithmName } from '../src/crypto/fle-payload.js';
import type { EncryptItem, ItemResult } from '../src/encryption/encryption-engine.js';
import { fromEjson } from '../src/ejson.js';
import { isAppError, type AppError } from '../src/errors.js';
import { parseKeyId } from '../src/key-vault/key-document.js';
import { batchItems } from './item-results.js';

interface EncryptBodyItem {
  value: unknown;
  algorithm: string;
  keyId?: string;
  keyAltName?: string;
  reference?: string;
}
type EncryptBody = EncryptBodyItem | { items: EncryptBodyItem[] };

function algorithmOf(name: string): AlgorithmName {
  return name === 'deterministic' || name.endsWith('-Deterministic') ? 'deterministic' : 'random';
}

/** Base64 of a payload without copying it first (the driver's Binary already holds a Buffer). */
function base64Of(bytes: Uint8Array): string {
  return (Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)).toString('base64');
}

function toRequest(item: EncryptBodyItem): EncryptItem {
  const request: EncryptItem = { value: fromEjson(item.value), algorithm: algorithmOf(item.algorithm) };
  if (item.keyId !== undefined) request.keyId = parseKeyId(item.keyId);
  if (item.keyAltName !== undefined) request.keyAltName = item.keyAltName;
  return request;
}

export default async function encryptRoutes(app: FastifyInstance) {
  app.post(
    '/encrypt',
    {
      config: { scope: 'encrypt', audit: 'crypto.encrypt', readOnly: true },
      schema: {
        tags: ['crypto'],
        summary: 'Encrypt one value, or a batch, under a named data key',
        security: [{ bearerAuth: [] }],
        body: encryptBodySchema(app.config.maxBatchItems),
        response: { 200: encryptResponseSchema, ...errorResponses(...commonErrors, 403, 404, 422, 429, 502) },
      },
    },
    async (request) => {
      const body = request.body as EncryptBody;
      const access = { ...request.caller!, purpose: { kind: 'encrypt' as const } };
      if (!('items' in body)) {
        const [result] = (await app.encryption.encrypt([toRequest(body)], access)).results;
        if (!result!.ok) throw result!.error;
        return { ciphertext: base64Of(result!.value.buffer) };
      }
      // A value that is not valid Extended JSON fails its own item, not the batch.
      const parsed = body.items.map((item): ItemResult<EncryptItem> => {
        try {
          return { ok: true, value: toRequest(item) };
        } catch (err) {
          if (isAppError(err)) return { ok: false, error: err };
          throw err;
        }
      });
      const valid = parsed.flatMap((p) => (p.ok ? [p.value] : []));
      const encrypted = (await app.encryption.encrypt(valid, access)).results;
      let next = 0;
      const results = parsed.map((p) => (p.ok ? encrypted[next++]! : (p as { ok: false; error: AppError })));
      return {
        items: batchItems(
          results,
          body.items.map((i) => i.reference),
          'ciphertext',
          (b) => base64Of(b.buffer),
        ),
      };
    },
  );
}
