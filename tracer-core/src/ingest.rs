//! Turns the raw records of one ring into trace events: validates them, reassembles strings,
//! maps the agent's string ids to the trace's, and applies the clock.
//!
//! One [`StreamDecoder`] per ring. Records arrive in whatever batches the drain produced, so a
//! string's payload may straddle two calls; the decoder keeps that state.

use std::collections::HashMap;
use std::io::{self, Write};

use crate::promise_ends::PromiseEnds;
use crate::record::{decode, RawRecord, Record, RECORD_SIZE};
use crate::trace::{notes, Ending, Event, EventKind, StreamId, StringId, TraceWriter};

/// The writer's own account of itself, from its `Exit` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitRecord {
    pub code: i64,
    /// Hook events the agent saw, recorded or dropped.
    pub seen: u64,
    pub dropped: u64,
}

/// Per-kind counts of hook events recorded in one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HookCounts {
    pub init: u64,
    pub before: u64,
    pub after: u64,
    pub destroy: u64,
    pub promise_resolve: u64,
}

impl HookCounts {
    /// All five added up.
    pub fn total(&self) -> u64 {
        self.init + self.before + self.after + self.destroy + self.promise_resolve
    }
}

struct PendingString {
    local_id: u64,
    once: bool,
    len: usize,
    bytes: Vec<u8>,
}

/// Decoder state of one ring.
pub struct StreamDecoder {
    stream: StreamId,
    start_ns: u64,
    time_ns: u64,
    strings: HashMap<u64, StringId>,
    small: Vec<Option<StringId>>,
    /// The last string marked "used once": only the next record refers to it, so it is not
    /// kept in `strings` (which would grow by a label per request).
    once: Option<(u64, StringId)>,
    pending: Option<PendingString>,
    counts: HookCounts,
    malformed: u64,
    invalid_ids: u64,
    first_error: Option<String>,
    exit: Option<ExitRecord>,
    unknown: Option<StringId>,
    /// The agent writes a `Meta` record right after the string it names; keep that text.
    last_string: Option<(u64, String)>,
    /// The thread follows promises through V8's promise hooks ([`notes::PROMISE_MODE`]).
    v8_promises: bool,
    /// Its promises in that mode, whose destroys the recorder writes (see `promise_ends`).
    promises: PromiseEnds,
    ended: Vec<u64>,
    /// Destroys written for promises that ended (not hook events: see `counts`).
    ends_written: u64,
}

impl StreamDecoder {
    /// A decoder writing into `stream`, with times relative to `start_ns` (the trace's start).
    pub fn new(stream: StreamId, start_ns: u64) -> Self {
        Self {
            stream,
            start_ns,
            time_ns: 0,
            strings: HashMap::new(),
            small: Vec::new(),
            once: None,
            pending: None,
            counts: HookCounts::default(),
            malformed: 0,
            invalid_ids: 0,
            first_error: None,
            exit: None,
            unknown: None,
            last_string: None,
            v8_promises: false,
            promises: PromiseEnds::default(),
            ended: Vec::new(),
            ends_written: 0,
        }
    }

    /// Hook events written so far.
    pub fn counts(&self) -> HookCounts {
        self.counts
    }

    /// Destroys the recorder wrote so far for promises followed through V8's hooks, which
    /// saw no `destroy` of theirs: in the trace, not in [`counts`](Self::counts).
    pub fn promise_ends(&self) -> u64 {
        self.ends_written
    }

    /// Records skipped as malformed, and the first reason.
    pub fn malformed(&self) -> (u64, Option<&str>) {
        (self.malformed, self.first_error.as_deref())
    }

    /// Hook events skipped because the app gave them async ids Node would reject (see
    /// [`app_invalid_id`]); not the agent's fault, so not malformed.
    pub fn invalid_ids(&self) -> u64 {
        self.invalid_ids
    }

    /// The writer's exit record, once seen.
    pub fn exit(&self) -> Option<ExitRecord> {
        self.exit
    }

    fn bad(&mut self, why: String) {
        self.malformed += 1;
        if self.first_error.is_none() {
            self.first_error = Some(why);
        }
    }

    fn define(&mut self, local: u64, id: StringId) {
        if local < 1 << 16 {
            let i = local as usize;
            if self.small.len() <= i {
                self.small.resize(i + 1, None);
            }
            self.small[i] = Some(id);
        } else {
            self.strings.insert(local, id);
        }
    }

    fn string<W: Write>(&mut self, local: u64, out: &mut TraceWriter<W>) -> StringId {
        // Type names (ids below 2^16, on every init) are a direct index; stacks and labels hash.
        if let Some(&Some(id)) = self.small.get(local as usize) {
            return id;
        }
        if let Some(&id) = self.strings.get(&local) {
            return id;
        }
        if let Some((l, id)) = self.once {
            if l == local {
                return id;
            }
        }
        // An id the agent never defined (its definition was dropped, or the ring is foreign).
        *self.unknown.get_or_insert_with(|| out.intern("<unknown>"))
    }

    /// Decodes `records` and writes the resulting events (and strings, metadata) to `out`.
    pub fn feed<W: Write>(&mut self, records: &[RawRecord], out: &mut TraceWriter<W>) -> io::Result<()> {
        for raw in records {
            if let Some(p) = &mut self.pending {
                let take = (p.len - p.bytes.len()).min(RECORD_SIZE);
                p.bytes.extend_from_slice(&raw[..take]);
                if p.bytes.len() == p.len {
                    let p = self.pending.take().expect("pending string");
                    match String::from_utf8(p.bytes) {
                        Ok(text) if p.once => {
                            self.once = Some((p.local_id, out.intern_once(&text)));
                            self.last_string = Some((p.local_id, text));
                        }
                        Ok(text) => {
                            let id = out.intern(&text);
                            self.define(p.local_id, id);
                            self.last_string = Some((p.local_id, text));
                        }
                        Err(_) => self.bad("string is not UTF-8".into()),
                    }
                }
                continue;
            }
            let rec = match decode(raw) {
                Ok(r) => r,
                Err(_) if app_invalid_id(raw) => {
                    self.invalid_ids += 1;
                    continue;
                }
                Err(e) => {
                    self.bad(e.to_string());
                    continue;
                }
            };
            let (id, kind) = match rec {
                Record::Init {
                    id,
                    trigger,
                    exec,
                    type_id,
                    stack_id,
                } => {
                    self.counts.init += 1;
                    let type_name = self.string(type_id as u64, out);
                    let stack = if stack_id == 0 {
                        None
                    } else {
                        Some(self.string(stack_id, out))
                    };
                    (
                        id,
                        EventKind::Init {
                            type_name,
                            trigger,
                            exec,
                            stack,
                        },
                    )
                }
                Record::Before { id } => {
                    self.counts.before += 1;
                    (id, EventKind::Before)
                }
                Record::After { id } => {
                    self.counts.after += 1;
                    (id, EventKind::After)
                }
                Record::Destroy { id } => {
                    self.counts.destroy += 1;
                    (id, EventKind::Destroy)
                }
                Record::PromiseResolve { id, by } => {
                    self.counts.promise_resolve += 1;
                    (id, EventKind::PromiseResolve { by })
                }
                Record::Label { id, string_id } => (
                    id,
                    EventKind::Label {
                        text: self.string(string_id, out),
                    },
                ),
                Record::Note {
                    id,
                    code,
                    string_id,
                    a,
                    b,
                } => {
                    let text = if string_id == 0 {
                        None
                    } else {
                        Some(self.string(string_id, out))
                    };
                    if code == notes::PROMISE_MODE && id == 0 {
                        self.v8_promises = a == notes::PROMISES_V8;
                    }
                    (id, EventKind::Note { code, a, b, text })
                }
                Record::Clock { ns } => {
                    // Times never run backwards within a stream, whatever the ring says.
                    self.time_ns = self.time_ns.max(ns.saturating_sub(self.start_ns));
                    continue;
                }
                Record::String { id, len, once } => {
                    if len == 0 {
                        let sid = out.intern("");
                        self.define(id, sid);
                    } else {
                        self.pending = Some(PendingString {
                            local_id: id,
                            once,
                            len: len as usize,
                            bytes: Vec::with_capacity(len as usize),
                        });
                    }
                    continue;
                }
                Record::Meta { string_id } => {
                    match self.last_string.take() {
                        Some((local, json)) if local == string_id => out.stream_meta(self.stream, &json)?,
                        _ => self.bad("metadata does not follow its string".into()),
                    }
                    continue;
                }
                Record::Exit { code, seen, dropped } => {
                    self.exit = Some(ExitRecord { code, seen, dropped });
                    if self.v8_promises {
                        self.promises.exit(&mut self.ended);
                        self.write_ends(out)?;
                    }
                    continue;
                }
            };
            if self.v8_promises {
                self.promises.event(id, &kind, &mut self.ended);
            }
            out.event(&Event {
                stream: self.stream,
                time_ns: self.time_ns,
                id,
                kind,
            })?;
            self.write_ends(out)?;
        }
        Ok(())
    }

    /// The destroys of the promises that just ended (a `PROMISES_V8` thread).
    fn write_ends<W: Write>(&mut self, out: &mut TraceWriter<W>) -> io::Result<()> {
        for id in self.ended.drain(..) {
            self.ends_written += 1;
            out.event(&Event {
                stream: self.stream,
                time_ns: self.time_ns,
                id,
                kind: EventKind::Destroy,
            })?;
        }
        Ok(())
    }
}

impl StreamDecoder {
    /// Writes a [`notes::ENDED`] event for a stream that ended without its exit handler (a
    /// signal, a crash, still running when recording stopped), dated `at_ns` (monotonic) or
    /// its last event if later. Exited and terminated streams get none: the agent dates its
    /// own exit, and a terminated worker's end is only seen after a grace period.
    pub fn ended<W: Write>(&mut self, ending: &Ending, at_ns: u64, out: &mut TraceWriter<W>) -> io::Result<()> {
        let (how, b) = match *ending {
            Ending::Signaled { signal } => (notes::ENDED_SIGNAL, u64::try_from(signal).unwrap_or(0)),
            Ending::Vanished => (notes::ENDED_VANISHED, 0),
            Ending::Running => (notes::ENDED_STOPPED, 0),
            Ending::Exited { .. } | Ending::Terminated => return Ok(()),
        };
        self.time_ns = self.time_ns.max(at_ns.saturating_sub(self.start_ns));
        out.event(&Event {
            stream: self.stream,
            time_ns: self.time_ns,
            id: 0,
            kind: EventKind::Note {
                code: notes::ENDED,
                a: how,
                b,
                text: None,
            },
        })
    }
}

/// A hook record (init, before, after, destroy, promiseResolve) whose kind word is sound and
/// whose id words are numbers, but not ids (negative, fractional, 2^53 or more): an app
/// emitting ids of its own (`AsyncResource` with `triggerAsyncId: -1`, `emitInit(-1)`), which the
/// agent wrote as it saw them.
fn app_invalid_id(raw: &RawRecord) -> bool {
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&raw[i * 8..i * 8 + 8]);
        f64::from_le_bytes(b)
    };
    let w0 = word(0);
    if !((0.0..9_007_199_254_740_992.0).contains(&w0) && w0.fract() == 0.0) {
        return false;
    }
    let words = match w0 as u64 & 15 {
        1 => 3,
        2..=5 => 1,
        _ => return false,
    };
    (1..=words).all(|i| word(i).is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::encode;
    use crate::trace::{Item, TraceMeta, TraceReader};
    use proptest::prelude::*;

    fn items(records: &[RawRecord], split: usize) -> (Vec<Item>, StreamDecoder) {
        let mut w = TraceWriter::new(Vec::new(), &TraceMeta::default()).unwrap();
        let stream = w.begin_stream(1, 0, "v20").unwrap();
        let mut d = StreamDecoder::new(stream, 1_000);
        let split = split.min(records.len());
        d.feed(&records[..split], &mut w).unwrap();
        d.feed(&records[split..], &mut w).unwrap();
        let bytes = w.finish().unwrap();
        let r = TraceReader::new(&bytes[..]).unwrap();
        (r.map(|i| i.unwrap()).collect(), d)
    }

    fn string_records(id: u64, text: &str) -> Vec<RawRecord> {
        string_records_once(id, text, false)
    }

    fn string_records_once(id: u64, text: &str, once: bool) -> Vec<RawRecord> {
        let mut v = vec![encode(&Record::String {
            id,
            len: text.len() as u32,
            once,
        })];
        for chunk in text.as_bytes().chunks(RECORD_SIZE) {
            let mut raw = [0u8; RECORD_SIZE];
            raw[..chunk.len()].copy_from_slice(chunk);
            v.push(raw);
        }
        v
    }

    #[test]
    fn strings_straddling_batches_are_reassembled_and_times_applied() {
        let stack = "f\tapp.js:1:1\ng\tapp.js:2:2 and a long enough tail to need three payload records";
        let mut recs = string_records(3, "Timeout");
        recs.extend(string_records(70_000, stack));
        recs.push(encode(&Record::Clock { ns: 6_000 }));
        recs.push(encode(&Record::Init {
            id: 9,
            trigger: 1,
            exec: 1,
            type_id: 3,
            stack_id: 70_000,
        }));
        recs.push(encode(&Record::Before { id: 9 }));
        for split in 0..recs.len() {
            let (items, d) = items(&recs, split);
            let texts: Vec<_> = items
                .iter()
                .filter_map(|i| {
                    if let Item::String { text, .. } = i {
                        Some(text.clone())
                    } else {
                        None
                    }
                })
                .collect();
            assert!(
                texts.contains(&"Timeout".to_string()) && texts.contains(&stack.to_string()),
                "split {split}"
            );
            let evs: Vec<_> = items
                .iter()
                .filter_map(|i| if let Item::Event(e) = i { Some(*e) } else { None })
                .collect();
            assert_eq!(evs.len(), 2);
            assert_eq!(evs[0].time_ns, 5_000, "clock minus trace start");
            let EventKind::Init {
                type_name,
                stack: Some(s),
                ..
            } = evs[0].kind
            else {
                panic!("init with stack")
            };
            assert_ne!(type_name, s);
            assert_eq!(d.counts().init, 1);
            assert_eq!(d.malformed().0, 0);
        }
    }

    #[test]
    fn strings_used_once_name_their_note_and_are_not_kept() {
        // A label per request, each with its own agent id: one URL comes back, one is new.
        let mut recs = Vec::new();
        for (local, url) in [(70_000, "GET /a"), (70_001, "GET /b"), (70_002, "GET /a")] {
            recs.extend(string_records_once(local, url, true));
            recs.push(encode(&Record::Note {
                id: 5,
                code: 1,
                string_id: local,
                a: 1,
                b: 0,
            }));
        }
        let (items, d) = items(&recs, recs.len());
        let mut texts = std::collections::HashMap::new();
        let mut noted = Vec::new();
        for i in &items {
            match i {
                Item::String { id, text } => {
                    texts.insert(*id, text.clone());
                }
                Item::Event(Event {
                    kind: EventKind::Note { text: Some(t), .. },
                    ..
                }) => noted.push((*t, texts[t].clone())),
                _ => {}
            }
        }
        let urls: Vec<_> = noted.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(urls, ["GET /a", "GET /b", "GET /a"]);
        assert_eq!(noted[0].0, noted[2].0, "a recent text is written once");
        assert_eq!(texts.len(), 2);
        assert!(
            d.strings.is_empty() && d.small.is_empty(),
            "the decoder remembers no id used once"
        );
        assert_eq!(d.malformed().0, 0);
    }

    #[test]
    fn undefined_string_ids_and_bad_records_are_counted_not_fatal() {
        let mut bad = [0u8; RECORD_SIZE];
        bad[..8].copy_from_slice(&1.5f64.to_le_bytes());
        let recs = vec![
            bad,
            encode(&Record::Init {
                id: 2,
                trigger: 1,
                exec: 1,
                type_id: 44,
                stack_id: 0,
            }),
        ];
        let (items, d) = items(&recs, 1);
        assert_eq!(d.malformed().0, 1);
        assert!(items
            .iter()
            .any(|i| matches!(i, Item::String { text, .. } if text == "<unknown>")));
    }

    /// The events of promises `base + n` written as `pattern` (I init, B before, A after, S
    /// promiseResolve), one promise after the other, in a thread of the given mode; returns
    /// each event as (letter, promise number), destroys as 'D'.
    fn promise_events(v8: bool, patterns: &[&str]) -> Vec<(char, u64)> {
        let base = notes::PROMISE_ID_BASE;
        let mut recs = string_records(1, "PROMISE");
        recs.push(encode(&Record::Note {
            id: 0,
            code: notes::PROMISE_MODE,
            string_id: 0,
            a: u64::from(v8),
            b: 0,
        }));
        for (n, pattern) in patterns.iter().enumerate() {
            let id = base + n as u64;
            for c in pattern.chars() {
                recs.push(encode(&match c {
                    'I' => Record::Init {
                        id,
                        trigger: 1,
                        exec: 1,
                        type_id: 1,
                        stack_id: 0,
                    },
                    'B' => Record::Before { id },
                    'A' => Record::After { id },
                    _ => Record::PromiseResolve { id, by: 1 },
                }));
            }
        }
        recs.push(encode(&Record::Exit {
            code: 0,
            seen: 0,
            dropped: 0,
        }));
        let (items, d) = items(&recs, 0);
        assert_eq!(d.counts().destroy, 0, "ends are not hook events");
        items
            .iter()
            .filter_map(|i| match i {
                Item::Event(e) if e.id >= base => Some((
                    match e.kind {
                        EventKind::Init { .. } => 'I',
                        EventKind::Before => 'B',
                        EventKind::After => 'A',
                        EventKind::Destroy => 'D',
                        _ => 'S',
                    },
                    e.id - base,
                )),
                _ => None,
            })
            .collect()
    }

    fn letters(evs: &[(char, u64)], n: u64) -> String {
        evs.iter().filter(|e| e.1 == n).map(|e| e.0).collect()
    }

    #[test]
    fn at_exit_a_v8_mode_promise_ends_if_settled_and_no_callback_of_it_runs() {
        let evs = promise_events(true, &["IS", "IBSA", "IBAS", "IBABAS", "I", "IBA", "IBS"]);
        assert_eq!(letters(&evs, 0), "ISD");
        assert_eq!(letters(&evs, 1), "IBSAD");
        assert_eq!(letters(&evs, 2), "IBASD");
        assert_eq!(letters(&evs, 3), "IBABASD");
        assert_eq!(letters(&evs, 4), "I", "never settled: still alive at the end");
        assert_eq!(letters(&evs, 5), "IBA");
        assert_eq!(letters(&evs, 6), "IBS", "its callback still runs");
        let destroys: Vec<_> = evs.iter().filter(|e| e.0 == 'D').collect();
        assert!(
            evs.ends_with(&destroys.into_iter().copied().collect::<Vec<_>>()),
            "all at the exit"
        );
    }

    #[test]
    fn async_hooks_mode_promises_end_only_at_their_destroy() {
        let evs = promise_events(false, &["IS", "IBSA"]);
        assert!(evs.iter().all(|e| e.0 != 'D'));
    }

    proptest! {
        #[test]
        fn arbitrary_ring_bytes_never_panic_and_read_back(bytes in proptest::collection::vec(any::<u8>(), 0..4096), split in 0usize..200) {
            let records: Vec<RawRecord> = bytes.chunks_exact(RECORD_SIZE).map(|c| c.try_into().unwrap()).collect();
            let _ = items(&records, split);
        }
    }
}
