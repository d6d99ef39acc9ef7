import fp from 'fastify-plugin';
import { createEncryptionService, type EncryptionService } from '../encryption/encryption-service.js';

declare module 'fastify' {
  interface FastifyInstance {
    encryption: EncryptionService;
  }
}

export default fp(
  async (app) => {
    app.decorate('encryption', createEncryptionService({ keyVault: app.keyVault, metrics: app.metrics }));
  },
  { name: 'encryption', dependencies: ['key-vault', 'metrics'] },
);
