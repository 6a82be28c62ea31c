//! The header: command, the run's clock, events/s, live resources, loop busy %, processes
//! and threads, dropped records (red when non-zero).

use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;
use tracer_core::live::Snapshot;

use super::fmt::{count, fmt_ns, rate};
use super::App;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, snap: &Snapshot) {
    let h = &snap.header;
    let c = app.clock;
    let (mark, style) = if c.ended {
        ("■ ended", Style::new().bold())
    } else if c.paused {
        ("⏸ paused", Style::new().yellow().bold())
    } else if c.live {
        ("● live", Style::new().green().bold())
    } else {
        ("▶ replay", Style::new().green().bold())
    };
    let mut clock = vec![
        Span::styled(format!(" {mark} "), style),
        Span::styled(
            format!("{} ", fmt_ns(app.clock_at.unwrap_or(0).max(h.now_ns))),
            Style::new().bold(),
        ),
    ];
    if !c.live {
        clock.push(Span::raw(format!("×{} ", speed(c.speed))));
    }
    let thread = match app.filter.stream {
        None => "all threads".to_owned(),
        Some(s) => {
            let d = app.state.cx.stream(s);
            format!("pid {} thread {}", d.pid, d.thread)
        }
    };
    let title = Line::from(vec![
        Span::styled(" asynctrace top ", Style::new().cyan().bold()),
        Span::raw(format!("{} ", h.command)),
    ]);
    let dropped = Span::styled(
        format!("dropped {}", count(h.dropped)),
        if h.dropped > 0 {
            Style::new().red().bold()
        } else {
            Style::new().dim()
        },
    );
    // Narrow terminals get the short labels, so dropped records stay on screen.
    let narrow = area.width < 110;
    let (busy_l, procs) = if narrow {
        (" │ busy ", format!(" │ {}p {}t │ ", h.processes, h.threads))
    } else {
        (
            " │ loop busy ",
            format!(
                " │ {} process{}, {} thread{} │ ",
                h.processes,
                if h.processes == 1 { "" } else { "es" },
                h.threads,
                if h.threads == 1 { "" } else { "s" }
            ),
        )
    };
    let line = Line::from(vec![
        Span::raw(" events "),
        Span::styled(count(h.events), Style::new().bold()),
        Span::raw(format!(" ({}/s)", rate(h.events_per_s))),
        Span::raw(" │ live "),
        Span::styled(count(h.live), Style::new().bold()),
        Span::raw(busy_l),
        Span::styled(format!("{:.0}%", h.busy_pct), busy_style(h.busy_pct)),
        Span::raw(procs),
        dropped,
        if app.skipped > 0 {
            Span::styled(
                format!(" │ view skipped {} (trace has all)", count(app.skipped)),
                Style::new().yellow(),
            )
        } else {
            Span::raw("")
        },
        Span::raw(format!(" │ {thread}")),
    ]);
    let block = Block::new()
        .borders(Borders::TOP | Borders::BOTTOM)
        .title(title)
        .title_top(Line::from(clock).right_aligned());
    frame.render_widget(Paragraph::new(line).block(block), area);
}

fn busy_style(pct: f64) -> Style {
    if pct >= 90.0 {
        Style::new().red().bold()
    } else if pct >= 50.0 {
        Style::new().yellow().bold()
    } else {
        Style::new().bold()
    }
}

fn speed(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.0}")
    } else {
        format!("1/{:.0}", 1.0 / s)
    }
}
