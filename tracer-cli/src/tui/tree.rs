//! The trigger tree of the live resources, folded like `asynctrace tree`; Enter opens or
//! closes a node.

use ratatui::layout::Rect;
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph};
use ratatui::Frame;

use super::fmt::{count, site};
use super::resources::type_style;
use super::App;

/// Lines the tree view builds at most.
pub const MAX_LINES: usize = 2000;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let lines = app.state.tree(app.filter.stream, &app.tree_expanded, MAX_LINES);
    let block = Block::new()
        .borders(Borders::ALL)
        .title(Span::styled(" Trigger tree of live resources ", Style::new().bold()));
    if lines.is_empty() {
        frame.render_widget(Paragraph::new(" Nothing alive.").dim().block(block), area);
        return;
    }
    let cwd = app.state.cx.meta.cwd.as_str();
    let items: Vec<ListItem> = lines
        .iter()
        .map(|l| {
            let mark = if l.below == 0 {
                "  "
            } else if l.open {
                "▾ "
            } else {
                "▸ "
            };
            let mut spans = vec![
                Span::raw("  ".repeat(l.depth)),
                Span::raw(mark),
                Span::styled(l.type_name.clone(), type_style(&l.type_name)),
            ];
            if l.count > 1 {
                spans.push(Span::styled(format!(" x{}", count(l.count)), Style::new().bold()));
            } else {
                spans.push(Span::raw(format!(" #{}", l.key.1)).dim());
            }
            if let Some(s) = &l.site {
                spans.push(Span::raw(format!(" ({})", site(s, cwd))));
            }
            if l.below > 0 && !l.open {
                spans.push(Span::raw(format!(" +{} below", count(l.below))).dim());
            }
            ListItem::new(Line::from(spans))
        })
        .collect();
    let list = List::new(items).block(block).highlight_style(Style::new().reversed());
    let mut state = ListState::default().with_selected(Some(app.selected.min(lines.len() - 1)));
    frame.render_stateful_widget(list, area, &mut state);
}
