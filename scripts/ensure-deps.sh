# Sourced by ./start, ./run-tests and ./cluster: installs what a fresh clone needs.
# Node 20 must be there; pnpm is installed at the pinned version; packages exactly
# as the lockfile says; and, as root on Debian, the system tools some parts use.
set -euo pipefail
PNPM_VERSION=10.34.9

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "Node.js 20 or newer is required (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi
if [ "$(pnpm --version 2>/dev/null || true)" != "$PNPM_VERSION" ]; then
  echo "installing pnpm@$PNPM_VERSION" >&2
  npm install -g "pnpm@$PNPM_VERSION" >/dev/null
fi

# System tools: bubblewrap (the local sandbox), passt (its egress mode), socat and iproute2 (the egress tests' own hosts), haproxy (the cluster's load balancer),
# OpenSSH (the EC2 Instance Connect path's tests), chromium (browser tests),
# docker-compose (validating and running docker-compose.yml), debootstrap (deploy/local-images;
# the Docker Engine itself is .ci/run's). Only where we may install them.
want=()
command -v bwrap >/dev/null || want+=(bubblewrap)
command -v haproxy >/dev/null || want+=(haproxy)
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || want+=(openssh-server)
command -v ssh >/dev/null || want+=(openssh-client)
command -v chromium >/dev/null || want+=(chromium)
command -v docker-compose >/dev/null || want+=(docker-compose)
command -v debootstrap >/dev/null || want+=(debootstrap)
command -v pasta >/dev/null || want+=(passt)
command -v socat >/dev/null || want+=(socat)
command -v ip >/dev/null || want+=(iproute2)
if [ ${#want[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing system packages: ${want[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${want[@]}"; } >/tmp/molecule-apt.log 2>&1 \
    || echo "warning: apt-get install ${want[*]} failed (see /tmp/molecule-apt.log)" >&2
fi

# The owner of the sandbox uid range (MOLECULE_SANDBOX_UID_BASE…): as root, workspace
# shells run as unprivileged host uids, never as root.
if [ "$(id -u)" = 0 ] && ! getent passwd molecule-sandbox >/dev/null && command -v useradd >/dev/null; then
  useradd --system --no-create-home --shell /usr/sbin/nologin molecule-sandbox \
    || echo "warning: could not create the system user molecule-sandbox" >&2
fi

pnpm install --frozen-lockfile --reporter=silent
