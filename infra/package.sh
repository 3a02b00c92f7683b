#!/usr/bin/env bash
# Builds the three Lambda functions as zip files (a `bootstrap` binary each) with cargo-lambda:
#
#   bash infra/package.sh x86_64     # or arm64 (needs the aarch64-unknown-linux-gnu Rust target)
#
# Output: target/lambda/{planner,worker,reporter}/bootstrap.zip. cargo-lambda (and the zig
# linker it uses to target Amazon Linux 2023's glibc) come from PyPI into .venv-package unless
# `cargo lambda` is already installed. `sam build` does the same through the rust-cargolambda
# build method; this script is for CI artifacts and manual uploads.
set -euo pipefail
ARCH="${1:-x86_64}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CARGO_LAMBDA_VERSION=1.9.2

case "$ARCH" in
  x86_64) arch_flag=--x86-64; triple=x86_64-unknown-linux-gnu ;;
  arm64) arch_flag=--arm64; triple=aarch64-unknown-linux-gnu ;;
  *) echo "package: ARCH must be x86_64 or arm64, not '$ARCH'" >&2; exit 1 ;;
esac
if [ "$triple" != "$(rustc -vV | sed -n 's/^host: //p')" ] && ! rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
  echo "package: the Rust target $triple is not installed (rustup target add $triple); nothing built" >&2
  exit 1
fi

if cargo lambda --version >/dev/null 2>&1; then
  cargo_lambda=(cargo lambda)
else
  venv="$ROOT/.venv-package"
  [ -x "$venv/bin/cargo-lambda" ] || {
    echo "package: installing cargo-lambda $CARGO_LAMBDA_VERSION into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "cargo-lambda==$CARGO_LAMBDA_VERSION"
  }
  # cargo-lambda finds zig (from the ziglang wheel) on PATH.
  export PATH="$venv/bin:$PATH"
  cargo_lambda=("$venv/bin/cargo-lambda" lambda)
fi

"${cargo_lambda[@]}" build --release "$arch_flag" --output-format zip \
  -p fanout-planner -p fanout-worker -p fanout-reporter

for f in planner worker reporter; do
  zip="target/lambda/$f/bootstrap.zip"
  [ -f "$zip" ] || { echo "package: $zip was not produced" >&2; exit 1; }
  python3 - "$zip" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
names = z.namelist()
assert names == ["bootstrap"], f"{sys.argv[1]}: expected only bootstrap, found {names}"
info = z.getinfo("bootstrap")
assert (info.external_attr >> 16) & 0o111, f"{sys.argv[1]}: bootstrap is not executable"
print(f"package: {sys.argv[1]} ({info.file_size // 1024} KiB uncompressed)")
PY
done
