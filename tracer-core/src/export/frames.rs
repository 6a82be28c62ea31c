//! Frame names: what a resource is called in a flame graph, a profile or a trace viewer.

use std::collections::HashMap;

use super::hash::FxMap;
use crate::trace::StringId;

/// Index into a frame table; frames with equal names share one id.
pub type FrameId = u32;

/// One frame: `TYPE site` (or `TYPE`) for a resource, `pid N` for a stream's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameInfo {
    /// The name drawn on the frame; never contains `;` or a newline (folded-stack syntax).
    pub name: String,
    /// Source file of the creation site, as the agent recorded it (relative to the app's
    /// working directory where it was inside it).
    pub file: Option<String>,
    /// 1-based line of the creation site.
    pub line: Option<u32>,
    /// 1-based column of the creation site.
    pub col: Option<u32>,
}

/// The creation site of a stack string: its first frame, `function\tpath:line:col`.
pub(crate) struct Site<'a> {
    pub(crate) location: &'a str,
    pub(crate) file: &'a str,
    pub(crate) line: Option<u32>,
    pub(crate) col: Option<u32>,
}

pub(crate) fn site(stack: &str) -> Option<Site<'_>> {
    let first = stack.lines().next()?.trim_end_matches('\r');
    let location = first.split_once('\t').map_or(first, |(_, loc)| loc).trim();
    if location.is_empty() {
        return None;
    }
    // `path:line:col`; the path itself may hold colons (Windows drives, URLs).
    let mut parts = location.rsplitn(3, ':');
    let col = parts.next().and_then(|c| c.parse().ok());
    let line = parts.next().and_then(|l| l.parse().ok());
    let file = match (parts.next(), line, col) {
        (Some(f), Some(_), Some(_)) => f,
        _ => location,
    };
    Some(Site {
        location,
        file,
        line: line.filter(|_| col.is_some()),
        col: col.filter(|_| line.is_some()),
    })
}

/// Interns frames by what names them, so that memory grows with distinct sites.
#[derive(Debug, Default)]
pub(crate) struct Frames {
    /// (type name, stack) string ids -> frame.
    by_ids: FxMap<(StringId, Option<StringId>), FrameId>,
    by_name: HashMap<String, FrameId>,
    pub(crate) list: Vec<FrameInfo>,
    /// The frame's name as a JSON string literal, quotes included (the Chrome export writes
    /// it once per event).
    pub(crate) json: Vec<String>,
}

impl Frames {
    /// The frame of a resource of this type created with this stack.
    #[inline]
    pub(crate) fn resource(&mut self, strings: &[String], type_name: StringId, stack: Option<StringId>) -> FrameId {
        if let Some(&f) = self.by_ids.get(&(type_name, stack)) {
            return f;
        }
        let ty = lookup(strings, type_name);
        let site = stack.and_then(|s| strings.get(s as usize)).and_then(|s| site(s));
        let info = match site {
            Some(s) => FrameInfo {
                name: format!("{ty} {}", s.location),
                file: Some(s.file.to_owned()),
                line: s.line,
                col: s.col,
            },
            None => FrameInfo {
                name: ty.into_owned(),
                file: None,
                line: None,
                col: None,
            },
        };
        let f = self.intern(info);
        self.by_ids.insert((type_name, stack), f);
        f
    }

    /// A frame that is not a resource (a stream's root, a resource seen without its init).
    pub(crate) fn named(&mut self, name: &str) -> FrameId {
        self.intern(FrameInfo {
            name: name.to_owned(),
            file: None,
            line: None,
            col: None,
        })
    }

    fn intern(&mut self, mut info: FrameInfo) -> FrameId {
        info.name = sanitize(&info.name);
        if let Some(&f) = self.by_name.get(&info.name) {
            return f;
        }
        let f = self.list.len() as FrameId;
        let mut json = String::with_capacity(info.name.len() + 2);
        super::json::quote_into(&mut json, &info.name);
        self.json.push(json);
        self.by_name.insert(info.name.clone(), f);
        self.list.push(info);
        f
    }
}

/// A string of the trace, or a placeholder for an id the trace never defined.
pub(crate) fn lookup(strings: &[String], id: StringId) -> std::borrow::Cow<'_, str> {
    match strings.get(id as usize) {
        Some(s) if !s.is_empty() => std::borrow::Cow::Borrowed(s.as_str()),
        _ => std::borrow::Cow::Owned(format!("<string {id}>")),
    }
}

/// Why: `;` separates frames and a newline ends a line in the folded format; user-defined
/// resource types and file names may contain either.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            ';' => ',',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}
