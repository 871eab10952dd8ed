//! A baresip softphone driven over its TCP control interface.

use super::*;

/// baresip as a real softphone: plays a WAV as the caller's voice, records
/// what it hears (sndfile), takes keys through its UDP console.
pub struct Baresip {
    child: Child,
    pub dir: PathBuf,
    console: SocketAddr,
}

impl Baresip {
    /// Call `uri`; the call hangs up when `voice` (8 kHz WAV) has been played.
    pub fn call(dir: &Path, uri: &str, voice: &Path) -> Baresip {
        Baresip::call_as(dir, uri, voice, "")
    }

    /// As [`Baresip::call`], with more account parameters
    /// (`;auth_user=sbc;auth_pass=...`).
    pub fn call_as(dir: &Path, uri: &str, voice: &Path, account: &str) -> Baresip {
        require("baresip", "baresip");
        // baresip takes the SIP port for UDP/TCP and the one above for TLS.
        let sip_port = free_range(2).0;
        let console_port = free_port();
        let config = format!(
            "module_path\t/usr/lib/baresip/modules\n\
             poll_method\tepoll\n\
             sip_listen\t{LOOPBACK}:{sip_port}\n\
             audio_player\talsa,null\n\
             audio_alert\talsa,null\n\
             audio_source\taufile,{voice}\n\
             module\tg711.so\nmodule\taufile.so\nmodule\talsa.so\nmodule\tsndfile.so\nmodule\tcons.so\n\
             module_app\taccount.so\nmodule_app\tmenu.so\n\
             cons_listen\t{LOOPBACK}:{console_port}\n\
             snd_path\t{dir}\n",
            voice = voice.display(),
            dir = dir.display()
        );
        std::fs::write(dir.join("config"), config).unwrap();
        // No registration; PCMU like a typical trunk.
        std::fs::write(
            dir.join("accounts"),
            format!("<sip:caller@{LOOPBACK}>;regint=0;audio_codecs=PCMU{account}\n"),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("baresip.log")).unwrap();
        let child = Command::new("baresip")
            .arg("-f")
            .arg(dir)
            .args(["-n", LOOPBACK, "-e", &format!("/dial {uri}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start baresip");
        Baresip {
            child,
            dir: dir.into(),
            console: format!("{LOOPBACK}:{console_port}").parse().unwrap(),
        }
    }

    /// Press a key during the call (sent as RFC 4733 events).
    pub fn press(&self, key: char) {
        let s = UdpSocket::bind((LOOPBACK, 0)).unwrap();
        s.send_to(key.to_string().as_bytes(), self.console).unwrap();
    }

    /// Wait for baresip to end (it quits when told; the call ends with the WAV).
    pub fn wait_call_end(&mut self, limit: Duration) {
        let started = Instant::now();
        while started.elapsed() < limit {
            if self.log().contains("terminated (duration") {
                return;
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "the baresip call did not end within {limit:?}\n{}",
            tail(&self.log(), 30)
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("baresip.log")).unwrap_or_default()
    }

    /// What baresip heard (its decoded-audio dump).
    pub fn recording(&self) -> PathBuf {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .collect();
        found.sort();
        found
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("baresip recorded nothing\n{}", tail(&self.log(), 30)))
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- baresip log (tail)\n{}", tail(&self.log(), 40));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
