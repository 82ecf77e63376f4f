//! Invitations by email: a member (through Element's invite dialog or the identity service's
//! `store-invite`) or an admin (`hearth admin invite`) invites an address that no user has
//! published. The room gets an `m.room.third_party_invite` event whose state key is the
//! invitation's public token, and the address gets a mail with a link to a landing page of
//! this server, whose secret is the invitation's key. Choosing a user name and password there
//! creates the account (whatever the registration mode: the invitation stands for a
//! registration token, once), adds and publishes the address, and turns every invitation
//! waiting for it into a real invite: an `m.room.member` event carrying the
//! `third_party_invite` the identity service (this server) signed.

use ruma::events::StateEventType;
use ruma::events::room::member::MembershipState;
use ruma::{CanonicalJsonObject, OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::mail::templates;
use super::registration::NewAccount;
use super::rooms::NewEvent;
use super::rooms::membership::MembershipChange;
use super::threepids::normalize_email;
use super::{Services, now_ms, random_string};
use crate::error::{Error, Result};
use crate::store::Table;

/// Where an invitation stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum InviteStatus {
    Pending,
    /// Turned into an invite of this user.
    Used {
        user_id: OwnedUserId,
        used_ts: u64,
    },
    Revoked {
        revoked_ts: u64,
    },
}

/// An invitation by email.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmailInvite {
    /// The secret of the landing page's link (the row's key).
    pub secret: String,
    pub address: String,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    /// The state key of the room's `m.room.third_party_invite` event.
    pub token: String,
    /// The invitation's ephemeral public key (unpadded base64), listed in the room's event
    /// beside the server's; its private key is not kept.
    pub ephemeral_public_key: String,
    pub room_name: String,
    pub inviter_name: String,
    pub created_ts: u64,
    pub expires_ts: u64,
    #[serde(flatten)]
    pub status: InviteStatus,
}

impl EmailInvite {
    /// Whether the invitation can still be accepted.
    pub fn is_open(&self) -> bool {
        self.status == InviteStatus::Pending && self.expires_ts > now_ms()
    }
}

/// What inviting an address did.
pub enum EmailInviteOutcome {
    /// The address is published by a user, who got a normal invite.
    Invited(OwnedUserId),
    /// The address got a mail; the room a third-party invite.
    Mailed(Box<EmailInvite>),
}

impl Services {
    /// The identity service's name, as invitations' signatures carry it: the host of
    /// `public_baseurl`.
    pub fn identity_server_name(&self) -> String {
        url::Url::parse(self.config.public_base())
            .ok()
            .and_then(|url| {
                url.host_str().map(|host| match url.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_owned(),
                })
            })
            .unwrap_or_else(|| self.config.server_name.to_string())
    }

    /// Whether `id_server` (as a client sends it: a host, maybe with a scheme) is this server.
    pub fn is_own_identity_server(&self, id_server: &str) -> bool {
        let id_server = id_server
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/');
        id_server == self.identity_server_name() || id_server == self.config.server_name.as_str()
    }

    /// The keys of an invitation as `store-invite` and the room's `m.room.third_party_invite`
    /// list them: the server's long-term key and the invitation's ephemeral key, each with
    /// where to check it.
    pub fn invite_public_keys(&self, ephemeral_public_key: &str) -> [Value; 2] {
        let base = self.config.public_base();
        [
            json!({
                "public_key": self.server_key.public_key_base64(),
                "key_validity_url": format!("{base}/_matrix/identity/v2/pubkey/isvalid"),
            }),
            json!({
                "public_key": ephemeral_public_key,
                "key_validity_url": format!("{base}/_matrix/identity/v2/pubkey/ephemeral/isvalid"),
            }),
        ]
    }

    /// Invites an address to a room as `sender`: a normal invite when a user published it,
    /// otherwise a third-party invite in the room and a mail with the landing page's link.
    pub async fn invite_by_email(&self, room_id: &RoomId, sender: &UserId, address: &str) -> Result<EmailInviteOutcome> {
        let address = normalize_email(address)?;
        if let Some(user_id) = self.identity.bound(&address)? {
            let change = MembershipChange::new(sender, &user_id, MembershipState::Invite, None);
            self.rooms.change_membership(room_id, change).await?;
            return Ok(EmailInviteOutcome::Invited(user_id));
        }
        self.mail.require()?;
        self.rooms.check_joined(room_id, sender)?;
        let token = random_string(32);
        let ephemeral_public_key = new_ephemeral_key();
        let keys = self.invite_public_keys(&ephemeral_public_key);
        let mut content = keys[0].clone();
        content["display_name"] = json!(redacted_address(&address));
        content["public_keys"] = json!(keys);
        let event = NewEvent::state(StateEventType::RoomThirdPartyInvite, &token, content);
        self.rooms.append(room_id, sender, event).await?;
        let invite = self.store_email_invite(room_id, sender, &address, token, ephemeral_public_key)?;
        Ok(EmailInviteOutcome::Mailed(Box::new(invite)))
    }

    /// Records an invitation and mails its link, in one batch; the room's
    /// `m.room.third_party_invite` with state key `token` is the caller's.
    pub fn store_email_invite(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        address: &str,
        token: String,
        ephemeral_public_key: String,
    ) -> Result<EmailInvite> {
        let email = self
            .config
            .email
            .as_ref()
            .ok_or_else(|| Error::threepid_medium_not_supported("This server does not send email"))?;
        let summary = self.rooms.summary(room_id)?;
        let room_name = summary["name"]
            .as_str()
            .or(summary["canonical_alias"].as_str())
            .unwrap_or("a room")
            .to_owned();
        let inviter_name = self
            .profiles
            .get(sender)?
            .get("displayname")
            .and_then(Value::as_str)
            .unwrap_or(sender.as_str())
            .to_owned();
        let now = now_ms();
        let invite = EmailInvite {
            secret: random_string(32),
            address: address.to_owned(),
            room_id: room_id.to_owned(),
            sender: sender.to_owned(),
            token,
            ephemeral_public_key,
            room_name,
            inviter_name,
            created_ts: now,
            expires_ts: now + email.invite_lifetime.as_millis() as u64,
            status: InviteStatus::Pending,
        };
        let link = format!("{}/_hearth/invite/{}", self.config.public_base(), invite.secret);
        let mail = templates::invitation(
            self.config.server_name.as_str(),
            &invite.inviter_name,
            &invite.room_name,
            &link,
            invite.expires_ts,
        )?;
        let mut batch = self.store.batch();
        batch.put_json(Table::EmailInvites, invite.secret.as_bytes(), &invite);
        self.mail.stage(&mut batch, address, mail)?;
        batch.commit()?;
        self.mail.wake();
        tracing::info!(room_id = %room_id, sender = %sender, "invitation by email sent");
        Ok(invite)
    }

    /// The invitation behind a landing page's link.
    pub fn email_invite(&self, secret: &str) -> Result<Option<EmailInvite>> {
        Ok(self.store.get_json(Table::EmailInvites, secret.as_bytes())?)
    }

    /// The invitation with this link secret or third-party invite token.
    pub fn find_email_invite(&self, secret_or_token: &str) -> Result<Option<EmailInvite>> {
        if let Some(invite) = self.email_invite(secret_or_token)? {
            return Ok(Some(invite));
        }
        Ok(self.email_invites()?.into_iter().find(|invite| invite.token == secret_or_token))
    }

    /// Every invitation by email, newest first.
    pub fn email_invites(&self) -> Result<Vec<EmailInvite>> {
        let mut invites: Vec<EmailInvite> = self
            .store
            .scan_json(Table::EmailInvites, b"")?
            .into_iter()
            .map(|(_, invite)| invite)
            .collect();
        invites.sort_by_key(|invite| std::cmp::Reverse(invite.created_ts));
        Ok(invites)
    }

    /// Revokes an open invitation (by its link secret or its token): the link stops working
    /// and the room's `m.room.third_party_invite` is emptied, which clients show as revoked.
    pub async fn revoke_email_invite(&self, secret_or_token: &str) -> Result<EmailInvite> {
        let mut invite = self
            .find_email_invite(secret_or_token)?
            .ok_or_else(|| Error::not_found("No such invitation"))?;
        if invite.status != InviteStatus::Pending {
            return Err(Error::bad_request("The invitation was already used or revoked"));
        }
        invite.status = InviteStatus::Revoked { revoked_ts: now_ms() };
        let mut batch = self.store.batch();
        batch.put_json(Table::EmailInvites, invite.secret.as_bytes(), &invite);
        batch.commit()?;
        let event = NewEvent::state(StateEventType::RoomThirdPartyInvite, &invite.token, json!({}));
        if let Err(error) = self.rooms.append(&invite.room_id, &invite.sender, event).await {
            tracing::warn!(%error, room_id = %invite.room_id, "cannot empty the revoked third-party invite");
        }
        Ok(invite)
    }

    /// Accepts an invitation from its landing page: creates the account `localpart`, adds and
    /// publishes the invited address, and turns the invitations waiting for it into invites.
    pub async fn accept_email_invite(&self, secret: &str, localpart: &str, password: String) -> Result<(OwnedUserId, Vec<OwnedRoomId>)> {
        let invite = self
            .email_invite(secret)?
            .filter(EmailInvite::is_open)
            .ok_or_else(|| Error::forbidden("This invitation is no longer valid"))?;
        let user_id = self.accounts.new_user_id(&localpart.trim().to_lowercase())?;
        if self.identity.bound(&invite.address)?.is_some() || self.threepids.owner(&invite.address)?.is_some() {
            return Err(Error::threepid_in_use("An account already has this email address: log in with it"));
        }
        let account = NewAccount {
            user_id: user_id.clone(),
            password: Some(password),
            admin: false,
            registration_token: None,
            login: None,
            email: Some(invite.address.clone()),
        };
        self.create_account(account).await?;
        let rooms = self.deliver_email_invites(&user_id, &invite.address).await?;
        Ok((user_id, rooms))
    }

    /// Turns every open invitation to `address` into an invite of `user_id`, who published
    /// it; the rooms invited to.
    pub async fn deliver_email_invites(&self, user_id: &UserId, address: &str) -> Result<Vec<OwnedRoomId>> {
        let mut rooms = Vec::new();
        for mut invite in self.email_invites()? {
            if invite.address != address || !invite.is_open() {
                continue;
            }
            match self.third_party_member_invite(&invite, user_id).await {
                Ok(()) => rooms.push(invite.room_id.clone()),
                Err(error) => tracing::warn!(%error, room_id = %invite.room_id, "cannot turn an invitation by email into an invite"),
            }
            invite.status = InviteStatus::Used {
                user_id: user_id.to_owned(),
                used_ts: now_ms(),
            };
            let mut batch = self.store.batch();
            batch.put_json(Table::EmailInvites, invite.secret.as_bytes(), &invite);
            batch.commit()?;
        }
        Ok(rooms)
    }

    /// The invite of `user_id` by the inviter, with the `third_party_invite` this server's
    /// identity service signed, which the room's rules check against the third-party invite.
    async fn third_party_member_invite(&self, invite: &EmailInvite, user_id: &UserId) -> Result<()> {
        let signed = self.sign_third_party_invite(user_id, &invite.sender, &invite.token)?;
        let mut content = self.rooms.member_content(user_id, &MembershipState::Invite, None)?;
        content["third_party_invite"] = json!({ "display_name": redacted_address(&invite.address), "signed": signed });
        let event = NewEvent::state(StateEventType::RoomMember, user_id.as_str(), content);
        self.rooms.append(&invite.room_id, &invite.sender, event).await?;
        Ok(())
    }

    /// The `signed` object of a third-party invite (`mxid`, `sender`, `token`), signed with
    /// the identity service's (this server's) key.
    pub fn sign_third_party_invite(&self, user_id: &UserId, sender: &UserId, token: &str) -> Result<CanonicalJsonObject> {
        let mut signed: CanonicalJsonObject = serde_json::from_value(json!({ "mxid": user_id, "sender": sender, "token": token }))?;
        ruma::signatures::sign_json(&self.identity_server_name(), self.server_key.pair(), &mut signed)
            .map_err(|e| Error::Internal(format!("signing a third-party invite: {e}")))?;
        Ok(signed)
    }
}

/// A new ephemeral key pair's public key, unpadded base64 (the private key is dropped).
pub fn new_ephemeral_key() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(key.verifying_key().as_bytes())
}

/// How an invited address is shown to the room: enough to recognise, not to harvest.
pub fn redacted_address(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let shown: String = local.chars().take(3).collect();
            format!("{shown}…@{domain}")
        }
        None => "…".to_owned(),
    }
}
