//! `asynctrace info trace.bin`: what is in a trace, at a glance or as JSON.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use tracer_core::summary::{self, ExitJson, TraceSummary};

use crate::cli::InfoArgs;
use crate::cmd::{open_trace, print_report};

pub fn run(args: InfoArgs) -> anyhow::Result<ExitCode> {
    let reader = open_trace(&args.trace)?;
    let s = summary::summarize(reader).with_context(|| format!("reading {}", args.trace.display()))?;
    let name = args.trace.display().to_string();
    print_report(args.format, &s, &args.trace, s.truncated, |out| {
        write_text(out, &name, &s)
    })?;
    Ok(ExitCode::SUCCESS)
}

fn exit_text(e: &Option<ExitJson>) -> String {
    match e {
        Some(ExitJson::Code { code }) => format!("exited {code}"),
        Some(ExitJson::Signal { signal }) => format!("killed by {signal}"),
        Some(ExitJson::Other(s)) => (*s).to_string(),
        None => "end not recorded".to_string(),
    }
}

fn write_text(out: &mut impl Write, name: &str, s: &TraceSummary) -> std::io::Result<()> {
    writeln!(
        out,
        "trace:     {name}{}",
        if s.truncated { " (truncated)" } else { "" }
    )?;
    writeln!(out, "command:   {}", s.command.join(" "))?;
    writeln!(out, "duration:  {:.1} ms", s.duration_ms)?;
    let e = &s.events;
    writeln!(
        out,
        "events:    {} (init {}, before {}, after {}, destroy {}, promiseResolve {})",
        e.total(),
        e.init,
        e.before,
        e.after,
        e.destroy,
        e.promise_resolve
    )?;
    writeln!(
        out,
        "dropped:   {}{}",
        s.dropped,
        if s.dropped > 0 {
            " (ring full; record with a larger --ring-records)"
        } else {
            ""
        }
    )?;
    if s.malformed > 0 {
        writeln!(out, "malformed: {} records skipped", s.malformed)?;
    }
    let mut types: Vec<_> = s.types.iter().collect();
    types.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    writeln!(out, "types:")?;
    for (t, n) in types {
        writeln!(out, "  {n:>10}  {t}")?;
    }
    writeln!(out, "processes:")?;
    for p in &s.processes {
        writeln!(
            out,
            "  pid {} node {} {}: {}",
            p.pid,
            p.node,
            exit_text(&p.exit),
            p.argv.join(" ")
        )?;
        for t in &p.threads {
            let label = if t.thread == 0 {
                "main thread".to_string()
            } else {
                format!("worker {}", t.thread)
            };
            write!(out, "    {label}: {} events, {} dropped", t.events, t.dropped)?;
            if t.thread != 0 {
                write!(out, ", {}", exit_text(&t.exit))?;
            }
            writeln!(out)?;
        }
    }
    Ok(())
}
