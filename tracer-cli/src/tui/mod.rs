//! `asynctrace top`: the terminal UI, tokio-console's split: the state (in
//! `tracer_core::live`, fed by the driver in `cmd/top.rs`), the app (what the user is
//! looking at, [`app`]), input (keys to actions, [`input`]) and one file per view.

pub mod app;
mod details;
mod fmt;
mod header;
mod help;
pub mod input;
mod requests;
mod resources;
mod tree;
mod warnings;

#[cfg(test)]
mod tests;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::Frame;
use tracer_core::live::Snapshot;

pub use app::{App, Clock, Command, View};

use app::Prompt;

/// Lays out a frame: header, the current view, the footer.
pub fn draw(frame: &mut Frame, app: &mut App, snap: &Snapshot) {
    let area = frame.area();
    if area.width < 2 || area.height < 2 {
        return;
    }
    let header_h = if area.height >= 8 { 3 } else { 0 };
    let [head, body, foot] =
        Layout::vertical([Constraint::Length(header_h), Constraint::Fill(1), Constraint::Length(1)]).areas(area);
    if header_h > 0 {
        header::draw(frame, head, app, snap);
    }
    match app.view {
        View::Resources => resources::draw(frame, body, app, snap),
        View::Requests => requests::draw(frame, body, app),
        View::Details(row) => details::draw(frame, body, app, row),
        View::Warnings => warnings::draw(frame, body, app, snap),
        View::Tree => tree::draw(frame, body, app),
        View::Help => help::draw(frame, body),
    }
    footer(frame, foot, app);
}

fn footer(frame: &mut Frame, area: Rect, app: &App) {
    let line = match (&app.prompt, &app.status) {
        (Some(Prompt::Filter(text)), _) => Line::from(vec![
            Span::styled(" filter (type, site or path): ", Style::new().bold()),
            Span::raw(format!("{text}▏")),
            Span::raw("   Enter keep · Esc clear").dim(),
        ]),
        (Some(Prompt::Seek(text)), _) => Line::from(vec![
            Span::styled(" seek to (e.g. 12.5s, 2m): ", Style::new().bold()),
            Span::raw(format!("{text}▏")),
        ]),
        (Some(Prompt::Quit), _) => Line::from(vec![Span::styled(
            " quit: [s]top the app, or [d]etach and keep recording? (any other key: stay) ",
            Style::new().black().on_yellow(),
        )]),
        (None, Some(status)) => Line::from(Span::styled(format!(" {status}"), Style::new().yellow())),
        (None, None) => {
            let views = [
                (View::Resources, "r resources"),
                (View::Requests, "R requests"),
                (View::Warnings, "w warnings"),
                (View::Tree, "t tree"),
            ];
            let mut spans = vec![Span::raw(" ")];
            for (v, label) in views {
                let current = app.view == v || (v == View::Resources && matches!(app.view, View::Details(_)));
                let style = if current {
                    Style::new().black().on_cyan()
                } else {
                    Style::new().cyan()
                };
                spans.push(Span::styled(format!(" {label} "), style));
            }
            let keys = match app.view {
                View::Resources => {
                    "  jk move · hl sort · i invert · ⏎ details · / filter · p threads · ? help · q quit"
                }
                View::Details(_) => "  Esc back · ? help · q quit",
                View::Tree => "  jk move · ⏎ expand · p threads · ? help · q quit",
                View::Requests => "  jk move · p threads · ? help · q quit",
                _ => "  Esc back · ? help · q quit",
            };
            spans.push(Span::raw(keys).dim());
            Line::from(spans)
        }
    };
    frame.render_widget(line, area);
}
