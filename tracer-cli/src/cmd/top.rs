//! `asynctrace top trace.bin` replays a trace in the terminal UI; `asynctrace top -- node
//! app.js` records as `record` does and shows the app live.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use anyhow::Context as _;
use ratatui::crossterm::event::{self, Event, KeyEvent, KeyEventKind};
use ratatui::DefaultTerminal;
use tracer_core::live::{LiveOptions, Progress, Replay};

use std::process::Child;

use tracer_core::live::{LiveState, Tap, TapReceiver};
use tracer_core::trace::TraceMeta;

use crate::cli::{Allowed, Cpu, RecordArgs, TopArgs};
use crate::cmd::open_trace;
use crate::cmd::record::Watch;
use crate::input::Input;
use crate::tui::{App, Clock, Command};

/// Events fed per step of the replay between checks of the frame's time budget.
const BATCH: usize = 4096;

pub fn run(args: TopArgs) -> anyhow::Result<ExitCode> {
    match &args.trace {
        Some(trace) if args.command.is_empty() => replay(&args, trace),
        Some(_) => anyhow::bail!("give either a trace to replay or a command after `--`, not both"),
        None if args.command.is_empty() => {
            anyhow::bail!("nothing to show: give a trace (`asynctrace top trace.bin`) or a command (`asynctrace top -- node app.js`)")
        }
        None => live(&args),
    }
}

pub fn options(args: &TopArgs) -> LiveOptions {
    let mut o = LiveOptions {
        blocking_ns: (args.blocking_ms * 1e6) as u64,
        unsettled_ns: (args.unsettled_s * 1e9) as u64,
        request_ns: (args.request_s * 1e9) as u64,
        retain_ns: (args.retain_s * 1e9) as u64,
        ..Default::default()
    };
    for a in &args.allow {
        match a {
            Allowed::Blocking => o.allow.blocking = true,
            Allowed::Unsettled => o.allow.unsettled = true,
            Allowed::Growing => o.allow.growing = true,
            Allowed::TimerLoop => o.allow.timer_loop = true,
            Allowed::SlowRequest => o.allow.slow_request = true,
        }
    }
    o
}

/// Restores the terminal however the UI ends (ratatui's panic hook covers panics).
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

fn start_terminal() -> anyhow::Result<(DefaultTerminal, TerminalGuard)> {
    let terminal = ratatui::try_init().context("cannot set up the terminal (is this a terminal?)")?;
    Ok((terminal, TerminalGuard))
}

struct Replayer {
    path: std::path::PathBuf,
    replay: Replay<Input>,
    opts: LiveOptions,
    /// The replay's clock, ns since the trace start.
    at_ns: u64,
}

impl Replayer {
    fn open(path: &Path, opts: LiveOptions) -> anyhow::Result<(Self, tracer_core::live::LiveState)> {
        let replay = Replay::new(open_trace(path)?);
        let state = replay.state(opts);
        Ok((
            Replayer {
                path: path.to_owned(),
                replay,
                opts,
                at_ns: 0,
            },
            state,
        ))
    }

    /// Feeds up to `target`, for at most `budget` of wall time; returns whether the trace
    /// ended.
    fn advance(&mut self, app: &mut App, target: u64, budget: Option<Duration>) -> anyhow::Result<bool> {
        let until = budget.map(|b| Instant::now() + b);
        loop {
            let p = self
                .replay
                .advance(&mut app.state, target, BATCH)
                .with_context(|| format!("reading {}", self.path.display()))?;
            match p {
                Progress::Reached => {
                    self.at_ns = target;
                    return Ok(false);
                }
                Progress::End => {
                    self.at_ns = app.state.now_ns;
                    return Ok(true);
                }
                Progress::More => {
                    if until.is_some_and(|u| Instant::now() >= u) {
                        // Behind: the clock shows how far the state got.
                        self.at_ns = app.state.now_ns;
                        return Ok(false);
                    }
                }
            }
        }
    }

    /// Seeks to `target`: forward by reading on, back by reading again from the start.
    fn seek(&mut self, app: &mut App, target: u64) -> anyhow::Result<bool> {
        if target < app.state.now_ns {
            let (fresh, state) = Self::open(&self.path, self.opts)?;
            *self = fresh;
            app.state = state;
        }
        self.advance(app, target, None)
    }
}

/// `--headless`: the whole trace through the state, a frame drawn off screen every 100 ms.
fn headless(args: &TopArgs, path: &Path) -> anyhow::Result<ExitCode> {
    let (mut r, state) = Replayer::open(path, options(args))?;
    let mut app = App::new(
        state,
        Clock {
            live: false,
            paused: false,
            ended: false,
            speed: 1.0,
        },
    );
    let mut terminal =
        ratatui::Terminal::new(ratatui::backend::TestBackend::new(120, 40)).context("off-screen terminal")?;
    let start = Instant::now();
    let cpu0 = cpu_ns();
    let mut frames = 0u64;
    loop {
        let before = app.state.events;
        let ended = r.advance(&mut app, u64::MAX, Some(Duration::from_millis(100)))?;
        terminal.draw(|f| app.draw(f)).context("drawing")?;
        frames += 1;
        // Why also stop when nothing was fed: the whole trace was read.
        if ended || app.state.events == before {
            break;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = (cpu_ns() - cpu0) as f64 / 1e9;
    let events = app.state.events;
    say!(
        "{events} events in {wall:.2} s ({:.2} M events/s), {frames} frames, {:.2} s CPU ({:.0}% of one core)",
        events as f64 / wall / 1e6,
        cpu,
        cpu / wall * 100.0
    );
    Ok(ExitCode::SUCCESS)
}

/// CPU time of this process, ns.
fn cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn replay(args: &TopArgs, path: &Path) -> anyhow::Result<ExitCode> {
    if args.headless {
        return headless(args, path);
    }
    let (mut r, state) = Replayer::open(path, options(args))?;
    let mut app = App::new(
        state,
        Clock {
            live: false,
            paused: args.paused,
            ended: false,
            speed: args.speed,
        },
    );
    if let Some(at) = &args.at {
        let ns =
            crate::tui::app::parse_time(at).with_context(|| format!("--at {at:?} is not a time (e.g. 12.5s, 2m)"))?;
        app.clock.ended = r.seek(&mut app, ns)?;
    }
    let frame = Duration::from_secs_f64(1.0 / args.fps.max(1.0));
    let (mut terminal, _guard) = start_terminal()?;
    let mut last = Instant::now();
    loop {
        let now = Instant::now();
        let dt = now.duration_since(last);
        last = now;
        if !app.clock.paused && !app.clock.ended {
            let target = r.at_ns + (dt.as_nanos() as f64 * app.clock.speed) as u64;
            app.clock.ended = r.advance(&mut app, target, Some(frame / 2))?;
        }
        app.clock_at = Some(r.at_ns.max(app.state.now_ns));
        terminal.draw(|f| app.draw(f)).context("drawing")?;
        let deadline = now + frame;
        while let Some(key) = next_key(deadline)? {
            match app.key(key) {
                Some(Command::Quit | Command::StopApp | Command::Detach) => return Ok(ExitCode::SUCCESS),
                Some(Command::Pause) => app.clock.paused = !app.clock.paused,
                Some(Command::Step) => {
                    app.clock.paused = true;
                    let target = r.at_ns + 1_000_000_000;
                    app.clock.ended = r.advance(&mut app, target, None)?;
                }
                Some(Command::Speed(s)) => app.clock.speed = s,
                Some(Command::Seek(ns)) => app.clock.ended = r.seek(&mut app, ns)?,
                None => {}
            }
            app.clock_at = Some(r.at_ns.max(app.state.now_ns));
            terminal.draw(|f| app.draw(f)).context("drawing")?;
        }
    }
}

/// A key pressed already, without waiting (other terminal events and key releases are
/// skipped).
fn pressed_key() -> anyhow::Result<Option<KeyEvent>> {
    while event::poll(Duration::ZERO).context("reading the keyboard")? {
        if let Event::Key(key) = event::read().context("reading the keyboard")? {
            if key.kind == KeyEventKind::Press {
                return Ok(Some(key));
            }
        }
    }
    Ok(None)
}

/// The next key pressed before `deadline`, or `None` when it passed (other terminal events
/// and key releases are skipped).
fn next_key(deadline: Instant) -> anyhow::Result<Option<KeyEvent>> {
    while let Some(wait) = deadline.checked_duration_since(Instant::now()) {
        if !event::poll(wait).context("reading the keyboard")? {
            break;
        }
        if let Event::Key(key) = event::read().context("reading the keyboard")? {
            if key.kind == KeyEventKind::Press {
                return Ok(Some(key));
            }
        }
    }
    Ok(None)
}

/// Batches from the recorder waiting for the UI at most (8,192 items each).
const TAP_BATCHES: usize = 16;

fn live(args: &TopArgs) -> anyhow::Result<ExitCode> {
    let (tap, rx) = Tap::new(TAP_BATCHES);
    let log = log_path(&args.output);
    let app_output = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let record = RecordArgs {
        output: args.output.clone(),
        ring_records: Some(args.ring_records),
        clock_us: 100,
        precise: false,
        staged: false,
        stacks: args.stacks,
        cpu: Cpu::Off,
        promises: crate::cli::Promises::AsyncHooks,
        cpu_interval: 1000,
        quiet: false,
        command: args.command.clone(),
    };
    let mut state = LiveState::new(options(args));
    state.cx.meta = TraceMeta {
        command: args.command.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
        cwd: std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        ..Default::default()
    };
    let fps = args.fps;
    // The trace's clock starts when `record` starts, a moment after this: ages read from
    // this origin are at most that moment too long.
    let origin_ns = crate::cmd::record::monotonic_ns();
    let ui = Box::new(move |child: &mut Child| -> anyhow::Result<()> {
        let outcome = watch(child, state, &rx, fps, origin_ns)?;
        if rx.skipped() > 0 {
            say!(
                "asynctrace: the live view skipped {} events to keep up (the trace has every one)",
                rx.skipped()
            );
        }
        match outcome {
            Outcome::Exited => {}
            Outcome::Stop => {
                if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                }
                say!("asynctrace: stopping the app (SIGTERM)");
            }
            Outcome::Detach => say!("asynctrace: detached; recording until the app exits"),
        }
        Ok(())
    });
    let code = crate::cmd::record::run_with(record, Some(Watch { tap, app_output, ui }))?;
    say!("asynctrace: the app's output is in {}", log.display());
    Ok(code)
}

/// `trace.bin` -> `trace.bin.app.log`.
fn log_path(output: &Path) -> std::path::PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".app.log");
    name.into()
}

enum Outcome {
    Exited,
    Stop,
    Detach,
}

/// Runs the UI until the app exits or the user leaves.
fn watch(child: &mut Child, state: LiveState, rx: &TapReceiver, fps: f64, origin_ns: u64) -> anyhow::Result<Outcome> {
    let mut app = App::new(
        state,
        Clock {
            live: true,
            paused: false,
            ended: false,
            speed: 1.0,
        },
    );
    let frame = Duration::from_secs_f64(1.0 / fps.max(1.0));
    let (mut terminal, _guard) = start_terminal()?;
    loop {
        let deadline = Instant::now() + frame;
        app.skipped = rx.skipped();
        // A quiet (or hung) app records nothing, yet its requests and promises keep ageing.
        app.state
            .advance_clock(crate::cmd::record::monotonic_ns().saturating_sub(origin_ns));
        if child.try_wait().context("waiting for the app")?.is_some() {
            return Ok(Outcome::Exited);
        }
        if !app.clock.paused {
            terminal.draw(|f| app.draw(f)).context("drawing")?;
        }
        // Until the next frame: keys first, else the recorder's batches. Why read all the
        // time rather than in a slice of each frame: the recorder sends in bursts and the
        // channel holds only tens of milliseconds at millions of events per second, so a view
        // that rested between frames skipped events it had the time to read.
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if let Some(key) = pressed_key()? {
                match app.key(key) {
                    Some(Command::StopApp | Command::Quit) => return Ok(Outcome::Stop),
                    Some(Command::Detach) => return Ok(Outcome::Detach),
                    Some(Command::Pause) => app.clock.paused = !app.clock.paused,
                    Some(Command::Step | Command::Speed(_) | Command::Seek(_)) | None => {}
                }
                terminal.draw(|f| app.draw(f)).context("drawing")?;
                continue;
            }
            // A short wait, so that a key is seen within a few milliseconds.
            match rx.rx.recv_timeout(left.min(KEY_POLL)) {
                Ok(batch) => app.state.apply_items(batch),
                Err(RecvTimeoutError::Timeout) => {}
                // The recorder is gone (the app is exiting): only keys until the next frame.
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(left.min(KEY_POLL)),
            }
        }
    }
}

/// How long the live view waits for the recorder before it looks at the keyboard again.
const KEY_POLL: Duration = Duration::from_millis(3);
