//! The reports as text for people. (JSON is the report structs through serde.)

use std::io::{self, Write};

use super::leaks::{LeakGroup, LeakLink, LeakReport};
use super::requests::{Named, RequestReport, RequestState, Segment, WaitCause};
use super::slow::SlowReport;
use super::tree::{TreeNode, TreeReport};

/// Nanoseconds as milliseconds, rounded to the microsecond (the clock ticks every ~50 µs, so
/// more digits would be noise and make JSON unstable to compare).
pub fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e3).round() / 1e3
}

/// Options of the text reports.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TextOptions {
    /// `leaks`: also list what is alive but not a leak.
    pub all: bool,
    /// Stack frames shown per group (default 0 means 5).
    pub frames: usize,
}

fn site(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("(no site)")
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub fn write_tree_text(out: &mut impl Write, r: &TreeReport) -> io::Result<()> {
    let view = if r.view == "exec" {
        "executionAsyncId"
    } else {
        "triggerAsyncId"
    };
    if r.streams.is_empty() {
        match r.root {
            Some(id) => writeln!(out, "no resource #{id} in the selected stream")?,
            None => writeln!(out, "no resources in the selected streams")?,
        }
    }
    for s in &r.streams {
        let who = if s.thread == 0 {
            format!("pid {}", s.pid)
        } else {
            format!("pid {} worker {}", s.pid, s.thread)
        };
        write!(
            out,
            "{who}: {} in {} ({view} tree)",
            plural(s.resources, "resource", "resources"),
            plural(s.groups, "group", "groups")
        )?;
        if s.orphans > 0 {
            write!(out, ", {} with an unknown parent shown at the top", s.orphans)?;
        }
        writeln!(out)?;
        for n in &s.roots {
            write_node(out, n, 1)?;
        }
    }
    footer(out, r.dropped, r.invalid_ids, r.truncated)
}

fn write_node(out: &mut impl Write, n: &TreeNode, depth: usize) -> io::Result<()> {
    let pad = "  ".repeat(depth);
    if n.count == 1 {
        write!(out, "{pad}{} #{} {}", n.type_name, n.first_id, site(&n.site))?;
    } else {
        write!(
            out,
            "{pad}x{} {} {} (first #{})",
            n.count,
            n.type_name,
            site(&n.site),
            n.first_id
        )?;
    }
    if n.recursive {
        write!(out, " (loop)")?;
    }
    write!(out, "  cb {}", n.callbacks)?;
    if n.callbacks > 0 {
        write!(out, " sync {:.1} ms wait {:.1} ms", n.sync_ms, n.wait_ms)?;
    }
    if let Some(l) = n.avg_life_ms {
        write!(out, "  life {l:.1} ms")?;
    }
    if n.alive > 0 {
        write!(out, "  alive {}", n.alive)?;
    }
    writeln!(out)?;
    if let Some(w) = &n.longest_wait {
        let own = if n.count == 1 {
            format!("#{}", n.first_id)
        } else {
            "one of them".to_owned()
        };
        writeln!(
            out,
            "{pad}    longest wait {:.1} ms: {}",
            w.wait_ms,
            cause_text(own, Some(&w.cause))
        )?;
    }
    for c in &n.children {
        write_node(out, c, depth + 1)?;
    }
    if n.hidden_groups > 0 {
        writeln!(
            out,
            "{pad}  ... {} with {} not shown (--depth, --children, --lines)",
            plural(n.hidden_groups, "group", "groups"),
            plural(n.hidden_resources, "resource", "resources")
        )?;
    }
    Ok(())
}

fn chain_text(chain: &[LeakLink]) -> String {
    if chain.is_empty() {
        return "created at the top level".to_owned();
    }
    let folded = super::chain::fold_chain(chain.iter().map(|l| (l.id, l.type_name.as_deref(), l.site.as_deref())));
    let mut parts: Vec<String> = folded.iter().map(super::chain::FoldedLink::text).collect();
    if chain.last().is_some_and(|l| l.type_name.is_some()) {
        parts.push("root".to_owned());
    }
    format!("triggered by {}", parts.join(" < "))
}

fn write_group(out: &mut impl Write, g: &LeakGroup, frames: usize) -> io::Result<()> {
    write!(
        out,
        "{}: {} {} at {}",
        g.class.name(),
        g.count,
        g.type_name,
        site(&g.site)
    )?;
    if let Some(samples) = &g.samples {
        let s: Vec<String> = samples.iter().map(u32::to_string).collect();
        writeln!(
            out,
            ", growing for {:.1} ms (peak per tenth of the run: {})",
            g.oldest_age_ms,
            s.join(" ")
        )?;
    } else {
        write!(out, ", oldest {:.1} ms", g.oldest_age_ms)?;
        if let Some(p) = g.period_ms {
            write!(out, ", every {p} ms")?;
        }
        if g.inferred > 0 {
            write!(
                out,
                ", {} without a stack (site inferred from their siblings)",
                g.inferred
            )?;
        }
        match g.refd {
            Some(n) if n == g.count => write!(out, ", ref'd (holds the process open)")?,
            Some(0) => write!(out, ", unref'd (does not hold the process open)")?,
            Some(n) => write!(out, ", {n} ref'd (hold the process open)")?,
            None => {}
        }
        writeln!(out)?;
    }
    let e = &g.example;
    let who = if e.thread == 0 {
        format!("pid {}", e.pid)
    } else {
        format!("pid {} worker {}", e.pid, e.thread)
    };
    writeln!(out, "    example #{} ({who}), {}", e.id, chain_text(&e.chain))?;
    if let Some(ep) = &g.endpoint {
        writeln!(out, "    {ep}")?;
    }
    for (i, f) in g.stack.iter().take(frames).enumerate() {
        writeln!(out, "    {} {f}", if i == 0 { "at" } else { "  " })?;
    }
    if g.stack.len() > frames {
        writeln!(out, "       ... {} more frames", g.stack.len() - frames)?;
    }
    Ok(())
}

pub fn write_leaks_text(out: &mut impl Write, r: &LeakReport, o: &TextOptions) -> io::Result<()> {
    let frames = if o.frames == 0 { 5 } else { o.frames };
    if r.leaks.is_empty() {
        writeln!(out, "no leaks found")?;
    } else {
        let n: u64 = r.leaks.iter().map(|g| g.count).sum();
        writeln!(
            out,
            "{} in {}:",
            plural(n, "leaked resource", "leaked resources"),
            plural(r.leaks.len() as u64, "group", "groups")
        )?;
        for g in &r.leaks {
            write_group(out, g, frames)?;
        }
    }
    write_alive(out, r)?;
    write_warnings(out, &r.warnings, frames)?;
    if o.all {
        writeln!(out, "not leaks:")?;
        writeln!(
            out,
            "  closed before the end, destroy not delivered: {}",
            r.closed_at_exit
        )?;
        writeln!(
            out,
            "  settled, not yet collected: {} PROMISE (promise destroy waits for GC)",
            r.settled_not_collected
        )?;
        writeln!(out, "  inside their callback at exit: {}", r.running_at_exit)?;
        for (t, n) in &r.other_alive {
            writeln!(out, "  alive at exit, not a leak class: {n} {t}")?;
        }
    } else if r.settled_not_collected > 0 || !r.other_alive.is_empty() {
        writeln!(
            out,
            "(settled promises not yet collected and work cut short by the exit are not leaks; --all lists them)"
        )?;
    }
    footer(out, r.dropped, r.invalid_ids, r.truncated)
}

fn who(pid: u32, thread: u32) -> String {
    if thread == 0 {
        format!("pid {pid}")
    } else {
        format!("pid {pid} worker {thread}")
    }
}

/// The handles and timers alive at the end, ref'd ones first: why the process did not end.
fn write_alive(out: &mut impl Write, r: &LeakReport) -> io::Result<()> {
    if r.alive_at_end.is_empty() {
        return Ok(());
    }
    let held: u64 = r.alive_at_end.iter().filter(|a| a.refd).map(|a| a.count).sum();
    if held == 0 {
        writeln!(
            out,
            "what holds the process open: nothing (no ref'd handle or timer at the end)"
        )?;
    } else {
        writeln!(
            out,
            "what holds the process open: {} (ref'd, alive at the end):",
            plural(held, "handle or timer", "handles and timers")
        )?;
    }
    for a in &r.alive_at_end {
        let hold = match (a.refd, a.node_internal) {
            (true, false) => "ref'd  ",
            (true, true) => "ref'd, Node's own",
            (false, false) => "unref'd",
            (false, true) => "unref'd, Node's own",
        };
        write!(out, "  {hold} {} {} at {}", a.count, a.type_name, site(&a.site))?;
        if let Some(p) = a.period_ms {
            write!(out, ", every {p} ms")?;
        }
        if let Some(e) = &a.endpoint {
            write!(out, ", {e}")?;
        }
        writeln!(
            out,
            ", oldest {:.1} ms (#{}, {}, at {})",
            a.oldest_age_ms,
            a.example,
            who(a.pid, a.thread),
            a.at
        )?;
    }
    Ok(())
}

fn write_warnings(out: &mut impl Write, warnings: &[super::WarningGroup], frames: usize) -> io::Result<()> {
    if warnings.is_empty() {
        return Ok(());
    }
    writeln!(out, "process warnings:")?;
    for w in warnings {
        write!(out, "  {}", w.warning)?;
        if w.count > 1 {
            write!(out, " (x{})", w.count)?;
        }
        writeln!(out, ", {} at {:.1} ms", who(w.pid, w.thread), w.first_ms)?;
        for (i, f) in w.stack.iter().take(frames).enumerate() {
            writeln!(out, "    {} {f}", if i == 0 { "at" } else { "  " })?;
        }
    }
    Ok(())
}

pub fn write_slow_text(out: &mut impl Write, r: &SlowReport) -> io::Result<()> {
    if r.count == 0 {
        writeln!(out, "no callback ran longer than {:.1} ms", r.threshold_ms)?;
        unended(out, r.unended)?;

        return footer(out, r.dropped, r.invalid_ids, r.truncated);
    }
    writeln!(
        out,
        "{} over {:.1} ms, {:.1} ms blocked in all{}:",
        plural(r.count, "callback", "callbacks"),
        r.threshold_ms,
        r.blocked_ms,
        if (r.count as usize) > r.callbacks.len() {
            format!("; the {} longest", r.callbacks.len())
        } else {
            String::new()
        }
    )?;
    writeln!(
        out,
        "{:>10} {:>10}  {:<19} {:<28} resource",
        "sync ms", "start ms", "type", "site"
    )?;
    for c in &r.callbacks {
        let who = if c.thread == 0 {
            format!("pid {}", c.pid)
        } else {
            format!("pid {} worker {}", c.pid, c.thread)
        };
        write!(
            out,
            "{:>10.1} {:>10.1}  {:<19} {:<28} #{} callback {} ({who})",
            c.sync_ms,
            c.start_ms,
            c.type_name,
            site(&c.site),
            c.id,
            c.callback
        )?;
        if let Some(r) = &c.request {
            write!(out, " for {r}")?;
        }
        if c.site_inherited {
            write!(out, " (site of a trigger)")?;
        }
        if c.site_inferred {
            write!(out, " (site inferred: no stack taken)")?;
        }
        if !c.finished {
            write!(out, " unfinished at exit")?;
        }
        if c.no_init {
            write!(out, " (created before the agent)")?;
        }
        writeln!(out)?;
        if let Some(cpu) = &c.cpu {
            super::cpu::write_summary_text(out, cpu, "             ")?;
        }
    }
    unended(out, r.unended)?;
    footer(out, r.dropped, r.invalid_ids, r.truncated)
}

/// Callbacks whose end was lost: said, never guessed.
fn unended(out: &mut impl Write, n: u64) -> io::Result<()> {
    if n > 0 {
        writeln!(
            out,
            "{} with no recorded end (events dropped): their time is unknown and not counted",
            plural(n, "callback", "callbacks")
        )?;
    }
    Ok(())
}

pub fn write_requests_text(out: &mut impl Write, r: &RequestReport) -> io::Result<()> {
    if r.count == 0 {
        writeln!(
            out,
            "no incoming HTTP requests in the trace (requests are recorded from trace format 3 on)"
        )?;
        return footer(out, r.dropped, r.invalid_ids, r.truncated);
    }
    write!(
        out,
        "{}: p50 {:.1} ms  p95 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        plural(r.count, "request", "requests"),
        r.p50_ms,
        r.p95_ms,
        r.p99_ms,
        r.max_ms
    )?;
    if r.unfinished > 0 {
        write!(out, "; {} unfinished", r.unfinished)?;
    }
    if r.aborted > 0 {
        write!(out, "; {} aborted", r.aborted)?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:>10} {:>8} {:>8} {:>10}  request",
        "latency ms", "sync ms", "wait ms", "start ms"
    )?;
    for q in &r.requests {
        let name = q.label.clone().unwrap_or_else(|| "(no label)".to_owned());
        let who = if q.thread == 0 {
            format!("pid {}", q.pid)
        } else {
            format!("pid {} worker {}", q.pid, q.thread)
        };
        let state = match (q.state, q.status) {
            (RequestState::Unfinished, _) => "UNFINISHED".to_owned(),
            (RequestState::Aborted, _) => "aborted".to_owned(),
            (RequestState::Finished, Some(s)) => s.to_string(),
            (RequestState::Finished, None) => "finished".to_owned(),
        };
        writeln!(
            out,
            "{:>10.1} {:>8.1} {:>8.1} {:>10.1}  {name} #{} {state} (connection #{}, {who})",
            q.latency_ms, q.sync_ms, q.wait_ms, q.start_ms, q.number, q.connection,
        )?;
        if let Some(p) = &q.waiting {
            writeln!(
                out,
                "{:>41}{} since {:.1} ms for {} #{} {}{}",
                "",
                if q.state == RequestState::Aborted {
                    "aborted while waiting"
                } else {
                    "waiting"
                },
                p.since_ms,
                p.type_name,
                p.id,
                site(&p.site),
                match (p.site_inherited, p.site_inferred) {
                    (true, _) => " (site of a trigger)",
                    (false, true) => " (site inferred: no stack taken)",
                    _ => "",
                }
            )?;
        }
        for s in &q.segments {
            writeln!(out, "{:>41}waited {:.1} ms for {}", "", s.wait_ms, wait_text(s))?;
        }
        if let Some(cpu) = &q.cpu {
            super::cpu::write_summary_text(out, cpu, &" ".repeat(41))?;
        }
    }
    if (r.count as usize) > r.requests.len() {
        writeln!(
            out,
            "({} more; --limit 0 lists all)",
            r.count as usize - r.requests.len()
        )?;
    }
    if r.routes.len() > 1 {
        writeln!(out, "routes (slowest p95 first):")?;
        writeln!(
            out,
            "{:>8} {:>9} {:>9} {:>9} {:>9}  route",
            "count", "p50 ms", "p95 ms", "p99 ms", "max ms"
        )?;
        for rt in r.routes.iter().take(20) {
            writeln!(
                out,
                "{:>8} {:>9.1} {:>9.1} {:>9.1} {:>9.1}  {}",
                rt.count, rt.p50_ms, rt.p95_ms, rt.p99_ms, rt.max_ms, rt.route
            )?;
        }
        if r.routes.len() > 20 {
            writeln!(out, "({} more routes in --format json)", r.routes.len() - 20)?;
        }
    }
    footer(out, r.dropped, r.invalid_ids, r.truncated)
}

fn named_text(n: &Named) -> String {
    let mut s = format!("{} #{}", n.type_name, n.id);
    if let Some(site) = &n.site {
        s.push(' ');
        s.push_str(site);
    }
    if let Some(r) = &n.request {
        s.push_str(" of ");
        s.push_str(r);
    }
    s
}

/// `Timeout #59 app.js:21:35`, and what ended the wait.
fn wait_text(s: &Segment) -> String {
    let own = format!("{} #{} {}", s.type_name, s.id, site(&s.site));
    cause_text(own, s.cause.as_ref())
}

/// What ended a wait of `own`.
fn cause_text(own: String, cause: Option<&WaitCause>) -> String {
    match cause {
        None => own,
        Some(WaitCause::Outgoing { call }) => format!("{call} ({own})"),
        Some(WaitCause::Settled {
            awaited,
            by,
            outgoing,
            job,
        }) => {
            let what = match awaited {
                Some(a) => named_text(a),
                None => own,
            };
            let mut t = match outgoing {
                Some(call) => format!("{call} ({what})"),
                None => what,
            };
            if let Some(b) = by {
                t.push_str(", settled by ");
                t.push_str(&named_text(b));
            }
            if let Some(j) = job {
                t.push_str(&format!(
                    ", after worker {}'s {} ran {:.1} ms",
                    j.thread,
                    named_text(&j.callback.resource),
                    j.callback.sync_ms
                ));
            }
            t
        }
        Some(WaitCause::LateTimer {
            delay_ms,
            late_ms,
            blocker,
        }) => {
            let mut t = format!("{own}: due after {delay_ms:.1} ms, fired {late_ms:.1} ms late");
            if let Some(b) = blocker {
                t.push_str(&format!(
                    ": the loop was blocked by {} for {:.1} ms",
                    named_text(&b.resource),
                    b.sync_ms
                ));
            }
            t
        }
    }
}

fn footer(out: &mut impl Write, dropped: u64, invalid_ids: u64, truncated: bool) -> io::Result<()> {
    if dropped > 0 {
        writeln!(
            out,
            "warning: the agent dropped {dropped} events (ring full); lifetimes and counts may be off"
        )?;
    }
    if invalid_ids > 0 {
        writeln!(
            out,
            "warning: {} with invalid async ids from the app (ids Node itself would reject), skipped",
            plural(invalid_ids, "event", "events")
        )?;
    }
    if truncated {
        writeln!(out, "warning: the trace is truncated; this covers its complete prefix")?;
    }
    Ok(())
}
