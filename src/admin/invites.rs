//! `hearth admin invite …`: invitations by email from the command line — the same mail and
//! landing page as an invitation from Element's invite dialog — and their list and revocation.

use clap::{Args, Subcommand};
use ruma::events::StateEventType;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AdminOutput;
use super::rooms::room_id;
use crate::error::{Error, Result};
use crate::service::Services;
use crate::service::email_invites::{EmailInvite, EmailInviteOutcome};

/// `hearth admin invite EMAIL --room ROOM [--from USER]`, or `list` / `revoke TOKEN`.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
#[command(args_conflicts_with_subcommands = true)]
pub struct InviteCommand {
    /// The email address to invite, e.g. friend@example.org.
    #[arg(requires = "room")]
    pub email: Option<String>,
    /// The room or community (ID or alias) to invite to.
    #[arg(long)]
    pub room: Option<String>,
    /// Who invites, e.g. `alice` (default: the room's creator).
    #[arg(long)]
    pub from: Option<String>,
    #[command(subcommand)]
    pub action: Option<InviteAction>,
}

/// What else `hearth admin invite` does.
#[derive(Debug, Clone, Subcommand, Serialize, Deserialize)]
pub enum InviteAction {
    /// List the invitations by email and where each stands.
    List,
    /// Withdraw an invitation (by the token `list` shows): its link stops working.
    Revoke { token: String },
}

impl InviteCommand {
    /// The command's name for logs.
    pub fn name(&self) -> &'static str {
        match self.action {
            Some(InviteAction::List) => "invite list",
            Some(InviteAction::Revoke { .. }) => "invite revoke",
            None => "invite",
        }
    }
}

fn describe(services: &Services, invite: &EmailInvite) -> serde_json::Value {
    let mut line = json!(invite);
    line["link"] = json!(format!("{}/_hearth/invite/{}", services.config.public_base(), invite.secret));
    line
}

/// Runs an invitation command.
pub async fn execute_invite(services: &Services, command: InviteCommand) -> Result<AdminOutput> {
    match (command.action, command.email, command.room) {
        (Some(InviteAction::List), _, _) => {
            let invites: Vec<_> = services.email_invites()?.iter().map(|invite| describe(services, invite)).collect();
            Ok(AdminOutput::Details(json!(invites)))
        }
        (Some(InviteAction::Revoke { token }), _, _) => {
            let invite = services.revoke_email_invite(&token).await?;
            Ok(AdminOutput::Done(format!(
                "revoked the invitation of {} to {}",
                invite.address, invite.room_id
            )))
        }
        (None, Some(email), Some(room)) => {
            let room_id = room_id(services, &room)?;
            let sender = match command.from {
                Some(name) => services.accounts.parse_login_name(&name)?,
                None => {
                    let state = services.rooms.current_state(&room_id)?;
                    let create = services
                        .rooms
                        .state_pdu(&state, &StateEventType::RoomCreate, "")?
                        .ok_or_else(|| Error::not_found("The room has no creation event"))?;
                    create.sender
                }
            };
            if sender.server_name() != services.config.server_name {
                return Err(Error::bad_request(format!("{sender} is not a user of this server: pass --from")));
            }
            match services.invite_by_email(&room_id, &sender, &email).await? {
                EmailInviteOutcome::Invited(user_id) => Ok(AdminOutput::Done(format!(
                    "{email} belongs to {user_id}, who is invited to {room_id}"
                ))),
                EmailInviteOutcome::Mailed(invite) => Ok(AdminOutput::Details(describe(services, &invite))),
            }
        }
        _ => Err(Error::bad_request("Give an email address and --room, or `list`, or `revoke TOKEN`")),
    }
}
