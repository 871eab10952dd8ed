#!/usr/bin/env bash
# Build the Debian package of the appliance from a release build:
#   scripts/package-deb.sh [OUT_DIR]          (default OUT_DIR: target/debian under the build dir)
# It packs what `cargo build --release --workspace` produced (run it first; scripts/up.sh and
# scripts/test.sh do) and the ONNX Runtime library of the installed model pack
# (`understudy models fetch --pack test` or `--pack default` fetches and verifies it).
#   CARGO_TARGET_DIR      the build directory (default ~/.cache/understudy/target)
#   UNDERSTUDY_MODELS_DIR where the model pack is (default ~/.local/share/understudy/models)
# Layout: binaries and workers (with espeak-ng-data beside them) in /usr/lib/understudy,
# /usr/bin/understudy, /etc/understudy/understudy.toml (a conffile), the systemd unit,
# the `understudy` system user (postinst), and the ONNX Runtime library placed where the
# model pack expects it (/var/lib/understudy/models/lib), so `models fetch` only verifies it.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-$HOME/.cache/understudy/target}
release="$target/release"
models=${UNDERSTUDY_MODELS_DIR:-$HOME/.local/share/understudy/models}
out=${1:-$target/debian}

die() { echo "package-deb: $*" >&2; exit 1; }
[[ -x "$release/understudy" ]] || die "no release build in $release; run \`cargo build --release --workspace\` first"
workers=(understudy-stt understudy-llm understudy-tts understudy-vad understudy-embed)
for w in "${workers[@]}"; do
    [[ -x "$release/$w" ]] || die "worker $w is missing in $release; run \`cargo build --release --workspace\`"
done
[[ -d "$release/espeak-ng-data" ]] || die "espeak-ng-data is missing in $release (workers/tts/build.rs copies it); rebuild understudy-tts"
ort=$(find "$models/lib" -maxdepth 1 -name 'libonnxruntime.so.*' -type f 2>/dev/null | sort | tail -n 1)
[[ -n "$ort" ]] || die "no ONNX Runtime library in $models/lib; run \`understudy models fetch --pack test\` first"

version=$("$release/understudy" --version | awk '{print $2}')
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/understudy_${version}_$arch"

echo "package-deb: staging understudy $version ($arch)" >&2
install -d "$root/usr/lib/understudy" "$root/usr/bin" "$root/etc/understudy/keys" \
    "$root/lib/systemd/system" "$root/usr/share/doc/understudy" \
    "$root/var/lib/understudy/models/lib" "$root/DEBIAN"
for b in understudy "${workers[@]}"; do
    # Line tables are for the developers' backtraces; the appliance gets stripped binaries.
    objcopy --strip-debug "$release/$b" "$root/usr/lib/understudy/$b"
    chmod 0755 "$root/usr/lib/understudy/$b"
done
cp -r "$release/espeak-ng-data" "$root/usr/lib/understudy/espeak-ng-data"
ln -s ../lib/understudy/understudy "$root/usr/bin/understudy"
install -m 0644 "$ort" "$root/var/lib/understudy/models/lib/$(basename "$ort")"
install -m 0644 systemd/understudy.service "$root/lib/systemd/system/understudy.service"
install -m 0644 README.md "$root/usr/share/doc/understudy/README.md"
cp -r docs "$root/usr/share/doc/understudy/docs"
cat > "$root/usr/share/doc/understudy/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: understudy
License: Apache-2.0
Comment: The model files (fetched by `understudy models fetch`) carry their own licences,
 listed with their sources and sha256s in `understudy models list`. The ONNX Runtime library
 is MIT-licensed; espeak-ng's data is GPL-3.0-or-later.
EOF

# The configuration file: the effective defaults for this layout, as `understudy config` prints them.
{
    echo "# Understudy appliance configuration. Every field: /usr/share/doc/understudy/docs/config.md"
    echo "# After a change: systemctl restart understudy (calls in progress are drained first)."
    env -u UNDERSTUDY_CONFIG UNDERSTUDY_MODELS_DIR=/var/lib/understudy/models \
        "$release/understudy" config --config /dev/null
} > "$root/etc/understudy/understudy.toml"
chmod 0640 "$root/etc/understudy/understudy.toml"

installed_kb=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<EOF
Package: understudy
Version: $version
Architecture: $arch
Maintainer: Understudy developers <understudy@localhost>
Installed-Size: $installed_kb
Depends: libc6 (>= 2.36), libstdc++6, libgcc-s1, adduser, procps
Recommends: espeak-ng
Section: comm
Priority: optional
Homepage: file:///usr/share/doc/understudy/README.md
Description: on-premise voice-bot appliance that takes over when the cloud bot fails
 Answers SIP calls with local speech-to-text (Whisper), a small local LLM and local
 text-to-speech (Piper), keeping the cloud bot's prompts, intents and flows, and hands
 callers to humans when it cannot help. Models are fetched after install with
 "understudy models fetch --pack default".
EOF
echo "/etc/understudy/understudy.toml" > "$root/DEBIAN/conffiles"

# Maintainer scripts honour $DPKG_ROOT, so the package can be installed into a throwaway
# root (`dpkg --root=DIR --force-script-chrootless`), as tests/package_deb.rs does.
cat > "$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
root="${DPKG_ROOT:-}"
if [ "$1" = configure ]; then
    if ! grep -q '^understudy:' "$root/etc/passwd" 2>/dev/null; then
        if [ -n "$root" ]; then
            groupadd --prefix "$root" --system understudy 2>/dev/null || true
            useradd --prefix "$root" --system --gid understudy --home-dir /var/lib/understudy \
                --no-create-home --shell /usr/sbin/nologin understudy
        else
            adduser --system --group --home /var/lib/understudy --no-create-home \
                --quiet understudy
        fi
    fi
    # Numeric ids from the (possibly alternate) root's own user database.
    uid=$(grep '^understudy:' "$root/etc/passwd" | cut -d: -f3)
    gid=$(grep '^understudy:' "$root/etc/group" | cut -d: -f3)
    chown -R "$uid:$gid" "$root/var/lib/understudy"
    chown "0:$gid" "$root/etc/understudy/understudy.toml"
    if [ -z "$root" ] && [ -d /run/systemd/system ]; then
        systemctl daemon-reload >/dev/null 2>&1 || true
        systemctl enable understudy.service >/dev/null 2>&1 || true
    fi
    cat <<'MSG'
Understudy is installed. Next steps:
  1. Fetch and verify the models (about 1 GB, from the package registries):
       sudo -u understudy understudy models fetch --pack default
  2. Check /etc/understudy/understudy.toml (every field: /usr/share/doc/understudy/docs/config.md)
  3. sudo systemctl start understudy, then: curl http://127.0.0.1:8080/readyz
MSG
fi
exit 0
EOF
cat > "$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ] && [ "$1" = remove ]; then
    systemctl stop understudy.service >/dev/null 2>&1 || true
fi
exit 0
EOF
cat > "$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
    # Models and synced bots are large and precious: say where they are instead of deleting them.
    echo "understudy: models and synced bots stay in ${DPKG_ROOT:-}/var/lib/understudy; remove them by hand if unwanted"
fi
if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

mkdir -p "$out"
deb="$out/understudy_${version}_$arch.deb"
dpkg-deb --root-owner-group -Zgzip --build "$root" "$deb" >/dev/null
echo "package-deb: $deb ($(du -h "$deb" | cut -f1))" >&2
echo "$deb"
