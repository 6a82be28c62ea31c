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
            command_line(&p.argv, &p.exec_argv)
        )?;
        for t in &p.threads {
            let label = if t.thread == 0 {
                "main thread".to_string()
            } else {
                format!("worker {}", t.thread)
            };
            write!(
                out,
                "    {label}: {} events, {} dropped, promises via {}",
                t.events,
                t.dropped,
                if t.promises == "v8" {
                    "V8's promise hooks"
                } else {
                    "async_hooks"
                }
            )?;
            if t.thread != 0 {
                write!(out, ", {}", exit_text(&t.exit))?;
            }
            writeln!(out)?;
            if let Some(h) = &t.held_open {
                write!(out, "      held open at {} by ", h.at)?;
                match h.refd {
                    0 => write!(out, "nothing")?,
                    1 => write!(out, "1 ref'd handle or timer")?,
                    n => write!(out, "{n} ref'd handles and timers")?,
                }
                if let Some(e) = &h.example {
                    write!(out, " ({e}{})", if h.refd > 1 { ", ..." } else { "" })?;
                }
                if h.unrefd > 0 {
                    write!(out, "; {} unref'd", h.unrefd)?;
                }
                writeln!(out, "; `asynctrace leaks` names them")?;
            }
        }
    }
    if !s.warnings.is_empty() {
        writeln!(out, "warnings:")?;
        for w in &s.warnings {
            let times = if w.count > 1 {
                format!(" (x{})", w.count)
            } else {
                String::new()
            };
            writeln!(out, "  pid {}: {}{times}", w.pid, w.warning)?;
        }
    }
    Ok(())
}

/// Longest argument shown in full; a `node -e` script can be pages long.
const MAX_ARG: usize = 80;

/// The process's command line as it was typed: node, its own options (`execArgv`: `-e <script>`,
/// `--inspect`), then the script and its arguments. Arguments a shell would split are quoted,
/// newlines shown as `\n`, and long ones cut with `...`, so that each process stays one line.
fn command_line(argv: &[String], exec_argv: &[String]) -> String {
    let (node, rest) = argv.split_first().map_or(("", argv), |(n, r)| (n.as_str(), r));
    std::iter::once(node)
        .filter(|n| !n.is_empty())
        .chain(exec_argv.iter().map(String::as_str))
        .chain(rest.iter().map(String::as_str))
        .map(shown)
        .collect::<Vec<_>>()
        .join(" ")
}

fn shown(arg: &str) -> String {
    let mut text: String = arg.chars().take(MAX_ARG).collect();
    if text.len() < arg.len() {
        text.push_str("...");
    }
    let plain = !text.is_empty() && text.chars().all(|c| c.is_alphanumeric() || "-_./=:,@+%^".contains(c));
    if plain {
        return text;
    }
    let escaped: String = text
        .chars()
        .map(|c| match c {
            '\n' => "\\n".to_string(),
            '\t' => "\\t".to_string(),
            '\'' => "'\\''".to_string(),
            c if c.is_control() => "?".to_string(),
            c => c.to_string(),
        })
        .collect();
    format!("'{escaped}'")
}

#[cfg(test)]
mod tests {
    use super::command_line;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn node_options_come_between_node_and_the_script() {
        let line = command_line(&strings(&["/usr/bin/node", "/app/a.js", "x"]), &strings(&["--inspect"]));
        assert_eq!(line, "/usr/bin/node --inspect /app/a.js x");
    }

    #[test]
    fn an_eval_script_is_quoted_on_one_line() {
        let line = command_line(
            &strings(&["/usr/bin/node"]),
            &strings(&["-e", "setInterval(() => {},\n1000)"]),
        );
        assert_eq!(line, "/usr/bin/node -e 'setInterval(() => {},\\n1000)'");
    }

    #[test]
    fn a_long_argument_is_cut() {
        let long = "x".repeat(500);
        let line = command_line(&strings(&["node"]), &strings(&["-e", &long]));
        assert_eq!(line, format!("node -e {}...", "x".repeat(80)));
    }
}
