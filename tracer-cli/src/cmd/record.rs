//! `asynctrace record -- <command>`: run the command with the agent, write the trace.

use std::fs::File;
use std::io::BufWriter;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitCode, ExitStatus};

use anyhow::{bail, Context};
use tracer_core::recorder::{MainExit, RecordSummary, Recorder};
use tracer_core::trace::{Ending, TraceMeta, TraceWriter};

use crate::cli::RecordArgs;
use crate::session::{self, Session};
use crate::trace_file::TraceFile;

pub fn run(args: RecordArgs) -> anyhow::Result<ExitCode> {
    run_with(args, None)
}

/// What `top` adds to a recording: a copy of what the trace writer writes, where the app's
/// output goes (not over the UI), and the UI, which runs while the app does.
pub struct Watch {
    pub tap: tracer_core::live::Tap,
    pub app_output: File,
    pub ui: Ui,
}

/// The UI of a [`Watch`]: runs until the app exits or the user leaves.
pub type Ui = Box<dyn FnOnce(&mut std::process::Child) -> anyhow::Result<()>>;

/// Records as `record` does; with a [`Watch`], also runs its UI once the app started.
pub fn run_with(args: RecordArgs, watch: Option<Watch>) -> anyhow::Result<ExitCode> {
    let addon = session::locate_addon()?;
    let program = args.command[0].clone();
    let session = Session::create()?;

    let start_ns = monotonic_ns();
    let meta = TraceMeta {
        command: args.command.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
        cwd: std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        start_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        start_ns,
        writer_version: crate::cli::writer_version(),
        // The unit the trace encodes times in; the agent's times are whole microseconds.
        clock_tick_ns: 1000,
    };
    let (trace_file, file) = TraceFile::create(&args.output)?;
    let mut writer = match start_trace(file, &meta) {
        Ok(w) => w,
        Err(e) => {
            // Why before the app starts: an output that cannot take even the header (a full
            // disk, /dev/full) is better said now than after a run that records nothing.
            let written = trace_file.writing_to().display().to_string();
            trace_file.discard();
            return Err(e).with_context(|| format!("cannot write trace file {written}"));
        }
    };

    let (ui, app_output) = match watch {
        Some(w) => {
            writer.set_tap(w.tap);
            (Some(w.ui), Some(w.app_output))
        }
        None => (None, None),
    };
    let mut cmd = Command::new(&program);
    if let Some(out) = app_output {
        let err = out.try_clone().context("cannot open the app's log")?;
        cmd.stdin(std::process::Stdio::null()).stdout(out).stderr(err);
    }
    cmd.args(session::command_args(&args.command, session.agent_js()))
        .env(
            "NODE_OPTIONS",
            session::node_options(std::env::var_os("NODE_OPTIONS").as_deref(), session.agent_js()),
        )
        .env("ASYNCTRACE_SESSION", session.dir())
        .env("ASYNCTRACE_ADDON", &addon)
        .env("ASYNCTRACE_RING_RECORDS", args.ring_records(false).to_string())
        .env("ASYNCTRACE_RING_RECORDS_V8", args.ring_records(true).to_string())
        .env("ASYNCTRACE_CLOCK_US", args.clock_us.to_string())
        .env("ASYNCTRACE_STACKS", args.stacks.as_str())
        .env("ASYNCTRACE_PROMISES", args.promises.as_str())
        .env("ASYNCTRACE_CPU_INTERVAL_US", args.cpu_interval_us().to_string());
    if args.precise {
        cmd.env("ASYNCTRACE_PRECISE", "1");
    }
    if args.staged {
        cmd.env("ASYNCTRACE_FORCE_STAGED", "1");
    }

    // Start reading before the app starts writing, so no ring waits.
    let recorder = Recorder::start(session.dir(), writer, start_ns);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = recorder.finish(0, MainExit::Code(127));
            // The trace already at the output path, if any, is left as it was.
            trace_file.discard();
            let name = program.to_string_lossy();
            if e.kind() == std::io::ErrorKind::NotFound {
                bail!("command not found: `{name}`; check the command after `--` (is it on PATH?)");
            }
            bail!("cannot start `{name}`: {e}");
        }
    };
    let pid = child.id();
    recorder.watch(pid);
    // Why not `?`: the app is running; failing here would orphan it and lose its status.
    let forwarder = signals::forward_to(pid)
        .map_err(|e| say!("asynctrace: warning: Ctrl-C and SIGTERM will not be forwarded to the app: {e}"))
        .ok();
    if let Some(ui) = ui {
        // Why not `?`: the app is running and recorded; a UI failure must not lose either.
        if let Err(e) = ui(&mut child) {
            say!("asynctrace: the live view failed ({e:#}); still recording until the app exits");
        }
    }
    let status = child.wait().context("waiting for the app")?;
    if let Some(f) = forwarder {
        f.close();
    }

    let main = main_exit(status);
    // From here on the app has run: whatever happens to the trace, `record` exits with the
    // app's status, and a trace problem is one line on stderr.
    let finished = recorder.finish(pid, main);
    drop(session);
    let written = trace_file.writing_to().to_owned();
    let regular = trace_file.is_regular();
    let outcome = match finished {
        Ok(summary) => trace_file.commit().map(|()| summary),
        Err(e) => Err(anyhow::Error::from(e).context(format!("cannot write the trace to {}", written.display()))),
    };
    match outcome {
        Ok(summary) => {
            if !args.quiet {
                print_summary(&summary, main, &args.output, regular);
            }
            if summary.streams.is_empty() {
                warn_no_process(&program);
            }
        }
        Err(e) => say_trace_failed(&e, &written, regular, main),
    }
    Ok(ExitCode::from(exit_code(main)))
}

/// Writes the trace's header and metadata and flushes them, so that an output that cannot be
/// written fails now.
fn start_trace(file: File, meta: &TraceMeta) -> std::io::Result<TraceWriter<BufWriter<File>>> {
    let mut writer = TraceWriter::new(BufWriter::with_capacity(1 << 20, file), meta)?;
    writer.flush()?;
    Ok(writer)
}

/// The one line for a trace that could not be completed after the app ran.
fn say_trace_failed(e: &anyhow::Error, written: &Path, regular: bool, main: MainExit) {
    let kept = if regular {
        format!(
            "; the part written before stays in {}, and every command reads it",
            written.display()
        )
    } else {
        String::new()
    };
    say!(
        "asynctrace: error: {}{kept}; the app {}",
        crate::stderr::chain(e),
        how_it_ended(main)
    );
}

/// Says why a recording holds no process: nothing below the command ran node with the agent.
fn warn_no_process(program: &std::ffi::OsStr) {
    say!(
        "asynctrace: warning: no Node.js process was traced: check that `{}` starts node, and that \
         nothing on the way replaces NODE_OPTIONS (the agent is loaded through it)",
        program.to_string_lossy()
    );
}

fn how_it_ended(main: MainExit) -> String {
    match main {
        MainExit::Code(c) => format!("exited with code {c}"),
        MainExit::Signal(sig) => format!("was killed by signal {sig}"),
    }
}

pub(crate) fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn main_exit(status: ExitStatus) -> MainExit {
    match (status.code(), status.signal()) {
        (Some(code), _) => MainExit::Code(code),
        (None, Some(sig)) => MainExit::Signal(sig),
        (None, None) => MainExit::Code(1),
    }
}

/// The app's exit code, or 128 + N when signal N killed it (as shells report it).
fn exit_code(main: MainExit) -> u8 {
    match main {
        MainExit::Code(c) => (c & 0xff) as u8,
        MainExit::Signal(s) => (128 + s).clamp(0, 255) as u8,
    }
}

fn print_summary(s: &RecordSummary, main: MainExit, output: &Path, regular: bool) {
    let how = how_it_ended(main);
    let pids: std::collections::BTreeSet<u32> = s.streams.iter().map(|t| t.pid).collect();
    let events = s.events();
    say!("asynctrace: the app {how}");
    say!(
        "asynctrace: recorded {events} events from {} process{} and {} thread{}; dropped {}",
        pids.len(),
        if pids.len() == 1 { "" } else { "es" },
        s.streams.len(),
        if s.streams.len() == 1 { "" } else { "s" },
        s.dropped()
    );
    for t in s.streams.iter().filter(|t| t.dropped > 0) {
        say!(
            "asynctrace:   pid {} thread {} dropped {} events (ring full; raise --ring-records)",
            t.pid,
            t.thread,
            t.dropped
        );
    }
    for t in s.streams.iter().filter(|t| t.malformed > 0) {
        say!(
            "asynctrace:   pid {} thread {}: {} malformed records skipped",
            t.pid,
            t.thread,
            t.malformed
        );
    }
    for t in s.streams.iter().filter(|t| matches!(t.ending, Ending::Vanished)) {
        say!(
            "asynctrace:   pid {} thread {} ended without running its exit handler",
            t.pid,
            t.thread
        );
    }
    for (path, why) in &s.unreadable {
        say!("asynctrace:   could not read ring {}: {why}", path.display());
    }
    // A device or pipe has no size to report.
    let bytes = std::fs::metadata(output).ok().filter(|_| regular).map(|m| m.len());
    match bytes {
        Some(bytes) => {
            let per_event = if events > 0 {
                format!(", {:.1} bytes/event", bytes as f64 / events as f64)
            } else {
                String::new()
            };
            say!(
                "asynctrace: wrote {} ({}{per_event})",
                output.display(),
                human_bytes(bytes)
            );
        }
        None => say!("asynctrace: wrote {}", output.display()),
    }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

mod signals {
    //! Ctrl-C and SIGTERM go to the app, not to us: the trace must still be finished.
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    use signal_hook::iterator::{Handle, Signals};

    pub struct Forwarder(Handle);

    impl Forwarder {
        pub fn close(self) {
            self.0.close();
        }
    }

    pub fn forward_to(pid: u32) -> anyhow::Result<Forwarder> {
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT])?;
        let handle = signals.handle();
        std::thread::Builder::new()
            .name("asynctrace-signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    // A terminal's Ctrl-C already reached the app (same foreground process group);
                    // sending it again would make a graceful app see two.
                    if (sig == SIGINT || sig == SIGQUIT) && in_terminal_foreground() {
                        continue;
                    }
                    if let (Some(p), Some(s)) = (
                        rustix::process::Pid::from_raw(pid as i32),
                        rustix::process::Signal::from_named_raw(sig),
                    ) {
                        let _ = rustix::process::kill_process(p, s);
                    }
                }
            })?;
        Ok(Forwarder(handle))
    }

    fn in_terminal_foreground() -> bool {
        match rustix::termios::tcgetpgrp(std::io::stdin()) {
            Ok(fg) => fg == rustix::process::getpgrp(),
            Err(_) => false,
        }
    }
}
