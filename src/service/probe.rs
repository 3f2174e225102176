//! Reaching every configured place: each backend's top level and, one
//! level down, each app or client. Used by `bridgefs check` (printed, exit
//! status) and by `mount` at start (a warning per place that fails, kept
//! for `status`, while the rest is served). A top level listed from the
//! config alone (client ids, app names; the backend says so) made no call,
//! so it is never reported as reached.

use std::time::Duration;

use crate::fs::backend::Kind;
use crate::fs::core::Mounted;

/// How many places below a top level are tried.
const CHILDREN: usize = 20;

/// What became of one place.
#[derive(Debug, Clone)]
pub struct Probe {
    /// `clients/1/`
    pub place: String,
    /// The API behind it, as admins name it (`back office`).
    pub api: &'static str,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Answered with this many entries.
    Reached(usize),
    /// Listed from the config without a call.
    FromConfig(usize),
    /// The reason, in one line, with its errno.
    Failed(String, i32),
}

impl Probe {
    /// The line `check` prints.
    pub fn line(&self) -> String {
        match &self.outcome {
            Outcome::Reached(n) => format!("ok    {} ({n} entries)", self.place.escape_debug()),
            Outcome::FromConfig(n) => format!(
                "-     {} ({n} entries from the config; not contacted)",
                self.place
            ),
            // Escaped: a server's message or a remote name cannot forge a
            // line or reach a terminal as control characters.
            Outcome::Failed(why, errno) => format!(
                "FAIL  {} {}: {} (errno {errno})",
                self.place.escape_debug(),
                self.api,
                why.escape_debug()
            ),
        }
    }

    pub fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Failed(..))
    }

    fn failed_at(m: &Mounted, place: String, e: &crate::fs::FsError) -> Probe {
        Probe {
            place,
            api: m.api,
            outcome: Outcome::Failed(e.to_string(), e.errno()),
        }
    }
}

/// `check`: every place of `mounts`, one after the other, each listed.
pub async fn probe(mounts: &[Mounted]) -> Vec<Probe> {
    let mut out = Vec::new();
    for m in mounts {
        let place = format!("{}/", m.name);
        let entries = match m.backend.list(&m.backend.root()).await {
            Ok(e) => e,
            Err(e) => {
                out.push(Probe::failed_at(m, place, &e));
                continue;
            }
        };
        let outcome = match m.backend.root_from_config() {
            true => Outcome::FromConfig(entries.len()),
            false => Outcome::Reached(entries.len()),
        };
        out.push(Probe {
            place,
            api: m.api,
            outcome,
        });
        for e in children(&entries) {
            let place = format!("{}/{}/", m.name, e.name);
            out.push(match m.backend.list(&e.key).await {
                Ok(c) => Probe {
                    place,
                    api: m.api,
                    outcome: Outcome::Reached(c.len()),
                },
                Err(err) => Probe::failed_at(m, place, &err),
            });
        }
    }
    out
}

/// The directories below a top level that are tried.
fn children(
    entries: &[crate::fs::backend::Entry],
) -> impl Iterator<Item = &crate::fs::backend::Entry> {
    entries
        .iter()
        .filter(|e| e.kind == Kind::Dir)
        .take(CHILDREN)
}

/// The start-up check: one cheap call per place (see [`Backend::reach`]),
/// the backends at once, all within `deadline`. A top level listed from
/// the config has its children reached instead. Returns the places that
/// failed.
///
/// [`Backend::reach`]: crate::fs::backend::Backend::reach
pub async fn unreachable(mounts: &[Mounted], deadline: Duration) -> Vec<Probe> {
    let tries = mounts.iter().map(|m| async move {
        match tokio::time::timeout(deadline, reach_mount(m)).await {
            Ok(failed) => failed,
            Err(_) => vec![Probe {
                place: format!("{}/", m.name),
                api: m.api,
                outcome: Outcome::Failed(format!("no answer within {deadline:?}"), libc::ETIMEDOUT),
            }],
        }
    });
    futures::future::join_all(tries)
        .await
        .into_iter()
        .flatten()
        .collect()
}

async fn reach_mount(m: &Mounted) -> Vec<Probe> {
    let root = m.backend.root();
    if !m.backend.root_from_config() {
        return match m.backend.reach(&root).await {
            Ok(()) => Vec::new(),
            Err(e) => vec![Probe::failed_at(m, format!("{}/", m.name), &e)],
        };
    }
    let entries = match m.backend.list(&root).await {
        Ok(entries) => entries,
        Err(e) => return vec![Probe::failed_at(m, format!("{}/", m.name), &e)],
    };
    let mut out = Vec::new();
    for e in children(&entries) {
        if let Err(err) = m.backend.reach(&e.key).await {
            out.push(Probe::failed_at(m, format!("{}/{}/", m.name, e.name), &err));
        }
    }
    out
}
