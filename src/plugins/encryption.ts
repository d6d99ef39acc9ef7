import fp from 'fastify-plugin';
import { createEncryptionEngine, type EncryptionEngine } from '../encryption/encryption-engine.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The one encryption engine: every use of a data key goes through it. */
    encryption: EncryptionEngine;
  }
}

export default fp(
  async (app) => {
    app.decorate('encryption', createEncryptionEngine({ keyVault: app.keyVault, metrics: app.metrics }));
  },
  { name: 'encryption', dependencies: ['key-vault', 'metrics'] },
);
