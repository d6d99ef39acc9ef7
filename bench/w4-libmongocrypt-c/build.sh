#!/usr/bin/env bash
# Build the W4 C driver of the system libmongocrypt: bench/w4-libmongocrypt-c/w4 (next to this script).
# Needs a C compiler, pkg-config and the libmongocrypt and libbson development files
# (Debian/Ubuntu: apt-get install -y libmongocrypt-dev libbson-dev).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cc="${CC:-cc}"
if ! command -v "$cc" >/dev/null 2>&1; then
  echo "w4-libmongocrypt-c: no C compiler ($cc) found" >&2
  exit 1
fi
if ! command -v pkg-config >/dev/null 2>&1; then
  echo "w4-libmongocrypt-c: pkg-config not found (apt-get install -y pkg-config)" >&2
  exit 1
fi
if ! pkg-config --exists libmongocrypt libbson-1.0; then
  echo "w4-libmongocrypt-c: libmongocrypt / libbson development files not found by pkg-config (apt-get install -y libmongocrypt-dev libbson-dev)" >&2
  exit 1
fi
out="$here/w4"
# Rebuild only when the source is newer than the binary.
if [[ -x "$out" && "$out" -nt "$here/w4.c" && "$out" -nt "$here/build.sh" ]]; then
  echo "$out"
  exit 0
fi
# shellcheck disable=SC2046
"$cc" -O2 -Wall -o "$out.tmp" "$here/w4.c" $(pkg-config --cflags --libs libmongocrypt libbson-1.0) -lpthread -ldl
mv "$out.tmp" "$out"
echo "$out"
