/** Request and response schemas of POST /encrypt and POST /decrypt. */
import { base64Schema, keyAltNameSchema, referenceSchema, uuidSchema } from './common.js';

const algorithmSchema = {
  type: 'string',
  enum: ['deterministic', 'random', 'AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic', 'AEAD_AES_256_CBC_HMAC_SHA_512-Random'],
  description: 'Deterministic gives equal ciphertexts for equal values under one key (for equality queries); random does not.',
} as const;

const valueSchema = { description: 'Any BSON value as Extended JSON v2 (relaxed or canonical).' } as const;

const encryptFields = {
  value: valueSchema,
  algorithm: algorithmSchema,
  keyId: uuidSchema,
  keyAltName: keyAltNameSchema,
} as const;

const oneKey = { oneOf: [{ required: ['keyId'] }, { required: ['keyAltName'] }] } as const;

export function encryptBodySchema(maxItems: number) {
  return {
    oneOf: [
      {
        type: 'object',
        title: 'EncryptOne',
        additionalProperties: false,
        required: ['value', 'algorithm'],
        properties: encryptFields,
        ...oneKey,
      },
      {
        type: 'object',
        title: 'EncryptBatch',
        additionalProperties: false,
        required: ['items'],
        properties: {
          items: {
            type: 'array',
            minItems: 1,
            maxItems,
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['value', 'algorithm'],
              properties: { ...encryptFields, reference: referenceSchema },
              ...oneKey,
            },
          },
        },
      },
    ],
  };
}

export const encryptResponseSchema = {
  type: 'object',
  properties: {
    ciphertext: { ...base64Schema, description: 'The BSON Binary subtype 6 payload, base64.' },
    items: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          reference: referenceSchema,
          ciphertext: base64Schema,
          error: { $ref: 'ItemError#' },
        },
      },
    },
  },
} as const;

export function decryptBodySchema(maxItems: number) {
  return {
    oneOf: [
      {
        type: 'object',
        title: 'DecryptOne',
        additionalProperties: false,
        required: ['ciphertext'],
        properties: { ciphertext: base64Schema },
      },
      {
        type: 'object',
        title: 'DecryptBatch',
        additionalProperties: false,
        required: ['items'],
        properties: {
          items: {
            type: 'array',
            minItems: 1,
            maxItems,
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['ciphertext'],
              properties: { ciphertext: base64Schema, reference: referenceSchema },
            },
          },
        },
      },
    ],
  };
}

export const decryptResponseSchema = {
  type: 'object',
  properties: {
    value: valueSchema,
    items: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          reference: referenceSchema,
          value: valueSchema,
          error: { $ref: 'ItemError#' },
        },
      },
    },
  },
} as const;

export const formatQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    format: { type: 'string', enum: ['relaxed', 'canonical'], default: 'relaxed', description: 'Extended JSON output format.' },
  },
} as const;
