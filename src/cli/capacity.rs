//! `understudy capacity`: measure how many concurrent calls this box holds
//! within the latency target (`crate::bench::capacity`), and write the figure
//! to `[calls] capacity` in the configuration file when asked.

use crate::config::Config;
use anyhow::{bail, Context, Result};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

/// `understudy capacity` options.
#[derive(clap::Args, Debug)]
pub struct CapacityArgs {
    /// What to measure, and the target.
    #[command(flatten)]
    pub measure: crate::bench::capacity::CapacityOptions,
    /// Write the capacity found to `[calls] capacity` in the configuration
    /// file without asking (a terminal is asked; otherwise nothing is written).
    #[arg(long)]
    pub write: bool,
    /// Also write the whole report (every step) as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Measure, print the table, then write or offer to write the capacity.
pub async fn run(args: CapacityArgs, config: &Config, file: Option<PathBuf>) -> Result<()> {
    args.measure.check()?;
    let setup = super::runtime::session_setup(config, None).await?;
    let pack = config.models.pack.clone();
    eprintln!(
        "capacity: up to {} calls at once, {} calls per line, target voice-to-voice p95 <= {:.0} ms (pack {pack}); \
         the calls in progress on this box, if any, compete with the measurement",
        args.measure.max_calls, args.measure.calls_per_line, args.measure.p95_ms
    );
    let result = crate::bench::capacity::run(setup.clone(), &pack, &args.measure).await;
    setup.engines.shutdown();
    let report = result?;
    print!("{}", crate::bench::capacity::render(&report));
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!("capacity: report written to {}", out.display());
    }
    if report.capacity == 0 {
        bail!("no number of calls held the target; [calls] capacity was left as it is");
    }
    let line = format!("[calls] capacity = {}", report.capacity);
    let Some(file) = file else {
        println!("no configuration file is in use: add `{line}` to /etc/understudy/understudy.toml (or the file given with --config)");
        return Ok(());
    };
    let write = args.write
        || (std::io::stdin().is_terminal()
            && ask(&format!("write `{line}` to {}?", file.display()))?);
    if write {
        write_capacity(&file, report.capacity)?;
        println!(
            "wrote `{line}` to {}; `systemctl reload understudy` applies it to new calls",
            file.display()
        );
    } else {
        println!("not written; to use it, set `{line}` in {}", file.display());
    }
    Ok(())
}

/// A yes/no question on the terminal; no by default.
fn ask(question: &str) -> Result<bool> {
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
}

/// Set `[calls] capacity` in the TOML file at `path`, keeping everything
/// else in it (comments and layout included); written whole, then renamed.
pub fn write_capacity(path: &Path, capacity: usize) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("configuration file {} is invalid", path.display()))?;
    let calls = doc
        .entry("calls")
        .or_insert_with(toml_edit::table)
        .as_table_mut()
        .with_context(|| format!("`calls` in {} is not a table", path.display()))?;
    calls["capacity"] = toml_edit::value(capacity as i64);
    let tmp = path.with_extension("toml.new");
    std::fs::write(&tmp, doc.to_string())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_written_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("understudy.toml");
        let before = "# the box in rack 4\n[sip]\nlisten = \"0.0.0.0:5060\" # the SBC's side\n\n[calls]\ncapacity = 2\nwebsocket = true\n";
        std::fs::write(&file, before).unwrap();
        write_capacity(&file, 5).unwrap();
        let after = std::fs::read_to_string(&file).unwrap();
        assert!(after.contains("# the box in rack 4"), "{after}");
        assert!(after.contains("# the SBC's side"), "{after}");
        assert!(after.contains("capacity = 5"), "{after}");
        assert!(after.contains("websocket = true"), "{after}");
        let config = Config::load(Some(&file)).unwrap();
        assert_eq!(config.call_capacity().unwrap(), 5);

        // No [calls] table yet: one is added.
        std::fs::write(&file, "[sip]\nlisten = \"127.0.0.1:5060\"\n").unwrap();
        write_capacity(&file, 3).unwrap();
        assert_eq!(
            Config::load(Some(&file)).unwrap().call_capacity().unwrap(),
            3
        );

        std::fs::write(&file, "[sip\n").unwrap();
        let e = write_capacity(&file, 3).unwrap_err();
        assert!(format!("{e:#}").contains("is invalid"), "{e:#}");
    }
}
