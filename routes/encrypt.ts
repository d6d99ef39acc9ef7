import type { FastifyInstance } from 'fastify';
import { encryptBodySchema, encryptResponseSchema } from '../schemas/http/crypto.js';
import { commonErrors, errorResponses } from '../schemas/http/common.js';
import type { AlgorithmName } from '../src/crypto/fle-payload.js';
import type { EncryptRequest, ItemResult } from '../src/encryption/encryption-service.js';
import { fromEjson } from '../src/ejson.js';
import { AppError, isAppError } from '../src/errors.js';
import { parseKeyId } from '../src/key-vault/key-document.js';
import { firstOfKeyIdRuns } from '../src/encryption/key-id-runs.js';
import { batchItems, keyIdsOf } from './item-results.js';

interface EncryptItem {
  value: unknown;
  algorithm: string;
  keyId?: string;
  keyAltName?: string;
  reference?: string;
}
type EncryptBody = EncryptItem | { items: EncryptItem[] };

function algorithmOf(name: string): AlgorithmName {
  return name === 'deterministic' || name.endsWith('-Deterministic') ? 'deterministic' : 'random';
}

/** Base64 of a payload without copying it first (the driver's Binary already holds a Buffer). */
function base64Of(bytes: Uint8Array): string {
  return (Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)).toString('base64');
}

function toRequest(item: EncryptItem): EncryptRequest {
  const request: EncryptRequest = { value: fromEjson(item.value), algorithm: algorithmOf(item.algorithm) };
  if (item.keyId !== undefined) request.keyId = parseKeyId(item.keyId);
  if (item.keyAltName !== undefined) request.keyAltName = item.keyAltName;
  return request;
}

export default async function encryptRoutes(app: FastifyInstance) {
  app.post(
    '/encrypt',
    {
      config: { scope: 'encrypt', audit: 'crypto.encrypt' },
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
      const authorize = request.authorizeKeys();
      if (!('items' in body)) {
        const ciphertext = await app.encryption.encrypt(toRequest(body), authorize);
        request.auditDetails = { keyIds: keyIdsOf([ciphertext.buffer]) };
        return { ciphertext: base64Of(ciphertext.buffer) };
      }
      // A value that is not valid Extended JSON fails its own item, not the batch.
      const parsed = body.items.map((item): ItemResult<EncryptRequest> => {
        try {
          return { ok: true, value: toRequest(item) };
        } catch (err) {
          if (isAppError(err)) return { ok: false, error: err };
          throw err;
        }
      });
      const valid = parsed.flatMap((p) => (p.ok ? [p.value] : []));
      const encrypted = await app.encryption.encryptMany(valid, authorize);
      request.auditDetails = { keyIds: keyIdsOf(firstOfKeyIdRuns(encrypted.flatMap((r) => (r.ok ? [r.value.buffer] : [])))) };
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
