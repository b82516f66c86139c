# The images of Molecule's two services, built from the repository root in one build
# (shared stages are built once):
#   docker build --target api             -t molecule-api .
#   docker build --target terminal-worker -t molecule-terminal-worker .
# Both run compiled JavaScript under plain node (scripts/build.ts: the same build ./start and
# ./cluster run; no tsx loader or esbuild child at run time). docs/deployment.md.
# No `# syntax=` line: BuildKit's built-in frontend needs no registry (deploy/local-images).
# Behind a TLS-inspecting proxy, hand npm/pnpm the CA bundle that trusts it (optional):
#   DOCKER_BUILDKIT=1 docker build --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt …
ARG NODE_IMAGE=node:20-bookworm-slim
ARG DEBIAN_IMAGE=debian:bookworm-slim
ARG PNPM_VERSION=10.34.9

# ---- build: dependencies exactly as the lockfile says, then the Canvas ------------------
FROM ${NODE_IMAGE} AS build
ARG PNPM_VERSION
# node-gyp (node-pty) takes the headers of the image's own Node (/usr/local/include/node, in the
# official images and deploy/local-images' alike) instead of downloading them from nodejs.org.
ENV CI=true PNPM_HOME=/pnpm PATH=/pnpm:$PATH npm_config_nodedir=/usr/local
# node-pty compiles when no prebuilt binary fits.
# The CA secret, when given, is trusted by Node (NODE_EXTRA_CA_CERTS) for this RUN only: it is
# never part of a layer.
RUN --mount=type=secret,id=ca \
    apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/* \
 && if [ -s /run/secrets/ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/ca; fi \
 && npm install -g "pnpm@${PNPM_VERSION}"
WORKDIR /app
# Manifests first: this layer is rebuilt only when dependencies change.
COPY package.json pnpm-lock.yaml pnpm-workspace.yaml tsconfig.json tsconfig.base.json ./
COPY apps/api/package.json apps/api/
COPY apps/terminal-worker/package.json apps/terminal-worker/
COPY apps/canvas/package.json apps/canvas/
COPY packages/shared/package.json packages/shared/
RUN --mount=type=cache,id=pnpm-store,target=/pnpm/store --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/ca; fi \
 && pnpm install --frozen-lockfile
COPY packages/shared packages/shared
COPY apps/api apps/api
COPY apps/terminal-worker apps/terminal-worker
COPY apps/canvas apps/canvas
# The admin CLI (scripts/molecule.ts) and the user docs the API serves under /docs.
COPY scripts scripts
COPY docs docs
RUN pnpm --filter @molecule/canvas build
# dist/server/{api,worker}.js: the Lua scripts, migrations, Canvas and docs stay beside their sources in /app.
RUN node --import tsx scripts/build.ts

# ---- AWS CLI v2 (optional) from the official installer zip -------------------------------
# Off by default, so the image builds without internet. --build-arg AWS_CLI=true downloads it at
# build time (https://awscli.amazonaws.com/awscli-exe-linux-<arch>[-<version>].zip); pin it with
# AWS_CLI_VERSION=2.x.y and, to check the download, AWS_CLI_SHA256. The aws provider does not need
# it: its own EC2 Instance Connect tunnel is the default (MOLECULE_AWS_TUNNEL=native). Only
# MOLECULE_AWS_TUNNEL=aws-cli runs aws-cli, this one or MOLECULE_AWS_CLI (docs/infra/workspace-terminal.md).
FROM ${DEBIAN_IMAGE} AS awscli
ARG TARGETARCH
ARG AWS_CLI=false
ARG AWS_CLI_VERSION=""
ARG AWS_CLI_SHA256=""
RUN set -eu; mkdir -p /usr/local/aws-cli; \
    if [ "${AWS_CLI}" != true ]; then echo "AWS CLI not installed (AWS_CLI=${AWS_CLI})"; exit 0; fi; \
    apt-get update; apt-get install -y --no-install-recommends ca-certificates curl unzip; \
    case "${TARGETARCH:-amd64}" in amd64) arch=x86_64 ;; arm64) arch=aarch64 ;; *) echo "no AWS CLI for ${TARGETARCH}" >&2; exit 1 ;; esac; \
    curl -fsSL -o /tmp/awscliv2.zip "https://awscli.amazonaws.com/awscli-exe-linux-${arch}${AWS_CLI_VERSION:+-${AWS_CLI_VERSION}}.zip"; \
    if [ -n "${AWS_CLI_SHA256}" ]; then echo "${AWS_CLI_SHA256}  /tmp/awscliv2.zip" | sha256sum -c -; fi; \
    unzip -q /tmp/awscliv2.zip -d /tmp; \
    /tmp/aws/install --install-dir /usr/local/aws-cli --bin-dir /usr/local/bin; \
    /usr/local/bin/aws --version; \
    rm -rf /tmp/aws /tmp/awscliv2.zip

# ---- the docker CLI (the docker provider), from Debian's docker.io ----------------------
# Only the client binary (linked against libc alone) goes into the worker image: no daemon.
FROM ${DEBIAN_IMAGE} AS dockercli
RUN apt-get update \
 && apt-get install -y --no-install-recommends docker.io \
 && rm -rf /var/lib/apt/lists/* \
 && /usr/bin/docker --version

# ---- runtime base ----------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
# tini: PID 1 that forwards SIGTERM (the graceful drains) and reaps orphaned processes.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# Session recordings (the filesystem store), shared by API nodes and workers through one volume:
# owned by `node`, the API's user; the worker (root) hands what it writes there to that owner.
RUN mkdir -p /var/lib/molecule/recordings && chown node:node /var/lib/molecule/recordings && chmod 700 /var/lib/molecule/recordings
ENV NODE_ENV=production \
    MOLECULE_RECORDING_DIR=/var/lib/molecule/recordings
WORKDIR /app
ENTRYPOINT ["/usr/bin/tini", "--"]

# ---- terminal-worker: provisioning jobs and the shells ---------------------------------
# openssh-client and socat (the EC2 Instance Connect path: ssh and the relay to the worker's tunnel;
# aws-cli v2 only with AWS_CLI=true), bubblewrap (the local sandbox),
# the docker CLI (the docker provider: the compose deployment's default).
FROM runtime AS terminal-worker
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssh-client socat bubblewrap bash less \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --shell /usr/sbin/nologin molecule-sandbox
COPY --from=awscli /usr/local/aws-cli /usr/local/aws-cli
COPY --from=dockercli /usr/bin/docker /usr/bin/docker
RUN if [ -e /usr/local/aws-cli/v2/current/bin/aws ]; then \
      ln -s /usr/local/aws-cli/v2/current/bin/aws /usr/local/bin/aws \
   && ln -s /usr/local/aws-cli/v2/current/bin/aws_completer /usr/local/bin/aws_completer \
   && aws --version; \
    fi \
 && mkdir -p /var/lib/molecule/sandboxes \
 && chmod 711 /var/lib/molecule/sandboxes
ENV AWS_PAGER="" \
    MOLECULE_SANDBOX_ROOT=/var/lib/molecule/sandboxes \
    MOLECULE_METRICS_PORT=9464 \
    MOLECULE_METRICS_HOST=0.0.0.0
# Runs as root inside the container (never --privileged: default capabilities, no host
# namespaces): the docker provider uses the Docker socket (root:docker, mode 0660), and the local
# provider drops each workspace's shell to a host uid of its own (MOLECULE_SANDBOX_UID_BASE…)
# before bubblewrap; as `node` every workspace would share one uid with the worker itself.
# docs/deployment.md, "How the compose deployment runs shells".
COPY --from=build /app /app
USER root
VOLUME ["/var/lib/molecule/sandboxes"]
EXPOSE 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+process.env.MOLECULE_METRICS_PORT+'/metrics').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "dist/server/worker.js"]

# ---- api: REST, the terminal WebSocket gateway, the Canvas (the default target) --------
FROM runtime AS api
ENV HOST=0.0.0.0 PORT=8080
COPY --from=build /app /app
USER node
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "dist/server/api.js"]
