//! Keys to actions: tokio-console's and vim's conventions. Pure, so it is unit-tested.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Up,
    Down,
    Top,
    Bottom,
    /// Sort by the column on the left / right.
    SortLeft,
    SortRight,
    Invert,
    Enter,
    Back,
    NextView,
    Resources,
    Requests,
    Warnings,
    Tree,
    Help,
    /// Cycle through all threads / each thread.
    Threads,
    Pause,
    Step,
    Faster,
    Slower,
    Seek,
    Filter,
    Quit,
    /// Ctrl-C: quit without asking.
    Interrupt,
    None,
}

/// While a prompt (filter, seek) is open, keys edit it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    Char(char),
    Backspace,
    Done,
    Cancel,
    None,
}

pub fn action(key: KeyEvent) -> Action {
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Action::Interrupt;
    }
    match key.code {
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::Home | KeyCode::Char('g') => Action::Top,
        KeyCode::End | KeyCode::Char('G') => Action::Bottom,
        KeyCode::Left | KeyCode::Char('h') => Action::SortLeft,
        KeyCode::Right | KeyCode::Char('l') => Action::SortRight,
        KeyCode::Char('i') => Action::Invert,
        KeyCode::Enter => Action::Enter,
        KeyCode::Esc | KeyCode::Backspace => Action::Back,
        KeyCode::Tab => Action::NextView,
        KeyCode::Char('r') => Action::Resources,
        KeyCode::Char('R') => Action::Requests,
        KeyCode::Char('w') => Action::Warnings,
        KeyCode::Char('t') => Action::Tree,
        KeyCode::Char('?') => Action::Help,
        KeyCode::Char('p') => Action::Threads,
        KeyCode::Char(' ') => Action::Pause,
        KeyCode::Char('n') | KeyCode::Char('.') => Action::Step,
        KeyCode::Char('+') | KeyCode::Char('=') => Action::Faster,
        KeyCode::Char('-') => Action::Slower,
        KeyCode::Char('s') => Action::Seek,
        KeyCode::Char('/') => Action::Filter,
        KeyCode::Char('q') => Action::Quit,
        _ => Action::None,
    }
}

pub fn edit(key: KeyEvent) -> Edit {
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Edit::Cancel;
    }
    match key.code {
        KeyCode::Char(c) => Edit::Char(c),
        KeyCode::Backspace => Edit::Backspace,
        KeyCode::Enter => Edit::Done,
        KeyCode::Esc => Edit::Cancel,
        _ => Edit::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn vim_and_arrow_keys_move_and_sort() {
        assert_eq!(action(key(KeyCode::Char('j'))), Action::Down);
        assert_eq!(action(key(KeyCode::Down)), Action::Down);
        assert_eq!(action(key(KeyCode::Char('k'))), Action::Up);
        assert_eq!(action(key(KeyCode::Char('h'))), Action::SortLeft);
        assert_eq!(action(key(KeyCode::Right)), Action::SortRight);
        assert_eq!(action(key(KeyCode::Char('i'))), Action::Invert);
        assert_eq!(action(key(KeyCode::Char(' '))), Action::Pause);
    }

    #[test]
    fn ctrl_c_interrupts_even_while_editing() {
        let c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(action(c), Action::Interrupt);
        assert_eq!(edit(c), Edit::Cancel);
        assert_eq!(edit(key(KeyCode::Char('q'))), Edit::Char('q'));
    }
}
