//! The UI's own state (view, selection, sort, filter, prompts) over a [`LiveState`], and
//! what each action does to it. Feeding the state (replay or live) is the driver's job; the
//! app tells it what the user asked for through [`Command`].

use ratatui::Frame;
use tracer_core::live::{Filter, LiveState, RowId, Snapshot, SortKey};
use tracer_core::trace::StreamId;

use super::input::{Action, Edit};

/// The screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Resources,
    Requests,
    Details(RowId),
    Warnings,
    Tree,
    Help,
}

/// What the driver is asked to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Command {
    Quit,
    /// Stop the app (live) and quit.
    StopApp,
    /// Leave the app running and recording, and close the UI.
    Detach,
    Pause,
    Step,
    Speed(f64),
    Seek(u64),
}

/// The run's clock as the header shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clock {
    pub live: bool,
    pub paused: bool,
    pub ended: bool,
    /// Replay speed (1 = real time).
    pub speed: f64,
}

/// An open prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    Filter(String),
    Seek(String),
    /// Live mode: `q` asks whether to stop the app or detach.
    Quit,
}

#[derive(Debug)]
pub struct App {
    pub state: LiveState,
    pub view: View,
    /// The view `Esc` goes back to from help or details.
    pub back: View,
    pub sort: SortKey,
    pub ascending: bool,
    pub filter: Filter,
    pub selected: usize,
    pub prompt: Option<Prompt>,
    pub clock: Clock,
    /// The replay's clock when it is ahead of the last event (ns since the trace start).
    pub clock_at: Option<u64>,
    /// Live: events the view skipped because it lagged (the trace has them).
    pub skipped: u64,
    /// A line for the footer (e.g. "seek: not a time").
    pub status: Option<String>,
    /// Expanded nodes of the tree view, by `(stream, id)` of their first resource.
    pub tree_expanded: std::collections::HashSet<(StreamId, u64)>,
}

impl App {
    pub fn new(state: LiveState, clock: Clock) -> Self {
        App {
            state,
            view: View::Resources,
            back: View::Resources,
            sort: SortKey::Live,
            ascending: false,
            filter: Filter::default(),
            selected: 0,
            prompt: None,
            clock,
            clock_at: None,
            skipped: 0,
            status: None,
            tree_expanded: Default::default(),
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        self.state.snapshot(&self.filter, self.sort, self.ascending)
    }

    /// Draws a frame.
    pub fn draw(&mut self, frame: &mut Frame) {
        let snap = self.snapshot();
        self.selected = self.selected.min(snap.rows.len().saturating_sub(1));
        super::draw(frame, self, &snap);
    }

    /// Applies a key.
    pub fn key(&mut self, key: ratatui::crossterm::event::KeyEvent) -> Option<Command> {
        self.status = None;
        if let Some(prompt) = self.prompt.clone() {
            return self.edit(prompt, super::input::edit(key));
        }
        self.act(super::input::action(key))
    }

    fn edit(&mut self, prompt: Prompt, edit: Edit) -> Option<Command> {
        match prompt {
            Prompt::Quit => {
                self.prompt = None;
                return match edit {
                    Edit::Char('s') | Edit::Char('y') | Edit::Char('q') => Some(Command::StopApp),
                    Edit::Char('d') => Some(Command::Detach),
                    _ => None,
                };
            }
            Prompt::Filter(mut text) => match edit {
                Edit::Char(c) => {
                    text.push(c);
                    self.filter.text = text.clone();
                    self.prompt = Some(Prompt::Filter(text));
                }
                Edit::Backspace => {
                    text.pop();
                    self.filter.text = text.clone();
                    self.prompt = Some(Prompt::Filter(text));
                }
                Edit::Done => self.prompt = None,
                Edit::Cancel => {
                    self.filter.text.clear();
                    self.prompt = None;
                }
                Edit::None => {}
            },
            Prompt::Seek(mut text) => match edit {
                Edit::Char(c) => {
                    text.push(c);
                    self.prompt = Some(Prompt::Seek(text));
                }
                Edit::Backspace => {
                    text.pop();
                    self.prompt = Some(Prompt::Seek(text));
                }
                Edit::Done => {
                    self.prompt = None;
                    match parse_time(&text) {
                        Some(ns) => return Some(Command::Seek(ns)),
                        None => self.status = Some(format!("seek: {text:?} is not a time (e.g. 12.5, 90s, 2m)")),
                    }
                }
                Edit::Cancel => self.prompt = None,
                Edit::None => {}
            },
        }
        None
    }

    /// Applies an action (also used by tests).
    pub fn act(&mut self, action: Action) -> Option<Command> {
        match action {
            Action::Up => self.selected = self.selected.saturating_sub(1),
            Action::Down => self.selected += 1,
            Action::Top => self.selected = 0,
            Action::Bottom => self.selected = usize::MAX,
            Action::SortLeft | Action::SortRight => {
                let all = SortKey::ALL;
                let i = all.iter().position(|k| *k == self.sort).unwrap_or(0);
                let i = if action == Action::SortLeft {
                    (i + all.len() - 1) % all.len()
                } else {
                    (i + 1) % all.len()
                };
                self.sort = all[i];
            }
            Action::Invert => self.ascending = !self.ascending,
            Action::Enter => {
                if self.view == View::Tree {
                    let lines = self
                        .state
                        .tree(self.filter.stream, &self.tree_expanded, super::tree::MAX_LINES);
                    if let Some(l) = lines.get(self.selected.min(lines.len().saturating_sub(1))) {
                        if !self.tree_expanded.remove(&l.key) {
                            self.tree_expanded.insert(l.key);
                        }
                    }
                } else if self.view == View::Resources {
                    if let Some(row) = self.snapshot().rows.get(self.selected) {
                        self.view = View::Details(row.row);
                    }
                }
            }
            Action::Back => {
                self.view = match self.view {
                    View::Details(_) | View::Help => self.back,
                    _ => View::Resources,
                };
            }
            Action::NextView => {
                self.view = match self.view {
                    View::Resources | View::Details(_) => View::Requests,
                    View::Requests => View::Warnings,
                    View::Warnings => View::Tree,
                    View::Tree | View::Help => View::Resources,
                };
                self.back = self.view;
            }
            Action::Resources => self.switch(View::Resources),
            Action::Requests => self.switch(View::Requests),
            Action::Warnings => self.switch(View::Warnings),
            Action::Tree => self.switch(View::Tree),
            Action::Help => {
                if self.view != View::Help {
                    if !matches!(self.view, View::Details(_)) {
                        self.back = self.view;
                    }
                    self.view = View::Help;
                }
            }
            Action::Threads => {
                let n = self.state.cx.streams.len() as StreamId;
                self.filter.stream = match self.filter.stream {
                    None if n > 0 => Some(0),
                    Some(s) if s + 1 < n => Some(s + 1),
                    _ => None,
                };
            }
            Action::Pause => return Some(Command::Pause),
            Action::Step => return Some(Command::Step),
            Action::Faster => return Some(Command::Speed((self.clock.speed * 2.0).min(1024.0))),
            Action::Slower => return Some(Command::Speed((self.clock.speed / 2.0).max(1.0 / 64.0))),
            Action::Seek => {
                if !self.clock.live {
                    self.prompt = Some(Prompt::Seek(String::new()));
                }
            }
            Action::Filter => self.prompt = Some(Prompt::Filter(self.filter.text.clone())),
            Action::Quit => {
                if self.clock.live && !self.clock.ended {
                    self.prompt = Some(Prompt::Quit);
                } else {
                    return Some(Command::Quit);
                }
            }
            Action::Interrupt => return Some(Command::Quit),
            Action::None => {}
        }
        None
    }

    fn switch(&mut self, view: View) {
        self.view = view;
        self.back = view;
    }
}

/// `12.5`, `12.5s`, `800ms`, `2m`, `1m30s` as ns since the trace start.
pub fn parse_time(text: &str) -> Option<u64> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    let (mins, rest) = match t.split_once('m') {
        Some((m, rest)) if !rest.starts_with('s') => (m.parse::<f64>().ok()?, rest),
        _ => (0.0, t),
    };
    let secs = if rest.is_empty() {
        0.0
    } else if let Some(ms) = rest.strip_suffix("ms") {
        ms.parse::<f64>().ok()? / 1000.0
    } else {
        rest.strip_suffix('s').unwrap_or(rest).parse::<f64>().ok()?
    };
    let total = mins * 60.0 + secs;
    (total.is_finite() && total >= 0.0).then_some((total * 1e9) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seek_times_read_as_people_write_them() {
        assert_eq!(parse_time("12.5"), Some(12_500_000_000));
        assert_eq!(parse_time("12.5s"), Some(12_500_000_000));
        assert_eq!(parse_time("800ms"), Some(800_000_000));
        assert_eq!(parse_time("2m"), Some(120_000_000_000));
        assert_eq!(parse_time("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_time("soon"), None);
        assert_eq!(parse_time("-1"), None);
    }
}
