//! The Debian package (scripts/package-deb.sh), built from this build and installed into a
//! throwaway root made by the test (`dpkg --root`, maintainer scripts included): the files
//! land where docs/operations.md says, the conffile and the system user are there, systemd
//! accepts the unit, and the installed binaries run (the TTS worker speaks with the espeak-ng
//! data the package carries).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::{models_dir, understudy_bin};

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Build the package from the binaries under test; returns the .deb's path.
fn build_package(out: &Path) -> PathBuf {
    let target = understudy_bin()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    let built = run(Command::new("scripts/package-deb.sh")
        .arg(out)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", target)
        .env("UNDERSTUDY_MODELS_DIR", models_dir()));
    let deb = PathBuf::from(String::from_utf8(built.stdout).unwrap().trim());
    assert!(
        deb.is_file(),
        "package-deb.sh named {deb:?}, which is not a file"
    );
    deb
}

/// A root with an empty dpkg database and a user database holding only root, as a fresh
/// Debian system has, plus systemd's own units (for `systemd-analyze verify --root`) and
/// `/bin/kill` (procps, a dependency: the unit's reload sends SIGHUP with it).
fn throwaway_root(root: &Path) {
    for dir in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "etc",
        "lib/systemd/system",
        "bin",
    ] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    std::fs::write(root.join("etc/shadow"), "root:*::0:99999:7:::\n").unwrap();
    std::fs::write(root.join("etc/gshadow"), "root:*::\n").unwrap();
    run(Command::new("cp")
        .arg("-r")
        .arg("/lib/systemd/system/.")
        .arg(root.join("lib/systemd/system")));
    run(Command::new("cp")
        .arg("/bin/kill")
        .arg(root.join("bin/kill")));
}

fn verify_unit(root: &Path) -> Output {
    Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("/lib/systemd/system/understudy.service")
        .output()
        .expect("run systemd-analyze (systemd is part of Debian)")
}

#[test]
fn the_package_installs_into_a_fresh_root_and_its_binaries_run() {
    let dir = tempfile::tempdir().unwrap();
    let deb = build_package(&dir.path().join("out"));
    let root = dir.path().join("root");
    throwaway_root(&root);

    let install = run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--force-script-chrootless",
            "--force-depends",
            "--log=/dev/null",
            "-i",
        ])
        .arg(&deb));
    let said = String::from_utf8_lossy(&install.stdout);
    assert!(
        said.contains("understudy models fetch --pack default"),
        "postinst tells how to fetch the models:\n{said}"
    );

    // The files, where the unit and docs/operations.md expect them.
    for bin in [
        "understudy",
        "understudy-stt",
        "understudy-llm",
        "understudy-tts",
        "understudy-vad",
        "understudy-embed",
    ] {
        let path = root.join("usr/lib/understudy").join(bin);
        let mode = std::os::unix::fs::PermissionsExt::mode(&path.metadata().unwrap().permissions());
        assert_eq!(mode & 0o755, 0o755, "{} is executable", path.display());
    }
    assert!(root
        .join("usr/lib/understudy/espeak-ng-data/phontab")
        .is_file());
    assert_eq!(
        std::fs::read_link(root.join("usr/bin/understudy")).unwrap(),
        Path::new("../lib/understudy/understudy")
    );
    let ort = std::fs::read_dir(root.join("var/lib/understudy/models/lib"))
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("libonnxruntime.so.")
        });
    assert!(
        ort,
        "the ONNX Runtime library is where the model pack expects it"
    );

    // The configuration is a conffile (kept over upgrades), the user exists and owns the state.
    let conffiles = std::fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
    assert!(
        conffiles.contains("/etc/understudy/understudy.toml"),
        "dpkg records the conffile:\n{conffiles}"
    );
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let user = passwd
        .lines()
        .find(|l| l.starts_with("understudy:"))
        .unwrap_or_else(|| panic!("postinst made the system user:\n{passwd}"));
    assert!(
        user.ends_with(":/var/lib/understudy:/usr/sbin/nologin"),
        "{user}"
    );
    let uid: u32 = user.split(':').nth(2).unwrap().parse().unwrap();
    assert!(uid < 1000, "a system user: {user}");
    let owner =
        std::os::unix::fs::MetadataExt::uid(&root.join("var/lib/understudy").metadata().unwrap());
    assert_eq!(
        owner, uid,
        "/var/lib/understudy belongs to the understudy user"
    );

    // systemd accepts the unit as installed; and the check can fail: not with a missing binary.
    let verified = verify_unit(&root);
    assert!(
        verified.status.success(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let unit = root.join("lib/systemd/system/understudy.service");
    let good = std::fs::read_to_string(&unit).unwrap();
    std::fs::write(
        &unit,
        good.replace(
            "/usr/lib/understudy/understudy serve",
            "/usr/lib/understudy/nothing serve",
        ),
    )
    .unwrap();
    assert!(
        !verify_unit(&root).status.success(),
        "systemd-analyze verify notices a unit whose binary is missing"
    );
    std::fs::write(&unit, good).unwrap();

    // The installed binaries run: --version, the configuration as installed, and the TTS
    // worker beside it speaking with the package's espeak-ng data (no build tree involved).
    let installed = root.join("usr/lib/understudy/understudy");
    let version = run(Command::new(&installed).arg("--version"));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("understudy {}", env!("CARGO_PKG_VERSION"))
    );
    let config = run(Command::new(&installed)
        .arg("config")
        .arg("--config")
        .arg(root.join("etc/understudy/understudy.toml")));
    let config = String::from_utf8_lossy(&config.stdout);
    assert!(
        config.contains("dir = \"/var/lib/understudy/models\""),
        "the installed configuration points at the state directory:\n{config}"
    );
    let wav = dir.path().join("hello.wav");
    run(Command::new(&installed)
        .args(["--pack", "test", "--models-dir"])
        .arg(models_dir())
        .args(["say", "The package works.", "--out"])
        .arg(&wav)
        .env_remove("UNDERSTUDY_WORKER_DIR")
        .env_remove("PIPER_ESPEAKNG_DATA_DIRECTORY"));
    let spoken = std::fs::metadata(&wav).unwrap().len();
    assert!(
        spoken > 20_000,
        "the installed TTS worker spoke ({spoken} bytes)"
    );
}
