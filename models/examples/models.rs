//! Drives the model-pack tooling without the `understudy` CLI (which wires the same calls as
//! `understudy models ...`):
//!
//! ```text
//! cargo run --release -p understudy-models --example models -- fetch test [MODELS_DIR]
//! cargo run --release -p understudy-models --example models -- verify default [MODELS_DIR]
//! cargo run --release -p understudy-models --example models -- list [MODELS_DIR]
//! cargo run --release -p understudy-models --example models -- convert model.bin vocabulary.txt out.bin
//! ```

use std::path::PathBuf;

use anyhow::{bail, Result};
use understudy_models::{ct2_whisper, default_models_dir, fetch, list, verify, FetchOptions};

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let models_dir = |i: usize| {
        args.get(i)
            .map(PathBuf::from)
            .unwrap_or_else(default_models_dir)
    };
    match args.first().map(String::as_str) {
        Some("fetch") if args.len() >= 2 => {
            let options = FetchOptions { keep_downloads: std::env::var_os("KEEP_DOWNLOADS").is_some(), ..Default::default() };
            fetch(&models_dir(2), &args[1], &options)?;
        }
        Some("verify") if args.len() >= 2 => {
            let report = verify(&models_dir(2), &args[1])?;
            println!("{report}");
            if !report.is_ok() {
                std::process::exit(1);
            }
        }
        Some("list") => println!("{}", list(&models_dir(1))?),
        Some("convert") if args.len() == 4 => {
            let hp = ct2_whisper::convert_files(args[1].as_ref(), args[2].as_ref(), args[3].as_ref())?;
            println!("{hp:?}");
        }
        _ => bail!("usage: models fetch PACK [DIR] | verify PACK [DIR] | list [DIR] | convert MODEL.BIN VOCABULARY.TXT OUT.BIN"),
    }
    Ok(())
}
