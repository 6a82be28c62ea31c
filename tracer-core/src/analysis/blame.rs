//! A wait's cause, captured when the wait ends (the settler may be gone by the report) and
//! rendered for people and JSON: what `requests` and `tree` show from the wait model.

use super::context::Context;
use super::lifecycle::{Lifecycle, Resource};
use super::requests::{Blocked, Job, Named, WaitCause};
use super::waits::{Blocker, Cause, Owner, Waiting, Waits};
use crate::trace::{StreamId, StringId};

/// One wait's cause with what the report needs of the resources it names.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Blame {
    pub cause: Cause,
    /// The settler's request (0: none), to tell waits inside one request apart.
    pub settler_owner: Owner,
    awaited: Option<(u64, StringId, Option<StringId>)>,
    by: Option<(u64, StringId, Option<StringId>, Owner)>,
    /// When the awaited promise settled (to find the job behind a message).
    settled_ns: Option<u64>,
}

impl Blame {
    /// The cause of `w`'s wait, ending now; `owner` reads a resource's request.
    pub fn capture<X: Default>(
        waits: &Waits,
        life: &Lifecycle<X>,
        w: &Waiting,
        owner: impl Fn(&Resource<X>) -> Owner,
    ) -> Blame {
        let cause = waits.cause(life, w);
        let mut b = Blame {
            cause,
            settler_owner: Owner::default(),
            awaited: None,
            by: None,
            settled_ns: None,
        };
        if let Cause::Settled { awaited, by, .. } = cause {
            let stream = w.key.0;
            let settler = life.get((stream, by));
            b.settler_owner = settler.map(&owner).unwrap_or_default();
            let p = life.get((stream, awaited));
            b.settled_ns = p.and_then(|r| r.resolve_ns()).or(w.resolve_ns);
            b.awaited = p
                .filter(|_| awaited != w.key.1)
                .map(|r| (awaited, r.type_name, r.stack()));
            b.by = settler.map(|r| (by, r.type_name, r.stack(), owner(r)));
        }
        b
    }

    /// For people and JSON; `None` when nothing is known beyond the resource itself.
    pub fn render(&self, cx: &mut Context, waits: &Waits, stream: StreamId) -> Option<WaitCause> {
        match self.cause {
            Cause::Own => None,
            Cause::Outgoing(text) => Some(WaitCause::Outgoing {
                call: cx.string(text).to_owned(),
            }),
            Cause::Settled { outgoing, .. } => Some(WaitCause::Settled {
                awaited: self
                    .awaited
                    .map(|(id, t, st)| named(cx, id, Some(t), st, Owner::default())),
                by: self.by.map(|(id, t, st, o)| named(cx, id, Some(t), st, o)),
                outgoing: outgoing.map(|o| cx.string(o).to_owned()),
                job: self.job(cx, waits, stream),
            }),
            Cause::LateTimer {
                delay_ns,
                late_ns,
                blocker,
            } => Some(WaitCause::LateTimer {
                delay_ms: super::ms(delay_ns),
                late_ms: super::ms(late_ns),
                blocker: blocker.map(|b| blocked(cx, &b)),
            }),
        }
    }

    /// For a promise settled by a MESSAGEPORT: the job on the other threads of the process.
    fn job(&self, cx: &mut Context, waits: &Waits, stream: StreamId) -> Option<Job> {
        let (_, type_name, _, _) = self.by?;
        if cx.string(type_name) != "MESSAGEPORT" {
            return None;
        }
        let pid = cx.stream(stream).pid;
        let others: Vec<StreamId> = (0..cx.streams.len() as StreamId)
            .filter(|&s| s != stream && cx.streams[s as usize].pid == pid)
            .collect();
        let (s, b) = waits.last_job(others.into_iter(), self.settled_ns?)?;
        Some(Job {
            thread: cx.stream(s).thread,
            callback: blocked(cx, &b),
        })
    }
}

fn blocked(cx: &mut Context, b: &Blocker) -> Blocked {
    Blocked {
        resource: named(cx, b.id, b.type_name, b.stack, b.owner),
        sync_ms: super::ms(b.end_ns.saturating_sub(b.start_ns)),
        start_ms: super::ms(b.start_ns),
    }
}

pub(crate) fn named(
    cx: &mut Context,
    id: u64,
    type_name: Option<StringId>,
    stack: Option<StringId>,
    owner: Owner,
) -> Named {
    let site = cx.site(stack);
    Named {
        id,
        type_name: type_name
            .map_or("(created before tracing)", |t| cx.string(t))
            .to_owned(),
        site: cx.site_string(site),
        request: owner_text(cx, owner),
    }
}

/// `POST /checkout #12`.
pub(crate) fn owner_text(cx: &Context, o: Owner) -> Option<String> {
    if o.number == 0 {
        return None;
    }
    Some(match o.label {
        Some(l) => format!("{} #{}", cx.string(l), o.number),
        None => format!("request #{}", o.number),
    })
}
