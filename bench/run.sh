#!/usr/bin/env bash
# Benchmarks: ferry next to vsftpd, ProFTPD and Pure-FTPd on loopback.
#   bench/run.sh            the full run (release build, 3 runs per figure, 9 for (a), (b), the FTPS download by the in-place reader and (d); ~13 min)
#   bench/run.sh --smoke    small sizes, ferry and vsftpd, one run (CI keeps it working)
# Extra arguments go to bench/run.py (--runs N, --out FILE). See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
for arg in "$@"; do
  if [ "$arg" = "--smoke" ]; then profile=dev; fi
done
if [ "$profile" = release ]; then
  cargo build --release -q -p ferry-cli -p ferry-bench
  bin=target/release
else
  cargo build -q -p ferry-cli -p ferry-bench
  bin=target/debug
fi
scripts/install-peers >/dev/null
for tool in curl lftp openssl; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is needed (apt-get install $tool)" >&2; exit 1; }
done
exec python3 bench/run.py --bin "$bin" "$@"
