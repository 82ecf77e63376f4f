//! Registration, login, and the account changes behind user-interactive authentication: the
//! operations that span accounts, devices, profiles, registration tokens and UIA sessions.

use std::net::IpAddr;

use ruma::api::client::uiaa::{AuthData, AuthFlow, AuthType, ThirdpartyIdCredentials, UserIdentifier};
use ruma::profile::UserProfile;
use ruma::{OwnedDeviceId, OwnedUserId, UserId};

use super::Services;
use super::accounts::{UserRecord, hash_password, verify_password};
use super::devices::LoginGrant;
use super::keys::KeyChange;
use super::rate_limit::Limit;
use super::registration_tokens::RegistrationToken;
use super::threepids::Purpose;
use super::uia::{UiaSession, challenge, is_complete};
use crate::config::RegistrationMode;
use crate::error::{Error, Result};
use crate::store::Table;

/// A login to create together with an account or on its own.
pub struct LoginRequest<'a> {
    pub device_id: Option<OwnedDeviceId>,
    pub display_name: Option<String>,
    pub ip: Option<&'a str>,
    /// The client asked for a refresh token.
    pub refreshable: bool,
}

/// What creating an account needs.
pub struct NewAccount<'a> {
    pub user_id: OwnedUserId,
    pub password: Option<String>,
    pub admin: bool,
    /// The registration token the registration used, counted as one use.
    pub registration_token: Option<RegistrationToken>,
    pub login: Option<LoginRequest<'a>>,
    /// A confirmed email address to add to the account and publish (an invitation by email
    /// was accepted).
    pub email: Option<String>,
}

const BAD_LOGIN: &str = "Invalid username or password";

impl Services {
    /// The UIA flows `/register` offers under the configured registration mode, each also with
    /// a confirmed email address when mail is set up.
    pub fn registration_flows(&self) -> Result<Vec<AuthFlow>> {
        let token_flow = AuthFlow::new(vec![AuthType::RegistrationToken]);
        let mut flows = match self.config.registration {
            RegistrationMode::Open => vec![AuthFlow::new(vec![AuthType::Dummy]), token_flow],
            RegistrationMode::Token => vec![token_flow],
            RegistrationMode::Closed if self.registration_tokens.any_usable(RegistrationMode::Closed)? => vec![token_flow],
            RegistrationMode::Closed => return Err(Error::forbidden("Registration is closed on this server")),
        };
        // Where mail can confirm it, an email address can come with the account.
        if self.mail.enabled() {
            let with_email = flows.iter().map(|flow| {
                let mut stages: Vec<AuthType> = flow.stages.iter().filter(|stage| **stage != AuthType::Dummy).cloned().collect();
                stages.push(AuthType::EmailIdentity);
                AuthFlow::new(stages)
            });
            flows = flows.iter().cloned().chain(with_email).collect();
        }
        Ok(flows)
    }

    /// Runs one UIA step for `flows`. Returns the finished session when a flow is complete,
    /// otherwise the 401 challenge to send back. `user_id` is the logged-in user for endpoints
    /// behind a login (whose password the `m.login.password` stage checks).
    pub async fn authenticate_uia(
        &self,
        flows: &[AuthFlow],
        auth: Option<&AuthData>,
        user_id: Option<&OwnedUserId>,
        ip: IpAddr,
    ) -> Result<UiaSession> {
        let Some((id, mut session)) = self.uia.session(auth.and_then(AuthData::session), user_id) else {
            return Err(Error::bad_request("Unknown or expired authentication session"));
        };
        let Some((auth, stage)) = auth.and_then(|auth| Some((auth, auth.auth_type()?))) else {
            return Err(challenge(flows, &id, &session, None));
        };
        if !flows.iter().any(|flow| flow.stages.contains(&stage)) {
            return Err(challenge(
                flows,
                &id,
                &session,
                Some(("M_FORBIDDEN", "That authentication stage is not offered here")),
            ));
        }
        let failure = match auth {
            AuthData::Dummy(_) => None,
            AuthData::Password(password) => {
                self.rate_limits.check(Limit::Login, ip)?;
                let claimed = match &password.identifier {
                    UserIdentifier::Matrix(id) => self.accounts.parse_login_name(&id.user).ok(),
                    _ => None,
                };
                let record = match (user_id, claimed) {
                    (Some(user_id), Some(claimed)) if *user_id == claimed => self.accounts.get(user_id)?,
                    _ => None,
                };
                match record {
                    Some(record) if verify_password(&record, password.password.clone()).await? => None,
                    _ => Some(("M_FORBIDDEN", "Invalid password")),
                }
            }
            AuthData::RegistrationToken(token) => match self.registration_tokens.usable(&token.token, self.config.registration)? {
                Some(token) => {
                    session.registration_token = Some(token);
                    None
                }
                None => Some(("M_FORBIDDEN", "Invalid registration token")),
            },
            AuthData::EmailIdentity(email) => self.email_identity_stage(&email.thirdparty_id_creds, &mut session)?,
            _ => Some(("M_FORBIDDEN", "That authentication stage is not supported")),
        };
        if let Some(failure) = failure {
            return Err(challenge(flows, &id, &session, Some(failure)));
        }
        if !session.completed.contains(&stage) {
            session.completed.push(stage);
        }
        if is_complete(flows, &session.completed) {
            self.uia.finish(&id);
            Ok(session)
        } else {
            self.uia.update(&id, session.clone());
            Err(challenge(flows, &id, &session, None))
        }
    }

    /// The `m.login.email.identity` stage: an address confirmed through a mailed link, of an
    /// account (a password reset: `email_owner`) or of none yet (a registration:
    /// `registration_email`). The confirmation is used up. Returns the stage's error, if any.
    fn email_identity_stage(
        &self,
        creds: &ThirdpartyIdCredentials,
        session: &mut UiaSession,
    ) -> Result<Option<(&'static str, &'static str)>> {
        let (sid, secret) = (creds.sid.as_str(), creds.client_secret.as_str());
        let confirmed = self
            .threepids
            .confirmed(sid, secret, Purpose::ResetPassword)
            .or_else(|_| self.threepids.confirmed(sid, secret, Purpose::Register));
        let Ok(confirmed) = confirmed else {
            return Ok(Some((
                "M_THREEPID_AUTH_FAILED",
                "The email address is not confirmed: open the link in the mail first",
            )));
        };
        match (confirmed.purpose, self.threepids.owner(&confirmed.address)?) {
            (Purpose::ResetPassword, Some(owner)) => session.email_owner = Some(owner.user_id),
            (Purpose::ResetPassword, None) => return Ok(Some(("M_THREEPID_NOT_FOUND", "No account has this email address any more"))),
            (_, Some(_)) => return Ok(Some(("M_THREEPID_IN_USE", "This email address is already in use"))),
            (_, None) => session.registration_email = Some(confirmed.address.clone()),
        }
        let mut batch = self.store.batch();
        self.threepids.stage_end(&mut batch, sid);
        batch.commit()?;
        tracing::debug!(address = %confirmed.address, purpose = ?confirmed.purpose, "email address proven");
        Ok(None)
    }
    /// Creates an account (and optionally its first login) in one batch. The first account of
    /// the server is always an admin.
    pub async fn create_account(&self, account: NewAccount<'_>) -> Result<Option<LoginGrant>> {
        let password_hash = match account.password {
            Some(password) => Some(hash_password(password).await?),
            None => None,
        };
        let _guard = self.accounts.create_lock.lock().unwrap_or_else(|p| p.into_inner());
        let _guard_elsewhere = self.store.lock_blocking(b"accounts")?;
        if self.accounts.get(&account.user_id)?.is_some() {
            return Err(Error::user_in_use("That user name is taken"));
        }
        let mut batch = self.store.batch();
        if let Some(token) = &account.registration_token {
            // Re-read under the lock: two registrations may race for a token's last use.
            match self.registration_tokens.usable(&token.token, self.config.registration)? {
                Some(current) => self.registration_tokens.stage_use(&mut batch, &current),
                None => return Err(Error::forbidden("The registration token is no longer valid")),
            }
        }
        let first_account = self.only_appservice_accounts()? && self.appservices.exclusive_owner_of_user(&account.user_id).is_none();
        if first_account {
            // The first-start token has done its work once any account exists.
            self.registration_tokens.stage_retire_bootstrap(&mut batch)?;
        }
        let record = UserRecord {
            password_hash,
            admin: account.admin || first_account,
            deactivated: false,
            created_ts: super::now_ms(),
            suspended: false,
            locked: false,
        };
        self.accounts.put(&mut batch, &account.user_id, &record);
        let mut profile = UserProfile::new();
        profile.set("displayname".into(), account.user_id.localpart().into());
        batch.put_json(Table::Profiles, account.user_id.as_bytes(), &profile);
        if let Some(address) = &account.email {
            self.threepids.stage_add(&mut batch, &account.user_id, address, super::now_ms());
            self.identity.stage_bind(&mut batch, &account.user_id, address);
        }
        let grant = match account.login {
            Some(login) => Some(self.devices.stage_login(
                &mut batch,
                &account.user_id,
                login.device_id,
                login.display_name,
                login.ip,
                login.refreshable,
            )?),
            None => None,
        };
        batch.commit()?;
        tracing::info!(user_id = %account.user_id, admin = record.admin, "account created");
        Ok(grant)
    }

    /// `m.login.password`: checks the password and logs the user in on a device.
    pub async fn login_with_password(
        &self,
        name: &str,
        password: String,
        login: LoginRequest<'_>,
        ip: IpAddr,
    ) -> Result<(OwnedUserId, LoginGrant)> {
        self.rate_limits.check(Limit::Login, ip)?;
        let user_id = self.accounts.parse_login_name(name).map_err(|_| Error::forbidden(BAD_LOGIN))?;
        let record = self.accounts.get(&user_id)?.ok_or_else(|| Error::forbidden(BAD_LOGIN))?;
        // A deactivated account has no password left to check.
        if record.deactivated {
            return Err(Error::user_deactivated("This account has been deactivated"));
        }
        if !verify_password(&record, password).await? {
            return Err(Error::forbidden(BAD_LOGIN));
        }
        self.log_in(&user_id, login)
    }

    /// `m.login.token`: logs in with a one-time token from `/login/get_token`.
    pub fn login_with_token(&self, token: &str, login: LoginRequest<'_>, ip: IpAddr) -> Result<(OwnedUserId, LoginGrant)> {
        self.rate_limits.check(Limit::Login, ip)?;
        let user_id = self
            .devices
            .redeem_login_token(token)?
            .ok_or_else(|| Error::forbidden("Invalid or expired login token"))?;
        self.accounts.get_active(&user_id)?;
        self.log_in(&user_id, login)
    }

    /// Whether every account there is belongs to an appservice (none at all, at first start):
    /// the next other one becomes a server admin.
    pub fn only_appservice_accounts(&self) -> Result<bool> {
        if self.appservices.is_empty() {
            return self.accounts.is_empty();
        }
        let list = self.appservices.list();
        let claimed = |row: &[u8]| {
            UserId::parse(String::from_utf8_lossy(row).as_ref())
                .is_ok_and(|user_id| list.iter().any(|appservice| appservice.claims_user(&user_id)))
        };
        // Pages of user IDs until one that no appservice claims: usually in the first page.
        let mut start = Vec::new();
        loop {
            let page = self.store.range(Table::Users, &[], &start, true, 100)?;
            if page.iter().any(|(row, _)| !claimed(row)) {
                return Ok(false);
            }
            match page.last() {
                Some((last, _)) if page.len() == 100 => start = [last.as_slice(), &[0]].concat(),
                _ => return Ok(true),
            }
        }
    }

    /// Logs a user of an appservice's namespace in on a device, for the appservice.
    pub fn login_appservice_user(&self, user_id: &UserId, login: LoginRequest<'_>) -> Result<(OwnedUserId, LoginGrant)> {
        self.accounts.get_active(user_id)?;
        self.log_in(user_id, login)
    }

    /// Logs a user whose credentials were checked in on a device.
    fn log_in(&self, user_id: &UserId, login: LoginRequest<'_>) -> Result<(OwnedUserId, LoginGrant)> {
        let mut batch = self.store.batch();
        let grant = self.devices.stage_login(
            &mut batch,
            user_id,
            login.device_id,
            login.display_name,
            login.ip,
            login.refreshable,
        )?;
        batch.commit()?;
        Ok((user_id.to_owned(), grant))
    }

    /// Sets a new password; with `logout_devices`, every device but `keep` is logged out.
    pub async fn change_password(
        &self,
        user_id: &UserId,
        new_password: String,
        logout_devices: bool,
        keep: Option<&ruma::DeviceId>,
    ) -> Result<()> {
        let mut record = self.accounts.get_active(user_id)?;
        record.password_hash = Some(hash_password(new_password).await?);
        let mut batch = self.store.batch();
        self.accounts.put(&mut batch, user_id, &record);
        if logout_devices {
            let deleted = self.stage_delete_devices(&mut batch, user_id, None, keep)?;
            if !deleted.is_empty() {
                return self
                    .keys
                    .commit_device_list_change(&self.rooms, batch, user_id, KeyChange::Deleted(&deleted));
            }
        }
        Ok(batch.commit()?)
    }

    /// Deactivates an account for good: no password, no devices, an empty profile. The name
    /// stays taken.
    pub fn deactivate(&self, user_id: &UserId) -> Result<()> {
        let mut record = self.accounts.get_active(user_id)?;
        record.deactivated = true;
        record.password_hash = None;
        let mut batch = self.store.batch();
        self.accounts.put(&mut batch, user_id, &record);
        let devices_deleted = self.stage_delete_devices(&mut batch, user_id, None, None)?;
        batch.delete(Table::Profiles, user_id.as_bytes());
        for (address, _) in self.threepids.of_user(user_id)? {
            self.threepids.stage_remove(&mut batch, user_id, &address);
            self.identity.stage_unbind(&mut batch, user_id, &address)?;
        }
        if !devices_deleted.is_empty() {
            self.keys
                .commit_device_list_change(&self.rooms, batch, user_id, KeyChange::Deleted(&devices_deleted))?;
        } else {
            batch.commit()?;
        }
        tracing::info!(%user_id, "account deactivated");
        Ok(())
    }

    /// Grants or takes away server admin rights.
    pub fn set_admin(&self, user_id: &UserId, admin: bool) -> Result<()> {
        let mut record = self.accounts.get_active(user_id)?;
        record.admin = admin;
        let mut batch = self.store.batch();
        self.accounts.put(&mut batch, user_id, &record);
        Ok(batch.commit()?)
    }
}
