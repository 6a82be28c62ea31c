//! Requests: the HTTP requests open now (oldest first) with where each waits, and the latest
//! finished ones with their longest wait; the same model as `asynctrace requests`.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::Frame;
use tracer_core::analysis::{Request, RequestState, RequestsNow};

use super::fmt::{count, site, tail};
use super::App;

/// Open requests listed; the title counts all of them.
const OPEN_MAX: usize = 100;

pub fn draw(frame: &mut Frame, area: Rect, app: &mut App) {
    let now = app.state.requests_now(app.filter.stream, OPEN_MAX);
    let cwd = app.state.cx.meta.cwd.clone();
    let pct = |p: Option<f64>| {
        p.map_or_else(
            || "-".to_owned(),
            |ms| {
                if ms < 0.1 {
                    ms_text(ms)
                } else {
                    format!("≤{}", ms_text(ms))
                }
            },
        )
    };
    let title = Line::from(vec![
        Span::styled(
            format!(" Requests: {} open ", count(now.open_count)),
            Style::new().bold(),
        ),
        Span::raw(format!(
            "· {} finished · {} aborted · p50 {} · p99 {} ",
            count(now.finished),
            count(now.aborted),
            pct(now.p50_ms),
            pct(now.p99_ms)
        ))
        .dim(),
    ]);
    let block = Block::new().borders(Borders::ALL).title(title);
    if now.open.is_empty() && now.recent.is_empty() {
        let text = " No HTTP request yet (requests are followed on Node's HTTP servers).";
        frame.render_widget(Paragraph::new(text).dim().block(block), area);
        return;
    }
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let open_h = if now.open.is_empty() {
        2
    } else {
        (now.open.len() as u16 + 2).min(inner.height / 2).max(3)
    };
    let [open_area, recent_area] = Layout::vertical([Constraint::Length(open_h), Constraint::Fill(1)]).areas(inner);
    draw_open(frame, open_area, &now, &cwd, app.selected);
    draw_recent(frame, recent_area, &now, &cwd);
}

fn draw_open(frame: &mut Frame, area: Rect, now: &RequestsNow, cwd: &str, selected: usize) {
    let head = Line::from(vec![Span::styled(
        " Open now, oldest first",
        Style::new().bold().yellow(),
    )]);
    if now.open.is_empty() {
        frame.render_widget(Paragraph::new(vec![head, Line::from(" none").dim()]), area);
        return;
    }
    // Narrow terminals drop the sync and wait split: age and where it waits matter most.
    let narrow = area.width < NARROW;
    let label_w = if narrow { 18 } else { 24 };
    let site_w = area
        .width
        .saturating_sub(8 + label_w + 10 * if narrow { 1 } else { 3 } + 6) as usize;
    let rows = now.open.iter().enumerate().map(|(i, r)| {
        let waiting = r.waiting.as_ref().map_or_else(
            || "-".to_owned(),
            |w| at(&w.type_name, w.site.as_deref(), cwd, site_w.max(10)),
        );
        let mut cells = vec![
            Cell::from(format!("#{}", r.number)).dim(),
            Cell::from(label(r, label_w)),
            Cell::from(Line::from(ms_text(r.latency_ms)).right_aligned()).bold(),
        ];
        if !narrow {
            cells.push(Cell::from(Line::from(ms_text(r.sync_ms)).right_aligned()));
            cells.push(Cell::from(Line::from(ms_text(r.wait_ms)).right_aligned()));
        }
        cells.push(Cell::from(waiting));
        let row = Row::new(cells);
        if i == selected.min(now.open.len() - 1) {
            row.reversed()
        } else {
            row
        }
    });
    let titles: &[&str] = if narrow {
        &["#", "Request", "Age", "Waiting on"]
    } else {
        &["#", "Request", "Age", "Sync", "Wait", "Waiting on"]
    };
    let header = Row::new(titles.iter().map(|h| Cell::from(*h).bold()));
    let widths = widths(&[7, label_w], if narrow { 1 } else { 3 });
    let [h, t] = Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(area);
    frame.render_widget(head, h);
    frame.render_widget(Table::new(rows, widths).header(header).column_spacing(1), t);
}

fn draw_recent(frame: &mut Frame, area: Rect, now: &RequestsNow, cwd: &str) {
    let head = Line::from(Span::styled(" Latest closed, newest first", Style::new().bold().cyan()));
    let narrow = area.width < NARROW;
    let label_w = if narrow { 18 } else { 24 };
    let site_w = area
        .width
        .saturating_sub(8 + label_w + 11 + 10 * if narrow { 1 } else { 3 } + 7) as usize;
    let rows = now.recent.iter().map(|r| {
        let state = match (r.state, r.status) {
            (RequestState::Finished, Some(s)) => Span::raw(s.to_string()),
            (RequestState::Finished, None) => Span::raw("done"),
            (RequestState::Aborted, _) => Span::raw("aborted").red(),
            (RequestState::Unfinished, _) => Span::raw("unfinished").red().bold(),
        };
        // An unfinished or aborted request: where it was left waiting comes first.
        let w = site_w.max(10);
        let waiting = r
            .waiting
            .as_ref()
            .map(|p| at(&format!("waiting on {}", p.type_name), p.site.as_deref(), cwd, w));
        let longest = waiting
            .or_else(|| {
                r.segments.first().map(|s| {
                    at(
                        &format!("{} {}", ms_text(s.wait_ms), s.type_name),
                        s.site.as_deref(),
                        cwd,
                        w,
                    )
                })
            })
            .unwrap_or_else(|| "-".to_owned());
        let mut cells = vec![
            Cell::from(format!("#{}", r.number)).dim(),
            Cell::from(label(r, label_w)),
            Cell::from(Line::from(state)),
            Cell::from(Line::from(ms_text(r.latency_ms)).right_aligned()).bold(),
        ];
        if !narrow {
            cells.push(Cell::from(Line::from(ms_text(r.sync_ms)).right_aligned()));
            cells.push(Cell::from(Line::from(ms_text(r.wait_ms)).right_aligned()));
        }
        cells.push(Cell::from(longest));
        Row::new(cells)
    });
    let titles: &[&str] = if narrow {
        &["#", "Request", "Status", "Latency", "Longest wait"]
    } else {
        &["#", "Request", "Status", "Latency", "Sync", "Wait", "Longest wait"]
    };
    let header = Row::new(titles.iter().map(|h| Cell::from(*h).bold()));
    let widths = widths(&[7, label_w, 10], if narrow { 1 } else { 3 });
    let [h, t] = Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(area);
    frame.render_widget(head, h);
    frame.render_widget(Table::new(rows, widths).header(header).column_spacing(1), t);
}

/// `what at site`, in `width` characters: the site is cut from the left (its file and line
/// stay), `what` only when nothing else fits.
fn at(what: &str, at: Option<&str>, cwd: &str, width: usize) -> String {
    let place = at.map_or("(no site)", |s| site(s, cwd));
    let room = width.saturating_sub(what.chars().count() + 4);
    if room < 12 {
        return tail(&format!("{what} at {place}"), width);
    }
    format!("{what} at {}", tail(place, room))
}

/// The request's method and path, cut at the end (the method and route come first).
fn label(r: &Request, width: u16) -> String {
    let text = r.label.as_deref().unwrap_or("(no label)");
    let width = width as usize;
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Below this width the sync and wait columns are left out.
const NARROW: u16 = 100;

/// The leading columns, `times` time columns of 9, and the rest for the site.
fn widths(lead: &[u16], times: usize) -> Vec<Constraint> {
    let mut w: Vec<Constraint> = lead.iter().map(|&n| Constraint::Length(n)).collect();
    w.extend(std::iter::repeat_n(Constraint::Length(9), times));
    w.push(Constraint::Fill(1));
    w
}

/// `<0.1ms` (below the clock's usual tick), `0.42ms`, `12.3ms`, `2.31s`.
fn ms_text(ms: f64) -> String {
    if ms < 0.1 {
        "<0.1ms".to_owned()
    } else if ms < 10.0 {
        format!("{ms:.2}ms")
    } else if ms < 1000.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{:.2}s", ms / 1000.0)
    }
}
