//! Hearth's own pages, where mails' links lead: confirming an email address
//! (`/_hearth/email/confirm`) and the landing page of an invitation by email
//! (`/_hearth/invite/{secret}`), where the invited person chooses a user name and password.
//! Server-rendered from templates compiled into the binary (`templates/pages/`), no scripts or
//! external assets; every outcome, errors included, is a page.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use http::StatusCode;

use crate::error::Error;
use crate::service::Services;
use crate::service::email_invites::{EmailInvite, InviteStatus};

#[derive(Template)]
#[template(path = "pages/message.html")]
struct MessagePage<'a> {
    server_name: &'a str,
    title: &'a str,
    message: &'a str,
}

#[derive(Template)]
#[template(path = "pages/invite.html")]
struct InvitePage<'a> {
    server_name: &'a str,
    inviter: &'a str,
    room_name: &'a str,
    address: &'a str,
    username: &'a str,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "pages/welcome.html")]
struct WelcomePage<'a> {
    server_name: &'a str,
    user_id: &'a str,
    room_name: &'a str,
    homeserver: &'a str,
    element_link: &'a str,
    room_link: &'a str,
}

/// A rendered page with its status.
fn page(status: StatusCode, template: impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => Error::Internal(format!("page template: {error}")).into_response(),
    }
}

fn message(services: &Services, status: StatusCode, title: &str, message: &str) -> Response {
    let server_name = services.config.server_name.as_str();
    page(
        status,
        MessagePage {
            server_name,
            title,
            message,
        },
    )
}

fn form_fields(bytes: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(bytes).into_owned().collect()
}

/// `GET /_hearth/email/confirm?sid=…&client_secret=…&token=…`: the link of a confirmation
/// mail; confirms on opening, then sends the user on to the client's `next_link`, if any.
pub async fn confirm_email(State(services): State<Arc<Services>>, RawQuery(query): RawQuery) -> Response {
    let fields = form_fields(query.unwrap_or_default().as_bytes());
    let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or_default();
    match services.threepids.confirm(field("sid"), field("client_secret"), field("token")) {
        Ok(session) => match session
            .next_link
            .filter(|link| link.starts_with("https://") || link.starts_with("http://"))
        {
            Some(next) => Redirect::to(&next).into_response(),
            None => message(
                &services,
                StatusCode::OK,
                "Address confirmed",
                &format!("{} is confirmed. Go back to your Matrix app to finish.", session.address),
            ),
        },
        Err(_) => message(
            &services,
            StatusCode::BAD_REQUEST,
            "This link does not work",
            "The link is unknown or has expired (links work for a day). Ask your Matrix app to send a new mail.",
        ),
    }
}

/// The invitation of a link, or the page that says why it cannot be used.
fn open_invite(services: &Services, secret: &str) -> Result<EmailInvite, Box<Response>> {
    let invite = match services.email_invite(secret) {
        Ok(Some(invite)) => invite,
        Ok(None) => {
            return Err(Box::new(message(
                services,
                StatusCode::NOT_FOUND,
                "Unknown invitation",
                "This invitation link is not known here. Check that you opened the whole link from the mail.",
            )));
        }
        Err(error) => return Err(Box::new(error.into_response())),
    };
    let refusal = match &invite.status {
        InviteStatus::Used { user_id, .. } => Some(format!(
            "This invitation was already accepted, by {user_id}. Log in to your Matrix app with that account."
        )),
        InviteStatus::Revoked { .. } => Some("This invitation was withdrawn. Ask the person who invited you for a new one.".to_owned()),
        InviteStatus::Pending if !invite.is_open() => {
            Some("This invitation has expired. Ask the person who invited you for a new one.".to_owned())
        }
        InviteStatus::Pending => None,
    };
    match refusal {
        Some(refusal) => Err(Box::new(message(
            services,
            StatusCode::GONE,
            "This invitation cannot be used",
            &refusal,
        ))),
        None => Ok(invite),
    }
}

fn invite_form(services: &Services, invite: &EmailInvite, status: StatusCode, username: &str, error: Option<&str>) -> Response {
    page(
        status,
        InvitePage {
            server_name: services.config.server_name.as_str(),
            inviter: &invite.inviter_name,
            room_name: &invite.room_name,
            address: &invite.address,
            username,
            error,
        },
    )
}

/// `GET /_hearth/invite/{secret}`: the landing page of an invitation by email. When the
/// address already belongs to a user (the account was made but a crash came before the
/// invites were sent, or the address was published since), the invitations go to them now.
pub async fn invite_page(State(services): State<Arc<Services>>, Path(secret): Path<String>) -> Response {
    let invite = match open_invite(&services, &secret) {
        Ok(invite) => invite,
        Err(page) => return *page,
    };
    match services.identity.bound(&invite.address) {
        Ok(None) => invite_form(&services, &invite, StatusCode::OK, "", None),
        Ok(Some(user_id)) => match services.deliver_email_invites(&user_id, &invite.address).await {
            Ok(_) => message(
                &services,
                StatusCode::GONE,
                "This invitation cannot be used",
                &format!("This invitation was already accepted, by {user_id}. Log in to your Matrix app with that account."),
            ),
            Err(error) => error.into_response(),
        },
        Err(error) => error.into_response(),
    }
}

/// `POST /_hearth/invite/{secret}`: creates the account chosen on the landing page and
/// turns the invitation into an invite.
pub async fn accept_invite(State(services): State<Arc<Services>>, Path(secret): Path<String>, body: Bytes) -> Response {
    let invite = match open_invite(&services, &secret) {
        Ok(invite) => invite,
        Err(page) => return *page,
    };
    let fields = form_fields(&body);
    let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
    let (username, password) = (field("username"), field("password"));
    let refuse = |error: &str| invite_form(&services, &invite, StatusCode::BAD_REQUEST, &username, Some(error));
    if password.chars().count() < 8 {
        return refuse("The password needs at least 8 characters.");
    }
    if password != field("confirm") {
        return refuse("The two passwords differ.");
    }
    let (user_id, rooms) = match services.accept_email_invite(&secret, &username, password.clone()).await {
        Ok(accepted) => accepted,
        Err(Error::Matrix { message, status, .. }) if status.is_client_error() => return refuse(&message),
        Err(error) => return error.into_response(),
    };
    let homeserver = services.config.public_base();
    let element_link = format!(
        "https://app.element.io/#/login?hs_url={}",
        url::form_urlencoded::byte_serialize(homeserver.as_bytes()).collect::<String>()
    );
    let room = rooms.first().unwrap_or(&invite.room_id);
    let room_link = format!("https://matrix.to/#/{room}?via={}", services.config.server_name);
    let room_name = if rooms.is_empty() { "" } else { invite.room_name.as_str() };
    page(
        StatusCode::OK,
        WelcomePage {
            server_name: services.config.server_name.as_str(),
            user_id: user_id.as_str(),
            room_name,
            homeserver,
            element_link: &element_link,
            room_link: &room_link,
        },
    )
}
