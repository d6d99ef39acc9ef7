import type { FastifyInstance } from 'fastify';
import { decryptBodySchema, decryptResponseSchema, formatQuerySchema } from '../schemas/http/crypto.js';
import { commonErrors, errorResponses } from '../schemas/http/common.js';
import { toEjson, type EjsonFormat } from '../src/ejson.js';
import { batchItems } from './item-results.js';

type DecryptBody = { ciphertext: string } | { items: { ciphertext: string; reference?: string }[] };

export default async function decryptRoutes(app: FastifyInstance) {
  app.post(
    '/decrypt',
    {
      schema: {
        tags: ['crypto'],
        summary: 'Decrypt a CSFLE ciphertext, or a batch; every failure gives the same DECRYPTION_FAILED',
        security: [{ bearerAuth: [] }],
        querystring: formatQuerySchema,
        body: decryptBodySchema(app.config.maxBatchItems),
        response: { 200: decryptResponseSchema, ...errorResponses(...commonErrors) },
      },
    },
    async (request) => {
      const body = request.body as DecryptBody;
      const { format } = request.query as { format: EjsonFormat };
      if (!('items' in body)) {
        return { value: toEjson(await app.encryption.decrypt(Buffer.from(body.ciphertext, 'base64')), format) };
      }
      const results = await app.encryption.decryptMany(body.items.map((i) => Buffer.from(i.ciphertext, 'base64')));
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
