//! User-interactive authentication sessions (the spec's UIA): which stages a client has
//! completed towards one of the flows an endpoint offers. Sessions live in memory for
//! [`SESSION_LIFETIME`]; a restart only makes a client start its UIA again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ruma::OwnedUserId;
use ruma::api::client::uiaa::{AuthFlow, AuthType, UiaaInfo};

use super::random_string;
use super::registration_tokens::RegistrationToken;
use crate::error::Error;

/// How long an unfinished session is kept.
const SESSION_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// One session's progress.
#[derive(Clone)]
pub struct UiaSession {
    /// The user the session authenticates (for endpoints behind a login); checked on every step.
    pub user_id: Option<OwnedUserId>,
    pub completed: Vec<AuthType>,
    /// The registration token accepted by the `m.login.registration_token` stage, if any.
    pub registration_token: Option<RegistrationToken>,
    /// The account whose confirmed address the `m.login.email.identity` stage proved.
    pub email_owner: Option<OwnedUserId>,
    /// The address, on no account yet, that the `m.login.email.identity` stage of a
    /// registration confirmed.
    pub registration_email: Option<String>,
    created: Instant,
}

/// The sessions in progress.
#[derive(Default)]
pub struct Uia {
    sessions: Mutex<HashMap<String, UiaSession>>,
}

impl Uia {
    /// The session with this ID (a new one if `id` is `None`), or `None` if it is unknown,
    /// expired, or belongs to another user.
    pub fn session(&self, id: Option<&str>, user_id: Option<&OwnedUserId>) -> Option<(String, UiaSession)> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, s| s.created.elapsed() < SESSION_LIFETIME);
        match id {
            Some(id) => sessions
                .get(id)
                .filter(|s| s.user_id.as_ref() == user_id)
                .map(|s| (id.to_owned(), s.clone())),
            None => {
                let id = random_string(24);
                let session = UiaSession {
                    user_id: user_id.cloned(),
                    completed: Vec::new(),
                    registration_token: None,
                    email_owner: None,
                    registration_email: None,
                    created: Instant::now(),
                };
                sessions.insert(id.clone(), session.clone());
                Some((id, session))
            }
        }
    }

    /// Stores a session's progress.
    pub fn update(&self, id: &str, session: UiaSession) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned(), session);
    }

    /// Ends a session (when its flow is complete).
    pub fn finish(&self, id: &str) {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// The 401 answer that tells the client where it stands, with an optional error for the stage
/// it just tried.
pub fn challenge(flows: &[AuthFlow], id: &str, session: &UiaSession, error: Option<(&'static str, &str)>) -> Error {
    let mut info = UiaaInfo::new(flows.to_vec());
    info.session = Some(id.to_owned());
    info.completed = session.completed.clone();
    info.params = serde_json::value::to_raw_value(&serde_json::json!({})).ok();
    Error::Uia {
        info: Box::new(info),
        stage_error: error.map(|(code, message)| (code, message.to_owned())),
    }
}

/// Whether the completed stages finish one of the flows.
pub fn is_complete(flows: &[AuthFlow], completed: &[AuthType]) -> bool {
    flows.iter().any(|flow| flow.stages.iter().all(|stage| completed.contains(stage)))
}
