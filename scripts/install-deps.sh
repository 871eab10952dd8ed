#!/usr/bin/env bash
# Install the Debian packages Understudy needs to build and to be tested.
# Only missing packages are installed, so a prepared machine pays nothing.
#   build:  cmake clang libclang-dev pkg-config libsonic-dev libasound2-dev
#   tests:  espeak-ng sox (synthesized callers, G.711 reference),
#           sip-tester (SIPp) and baresip (real SIP peers), openssl (a
#           certificate for SIP over TLS, tests/sip_tls.rs, tests/https.rs),
#           procps (/bin/kill, which the packaged unit's reload uses, tests/package_deb.rs),
#           kamailio (the dispatcher in front, tests/continuity_standby.rs),
#           chromium and chromium-driver (the softphone, tests/webrtc_softphone.rs),
#           pulseaudio, pulseaudio-utils, libasound2-plugins (a virtual sound
#           card for `understudy talk`, tests/sound_card.rs),
#           systemd and util-linux (a private systemd-journald in a mount
#           namespace, tests/journald.rs)
#   models: pip and npm fetch model packages through their registries
set -euo pipefail

build_pkgs=(cmake clang libclang-dev pkg-config libsonic-dev libasound2-dev ca-certificates)
test_pkgs=(espeak-ng sox sip-tester baresip openssl procps kamailio chromium chromium-driver pulseaudio pulseaudio-utils libasound2-plugins systemd util-linux)
want=("${build_pkgs[@]}")
if [[ "${1:-}" != "--build-only" ]]; then
    want+=("${test_pkgs[@]}")
fi
command -v pip3 >/dev/null 2>&1 || command -v pip >/dev/null 2>&1 || want+=(python3-pip)
command -v npm >/dev/null 2>&1 || want+=(npm)

missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "install-deps: installing ${missing[*]}" >&2
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The tests run their own Kamailio on loopback; the package's system
    # service would take port 5060 on every address (Understudy's default).
    if [[ " ${missing[*]} " == *" kamailio "* && -d /run/systemd/system ]]; then
        "${sudo_cmd[@]}" systemctl disable --now kamailio >/dev/null 2>&1 || true
    fi
fi
command -v cargo >/dev/null 2>&1 || { echo "install-deps: cargo not found; install Rust (rustup) first" >&2; exit 1; }
echo "install-deps: ok" >&2
