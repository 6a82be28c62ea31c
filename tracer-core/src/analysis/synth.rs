//! Synthetic traces for tests and benchmarks: a small builder, and a generated HTTP-server
//! workload of any size.

use std::io::{self, Write};

use crate::trace::{Ending, Event, EventKind, StreamEnd, StreamId, TraceMeta, TraceWriter};

/// Writes a trace event by event, with type names and stacks given as text.
#[derive(Debug)]
pub struct Synth<W: Write> {
    w: TraceWriter<W>,
    /// When set, events are held and written in time order (stable) at the stream's end:
    /// tests describe resources one after another, the agent records in time order.
    held: Option<Vec<Event>>,
}

/// Metadata of synthetic traces (50 µs clock).
pub fn meta() -> TraceMeta {
    TraceMeta {
        command: vec!["node".into(), "app.js".into()],
        cwd: "/srv/app".into(),
        start_unix_ms: 1_700_000_000_000,
        start_ns: 1,
        writer_version: "synthetic".into(),
        clock_tick_ns: 50_000,
    }
}

impl Synth<Vec<u8>> {
    /// A builder that sorts each stream's events by time.
    pub fn in_memory() -> Self {
        let mut s = Self::new(Vec::new()).expect("writing to a Vec cannot fail");
        s.held = Some(Vec::new());
        s
    }
}

impl<W: Write> Synth<W> {
    pub fn new(out: W) -> io::Result<Self> {
        Ok(Synth {
            w: TraceWriter::new(out, &meta())?,
            held: None,
        })
    }

    pub fn stream(&mut self, pid: u32, thread: u32) -> io::Result<StreamId> {
        self.w.begin_stream(pid, thread, "v20.0.0")
    }

    fn ev(&mut self, stream: StreamId, ms: f64, id: u64, kind: EventKind) -> io::Result<()> {
        let time_ns = (ms * 1e6).round() as u64;
        let ev = Event {
            stream,
            time_ns,
            id,
            kind,
        };
        match &mut self.held {
            Some(held) => {
                held.push(ev);
                Ok(())
            }
            None => self.w.event(&ev),
        }
    }

    fn release(&mut self, stream: Option<StreamId>) -> io::Result<()> {
        let Some(held) = &mut self.held else {
            return Ok(());
        };
        let (mut out, keep): (Vec<Event>, Vec<Event>) =
            held.drain(..).partition(|e| stream.is_none_or(|s| s == e.stream));
        *held = keep;
        out.sort_by_key(|e| (e.stream, e.time_ns));
        for e in &out {
            self.w.event(e)?;
        }
        Ok(())
    }

    /// An init; `stack` is `"fn\tpath:line:col\n..."` or a bare `path:line:col`.
    pub fn init(
        &mut self,
        s: StreamId,
        ms: f64,
        id: u64,
        ty: &str,
        trigger: u64,
        stack: Option<&str>,
    ) -> io::Result<()> {
        let type_name = self.w.intern(ty);
        let stack = stack.map(|st| {
            let text = if st.contains('\t') {
                st.to_owned()
            } else {
                format!("\t{st}")
            };
            self.w.intern(&text)
        });
        self.ev(
            s,
            ms,
            id,
            EventKind::Init {
                type_name,
                trigger,
                exec: trigger,
                stack,
            },
        )
    }

    pub fn before(&mut self, s: StreamId, ms: f64, id: u64) -> io::Result<()> {
        self.ev(s, ms, id, EventKind::Before)
    }

    pub fn after(&mut self, s: StreamId, ms: f64, id: u64) -> io::Result<()> {
        self.ev(s, ms, id, EventKind::After)
    }

    /// A whole callback: before at `ms`, after `sync_ms` later.
    pub fn callback(&mut self, s: StreamId, ms: f64, id: u64, sync_ms: f64) -> io::Result<()> {
        self.before(s, ms, id)?;
        self.after(s, ms + sync_ms, id)
    }

    pub fn destroy(&mut self, s: StreamId, ms: f64, id: u64) -> io::Result<()> {
        self.ev(s, ms, id, EventKind::Destroy)
    }

    pub fn resolve(&mut self, s: StreamId, ms: f64, id: u64) -> io::Result<()> {
        self.ev(s, ms, id, EventKind::PromiseResolve { by: 0 })
    }

    /// A promiseResolve run in a callback of `by`.
    pub fn ev_resolve_by(&mut self, s: StreamId, ms: f64, id: u64, by: u64) -> io::Result<()> {
        self.ev(s, ms, id, EventKind::PromiseResolve { by })
    }

    pub fn label(&mut self, s: StreamId, ms: f64, id: u64, text: &str) -> io::Result<()> {
        let text = self.w.intern(text);
        self.ev(s, ms, id, EventKind::Label { text })
    }

    /// A note of the agent's (`trace::notes`) about resource `id` (0: the stream).
    #[allow(clippy::too_many_arguments)]
    pub fn note(
        &mut self,
        s: StreamId,
        ms: f64,
        id: u64,
        code: u32,
        a: u64,
        b: u64,
        text: Option<&str>,
    ) -> io::Result<()> {
        let text = text.map(|t| self.w.intern(t));
        self.ev(s, ms, id, EventKind::Note { code, a, b, text })
    }

    /// Node began handling request `number` (`GET /x`) in a callback of `parser`.
    pub fn request_start(
        &mut self,
        s: StreamId,
        ms: f64,
        parser: u64,
        number: u64,
        socket: u64,
        text: &str,
    ) -> io::Result<()> {
        self.note(
            s,
            ms,
            parser,
            crate::trace::notes::REQUEST_START,
            number,
            socket,
            Some(text),
        )
    }

    /// The response of request `number` finished, with `status`.
    pub fn request_finish(&mut self, s: StreamId, ms: f64, number: u64, status: u64) -> io::Result<()> {
        self.note(s, ms, 0, crate::trace::notes::REQUEST_FINISH, number, status, None)
    }

    pub fn end_stream(&mut self, stream: StreamId, events: u64) -> io::Result<()> {
        self.end_stream_dropped(stream, events, 0)
    }

    /// Ends a stream whose agent dropped `dropped` events.
    pub fn end_stream_dropped(&mut self, stream: StreamId, events: u64, dropped: u64) -> io::Result<()> {
        self.release(Some(stream))?;
        self.w.end_stream(&StreamEnd {
            stream,
            events,
            dropped,
            malformed: 0,
            ending: Ending::Exited { code: 0 },
        })
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.release(None)?;
        self.w.finish()
    }
}

/// xorshift64*: deterministic workloads without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// An HTTP server whose request #1 (`POST /checkout`, from 500 ms, on a connection of its
/// own) awaits a pool connection (`lib/pool.js:23:9`) that never comes, while requests #2 to
/// #40 (`GET /orders/n`, one every 90 ms from 180 ms) on a keep-alive connection each await
/// a query (`lib/db.js:40:11`) and finish 12.5 ms after they start.
pub fn stuck_request_trace() -> Vec<u8> {
    const POOL: &str = "acquire\t/srv/app/lib/pool.js:23:9\nhandle\t/srv/app/server.js:30:7";
    const QUERY: &str = "query\t/srv/app/lib/db.js:40:11";
    let mut s = Synth::in_memory();
    let st = s.stream(100, 0).expect("in memory");
    let mut go = || -> io::Result<()> {
        s.init(st, 0.0, 5, "TCPSERVERWRAP", 1, Some("\t/srv/app/server.js:50:3"))?;
        s.init(st, 1.0, 6, "TCPWRAP", 5, None)?;
        s.init(st, 1.0, 7, "HTTPINCOMINGMESSAGE", 6, None)?;
        s.init(st, 400.0, 8, "TCPWRAP", 5, None)?;
        s.init(st, 400.0, 9, "HTTPINCOMINGMESSAGE", 8, None)?;
        s.before(st, 500.0, 9)?;
        s.request_start(st, 500.0, 9, 1, 8, "POST /checkout")?;
        s.init(st, 500.2, 10, "PROMISE", 9, Some(POOL))?;
        s.after(st, 500.6, 9)?;
        for n in 2..=40u64 {
            let (t, id) = (n as f64 * 90.0, 9 + n);
            s.before(st, t, 7)?;
            s.request_start(st, t, 7, n, 6, &format!("GET /orders/{n}"))?;
            s.init(st, t + 0.1, id, "PROMISE", 7, Some(QUERY))?;
            s.after(st, t + 0.5, 7)?;
            s.resolve(st, t + 12.0, id)?;
            s.callback(st, t + 12.0, id, 0.3)?;
            s.request_finish(st, t + 12.5, n, 200)?;
            s.destroy(st, t + 20.0, id)?;
        }
        s.end_stream(st, 0)
    };
    go().expect("in memory");
    s.finish().expect("in memory")
}

/// An HTTP server under load, as async_hooks sees it, with at least `events` events: per
/// request a connection (TCPWRAP), its parser (HTTPINCOMINGMESSAGE, labelled), an async
/// handler of awaited promises, now and then a slow timer, and a leaked timer every 1000
/// requests. Promises are destroyed in GC batches. Returns the number of events written.
pub fn http_server_workload<W: Write>(out: W, events: u64, seed: u64) -> io::Result<(W, u64)> {
    let mut s = Synth::new(out)?;
    let st = s.stream(1000, 0)?;
    let mut rng = Rng(seed | 1);
    let mut n = 0u64;
    let mut t = 0.0f64;
    let mut id = 10u64;
    s.init(st, t, 5, "TCPSERVERWRAP", 1, Some("listen\tserver.js:40:8"))?;
    let mut gc: Vec<u64> = Vec::new();
    let routes = ["GET /", "GET /users/7", "POST /orders", "GET /slow"];
    let mut req_no = 0u64;
    while n < events {
        req_no += 1;
        let (conn, msg) = (id, id + 1);
        id += 2;
        s.init(st, t, conn, "TCPWRAP", 5, None)?;
        s.callback(st, t, 5, 0.01)?;
        s.init(st, t, msg, "HTTPINCOMINGMESSAGE", conn, None)?;
        t += 0.05;
        s.before(st, t, msg)?;
        let route = routes[rng.below(routes.len() as u64) as usize];
        s.request_start(st, t, msg, req_no, conn, route)?;
        n += 7;
        // The handler: an await chain.
        let depth = 2 + rng.below(6);
        let mut trigger = msg;
        let mut chain = Vec::new();
        for _ in 0..depth {
            let p = id;
            id += 1;
            s.init(st, t, p, "PROMISE", trigger, Some("handler\tserver.js:12:9"))?;
            chain.push(p);
            trigger = p;
        }
        s.after(st, t, msg)?;
        n += depth + 1;
        if route == "GET /slow" {
            let tm = id;
            id += 1;
            s.init(st, t, tm, "Timeout", trigger, Some("sleep\tserver.js:5:30"))?;
            t += 2.0;
            s.callback(st, t, tm, 0.05)?;
            s.destroy(st, t, tm)?;
            n += 4;
        }
        for &p in &chain {
            t += 0.05 * rng.below(2) as f64;
            s.resolve(st, t, p)?;
            s.callback(st, t, p, 0.0)?;
            gc.push(p);
            n += 3;
        }
        if req_no.is_multiple_of(1000) {
            s.init(st, t, id, "Timeout", msg, Some("cache\tserver.js:30:5"))?;
            id += 1;
            n += 1;
        }
        s.request_finish(st, t, req_no, 200)?;
        s.callback(st, t, conn, 0.05)?;
        s.destroy(st, t, msg)?;
        s.destroy(st, t, conn)?;
        n += 4;
        if gc.len() >= 4096 {
            n += gc.len() as u64;
            for p in gc.drain(..) {
                s.destroy(st, t, p)?;
            }
        }
        t += 0.05 * rng.below(3) as f64;
    }
    s.end_stream(st, n)?;
    Ok((s.finish()?, n))
}
