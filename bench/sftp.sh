#!/usr/bin/env bash
# SFTP side by side: ferry's client and server next to OpenSSH's sftp and sshd.
#   bench/sftp.sh [--size-mib N] [--runs N] [--small-files N]   (release build; ~5 min)
# See bench/sftp.py and docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p ferry-cli
for tool in sftp ssh-keygen /usr/sbin/sshd; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is needed (apt-get install openssh-client openssh-server)" >&2; exit 1; }
done
exec python3 bench/sftp.py --bin target/release "$@"
