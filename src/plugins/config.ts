import fp from 'fastify-plugin';
import { loadConfig as loadConfigFrom, type Config } from '../config.js';

declare module 'fastify' {
  interface FastifyInstance {
    config: Config;
  }
}

/** The one place that reads the process environment. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  return loadConfigFrom(env);
}

export default fp<{ config: Config }>(
  async (app, opts) => {
    app.decorate('config', opts.config);
  },
  { name: 'config' },
);
