#!/bin/sh
# Builds the binary crhook ships: `cargo build --profile ship`, then the line tables go into
# dist/crhook.debug and dist/crhook keeps code and symbols, with a .gnu_debuglink to the
# debug file. Install both side by side (or the debug file under /usr/lib/debug) for
# backtraces with file:line; without it a backtrace still names every function.
set -eu
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --locked --profile ship -p crhook
mkdir -p dist
cp "$target/ship/crhook" dist/crhook.full
objcopy --only-keep-debug dist/crhook.full dist/crhook.debug
objcopy --strip-debug --add-gnu-debuglink=dist/crhook.debug dist/crhook.full dist/crhook
rm dist/crhook.full
ls -l dist/crhook dist/crhook.debug
