import type { FastifyInstance } from 'fastify';
import { decryptBodySchema, decryptResponseSchema, formatQuerySchema } from '../schemas/http/crypto.js';
import { commonErrors, errorResponses } from '../schemas/http/common.js';
import { toEjson, type EjsonFormat } from '../src/ejson.js';
import { batchItems, keyIdsOf } from './item-results.js';
import { firstOfKeyIdRuns } from '../src/encryption/key-id-runs.js';

type DecryptBody = { ciphertext: string } | { items: { ciphertext: string; reference?: string }[] };

export default async function decryptRoutes(app: FastifyInstance) {
  app.post(
    '/decrypt',
    {
      config: { scope: 'decrypt', audit: 'crypto.decrypt' },
      schema: {
        tags: ['crypto'],
        summary: 'Decrypt a CSFLE ciphertext, or a batch; every failure gives the same DECRYPTION_FAILED',
        security: [{ bearerAuth: [] }],
        querystring: formatQuerySchema,
        body: decryptBodySchema(app.config.maxBatchItems),
        response: { 200: decryptResponseSchema, ...errorResponses(...commonErrors, 403, 429) },
      },
    },
    async (request) => {
      const body = request.body as DecryptBody;
      const { format } = request.query as { format: EjsonFormat };
      const authorize = request.authorizeKeys();
      if (!('items' in body)) {
        const payload = Buffer.from(body.ciphertext, 'base64');
        request.auditDetails = { keyIds: keyIdsOf([payload]) };
        return { value: toEjson(await app.encryption.decrypt(payload, authorize), format) };
      }
      const payloads = body.items.map((i) => Buffer.from(i.ciphertext, 'base64'));
      request.auditDetails = { keyIds: keyIdsOf(firstOfKeyIdRuns(payloads)) };
      const results = await app.encryption.decryptMany(payloads, authorize);
      return {
        items: batchItems(
          results,
          body.items.map((i) => i.reference),
          'value',
          (v) => toEjson(v, format),
        ),
      };
    },
  );
}
