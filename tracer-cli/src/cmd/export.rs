//! `asynctrace export trace.bin --format chrome|speedscope|folded -o out.json`.

use std::process::ExitCode;

use anyhow::{bail, Context};
use tracer_core::export::{write_chrome, write_speedscope, ChromeOptions};

use crate::cli::{ExportArgs, ExportFormat};
use crate::cmd::flame::{fold_trace, output, to_filter};
use crate::cmd::{open_trace, warn_truncated};

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let out = output(args.output.as_deref())?;
    let name = args.trace.display().to_string();
    match args.format {
        ExportFormat::Chrome => {
            if args.filter.from_ms.is_some() || args.filter.to_ms.is_some() {
                bail!(
                    "--from-ms/--to-ms do not apply to the chrome format (it exports whole slices; zoom in the viewer)"
                );
            }
            let mut opts = ChromeOptions::default();
            opts.filter = to_filter(&args.filter)?;
            let reader = open_trace(&args.trace)?;
            let stats = write_chrome(reader, &opts, out).with_context(|| format!("exporting {name}"))?;
            if stats.truncated {
                warn_truncated(&args.trace, "export");
            }
        }
        ExportFormat::Speedscope => {
            let folded = fold_trace(&args.trace, args.weight, &args.filter, false)?;
            write_speedscope(&folded, &name, out).context("writing the speedscope file")?;
        }
        ExportFormat::Folded => {
            let folded = fold_trace(&args.trace, args.weight, &args.filter, false)?;
            folded.write_lines(out).context("writing the folded stacks")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
