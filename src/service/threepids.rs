//! Third-party identifiers (email addresses): the sessions that confirm an address through a
//! mailed link, and the confirmed addresses of accounts, used to log in, to reset a password
//! and to find the account an invitation by email is for.
//!
//! A session is opened by a `requestToken` endpoint (of the Client-Server API, or of the
//! built-in identity service) and confirmed by opening the link of its mail, which carries a
//! secret token; the client then proves it holds the session with its `client_secret`.

use lettre::Address;
use ruma::{OwnedSessionId, OwnedUserId, UserId};
use serde::{Deserialize, Serialize};

use super::mail::templates::{self, ConfirmPurpose};
use super::{Services, now_ms, random_string};
use crate::error::{Error, Result};
use crate::store::{Batch, Store, Table, key, prefix};

/// How long a session may wait for its link to be opened, and then to be used.
const SESSION_LIFETIME_MS: u64 = 24 * 3600 * 1000;
/// The only medium Hearth confirms.
pub const EMAIL: &str = "email";

/// Why an address is being confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// `/account/3pid/email/requestToken`: to add the address to an account.
    AddToAccount,
    /// `/account/password/email/requestToken`: to reset the password of the account that has it.
    ResetPassword,
    /// The identity service's `validate/email/requestToken`: to publish the address.
    Discovery,
    /// `/register/email/requestToken`: to register an account with the address.
    Register,
}

/// A confirmation in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ValidationSession {
    pub client_secret: String,
    pub address: String,
    pub purpose: Purpose,
    /// The secret of the mailed link.
    pub token: String,
    pub send_attempt: u64,
    pub created_ts: u64,
    pub validated_ts: Option<u64>,
    /// Where the link's page sends the user once the address is confirmed.
    pub next_link: Option<String>,
}

/// A confirmed address of an account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThreepidRecord {
    pub user_id: OwnedUserId,
    pub added_ts: u64,
    pub validated_ts: u64,
}

/// The sessions and the addresses of accounts.
pub struct Threepids {
    store: Store,
}

/// The canonical form of an email address (trimmed, lower case), or 400 when it is not one.
pub fn normalize_email(address: &str) -> Result<String> {
    let address = address.trim().to_lowercase();
    address
        .parse::<Address>()
        .map_err(|_| Error::invalid_param(format!("{address:?} is not an email address")))?;
    Ok(address)
}

fn address_key(address: &str) -> Vec<u8> {
    key(&[EMAIL.as_bytes(), address.as_bytes()])
}

impl Threepids {
    pub fn new(store: Store) -> Threepids {
        Threepids { store }
    }

    /// The session `sid`, if it exists, belongs to `client_secret` and has not expired.
    pub fn session(&self, sid: &str, client_secret: &str) -> Result<Option<ValidationSession>> {
        let session: Option<ValidationSession> = self.store.get_json(Table::ThreepidSessions, sid.as_bytes())?;
        Ok(session.filter(|s| s.client_secret == client_secret && s.created_ts + SESSION_LIFETIME_MS > now_ms()))
    }

    /// Confirms a session from its mailed link; the session, now confirmed.
    pub fn confirm(&self, sid: &str, client_secret: &str, token: &str) -> Result<ValidationSession> {
        let mut session = self
            .session(sid, client_secret)?
            .filter(|s| s.token == token)
            .ok_or_else(|| Error::threepid_auth_failed("This link is unknown or has expired"))?;
        if session.validated_ts.is_none() {
            session.validated_ts = Some(now_ms());
            let mut batch = self.store.batch();
            batch.put_json(Table::ThreepidSessions, sid.as_bytes(), &session);
            batch.commit()?;
        }
        Ok(session)
    }

    /// A confirmed session for `purpose`, or 400 `M_THREEPID_AUTH_FAILED`.
    pub fn confirmed(&self, sid: &str, client_secret: &str, purpose: Purpose) -> Result<ValidationSession> {
        match self.session(sid, client_secret)? {
            Some(session) if session.purpose == purpose && session.validated_ts.is_some() => Ok(session),
            Some(session) if session.purpose == purpose => Err(Error::threepid_auth_failed(
                "The email address is not confirmed yet: open the link in the mail first",
            )),
            _ => Err(Error::threepid_auth_failed("Unknown or expired confirmation session")),
        }
    }

    /// Ends a session once it has been used.
    pub fn stage_end(&self, batch: &mut Batch<'_>, sid: &str) {
        batch.delete(Table::ThreepidSessions, sid.as_bytes());
    }

    /// The account an address belongs to.
    pub fn owner(&self, address: &str) -> Result<Option<ThreepidRecord>> {
        Ok(self.store.get_json(Table::Threepids, &address_key(address))?)
    }

    /// The addresses of an account, with their records.
    pub fn of_user(&self, user_id: &UserId) -> Result<Vec<(String, ThreepidRecord)>> {
        let mut found = Vec::new();
        for row in self
            .store
            .scan_keys(Table::UserThreepids, &prefix(&[user_id.as_bytes(), EMAIL.as_bytes()]))?
        {
            let address = String::from_utf8_lossy(row.rsplit(|b| *b == crate::store::SEP).next().unwrap_or_default()).into_owned();
            if let Some(record) = self.owner(&address)? {
                found.push((address, record));
            }
        }
        Ok(found)
    }

    /// Adds a confirmed address to an account.
    pub fn stage_add(&self, batch: &mut Batch<'_>, user_id: &UserId, address: &str, validated_ts: u64) {
        let record = ThreepidRecord {
            user_id: user_id.to_owned(),
            added_ts: now_ms(),
            validated_ts,
        };
        batch.put_json(Table::Threepids, &address_key(address), &record);
        batch.put(
            Table::UserThreepids,
            &key(&[user_id.as_bytes(), EMAIL.as_bytes(), address.as_bytes()]),
            b"",
        );
    }

    /// Removes an address from an account.
    pub fn stage_remove(&self, batch: &mut Batch<'_>, user_id: &UserId, address: &str) {
        batch.delete(Table::Threepids, &address_key(address));
        batch.delete(
            Table::UserThreepids,
            &key(&[user_id.as_bytes(), EMAIL.as_bytes(), address.as_bytes()]),
        );
    }

    /// The open session of `client_secret` for this address and purpose, if any; the
    /// sessions that expired go into `batch` to be dropped (one pass over the table).
    fn find_and_prune(
        &self,
        batch: &mut Batch<'_>,
        client_secret: &str,
        address: &str,
        purpose: Purpose,
    ) -> Result<Option<(String, ValidationSession)>> {
        let now = now_ms();
        let mut found = None;
        for (sid, session) in self.store.scan_json::<ValidationSession>(Table::ThreepidSessions, b"")? {
            if session.created_ts + SESSION_LIFETIME_MS <= now {
                batch.delete(Table::ThreepidSessions, &sid);
            } else if session.client_secret == client_secret && session.address == address && session.purpose == purpose {
                found = Some((String::from_utf8_lossy(&sid).into_owned(), session));
            }
        }
        Ok(found)
    }
}

fn session_id(sid: &str) -> Result<OwnedSessionId> {
    sid.try_into().map_err(|e| Error::Internal(format!("session ID {sid}: {e}")))
}

/// What a `requestToken` endpoint asks for.
pub struct TokenRequest<'a> {
    pub purpose: Purpose,
    pub client_secret: &'a str,
    pub email: &'a str,
    pub send_attempt: u64,
    pub next_link: Option<String>,
    /// The client's address: each request may send a mail, so it counts against the
    /// registration rate limit.
    pub ip: std::net::IpAddr,
}

impl Services {
    /// Opens (or, for a repeated `send_attempt`, finds again) a confirmation session and mails
    /// its link; returns the session ID. Refuses an address already on an account for
    /// `AddToAccount` and `Register` (400 `M_THREEPID_IN_USE`) and one on no account for `ResetPassword`
    /// (400 `M_THREEPID_NOT_FOUND`).
    pub fn request_email_token(&self, request: TokenRequest<'_>) -> Result<OwnedSessionId> {
        self.rate_limits.check(super::rate_limit::Limit::Registration, request.ip)?;
        self.mail.require()?;
        let address = normalize_email(request.email)?;
        let owner = self.threepids.owner(&address)?;
        match request.purpose {
            Purpose::AddToAccount | Purpose::Register if owner.is_some() => {
                return Err(Error::threepid_in_use("This email address is already in use"));
            }
            Purpose::ResetPassword if owner.is_none() => {
                return Err(Error::threepid_not_found("No account has this email address"));
            }
            _ => {}
        }
        let mut batch = self.store.batch();
        let existing = self
            .threepids
            .find_and_prune(&mut batch, request.client_secret, &address, request.purpose)?;
        if let Some((sid, session)) = &existing
            && request.send_attempt <= session.send_attempt
        {
            // A retry of a request already answered: the same session, no second mail.
            return session_id(sid);
        }
        let (sid, session) = match existing {
            Some((sid, mut session)) => {
                session.send_attempt = request.send_attempt;
                (sid, session)
            }
            None => (
                random_string(24),
                ValidationSession {
                    client_secret: request.client_secret.to_owned(),
                    address: address.clone(),
                    purpose: request.purpose,
                    token: random_string(32),
                    send_attempt: request.send_attempt,
                    created_ts: now_ms(),
                    validated_ts: None,
                    next_link: request.next_link,
                },
            ),
        };
        let link = self.email_confirmation_link(&sid, &session);
        let purpose = match request.purpose {
            Purpose::AddToAccount => ConfirmPurpose::AddToAccount,
            Purpose::ResetPassword => ConfirmPurpose::ResetPassword,
            Purpose::Discovery => ConfirmPurpose::Discovery,
            Purpose::Register => ConfirmPurpose::Register,
        };
        let mail = templates::confirm_address(self.config.server_name.as_str(), purpose, &link)?;
        batch.put_json(Table::ThreepidSessions, sid.as_bytes(), &session);
        self.mail.stage(&mut batch, &address, mail)?;
        batch.commit()?;
        self.mail.wake();
        session_id(&sid)
    }

    /// The link of a confirmation mail: a page of this server that confirms on opening.
    fn email_confirmation_link(&self, sid: &str, session: &ValidationSession) -> String {
        let mut link = url::Url::parse(&format!("{}/_hearth/email/confirm", self.config.public_base()))
            .expect("public_baseurl is checked at start-up");
        link.query_pairs_mut()
            .append_pair("sid", sid)
            .append_pair("client_secret", &session.client_secret)
            .append_pair("token", &session.token);
        link.to_string()
    }

    /// Adds the address of a confirmed `AddToAccount` session to `user_id`'s account.
    pub fn add_email_to_account(&self, user_id: &UserId, sid: &str, client_secret: &str) -> Result<()> {
        let session = self.threepids.confirmed(sid, client_secret, Purpose::AddToAccount)?;
        match self.threepids.owner(&session.address)? {
            Some(owner) if owner.user_id == user_id => return Ok(()),
            Some(_) => return Err(Error::threepid_in_use("This email address is already in use")),
            None => {}
        }
        let mut batch = self.store.batch();
        self.threepids
            .stage_add(&mut batch, user_id, &session.address, session.validated_ts.unwrap_or_else(now_ms));
        self.threepids.stage_end(&mut batch, sid);
        Ok(batch.commit()?)
    }

    /// Removes an address from `user_id`'s account, and from the identity service's lookup.
    pub fn remove_email_from_account(&self, user_id: &UserId, address: &str) -> Result<()> {
        let address = normalize_email(address)?;
        if self.threepids.owner(&address)?.is_none_or(|owner| owner.user_id != user_id) {
            return Err(Error::threepid_not_found("This email address is not on your account"));
        }
        let mut batch = self.store.batch();
        self.threepids.stage_remove(&mut batch, user_id, &address);
        self.identity.stage_unbind(&mut batch, user_id, &address)?;
        Ok(batch.commit()?)
    }
}
