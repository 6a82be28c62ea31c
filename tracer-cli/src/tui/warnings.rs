//! Warnings, tokio-console's lints for async Node: each names the site to look at.

use ratatui::layout::Rect;
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;
use tracer_core::live::{Snapshot, WarningKind};

use super::App;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, snap: &Snapshot) {
    let block = Block::new().borders(Borders::ALL).title(Span::styled(
        format!(" Warnings ({}) ", snap.warnings.len()),
        Style::new().bold(),
    ));
    let cwd = format!("{}/", app.state.cx.meta.cwd);
    let mut lines: Vec<Line> = snap
        .warnings
        .iter()
        .map(|w| {
            let (label, style) = match w.kind {
                WarningKind::Blocking => ("blocking ", Style::new().red().bold()),
                WarningKind::Unsettled => ("unsettled", Style::new().magenta().bold()),
                WarningKind::Growing => ("growing  ", Style::new().yellow().bold()),
                WarningKind::TimerLoop => ("timer loop", Style::new().blue().bold()),
                WarningKind::SlowRequest => ("request  ", Style::new().red().bold()),
            };
            Line::from(vec![
                Span::styled(format!(" ⚠ {label} "), style),
                Span::raw(w.text.replace(&cwd, "")),
            ])
        })
        .collect();
    if lines.is_empty() {
        lines.push(Line::from(" No warnings.").dim());
    }
    lines.push(Line::from(""));
    lines.push(
        Line::from(" Switch a warning off with --allow blocking|unsettled|growing|timer-loop|slow-request; thresholds: see --help.")
            .dim(),
    );
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }).block(block), area);
}
