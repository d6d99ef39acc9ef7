# syntax=docker/dockerfile:1
# The Node.js line: the current LTS (26: Active LTS from 2026-10-28, maintained until 2029-04-30),
# on Debian 13 (trixie), the line's default. scripts/test runs the whole suite on this line too
# (.nvmrc); test/deploy/runtime.test.ts keeps this, .nvmrc, package.json engines and the README
# in agreement.
ARG NODE_MAJOR=26

# Build stage: compile TypeScript, then drop dev dependencies.
FROM node:${NODE_MAJOR}-trixie-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Fixes to dependencies, applied by the postinstall script (see patches/README.md).
COPY patches patches
RUN npm ci --no-audit --no-fund
# The native AEAD addon (faster batch decryption) needs a compiler here only; the runtime has none.
# It builds against this image's own Node headers (/usr/local/include/node), so nothing is fetched.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY native/binding.gyp native/aead_native.c native/build.mjs native/
RUN npm run build:native
COPY tsconfig.json tsconfig.build.json ./
COPY src src
COPY routes routes
COPY schemas schemas
RUN npm run build && npm prune --omit=dev

# Runtime stage: compiled code and production dependencies only, as the unprivileged node user.
# The same base as the build stage: the addon was built against this Node and this glibc.
FROM node:${NODE_MAJOR}-trixie-slim
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8080
# A bounded heap: V8 collects before growing, so RSS stays flat under load; MAX_HEAP_USED_BYTES
# (384 MiB by default) sheds load before this limit is reached.
ENV NODE_OPTIONS=--max-old-space-size=512
WORKDIR /app
COPY --from=build --chown=root:root /app/node_modules node_modules
COPY --from=build --chown=root:root /app/dist dist
COPY --from=build --chown=root:root /app/native/build/Release/aead_native.node native/build/Release/aead_native.node
COPY --chown=root:root package.json openapi.yaml ./
# Collection schemas: mount your own over this folder, or set SCHEMAS_DIR.
COPY --chown=root:root schemas/collections schemas/collections
# The audit spool: the only directory the service writes, so the root filesystem can be read-only.
# Audit events wait there (fsynced) until they reach MongoDB, so it must outlive the container:
# mount a persistent volume per instance here (one spool per instance; two processes on one spool
# refuse to start). Owned by the node user, so a new named volume mounted here inherits that.
ENV AUDIT_SPOOL_DIR=/var/lib/encryption-proxy/audit-spool
RUN mkdir -p /var/lib/encryption-proxy/audit-spool \
  && chown -R node:node /var/lib/encryption-proxy && chmod 700 /var/lib/encryption-proxy/audit-spool
VOLUME ["/var/lib/encryption-proxy/audit-spool"]
USER node
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/health/ready').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "dist/src/server.js"]
