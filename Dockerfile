# syntax=docker/dockerfile:1
# The images of Molecule's two services, built from the repository root in one build
# (shared stages are built once):
#   docker build --target api             -t molecule-api .
#   docker build --target terminal-worker -t molecule-terminal-worker .
# Both run the TypeScript sources under tsx, exactly as ./start does. docs/deployment.md.
ARG NODE_IMAGE=node:20-bookworm-slim
ARG PNPM_VERSION=10.34.9

# ---- build: dependencies exactly as the lockfile says, then the Canvas ------------------
FROM ${NODE_IMAGE} AS build
ARG PNPM_VERSION
ENV CI=true PNPM_HOME=/pnpm PATH=/pnpm:$PATH
# node-pty compiles when no prebuilt binary fits.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/* \
 && npm install -g "pnpm@${PNPM_VERSION}"
WORKDIR /app
# Manifests first: this layer is rebuilt only when dependencies change.
COPY package.json pnpm-lock.yaml pnpm-workspace.yaml tsconfig.json tsconfig.base.json ./
COPY apps/api/package.json apps/api/
COPY apps/terminal-worker/package.json apps/terminal-worker/
COPY apps/canvas/package.json apps/canvas/
COPY packages/shared/package.json packages/shared/
RUN --mount=type=cache,id=pnpm-store,target=/pnpm/store pnpm install --frozen-lockfile
COPY packages/shared packages/shared
COPY apps/api apps/api
COPY apps/terminal-worker apps/terminal-worker
COPY apps/canvas apps/canvas
# The admin CLI (scripts/molecule.ts) and the user docs the API serves under /docs.
COPY scripts scripts
COPY docs docs
RUN pnpm --filter @molecule/canvas build

# ---- AWS CLI v2 from the official installer zip ---------------------------------------
# Downloaded at build time (https://awscli.amazonaws.com/awscli-exe-linux-<arch>[-<version>].zip).
# Pin it with --build-arg AWS_CLI_VERSION=2.x.y and, to check the download, AWS_CLI_SHA256.
FROM debian:bookworm-slim AS awscli
ARG TARGETARCH
ARG AWS_CLI_VERSION=""
ARG AWS_CLI_SHA256=""
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl unzip \
 && rm -rf /var/lib/apt/lists/*
RUN set -eu; \
    case "${TARGETARCH:-amd64}" in amd64) arch=x86_64 ;; arm64) arch=aarch64 ;; *) echo "no AWS CLI for ${TARGETARCH}" >&2; exit 1 ;; esac; \
    curl -fsSL -o /tmp/awscliv2.zip "https://awscli.amazonaws.com/awscli-exe-linux-${arch}${AWS_CLI_VERSION:+-${AWS_CLI_VERSION}}.zip"; \
    if [ -n "${AWS_CLI_SHA256}" ]; then echo "${AWS_CLI_SHA256}  /tmp/awscliv2.zip" | sha256sum -c -; fi; \
    unzip -q /tmp/awscliv2.zip -d /tmp; \
    /tmp/aws/install --install-dir /usr/local/aws-cli --bin-dir /usr/local/bin; \
    /usr/local/bin/aws --version; \
    rm -rf /tmp/aws /tmp/awscliv2.zip

# ---- runtime base ----------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
# tini: PID 1 that forwards SIGTERM (the graceful drains) and reaps orphaned processes.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production
WORKDIR /app
ENTRYPOINT ["/usr/bin/tini", "--"]

# ---- terminal-worker: provisioning jobs and the shells ---------------------------------
# openssh-client and the AWS CLI v2 (the EC2 Instance Connect path), bubblewrap (the local sandbox).
FROM runtime AS terminal-worker
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssh-client bubblewrap bash less \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --shell /usr/sbin/nologin molecule-sandbox
COPY --from=awscli /usr/local/aws-cli /usr/local/aws-cli
RUN ln -s /usr/local/aws-cli/v2/current/bin/aws /usr/local/bin/aws \
 && ln -s /usr/local/aws-cli/v2/current/bin/aws_completer /usr/local/bin/aws_completer \
 && aws --version \
 && mkdir -p /var/lib/molecule/sandboxes \
 && chown node:node /var/lib/molecule/sandboxes
ENV AWS_PAGER="" \
    MOLECULE_SANDBOX_ROOT=/var/lib/molecule/sandboxes \
    MOLECULE_METRICS_PORT=9464 \
    MOLECULE_METRICS_HOST=0.0.0.0
# Owned by root, run as the unprivileged `node` user: the code cannot be changed at run time.
COPY --from=build /app /app
USER node
VOLUME ["/var/lib/molecule/sandboxes"]
EXPOSE 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+process.env.MOLECULE_METRICS_PORT+'/metrics').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "--import", "tsx", "apps/terminal-worker/src/main.ts"]

# ---- api: REST, the terminal WebSocket gateway, the Canvas (the default target) --------
FROM runtime AS api
ENV HOST=0.0.0.0 PORT=8080
COPY --from=build /app /app
USER node
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "--import", "tsx", "apps/api/src/main.ts"]
