//! Writes traces of the shapes that once made reports hang or need unbounded memory, for
//! measuring every report's peak RSS on them with `/usr/bin/time -v`:
//!
//! ```sh
//! cargo run --release -p tracer-core --example adversarial -- await-loop /tmp/loop.bin 3000000
//! cargo run --release -p tracer-core --example adversarial -- deep-chain /tmp/deep.bin 1000000
//! cargo run --release -p tracer-core --example adversarial -- live /tmp/live.bin 2000000
//! for r in "tree" "leaks" "slow" "requests" "flame --folded" "export --format chrome"; do
//!   /usr/bin/time -f "$r %M KB" target/release/asynctrace $r /tmp/loop.bin > /dev/null
//! done
//! ```
//!
//! - `await-loop N`: a queue consumer's chain, N promises each triggered by the previous one,
//!   from two sites, each resolved, run and destroyed (GC) a little later: the chain is N
//!   links long while a few hundred are alive.
//! - `deep-chain N`: N promises each triggered by the previous one, every one from a site of
//!   its own (up to 4,096 distinct sites, cycling): a chain that no loop folding shortens.
//! - `live N`: N timers created and never destroyed (millions of live resources), in two
//!   processes whose first sites appear in the second process first (a resized clock).

use std::io::BufWriter;

use tracer_core::trace::{Ending, Event, EventKind, StreamEnd, StreamId, TraceMeta, TraceWriter};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [shape, path, n] = args.as_slice() else {
        return Err("usage: adversarial await-loop|deep-chain|live <out.bin> <N>".into());
    };
    let n: u64 = n.parse()?;
    let meta = TraceMeta {
        clock_tick_ns: 100_000,
        ..TraceMeta::default()
    };
    let mut w = TraceWriter::new(BufWriter::new(std::fs::File::create(path)?), &meta)?;
    match shape.as_str() {
        "await-loop" => await_loop(&mut w, n)?,
        "deep-chain" => deep_chain(&mut w, n)?,
        "live" => live(&mut w, n)?,
        other => return Err(format!("unknown shape {other}").into()),
    }
    w.finish()?;
    Ok(())
}

fn ev<W: std::io::Write>(
    w: &mut TraceWriter<W>,
    stream: StreamId,
    time_ns: u64,
    id: u64,
    kind: EventKind,
) -> std::io::Result<()> {
    w.event(&Event {
        stream,
        time_ns,
        id,
        kind,
    })
}

fn end<W: std::io::Write>(w: &mut TraceWriter<W>, stream: StreamId, events: u64) -> std::io::Result<()> {
    w.end_stream(&StreamEnd {
        stream,
        events,
        dropped: 0,
        malformed: 0,
        ending: Ending::Exited { code: 0 },
    })
}

/// A chain of `n` promises; `site(i)` names the stack of link `i`; links are destroyed
/// `lag` links later.
fn chain<W: std::io::Write>(
    w: &mut TraceWriter<W>,
    n: u64,
    lag: u64,
    mut site: impl FnMut(&mut TraceWriter<W>, u64) -> u32,
) -> std::io::Result<()> {
    let s = w.begin_stream(1, 0, "v20.0.0")?;
    let promise = w.intern("PROMISE");
    let mut events = 0;
    for i in 0..n {
        let (id, t) = (i + 2, i * 2_000);
        let stack = Some(site(w, i));
        let trigger = if i == 0 { 1 } else { id - 1 };
        let init = EventKind::Init {
            type_name: promise,
            trigger,
            exec: trigger,
            stack,
        };
        ev(w, s, t, id, init)?;
        ev(w, s, t + 500, id, EventKind::PromiseResolve { by: 0 })?;
        ev(w, s, t + 1_000, id, EventKind::Before)?;
        ev(w, s, t + 1_500, id, EventKind::After)?;
        events += 4;
        if i >= lag {
            ev(w, s, t + 1_600, id - lag, EventKind::Destroy)?;
            events += 1;
        }
    }
    end(w, s, events)
}

fn await_loop<W: std::io::Write>(w: &mut TraceWriter<W>, n: u64) -> std::io::Result<()> {
    let sites = [w.intern("nextJob\tapp.js:12:23"), w.intern("consume\tapp.js:25:23")];
    chain(w, n, 300, |_, i| sites[(i % 2) as usize])
}

fn deep_chain<W: std::io::Write>(w: &mut TraceWriter<W>, n: u64) -> std::io::Result<()> {
    let sites: Vec<u32> = (0..4096)
        .map(|i| w.intern(&format!("f{i}\tlib/step{i}.js:{i}:1")))
        .collect();
    chain(w, n, 300, |_, i| sites[(i % 4096) as usize])
}

fn live<W: std::io::Write>(w: &mut TraceWriter<W>, n: u64) -> std::io::Result<()> {
    let a = w.begin_stream(1, 0, "v20.0.0")?;
    let b = w.begin_stream(2, 0, "v20.0.0")?;
    let timeout = w.intern("Timeout");
    let site = w.intern("\tapp.js:3:1");
    // The second process's first site comes first.
    let init = |trigger| EventKind::Init {
        type_name: timeout,
        trigger,
        exec: trigger,
        stack: Some(site),
    };
    ev(w, b, 0, 2, init(1))?;
    for i in 0..n {
        ev(w, a, i * 1_000, i + 2, init(1))?;
    }
    end(w, a, n)?;
    end(w, b, 1)
}
