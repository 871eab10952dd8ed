//! Progress of long steps: indicatif bars when stderr is a terminal, plain `tracing` lines
//! otherwise (logs, CI, systemd), so a fetch is followable either way.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub(crate) struct Progress {
    /// `None` when stderr is not a terminal.
    multi: Option<MultiProgress>,
}

impl Progress {
    pub fn new() -> Progress {
        let multi = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress { multi }
    }

    /// A line that stays (above any bars).
    pub fn note(&self, line: &str) {
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(line);
            }
            None => tracing::info!("{line}"),
        }
    }

    /// A step with a known number of bytes.
    pub fn bytes(&self, what: String, total: u64) -> Step {
        let bar = self.multi.as_ref().map(|multi| {
            let bar = multi.add(ProgressBar::new(total));
            bar.set_style(
                ProgressStyle::with_template(
                    "  {msg:40!} [{bar:30}] {binary_bytes:>10}/{binary_total_bytes:<10} {binary_bytes_per_sec:>12} {eta:>4}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_message(what.clone());
            bar
        });
        Step::start(bar, what)
    }

    /// A step of unknown length (a registry client running).
    pub fn spinner(&self, what: String) -> Step {
        let bar = self.multi.as_ref().map(|multi| {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("  {spinner} {msg} ({elapsed})")
                    .expect("valid template"),
            );
            bar.set_message(what.clone());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Step::start(bar, what)
    }
}

pub(crate) struct Step {
    bar: Option<ProgressBar>,
    what: String,
    started: Instant,
}

impl Step {
    fn start(bar: Option<ProgressBar>, what: String) -> Step {
        if bar.is_none() {
            tracing::info!("{what} ...");
        }
        Step {
            bar,
            what,
            started: Instant::now(),
        }
    }

    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// Ends the step with a lasting summary line.
    pub fn done(self, summary: &str) -> Duration {
        let elapsed = self.started.elapsed();
        let line = format!(
            "  {}: {summary} ({:.1} s)",
            self.what,
            elapsed.as_secs_f64()
        );
        match &self.bar {
            Some(bar) => bar.println(line),
            None => tracing::info!("{}", line.trim_start()),
        }
        elapsed
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
