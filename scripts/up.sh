#!/usr/bin/env bash
# The main command (README): installs what is missing, builds the appliance,
# fetches and verifies the default model pack, and runs `understudy serve`
# with the built-in demo bot. Extra arguments go to `understudy serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${UNDERSTUDY_CACHE:-$HOME/.cache/understudy}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-$(nproc)}

scripts/install-deps.sh --build-only
cargo build --release --workspace --locked
"$CARGO_TARGET_DIR/release/understudy" models fetch --pack "${UNDERSTUDY_PACK:-default}"
exec "$CARGO_TARGET_DIR/release/understudy" serve "$@"
