//! Details of one row: figures, lifetime and callback-duration histograms with
//! percentiles, example resources with their folded trigger chains, the creation stack.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;
use tracer_core::live::{Histogram, RowId};

use super::fmt::{count, fmt_ns, rate, site};
use super::App;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, row: RowId) {
    let Some(d) = app.state.details(row) else {
        frame.render_widget(Paragraph::new(" No such row."), area);
        return;
    };
    let cwd = app.state.cx.meta.cwd.as_str();
    let r = &d.row;
    let title = format!(
        " {} at {} (pid {}, thread {}) ",
        r.type_name,
        site(&r.site, cwd),
        r.pid,
        r.thread
    );
    let outer = Block::new()
        .borders(Borders::ALL)
        .title(Span::styled(title, Style::new().bold()));
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    let [figures, hists, rest] =
        Layout::vertical([Constraint::Length(2), Constraint::Length(10), Constraint::Fill(1)]).areas(inner);
    let lines = vec![
        Line::from(format!(
            " live {} · created {} ({}/s) · destroyed/s {} · callbacks {} · sync {} · async wait {}",
            count(r.live),
            count(r.created),
            rate(r.created_per_s),
            rate(r.destroyed_per_s),
            count(r.callbacks),
            fmt_ns(r.sync_ns),
            fmt_ns(r.wait_ns)
        )),
        Line::from(vec![
            Span::raw(format!(
                " oldest live {}",
                r.oldest_ns.map_or_else(|| "-".to_owned(), fmt_ns)
            )),
            if d.blocking > 0 {
                Span::styled(
                    format!(
                        " · {} callback(s) blocked the loop, longest {}",
                        d.blocking,
                        fmt_ns(d.max_sync_ns)
                    ),
                    Style::new().red(),
                )
            } else {
                Span::raw(format!(" · longest callback {}", fmt_ns(d.max_sync_ns)))
            },
        ]),
    ];
    frame.render_widget(Paragraph::new(lines), figures);
    let [left, right] = Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(hists);
    histogram(frame, left, "Lifetimes (destroyed)", &d.lifetimes);
    histogram(frame, right, "Callback durations", &d.callback_ns);

    let mut lines = vec![Line::from(Span::styled(" Examples", Style::new().bold()))];
    if d.examples.is_empty() {
        lines.push(Line::from("  none live or recently completed").dim());
    }
    for e in &d.examples {
        let chain: Vec<String> = e
            .chain
            .iter()
            .map(|l| {
                let mut l = l.clone();
                l.site = l.site.map(|s| site(&s, cwd).to_owned());
                l.text()
            })
            .collect();
        lines.push(Line::from(vec![
            Span::styled(format!("  #{} ", e.id), Style::new().bold()),
            Span::raw(format!(
                "{} {} · {} callback(s) ",
                if e.live { "alive for" } else { "lived" },
                fmt_ns(e.age_ns),
                e.callbacks
            )),
            Span::styled(
                if chain.is_empty() {
                    "← (root)".to_owned()
                } else {
                    format!("← {}", chain.join(" ← "))
                },
                Style::new().dim(),
            ),
        ]));
    }
    lines.push(Line::from(Span::styled(" Creation stack", Style::new().bold())));
    if d.stack.is_empty() {
        lines.push(Line::from("  not recorded (record with --stacks on)").dim());
    }
    for f in &d.stack {
        lines.push(Line::from(format!("  {}", f.replace(&format!("{cwd}/"), ""))));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), rest);
}

/// A histogram as horizontal bars, one per power-of-two bucket, with percentiles on top.
fn histogram(frame: &mut Frame, area: Rect, title: &str, h: &Histogram) {
    let pct = |p| h.percentile_ns(p).map_or_else(|| "-".to_owned(), fmt_ns);
    let block = Block::new().borders(Borders::TOP).title(Span::styled(
        format!(
            " {title}: p50 {} · p90 {} · p99 {} · max {} ",
            pct(50.0),
            pct(90.0),
            pct(99.0),
            fmt_ns(h.max_ns)
        ),
        Style::new().bold(),
    ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if h.total == 0 {
        frame.render_widget(Paragraph::new(" none yet").dim(), inner);
        return;
    }
    let used = h.used();
    let rows = inner.height as usize;
    // Show the buckets around the mass if they do not all fit.
    let start = if used.len() > rows { used.end - rows } else { used.start };
    let max = h.counts[start..used.end].iter().copied().max().unwrap_or(1).max(1);
    let bar_w = inner.width.saturating_sub(20) as u64;
    let lines: Vec<Line> = (start..used.end)
        .map(|b| {
            let c = h.counts[b];
            let n = (c * bar_w).div_ceil(max) as usize;
            Line::from(vec![
                Span::raw(format!(" ≤{:>8} ", fmt_ns(Histogram::upper_ns(b)))),
                Span::styled("█".repeat(n), Style::new().cyan()),
                Span::raw(format!(" {}", count(c))),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}
