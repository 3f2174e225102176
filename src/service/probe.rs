//! Reaching every configured place: each backend's top level and, one
//! level down, each app or client. Used by `bridgefs check` (printed, exit
//! status) and by `mount` at start (a warning per place that fails, kept
//! for `status`, while the rest is served). A place whose listing comes
//! from the config alone (the client ids, the app names) made no call, so
//! it is never reported as reached.

use std::time::Duration;

use crate::fs::backend::Kind;
use crate::fs::core::Mounted;
use crate::remote::http::HttpClient;

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
}

fn calls(http: &HttpClient) -> u64 {
    http.stats().values().map(|s| s.calls).sum()
}

/// Tries every place of `mounts`; `apis` names the API of each mount.
pub async fn probe(mounts: &[Mounted], apis: &[&'static str], http: &HttpClient) -> Vec<Probe> {
    let mut out = Vec::new();
    for (m, api) in mounts.iter().zip(apis) {
        let before = calls(http);
        let root = m.backend.root();
        let place = format!("{}/", m.name);
        let entries = match m.backend.list(&root).await {
            Ok(e) => e,
            Err(e) => {
                out.push(Probe {
                    place,
                    api,
                    outcome: Outcome::Failed(e.to_string(), e.errno()),
                });
                continue;
            }
        };
        let outcome = if calls(http) > before {
            Outcome::Reached(entries.len())
        } else {
            Outcome::FromConfig(entries.len())
        };
        out.push(Probe {
            place,
            api,
            outcome,
        });
        let dirs = entries
            .iter()
            .filter(|e| e.kind == Kind::Dir)
            .take(CHILDREN);
        for e in dirs {
            let place = format!("{}/{}/", m.name, e.name);
            let outcome = match m.backend.list(&e.key).await {
                Ok(children) => Outcome::Reached(children.len()),
                Err(err) => Outcome::Failed(err.to_string(), err.errno()),
            };
            out.push(Probe {
                place,
                api,
                outcome,
            });
        }
    }
    out
}

/// The start-up check: one cheap call per place (see [`Backend::reach`]),
/// the backends at once, all within `deadline`. A top level that answered
/// from the config alone has its children reached instead. Returns the
/// places that failed.
///
/// [`Backend::reach`]: crate::fs::backend::Backend::reach
pub async fn unreachable(
    mounts: &[Mounted],
    apis: &[&'static str],
    http: &HttpClient,
    deadline: Duration,
) -> Vec<Probe> {
    let tries = mounts.iter().zip(apis).map(|(m, api)| async move {
        match tokio::time::timeout(deadline, reach_mount(m, api, http)).await {
            Ok(failed) => failed,
            Err(_) => vec![Probe {
                place: format!("{}/", m.name),
                api,
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

async fn reach_mount(m: &Mounted, api: &'static str, http: &HttpClient) -> Vec<Probe> {
    let failed = |place: String, e: crate::fs::FsError| Probe {
        place,
        api,
        outcome: Outcome::Failed(e.to_string(), e.errno()),
    };
    let before = calls(http);
    let entries = match m.backend.list(&m.backend.root()).await {
        Ok(entries) if calls(http) == before => entries,
        Ok(_) => return Vec::new(),
        Err(e) => return vec![failed(format!("{}/", m.name), e)],
    };
    let mut out = Vec::new();
    for e in entries
        .iter()
        .filter(|e| e.kind == Kind::Dir)
        .take(CHILDREN)
    {
        if let Err(err) = m.backend.reach(&e.key).await {
            out.push(failed(format!("{}/{}/", m.name, e.name), err));
        }
    }
    out
}
