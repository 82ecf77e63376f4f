//! The mails Hearth sends, each a plain-text and an HTML template compiled into the binary
//! (`templates/mail/`); HTML templates escape what they insert.

use askama::Template;

use crate::error::{Error, Result};

/// A rendered mail.
pub struct Mail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Renders a pair of templates sharing their fields.
fn render(subject: String, text: impl Template, html: impl Template) -> Result<Mail> {
    let failed = |e: askama::Error| Error::Internal(format!("mail template: {e}"));
    Ok(Mail {
        subject,
        text: text.render().map_err(failed)?,
        html: html.render().map_err(failed)?,
    })
}

#[derive(Template)]
#[template(path = "mail/confirm_address.txt")]
struct ConfirmText<'a> {
    server_name: &'a str,
    purpose: &'a str,
    link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/confirm_address.html")]
struct ConfirmHtml<'a> {
    server_name: &'a str,
    purpose: &'a str,
    link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/invitation.txt")]
struct InvitationText<'a> {
    server_name: &'a str,
    inviter: &'a str,
    room_name: &'a str,
    link: &'a str,
    expires: &'a str,
}

#[derive(Template)]
#[template(path = "mail/invitation.html")]
struct InvitationHtml<'a> {
    server_name: &'a str,
    inviter: &'a str,
    room_name: &'a str,
    link: &'a str,
    expires: &'a str,
}

#[derive(Template)]
#[template(path = "mail/notifications.txt")]
struct NotificationsText<'a> {
    server_name: &'a str,
    display_name: &'a str,
    rooms: &'a [DigestRoom],
}

#[derive(Template)]
#[template(path = "mail/notifications.html")]
struct NotificationsHtml<'a> {
    server_name: &'a str,
    display_name: &'a str,
    rooms: &'a [DigestRoom],
}

/// Why an address is being confirmed.
#[derive(Debug, Clone, Copy)]
pub enum ConfirmPurpose {
    AddToAccount,
    ResetPassword,
    Discovery,
    Register,
}

/// The mail with the link that confirms an address.
pub fn confirm_address(server_name: &str, purpose: ConfirmPurpose, link: &str) -> Result<Mail> {
    let (subject, purpose) = match purpose {
        ConfirmPurpose::AddToAccount => ("Confirm your email address", "add this email address to an account"),
        ConfirmPurpose::ResetPassword => ("Reset your password", "reset the password of the account"),
        ConfirmPurpose::Discovery => ("Confirm your email address", "let people find an account"),
        ConfirmPurpose::Register => ("Confirm your email address", "register an account with this email address"),
    };
    render(
        format!("{subject} on {server_name}"),
        ConfirmText {
            server_name,
            purpose,
            link,
        },
        ConfirmHtml {
            server_name,
            purpose,
            link,
        },
    )
}

/// The invitation to a room for someone without an account yet.
pub fn invitation(server_name: &str, inviter: &str, room_name: &str, link: &str, expires_ts: u64) -> Result<Mail> {
    let expires = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(expires_ts)).to_string();
    render(
        format!("{inviter} invites you to {room_name}"),
        InvitationText {
            server_name,
            inviter,
            room_name,
            link,
            expires: &expires,
        },
        InvitationHtml {
            server_name,
            inviter,
            room_name,
            link,
            expires: &expires,
        },
    )
}

/// A room in a notification digest.
#[derive(Debug, Clone)]
pub struct DigestRoom {
    pub name: String,
    pub link: String,
    pub count: usize,
    pub messages: Vec<DigestMessage>,
}

/// A message in a notification digest.
#[derive(Debug, Clone)]
pub struct DigestMessage {
    pub sender: String,
    pub body: String,
}

/// The digest of messages that stayed unread.
pub fn notifications(server_name: &str, display_name: &str, rooms: &[DigestRoom]) -> Result<Mail> {
    let total: usize = rooms.iter().map(|room| room.count).sum();
    render(
        format!("{total} unread message(s) on {server_name}"),
        NotificationsText {
            server_name,
            display_name,
            rooms,
        },
        NotificationsHtml {
            server_name,
            display_name,
            rooms,
        },
    )
}
