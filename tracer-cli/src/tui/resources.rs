//! The main table: resources by creation site, sortable by any column, filtered by `/`.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;
use tracer_core::live::{RowView, Snapshot, SortKey};

use super::fmt::{count, fmt_ns, rate, site, tail};
use super::App;

/// A column: its key, width (0: the site, which takes the rest) and how it reads a row.
#[derive(Clone, Copy)]
struct Col {
    key: SortKey,
    width: u16,
    /// Columns go in this order when the terminal is narrow (highest first).
    drop_rank: u8,
}

const COLS: [Col; 9] = [
    Col {
        key: SortKey::Type,
        width: 14,
        drop_rank: 0,
    },
    Col {
        key: SortKey::Site,
        width: 0,
        drop_rank: 0,
    },
    Col {
        key: SortKey::Live,
        width: 7,
        drop_rank: 0,
    },
    Col {
        key: SortKey::Created,
        width: 7,
        drop_rank: 4,
    },
    Col {
        key: SortKey::Destroyed,
        width: 7,
        drop_rank: 8,
    },
    Col {
        key: SortKey::Callbacks,
        width: 7,
        drop_rank: 5,
    },
    Col {
        key: SortKey::Sync,
        width: 8,
        drop_rank: 6,
    },
    Col {
        key: SortKey::Wait,
        width: 8,
        drop_rank: 7,
    },
    Col {
        key: SortKey::Oldest,
        width: 8,
        drop_rank: 3,
    },
];

/// The site column gets at least this much before other columns are dropped.
const SITE_MIN: u16 = 24;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, snap: &Snapshot) {
    let threads = app.filter.stream.is_none() && app.state.cx.streams.len() > 1;
    // The type column as wide as the longest type shown (HTTPINCOMINGMESSAGE: 19).
    let type_w = snap
        .rows
        .iter()
        .map(|r| r.type_name.len())
        .max()
        .unwrap_or(4)
        .clamp(4, 19) as u16;
    let inner_w = area.width.saturating_sub(2);
    let thread_w = if threads { 10 } else { 0 };
    // Drop the least useful columns until the site has room.
    let cols: Vec<Col> = COLS
        .iter()
        .map(|c| Col {
            width: if c.key == SortKey::Type { type_w } else { c.width },
            ..*c
        })
        .collect();
    let mut shown: Vec<&Col> = cols.iter().collect();
    loop {
        let fixed: u16 = shown.iter().map(|c| c.width + 1).sum::<u16>() + thread_w;
        if fixed + SITE_MIN <= inner_w {
            break;
        }
        let Some(i) = shown
            .iter()
            .enumerate()
            .filter(|(_, c)| c.drop_rank > 0)
            .max_by_key(|(_, c)| c.drop_rank)
            .map(|(i, _)| i)
        else {
            break;
        };
        shown.remove(i);
    }
    let fixed: u16 = shown.iter().map(|c| c.width + 1).sum::<u16>() + thread_w;
    let site_w = inner_w.saturating_sub(fixed) as usize;
    let cwd = app.state.cx.meta.cwd.as_str();

    let mut header: Vec<Cell> = Vec::new();
    if threads {
        header.push(Cell::from("Thread"));
    }
    for c in &shown {
        let mut title = c.key.title().to_owned();
        let mut style = Style::new().bold();
        if c.key == app.sort {
            title.push(if app.ascending { '▲' } else { '▼' });
            style = style.cyan().underlined();
        }
        header.push(Cell::from(title).style(style));
    }
    let rows = snap.rows.iter().map(|r| {
        let mut cells: Vec<Cell> = Vec::new();
        if threads {
            cells.push(Cell::from(format!("{}/{}", r.pid, r.thread)).dim());
        }
        for c in &shown {
            cells.push(cell(c.key, r, cwd, site_w));
        }
        Row::new(cells)
    });
    let mut widths: Vec<Constraint> = Vec::new();
    if threads {
        widths.push(Constraint::Length(thread_w - 1));
    }
    widths.extend(shown.iter().map(|c| {
        if c.width == 0 {
            Constraint::Fill(1)
        } else {
            Constraint::Length(c.width)
        }
    }));

    let filter = if app.filter.text.is_empty() {
        String::new()
    } else {
        format!(" filter: {} ", app.filter.text)
    };
    let block = Block::new().borders(Borders::ALL).title(Line::from(vec![
        Span::styled(
            format!(" Resources by site ({}) ", snap.rows.len()),
            Style::new().bold(),
        ),
        Span::styled(filter, Style::new().yellow()),
    ]));
    if snap.rows.is_empty() {
        let text = if app.filter.text.is_empty() {
            "Nothing alive or created in the last seconds."
        } else {
            "No row matches the filter (Esc on / clears it)."
        };
        frame.render_widget(Paragraph::new(format!(" {text}")).dim().block(block), area);
        return;
    }
    let table = Table::new(rows, widths)
        .header(Row::new(header))
        .block(block)
        .column_spacing(1)
        .row_highlight_style(Style::new().reversed());
    let mut state = TableState::default().with_selected(Some(app.selected));
    frame.render_stateful_widget(table, area, &mut state);
}

fn cell<'a>(key: SortKey, r: &RowView, cwd: &str, site_w: usize) -> Cell<'a> {
    match key {
        SortKey::Type => Cell::from(r.type_name.clone()).style(type_style(&r.type_name)),
        SortKey::Site => Cell::from(tail(site(&r.site, cwd), site_w)),
        SortKey::Live => Cell::from(Line::from(count(r.live)).right_aligned()).bold(),
        SortKey::Created => Cell::from(Line::from(rate(r.created_per_s)).right_aligned()),
        SortKey::Destroyed => Cell::from(Line::from(rate(r.destroyed_per_s)).right_aligned()),
        SortKey::Callbacks => Cell::from(Line::from(count(r.callbacks)).right_aligned()),
        SortKey::Sync => Cell::from(Line::from(fmt_ns(r.sync_ns)).right_aligned()),
        SortKey::Wait => Cell::from(Line::from(fmt_ns(r.wait_ns)).right_aligned()),
        SortKey::Oldest => Cell::from(Line::from(r.oldest_ns.map_or_else(|| "-".to_owned(), fmt_ns)).right_aligned()),
    }
}

/// Promises, timers and handles in different colours, so the eye finds them.
pub fn type_style(ty: &str) -> Style {
    match ty {
        "PROMISE" => Style::new().magenta(),
        "Timeout" | "Immediate" | "TickObject" => Style::new().blue(),
        "TCPWRAP" | "TCPSERVERWRAP" | "HTTPINCOMINGMESSAGE" | "HTTPCLIENTREQUEST" | "PIPEWRAP" => Style::new().green(),
        _ => Style::new(),
    }
}
