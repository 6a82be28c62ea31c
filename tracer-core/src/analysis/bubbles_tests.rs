//! The bubble model on synthesized traces whose grouping is known.

use super::synth::Synth;
use super::{run, BubbleOptions, BubbleReport, Bubbles, Category, Party};
use crate::trace::TraceReader;

fn bubbles(buf: &[u8]) -> BubbleReport {
    let mut reader = TraceReader::new(buf).unwrap();
    let mut pass = Bubbles::new(BubbleOptions::default());
    let mut cx = run(&mut reader, &mut pass).unwrap();
    pass.finish(&mut cx)
}

/// A request handler (user promises) under node core's socket, which starts a timer and is
/// settled by it.
#[test]
fn splits_at_parties_and_operations_and_links_settlers() {
    let mut s = Synth::in_memory();
    let st = s.stream(1, 0).unwrap();
    s.init(st, 0.0, 5, "TCPWRAP", 1, None).unwrap();
    s.before(st, 1.0, 5).unwrap();
    s.init(st, 1.0, 6, "PROMISE", 5, Some("handle\tlib/handler.js:6:26"))
        .unwrap();
    s.init(st, 1.0, 7, "PROMISE", 6, Some("query\tlib/db.js:6:10")).unwrap();
    s.init(st, 1.1, 8, "Timeout", 7, Some("\tlib/db.js:7:5")).unwrap();
    s.after(st, 1.2, 5).unwrap();
    s.before(st, 4.2, 8).unwrap();
    s.ev_resolve_by(st, 4.3, 7, 8).unwrap();
    s.after(st, 4.4, 8).unwrap();
    s.end_stream(st, 9).unwrap();
    let r = bubbles(&s.finish().unwrap());
    assert_eq!(r.views.len(), 1);
    let v = &r.views[0];
    let find = |site: &str| {
        v.bubbles
            .iter()
            .find(|b| b.aggregates.iter().any(|a| a.site.as_deref() == Some(site)))
            .unwrap_or_else(|| panic!("no bubble holds {site}: {v:#?}"))
    };
    let (socket, user, timer) = (
        v.bubbles.iter().find(|b| b.party == Party::NodeCore).unwrap(),
        find("lib/handler.js:6:26"),
        find("lib/db.js:7:5"),
    );
    // Two user promises of different sites, one under the other: one bubble.
    assert_eq!(user.id, find("lib/db.js:6:10").id);
    assert_eq!(user.party, Party::User);
    assert_eq!(timer.party, Party::User);
    assert_eq!(timer.category, Category::TimersPromises);
    assert_ne!(timer.id, user.id, "an operation of user code is a bubble of its own");
    assert_eq!(user.parent, Some(socket.id));
    assert_eq!(socket.category, Category::Network);
    let link = |from: u32, to: u32, kind: &str| v.links.iter().find(|l| l.from == from && l.to == to && l.kind == kind);
    let created = link(user.id, timer.id, "created").expect("user -> timer");
    assert_eq!(created.resources, 1);
    assert!((created.wait_ms - 3.1).abs() < 1e-9, "{created:?}");
    let settled = link(timer.id, user.id, "settled").expect("timer settles the query");
    assert_eq!(settled.resources, 1);
    assert!((settled.wait_ms - 3.3).abs() < 1e-9, "{settled:?}");
    assert!((timer.sync_ms - 0.2).abs() < 1e-9);
}

/// A timer re-armed from its own callback 10,000 times is one aggregate in one bubble, and
/// concurrent waits count once in a link's union.
#[test]
fn recursion_folds_and_unions_count_concurrency_once() {
    let mut s = Synth::in_memory();
    let st = s.stream(1, 0).unwrap();
    s.init(st, 0.0, 2, "PROMISE", 1, Some("\tapp.js:1:1")).unwrap();
    let mut t = 0.0;
    let mut prev = 2;
    for i in 0..10_000u64 {
        let id = 10 + i;
        s.init(st, t, id, "Timeout", prev, Some("tick\tlib/poll.js:3:5"))
            .unwrap();
        t += 1.0;
        s.callback(st, t, id, 0.1).unwrap();
        prev = id;
    }
    // Two concurrent timers from the root: 10 ms each, overlapping for 5.
    s.init(st, t, 50_000, "Timeout", 2, Some("\tapp.js:9:1")).unwrap();
    s.init(st, t + 5.0, 50_001, "Timeout", 2, Some("\tapp.js:9:1")).unwrap();
    s.callback(st, t + 10.0, 50_000, 0.1).unwrap();
    s.callback(st, t + 15.0, 50_001, 0.1).unwrap();
    s.end_stream(st, 30_010).unwrap();
    let r = bubbles(&s.finish().unwrap());
    let v = &r.views[0];
    let poll: Vec<_> = v
        .bubbles
        .iter()
        .flat_map(|b| &b.aggregates)
        .filter(|a| a.site.as_deref() == Some("lib/poll.js:3:5"))
        .collect();
    assert_eq!(poll.len(), 1, "one aggregate for the recursion");
    assert_eq!(poll[0].resources, 10_000);
    assert!(v.bubbles.len() <= 3, "{}", v.bubbles.len());
    let pair = v
        .links
        .iter()
        .find(|l| l.kind == "created" && l.resources == 2)
        .expect("the two timers' link");
    assert!((pair.wait_ms - 20.0).abs() < 1e-6, "{pair:?}");
    assert!((pair.wait_union_ms - 15.0).abs() < 1e-6, "{pair:?}");
}

/// The same handler reached through two node-core paths (a TCPWRAP's callback, and a
/// TickObject's under another socket): one bubble, linked from both.
#[test]
fn the_same_code_under_different_node_core_parents_is_one_bubble() {
    let mut s = Synth::in_memory();
    let st = s.stream(1, 0).unwrap();
    s.init(st, 0.0, 5, "TCPWRAP", 1, None).unwrap();
    s.init(st, 0.0, 6, "HTTPCLIENTREQUEST", 1, None).unwrap();
    s.before(st, 1.0, 5).unwrap();
    s.init(st, 1.0, 10, "PROMISE", 5, Some("handle\tlib/handler.js:6:26"))
        .unwrap();
    s.after(st, 1.2, 5).unwrap();
    s.before(st, 2.0, 6).unwrap();
    s.init(st, 2.0, 7, "TickObject", 6, None).unwrap();
    s.after(st, 2.1, 6).unwrap();
    s.before(st, 2.2, 7).unwrap();
    s.init(st, 2.2, 11, "PROMISE", 7, Some("handle\tlib/handler.js:6:26"))
        .unwrap();
    s.after(st, 2.3, 7).unwrap();
    s.end_stream(st, 9).unwrap();
    let r = bubbles(&s.finish().unwrap());
    let v = &r.views[0];
    let holding: Vec<_> = v
        .bubbles
        .iter()
        .filter(|b| {
            b.aggregates
                .iter()
                .any(|a| a.site.as_deref() == Some("lib/handler.js:6:26"))
        })
        .collect();
    assert_eq!(holding.len(), 1, "{v:#?}");
    let handler = holding[0];
    assert_eq!(handler.resources, 2);
    assert_eq!(handler.aggregates.len(), 2, "one aggregate per parent: {handler:#?}");
    let into: Vec<_> = v
        .links
        .iter()
        .filter(|l| l.to == handler.id && l.kind == "created")
        .collect();
    assert_eq!(into.len(), 2, "a link from each path: {:#?}", v.links);
}
