/** The collection schema of the write-operation tests: plaintext arrays beside every kind of encrypted field. */
import { DET, RND } from './documents.js';

export const writesSchema = () => ({
  bsonType: 'object',
  required: ['name'],
  properties: {
    _id: {},
    name: { bsonType: 'string' },
    level: { bsonType: 'int' },
    tags: { bsonType: 'array' },
    items: { bsonType: 'array' },
    tenantKey: { bsonType: 'string' },
    ssn: { encrypt: { bsonType: 'string', algorithm: DET, keyAltName: 'hr-det' } },
    ssnCopy: { encrypt: { bsonType: 'string', algorithm: DET, keyAltName: 'hr-det' } },
    salary: { encrypt: { bsonType: 'int', algorithm: RND, keyAltName: 'hr-rnd' } },
    medical: {
      bsonType: 'object',
      properties: { diagnosis: { encrypt: { bsonType: 'string', algorithm: RND, keyAltName: 'hr-rnd' } }, ward: { bsonType: 'string' } },
    },
    tenantSecret: { encrypt: { bsonType: 'string', algorithm: RND, keyId: '/tenantKey' } },
  },
});
