//! SIPp scenarios run against the server, and what they ended with.

use super::*;

/// One SIPp run: a scenario from tests/sipp, copied into `dir` (SIPp looks
/// for the pcap files next to the scenario).
pub struct Sipp {
    pub name: String,
    pub dir: PathBuf,
    pub port: u16,
    pub media_port: u16,
    args: Vec<String>,
}

impl Sipp {
    pub fn new(scenario: &str, dir: &Path) -> Sipp {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/sipp")
            .join(format!("{scenario}.xml"));
        std::fs::copy(&src, dir.join(format!("{scenario}.xml")))
            .unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        Sipp {
            name: scenario.into(),
            dir: dir.into(),
            port: free_port(),
            media_port: free_range(4).0,
            args: vec![],
        }
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn set(self, var: &str, value: impl ToString) -> Self {
        self.arg("-set").arg(var).arg(value.to_string())
    }

    pub fn key(self, key: &str, value: impl ToString) -> Self {
        self.arg("-key").arg(key).arg(value.to_string())
    }

    fn command(&self, remote: Option<SocketAddr>) -> Command {
        let mut c = Command::new("sipp");
        c.current_dir(&self.dir)
            .arg("-sf")
            .arg(format!("{}.xml", self.name))
            .args(["-m", "1", "-i", LOOPBACK, "-mi", LOOPBACK, "-nostdin"])
            .args([
                "-p",
                &self.port.to_string(),
                "-mp",
                &self.media_port.to_string(),
            ])
            .args(["-timeout", "120s", "-timeout_error"])
            .args(["-trace_msg", "-message_file", &format!("{}.msg", self.name)])
            .args(["-trace_err", "-error_file", &format!("{}.err", self.name)])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(remote) = remote {
            c.arg(remote.to_string());
        }
        c
    }

    /// Run against `remote` to the end.
    pub fn run(&self, remote: SocketAddr) -> SippResult {
        let out = self
            .command(Some(remote))
            .output()
            .expect("cannot run sipp");
        self.result(out)
    }

    /// Start in the background (a UAS waits for calls when `remote` is None).
    pub fn spawn(&self, remote: Option<SocketAddr>) -> SippRun {
        SippRun {
            child: self.command(remote).spawn().expect("cannot run sipp"),
            sipp: self.clone_meta(),
        }
    }

    fn clone_meta(&self) -> Sipp {
        Sipp {
            name: self.name.clone(),
            dir: self.dir.clone(),
            port: self.port,
            media_port: self.media_port,
            args: vec![],
        }
    }

    fn result(&self, out: Output) -> SippResult {
        let read = |ext: &str| {
            std::fs::read_to_string(self.dir.join(format!("{}.{ext}", self.name)))
                .unwrap_or_default()
        };
        SippResult {
            name: self.name.clone(),
            ok: out.status.success(),
            messages: read("msg"),
            errors: read("err"),
            output: String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        }
    }
}

pub struct SippRun {
    child: Child,
    sipp: Sipp,
}

impl SippRun {
    /// SIGKILL: the peer vanishes mid-call (no BYE, no more RTP).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn wait(self) -> SippResult {
        let out = self.child.wait_with_output().unwrap();
        self.sipp.result(out)
    }
}

/// What a SIPp run left behind.
pub struct SippResult {
    pub name: String,
    pub ok: bool,
    /// Every message sent and received (-trace_msg).
    pub messages: String,
    pub errors: String,
    pub output: String,
}

impl SippResult {
    /// Fail with SIPp's own account of what went wrong.
    pub fn assert_ok(&self, what: &str) -> &Self {
        assert!(
            self.ok,
            "SIPp {} ({what}) failed:\n--- errors\n{}\n--- messages (tail)\n{}",
            self.name,
            self.errors,
            tail(&self.messages, 60)
        );
        self
    }

    /// The start lines of the SIP messages exchanged, in order.
    pub fn flow(&self) -> Vec<String> {
        self.messages
            .lines()
            .filter(|l| l.starts_with("SIP/2.0 ") || l.split_whitespace().nth(2) == Some("SIP/2.0"))
            .map(str::to_string)
            .collect()
    }
}
