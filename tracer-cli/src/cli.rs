//! Command-line arguments.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Record and explain what a Node.js app does asynchronously.
#[derive(Debug, Parser)]
#[command(name = "asynctrace", version = version(), about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What `--version` prints after the name: the release, the commit it was built from
/// (`unknown` outside a git checkout) and the trace format it writes, so a trace, a bug report
/// and a binary can be matched up.
fn version() -> &'static str {
    static LINE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LINE.get_or_init(|| {
        format!(
            "{} (commit {}, trace format {})",
            env!("CARGO_PKG_VERSION"),
            env!("ASYNCTRACE_GIT_COMMIT"),
            tracer_core::trace::TRACE_FORMAT_VERSION
        )
    })
}

/// What a trace records as its writer: the release and the commit.
pub fn writer_version() -> String {
    format!(
        "{} (commit {})",
        env!("CARGO_PKG_VERSION"),
        env!("ASYNCTRACE_GIT_COMMIT")
    )
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command with the agent injected into every Node process and worker thread, and
    /// write a trace file.
    Record(RecordArgs),
    /// Summarise a trace: events, resource types, processes, threads, drops.
    Info(InfoArgs),
    /// The triggerAsyncId tree (or --exec: executionAsyncId), identical siblings folded.
    Tree(TreeArgs),
    /// What was still alive at the end, by leak class and creation site, and sites that grew.
    Leaks(LeaksArgs),
    /// Callbacks that blocked the event loop longest (sync time over a threshold).
    Slow(SlowArgs),
    /// Incoming HTTP requests by latency, with where each one waited.
    Requests(RequestsArgs),
    /// Draw a flame graph (SVG) of where time goes, one stack per resource: the trigger path
    /// that led to it, weighted by its time in callbacks, its async wait, or a count.
    Flame(FlameArgs),
    /// Export a trace for other tools: Perfetto / chrome://tracing, speedscope, folded stacks.
    Export(ExportArgs),
    /// Bubbleprof's picture of async flow: resources grouped into bubbles by creation site and
    /// party, linked by the waits between them; an HTML page (-o page.html), JSON or text.
    Bubble(BubbleArgs),
    /// Watch an app live (`top -- node app.js`, recording as `record` does) or replay a trace
    /// (`top trace.bin`) in a terminal UI: resources by site, warnings, the trigger tree.
    Top(TopArgs),
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Where to write the trace. It is written as `<file>.partial`, readable by its owner
    /// only, and renamed to `<file>` when complete.
    #[arg(short, long, default_value = "trace.bin")]
    pub output: PathBuf,
    /// Ring capacity per thread, in 32-byte records (a power of two). A full ring drops and
    /// counts records rather than slow the app down. Default: 262144 (8 MiB); 1048576 (32
    /// MiB) in a thread that follows promises through V8's hooks (see `--promises`), whose
    /// faster promises fill a ring in bursts.
    #[arg(long, value_parser = parse_ring_records)]
    pub ring_records: Option<u32>,
    /// Resolution of event times in microseconds: a native thread refreshes a clock word the
    /// agent reads, because a precise clock per event costs more than the record.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(5..=100_000))]
    pub clock_us: u32,
    /// Read a precise clock at each callback's start and end (before, after): exact
    /// per-callback sync times and waits, for ~50 ns more per callback.
    #[arg(long)]
    pub precise: bool,
    /// Copy records through a staging array instead of writing to shared memory directly
    /// (what runtimes without external ArrayBuffers do anyway).
    #[arg(long)]
    pub staged: bool,
    /// Creation stacks: `auto` records one for every handle, timer and request, and for
    /// promises and ticks within a budget (all of them in small apps, a sample in big ones);
    /// `on` records every one (slow on promise-heavy apps); `off` records none.
    #[arg(long, value_enum, default_value_t = Stacks::Auto)]
    pub stacks: Stacks,
    /// CPU samples: V8's sampling profiler in every thread, so reports can say which functions
    /// ran inside each callback. `off` records none.
    #[arg(long, value_enum, default_value_t = Cpu::On)]
    pub cpu: Cpu,
    /// How promises are followed: `v8` through V8's promise hooks, with async_hooks left to
    /// the other resources (about half the cost on promise-heavy code; needs Node 24.21, 25.9
    /// or 26; promise collection is not seen); `async-hooks` as Node's async_hooks sees them;
    /// `auto` (the default): `v8` where Node supports it. `asynctrace info` says which each
    /// thread used.
    #[arg(long, value_enum, default_value_t = Promises::Auto)]
    pub promises: Promises,
    /// Microseconds between CPU samples (default 1000: see BENCHMARKS.md for the cost).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(50..=1_000_000))]
    pub cpu_interval: u32,
    /// Print no summary when the app ends.
    #[arg(short, long)]
    pub quiet: bool,
    /// The command to run, after `--`: `node app.js`, `npm start`, a script that starts node.
    #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// Whether the agent samples the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Cpu {
    On,
    Off,
}

/// How the agent follows promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Promises {
    Auto,
    #[value(name = "async-hooks")]
    AsyncHooks,
    V8,
}

impl RecordArgs {
    /// The ring capacity of a thread that follows promises through async_hooks (`v8: false`)
    /// or through V8's promise hooks: the one asked for, or that mode's default. Each thread's
    /// agent takes the one for the mode it ends up in (`auto` falls back on older Node).
    pub fn ring_records(&self, v8: bool) -> u32 {
        self.ring_records.unwrap_or(if v8 { 1 << 20 } else { 1 << 18 })
    }
}

impl Promises {
    pub fn as_str(self) -> &'static str {
        match self {
            Promises::Auto => "auto",
            Promises::AsyncHooks => "async-hooks",
            Promises::V8 => "v8",
        }
    }
}

/// When the agent captures creation stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Stacks {
    Auto,
    On,
    Off,
}

impl RecordArgs {
    /// What the agent is told: 0 is off.
    pub fn cpu_interval_us(&self) -> u32 {
        match self.cpu {
            Cpu::On => self.cpu_interval,
            Cpu::Off => 0,
        }
    }
}

impl Stacks {
    pub fn as_str(self) -> &'static str {
        match self {
            Stacks::Auto => "auto",
            Stacks::On => "on",
            Stacks::Off => "off",
        }
    }
}

fn parse_ring_records(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !(16..=1 << 30).contains(&n) || !n.is_power_of_two() {
        return Err(format!("{n} is not a power of two between 16 and 2^30 (1073741824)"));
    }
    Ok(n)
}

/// Output format of reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The trace file (or a pipe that a program writes a trace into).
    pub trace: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// What a flame graph's widths measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum WeightArg {
    /// Time inside the resource's callbacks (µs).
    #[default]
    Sync,
    /// Time the resource waited for its next callback (µs).
    Async,
    /// Resources created.
    Count,
    /// CPU samples (µs): the async path continued by the JS stack sampled in its callback.
    Cpu,
}

/// Which processes, threads and time window to look at.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only this process.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Only this thread (worker threadId; 0 is the main thread).
    #[arg(long, value_name = "N")]
    pub thread: Option<u32>,
    /// Start of the time window, ms since the trace start.
    #[arg(long, value_name = "MS")]
    pub from_ms: Option<f64>,
    /// End of the time window, ms since the trace start.
    #[arg(long, value_name = "MS")]
    pub to_ms: Option<f64>,
}

#[derive(Debug, Args)]
pub struct FlameArgs {
    /// The trace file.
    pub trace: PathBuf,
    /// Write the SVG (or folded lines) here instead of stdout (`-` is stdout).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// What widths measure.
    #[arg(long, value_enum, default_value_t = WeightArg::Sync)]
    pub weight: WeightArg,
    /// A flame chart: stacks in time order, left to right, instead of merged.
    #[arg(long)]
    pub flamechart: bool,
    /// Print the folded stacks (`a;b;c <weight>`) instead of the SVG.
    #[arg(long)]
    pub folded: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Formats of `asynctrace export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Chrome Trace Event JSON (ui.perfetto.dev, chrome://tracing).
    Chrome,
    /// speedscope JSON (www.speedscope.app), weighted by --weight.
    Speedscope,
    /// Folded stacks, the lines `flame --folded` prints.
    Folded,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The trace file.
    pub trace: PathBuf,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Write here instead of stdout (`-` is stdout).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// What stack weights measure (speedscope, folded).
    #[arg(long, value_enum, default_value_t = WeightArg::Sync)]
    pub weight: WeightArg,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Debug, Args)]
pub struct TreeArgs {
    /// The trace file.
    pub trace: PathBuf,
    /// Show only the subtree of this async id (in the first selected process and thread).
    #[arg(long, value_name = "ID")]
    pub root: Option<u64>,
    /// Levels to show below the top.
    #[arg(long, default_value_t = 10)]
    pub depth: usize,
    /// Child groups to show per group (the earliest first).
    #[arg(long, default_value_t = 20)]
    pub children: usize,
    /// Groups to show in all; the rest is summarised.
    #[arg(long, default_value_t = 400)]
    pub lines: usize,
    /// Only this process.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Only this thread (worker threadId; 0 is the main thread).
    #[arg(long, value_name = "N")]
    pub thread: Option<u32>,
    /// Parent = executionAsyncId at init (when it was created) instead of triggerAsyncId (why).
    #[arg(long)]
    pub exec: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct LeaksArgs {
    /// The trace file.
    pub trace: PathBuf,
    /// Also list what is alive but not a leak (settled promises not yet collected, work cut
    /// short by the exit).
    #[arg(long)]
    pub all: bool,
    /// Exit with status 1 when a leak is found (for CI).
    #[arg(long)]
    pub fail: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct SlowArgs {
    /// The trace file.
    pub trace: PathBuf,
    /// Callbacks with more sync time than this blocked the event loop.
    #[arg(long, value_name = "MS", default_value_t = 10.0)]
    pub threshold_ms: f64,
    /// How many to list, longest first.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct RequestsArgs {
    /// The trace file.
    pub trace: PathBuf,
    /// Requests to list, slowest first (0: all); percentiles cover all of them.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct BubbleArgs {
    /// The trace file.
    pub trace: PathBuf,
    /// Write the page (one self-contained HTML file) here.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Bubbles to show per process and thread before the least busy unmarked ones fold.
    #[arg(long, default_value_t = 40)]
    pub bubbles: usize,
    /// Callbacks with more sync time than this are marked as blocking.
    #[arg(long, value_name = "MS", default_value_t = 10.0)]
    pub threshold_ms: f64,
    /// Output format on stdout (when no -o is given).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// A trace to replay (or give a command after `--` to watch it live).
    pub trace: Option<PathBuf>,
    /// Live: where to write the trace (every record, whatever the UI shows).
    #[arg(short, long, default_value = "trace.bin")]
    pub output: PathBuf,
    /// Replay: start at this time of the run (`12.5s`, `2m`).
    #[arg(long)]
    pub at: Option<String>,
    /// Replay: start paused.
    #[arg(long)]
    pub paused: bool,
    /// Replay the whole trace as fast as it reads, drawing a 120x40 frame off screen every
    /// 100 ms of wall time, and print the events/s the UI keeps up with (a benchmark).
    #[arg(long, hide = true)]
    pub headless: bool,
    /// Replay speed (1 = as fast as the app ran).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Frames per second.
    #[arg(long, default_value_t = 10.0)]
    pub fps: f64,
    /// A callback longer than this (ms) blocked the loop.
    #[arg(long, default_value_t = 10.0)]
    pub blocking_ms: f64,
    /// A promise pending longer than this (s) is reported.
    #[arg(long, default_value_t = 5.0)]
    pub unsettled_s: f64,
    /// An HTTP request open longer than this (s) is reported.
    #[arg(long, default_value_t = 2.0)]
    pub request_s: f64,
    /// How long completed resources are kept for the details view (s).
    #[arg(long, default_value_t = 10.0)]
    pub retain_s: f64,
    /// Warnings to switch off (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub allow: Vec<Allowed>,
    /// Live: ring capacity per thread, in 32-byte records (a power of two).
    #[arg(long, default_value_t = 1 << 18, value_parser = parse_ring_records)]
    pub ring_records: u32,
    /// Live: creation stacks (see `record --help`).
    #[arg(long, value_enum, default_value_t = Stacks::Auto)]
    pub stacks: Stacks,
    /// The command to watch live, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// A warning `top` can be told to leave out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Allowed {
    Blocking,
    Unsettled,
    Growing,
    TimerLoop,
    SlowRequest,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(args: &[&str]) -> (u32, u32) {
        let cli = Cli::try_parse_from(
            ["asynctrace", "record"]
                .iter()
                .chain(args)
                .chain(&["--", "node", "a.js"]),
        )
        .unwrap();
        match cli.command {
            Command::Record(r) => (r.ring_records(false), r.ring_records(true)),
            _ => unreachable!("parsed as record"),
        }
    }

    #[test]
    fn v8_promises_take_a_bigger_ring_unless_one_is_asked_for() {
        assert_eq!(ring(&[]), (1 << 18, 1 << 20));
        assert_eq!(ring(&["--promises", "v8"]), (1 << 18, 1 << 20));
        assert_eq!(ring(&["--ring-records", "4096"]), (4096, 4096));
    }

    #[test]
    fn promises_follow_v8_where_node_can_unless_asked_otherwise() {
        let promises = |args: &[&str]| {
            let cli = Cli::try_parse_from(["asynctrace", "record"].iter().chain(args).chain(&["--", "node"])).unwrap();
            match cli.command {
                Command::Record(r) => r.promises,
                _ => unreachable!("parsed as record"),
            }
        };
        assert_eq!(promises(&[]), Promises::Auto);
        assert_eq!(promises(&["--promises", "async-hooks"]), Promises::AsyncHooks);
    }
}
