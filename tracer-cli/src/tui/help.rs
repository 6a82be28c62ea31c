//! `?`: the keys.

use ratatui::layout::Rect;
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

const KEYS: &[(&str, &str)] = &[
    ("↑ ↓  j k", "move the selection (g / G: first / last)"),
    ("← →  h l", "choose the sort column"),
    ("i", "invert the sort order"),
    ("Enter", "details of the selected site; in the tree, expand or collapse"),
    ("Esc", "back"),
    ("Tab  r R w t", "next view; resources, requests, warnings, tree"),
    ("/", "filter by type, site or path (Enter keeps it, Esc clears it)"),
    ("p", "show one thread after another, then all"),
    ("space", "pause / resume (a live app keeps running and recording)"),
    ("n  .", "replay: step one second"),
    ("+ -", "replay: faster, slower"),
    ("s", "replay: seek to a time (12.5s, 2m)"),
    ("q  Ctrl-C", "quit (live: stop the app, or detach and keep recording)"),
];

pub fn draw(frame: &mut Frame, area: Rect) {
    let mut lines: Vec<Line> = KEYS
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("  {k:<14}"), Style::new().cyan().bold()),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from("  Times are the run's: since the app started.").dim());
    let block = Block::new()
        .borders(Borders::ALL)
        .title(Span::styled(" Keys ", Style::new().bold()));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
