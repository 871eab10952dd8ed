#!/usr/bin/env bash
# The test command (README): installs what is missing, builds everything,
# fetches and verifies the small test model pack, and runs every test with
# real models, real worker processes and real SIP peers.
#   UNDERSTUDY_CACHE      where the build is kept (default ~/.cache/understudy)
#   CARGO_TARGET_DIR      override the build directory
#   UNDERSTUDY_MODELS_DIR the model directory (default ~/.local/share/understudy/models)
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${UNDERSTUDY_CACHE:-$HOME/.cache/understudy}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-$(nproc)}

scripts/install-deps.sh
echo "== style (rustfmt)" >&2
cargo fmt --all --check
echo "== build (release, all workers)" >&2
cargo build --release --workspace --locked
echo "== lints (clippy, every target, warnings are errors)" >&2
# --release reuses the build above (its build scripts and dependencies), so the
# engines' C++ is not compiled a second time for a debug profile.
cargo clippy --release --workspace --all-targets --locked -- -D warnings
echo "== test model pack" >&2
"$CARGO_TARGET_DIR/release/understudy" models fetch --pack test
echo "== tests" >&2
# Engine workers share two cores: run tests one at a time so timing-
# sensitive steps (endpointing, barge-in) see a realistic machine.
cargo test --release --workspace --locked -- --test-threads="${TEST_THREADS:-1}"
