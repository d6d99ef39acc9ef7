/**
 * A collection schema for the documents layer's unit tests: every kind of rule (deterministic and
 * random fields, an encryptMetadata subtree, patternProperties at two levels, a keyId pointer, a
 * subtree two levels deep), with key ids of the fake key vault so no alt name needs resolving.
 */
import { compilePlan, type ObjectNode } from '../../src/documents/encryption-plan.js';
import { KEY_IDS } from './fake-key-vault.js';

export const DET = 'AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic';
export const RND = 'AEAD_AES_256_CBC_HMAC_SHA_512-Random';

export const keyIdOf = (id: string) => [{ $uuid: id }];

export function unitSchema() {
  return {
    bsonType: 'object',
    required: ['name'],
    properties: {
      _id: {},
      name: { bsonType: 'string', maxLength: 20 },
      level: { bsonType: 'int', minimum: 1 },
      tags: { bsonType: 'array' },
      tenantKey: { bsonType: 'string' },
      ssn: { encrypt: { bsonType: 'string', algorithm: DET, keyId: keyIdOf(KEY_IDS.fixture) } },
      badge: { encrypt: { bsonType: 'int', algorithm: DET, keyId: keyIdOf(KEY_IDS.fixture) } },
      salary: { encrypt: { bsonType: 'int', algorithm: RND, keyId: keyIdOf(KEY_IDS.other) } },
      medical: {
        bsonType: 'object',
        encryptMetadata: { algorithm: RND, keyId: keyIdOf(KEY_IDS.other) },
        properties: {
          diagnosis: { encrypt: { bsonType: 'string' } },
          allergies: { encrypt: { bsonType: 'array' } },
          ward: { bsonType: 'string' },
        },
      },
      profile: {
        bsonType: 'object',
        properties: {
          contact: {
            bsonType: 'object',
            properties: {
              email: { encrypt: { bsonType: 'string', algorithm: DET, keyId: keyIdOf(KEY_IDS.other) } },
              city: { bsonType: 'string' },
            },
            patternProperties: { '^secret_': { encrypt: { algorithm: RND, keyId: keyIdOf(KEY_IDS.fixture) } } },
          },
        },
      },
      tenantSecret: { encrypt: { bsonType: 'string', algorithm: RND, keyId: '/tenantKey' } },
    },
    patternProperties: {
      '^note_': { encrypt: { bsonType: 'string', algorithm: RND, keyId: keyIdOf(KEY_IDS.fixture) } },
    },
  };
}

export function unitPlan(): ObjectNode {
  return compilePlan(unitSchema())!;
}
