//! Admin operations, shared by the `hearth admin` CLI and the admin socket of a running
//! server: the same [`AdminCommand`] runs in the server (through the socket) or, when the
//! server is stopped, on the store opened directly.

pub mod appservices;
pub mod backup;
pub mod cli;
pub mod invites;
pub mod migrate;
pub mod reports;
pub mod rooms;
pub mod socket;

use std::fmt;
use std::time::Duration;

use clap::Subcommand;
use serde::{Deserialize, Serialize};

use ruma::OwnedMxcUri;

use crate::error::{Error, Result};
use crate::service::accounts::UserRecord;
use crate::service::media::MediaSummary;
use crate::service::registration::NewAccount;
use crate::service::registration_tokens::RegistrationToken;
use crate::service::reports::Report;
use crate::service::{Services, now_ms, random_string};
use rooms::{CommunityCommand, RoomCommand, RoomLine};

/// Everything `hearth admin` can do.
#[derive(Debug, Clone, Subcommand, Serialize, Deserialize)]
pub enum AdminCommand {
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage registration tokens.
    #[command(subcommand)]
    RegistrationToken(TokenCommand),
    /// Manage uploaded media.
    #[command(subcommand)]
    Media(MediaCommand),
    /// Manage rooms.
    #[command(subcommand)]
    Room(RoomCommand),
    /// Manage communities: a space with its channels.
    #[command(subcommand)]
    Community(CommunityCommand),
    /// See and nudge what is sent to other servers.
    #[command(subcommand)]
    Federation(FederationCommand),
    /// Register, list and unregister bridges and bots (application services).
    #[command(subcommand)]
    Appservice(appservices::AppserviceCommand),
    /// List the reports users sent to the server's admins, and mark them resolved.
    #[command(subcommand)]
    Report(reports::ReportCommand),
    /// Invite someone by email to a room (they choose an account on the mail's page), or list
    /// and revoke invitations.
    Invite(invites::InviteCommand),
    /// Back up the database and media into a new directory, while the server runs.
    Backup {
        dir: std::path::PathBuf,
        /// Treat DIR as a folder of backups: write this one into DIR/hearth-<UTC time> and
        /// remove all but the newest N there (for scheduled backups).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        keep: Option<u32>,
    },
    /// Restore a backup into this configuration's data directory (server stopped, no database
    /// there yet).
    Restore { dir: std::path::PathBuf },
    /// Copy this configuration's RocksDB store into an empty PostgreSQL database and check the
    /// copy (server stopped); then configure `storage.backend = "postgres"`.
    Migrate {
        /// The backend to move to.
        #[arg(long, value_parser = ["postgres"])]
        to: String,
        /// The database's URL, e.g. postgresql://hearth:secret@db.example.org/hearth
        url: String,
    },
}

/// `hearth admin user …`
#[derive(Debug, Clone, Subcommand, Serialize, Deserialize)]
pub enum UserCommand {
    /// Create an account (with a generated password unless --password is given).
    Create {
        /// The user name (localpart), e.g. `alice`.
        name: String,
        #[arg(long)]
        password: Option<String>,
        /// Make the account a server admin.
        #[arg(long)]
        admin: bool,
    },
    /// List every account.
    List,
    /// Set a new password (generated unless --password is given) and log out every device.
    ResetPassword {
        name: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// Deactivate an account for good.
    Deactivate { name: String },
    /// Make an account a server admin (or, with --revoke, no longer one).
    MakeAdmin {
        name: String,
        #[arg(long)]
        revoke: bool,
    },
    /// Suspend an account: it can still read, leave rooms and log out, but not send, join,
    /// invite, create rooms, change its profile or upload.
    Suspend { name: String },
    /// Lock an account: every request but logging out answers `M_USER_LOCKED`.
    Lock { name: String },
    /// Lift an account's suspension and lock.
    Unlock { name: String },
}

/// `hearth admin registration-token …`
#[derive(Debug, Clone, Subcommand, Serialize, Deserialize)]
pub enum TokenCommand {
    /// Create a registration token.
    Create {
        /// How many registrations it allows (unlimited if not given).
        #[arg(long)]
        uses: Option<u32>,
        /// How long it stays valid, e.g. `7d` or `12h` (forever if not given).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<Duration>,
        /// The token itself (random if not given).
        #[arg(long)]
        token: Option<String>,
    },
    /// List every registration token.
    List,
    /// Delete a registration token.
    Revoke { token: String },
}

/// `hearth admin media …`
#[derive(Debug, Clone, Subcommand, Serialize, Deserialize)]
pub enum MediaCommand {
    /// List the media a user uploaded.
    List {
        /// The user, e.g. `alice` or `@alice:example.org`.
        #[arg(long)]
        user: String,
    },
    /// Delete one media item, e.g. `mxc://example.org/AbCdEf`.
    Delete { mxc: String },
    /// Delete every media item created longer ago than DURATION (e.g. `90d`), whether uploaded
    /// here or cached from another server.
    Purge {
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Duration,
        /// Only media cached from other servers (they fetch it again when asked).
        #[arg(long)]
        remote: bool,
    },
}

/// `hearth admin federation …`
#[derive(Debug, Clone, Subcommand, Serialize, Deserialize)]
pub enum FederationCommand {
    /// Each destination: events queued for it, last success, last failure and its reason, and
    /// until when it is backed off.
    Status,
    /// Try a destination again now, ending its backoff.
    Retry { destination: String },
}

/// One account as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserSummary {
    pub user_id: String,
    pub admin: bool,
    pub deactivated: bool,
    pub created_ts: u64,
}

/// What a command returns: printed for people, or as JSON with `--json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminOutput {
    /// An account was created or got a new password; `password` is set when it was generated.
    Credentials {
        user_id: String,
        password: Option<String>,
        admin: bool,
    },
    Users(Vec<UserSummary>),
    Token(RegistrationToken),
    Tokens(Vec<RegistrationToken>),
    Media(Vec<MediaSummary>),
    Rooms(Vec<RoomLine>),
    Reports(Vec<Report>),
    /// Structured details, printed as JSON for people too.
    Details(serde_json::Value),
    Done(String),
}

impl fmt::Display for AdminOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminOutput::Credentials { user_id, password, admin } => {
                write!(f, "{user_id}{}", if *admin { " (server admin)" } else { "" })?;
                match password {
                    Some(password) => write!(f, "\npassword: {password}"),
                    None => Ok(()),
                }
            }
            AdminOutput::Users(users) => {
                writeln!(f, "{:<40} {:<6} {:<12}", "USER", "ADMIN", "STATUS")?;
                for user in users {
                    let status = if user.deactivated { "deactivated" } else { "active" };
                    writeln!(
                        f,
                        "{:<40} {:<6} {:<12}",
                        user.user_id,
                        if user.admin { "yes" } else { "no" },
                        status
                    )?;
                }
                write!(f, "{} account(s)", users.len())
            }
            AdminOutput::Token(token) => write!(f, "{}", token.token),
            AdminOutput::Tokens(tokens) => {
                writeln!(f, "{:<24} {:<10} {:<10} {:<24}", "TOKEN", "USES", "VALID", "EXPIRES")?;
                for token in tokens {
                    let uses = match token.uses_allowed {
                        Some(allowed) => format!("{}/{allowed}", token.completed),
                        None => format!("{}/∞", token.completed),
                    };
                    let expires = token.expiry_ts.map_or("never".to_owned(), |ts| {
                        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ts)).to_string()
                    });
                    writeln!(
                        f,
                        "{:<24} {:<10} {:<10} {:<24}",
                        token.token,
                        uses,
                        if token.is_usable() { "yes" } else { "no" },
                        expires
                    )?;
                }
                write!(f, "{} token(s)", tokens.len())
            }
            AdminOutput::Media(items) => {
                writeln!(f, "{:<60} {:>12} {:<24} {:<20}", "MXC", "BYTES", "CONTENT TYPE", "CREATED")?;
                for item in items {
                    let created = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(item.created_ts));
                    let size = item.size.map_or("pending".to_owned(), |size| size.to_string());
                    let content_type = item.content_type.as_deref().unwrap_or("-");
                    writeln!(f, "{:<60} {:>12} {:<24} {:<20}", item.mxc, size, content_type, created)?;
                }
                write!(f, "{} item(s)", items.len())
            }
            AdminOutput::Rooms(rooms) => {
                writeln!(f, "{:<50} {:<8} {:>7}  {:<24} NAME", "ROOM", "VERSION", "MEMBERS", "ALIAS")?;
                for room in rooms {
                    let alias = room.alias.as_deref().unwrap_or("-");
                    let name = room.name.as_deref().unwrap_or("-");
                    writeln!(
                        f,
                        "{:<50} {:<8} {:>7}  {:<24} {name}",
                        room.room_id, room.version, room.joined_members, alias
                    )?;
                }
                write!(f, "{} room(s)", rooms.len())
            }
            AdminOutput::Reports(reports) => reports::print(f, reports),
            AdminOutput::Details(details) => write!(f, "{}", serde_json::to_string_pretty(details).unwrap_or_default()),
            AdminOutput::Done(message) => write!(f, "{message}"),
        }
    }
}

impl AdminCommand {
    /// The command's name for logs (its arguments may hold passwords).
    pub fn name(&self) -> &'static str {
        match self {
            AdminCommand::User(UserCommand::Create { .. }) => "user create",
            AdminCommand::User(UserCommand::List) => "user list",
            AdminCommand::User(UserCommand::ResetPassword { .. }) => "user reset-password",
            AdminCommand::User(UserCommand::Deactivate { .. }) => "user deactivate",
            AdminCommand::User(UserCommand::MakeAdmin { .. }) => "user make-admin",
            AdminCommand::User(UserCommand::Suspend { .. }) => "user suspend",
            AdminCommand::User(UserCommand::Lock { .. }) => "user lock",
            AdminCommand::User(UserCommand::Unlock { .. }) => "user unlock",
            AdminCommand::Report(command) => command.name(),
            AdminCommand::Appservice(command) => command.name(),
            AdminCommand::RegistrationToken(TokenCommand::Create { .. }) => "registration-token create",
            AdminCommand::RegistrationToken(TokenCommand::List) => "registration-token list",
            AdminCommand::RegistrationToken(TokenCommand::Revoke { .. }) => "registration-token revoke",
            AdminCommand::Media(MediaCommand::List { .. }) => "media list",
            AdminCommand::Media(MediaCommand::Delete { .. }) => "media delete",
            AdminCommand::Media(MediaCommand::Purge { .. }) => "media purge",
            AdminCommand::Room(RoomCommand::List) => "room list",
            AdminCommand::Room(RoomCommand::Show { .. }) => "room show",
            AdminCommand::Room(RoomCommand::Delete { .. }) => "room delete",
            AdminCommand::Room(RoomCommand::Event { .. }) => "room event",
            AdminCommand::Room(RoomCommand::Reindex) => "room reindex",
            AdminCommand::Room(RoomCommand::Promote { .. }) => "room promote",
            AdminCommand::Community(CommunityCommand::Create { .. }) => "community create",
            AdminCommand::Federation(FederationCommand::Status) => "federation status",
            AdminCommand::Federation(FederationCommand::Retry { .. }) => "federation retry",
            AdminCommand::Invite(command) => command.name(),
            AdminCommand::Backup { .. } => "backup",
            AdminCommand::Restore { .. } => "restore",
            AdminCommand::Migrate { .. } => "migrate",
        }
    }
}

/// Runs one admin command against the services.
pub async fn execute(services: &Services, command: AdminCommand) -> Result<AdminOutput> {
    match command {
        AdminCommand::User(command) => execute_user(services, command).await,
        AdminCommand::RegistrationToken(command) => execute_token(services, command),
        AdminCommand::Media(command) => execute_media(services, command).await,
        AdminCommand::Room(command) => rooms::execute_room(services, command).await,
        AdminCommand::Community(command) => rooms::execute_community(services, command).await,
        AdminCommand::Federation(command) => execute_federation(services, command),
        AdminCommand::Invite(command) => invites::execute_invite(services, command).await,
        AdminCommand::Report(command) => reports::execute_report(services, command),
        AdminCommand::Appservice(command) => appservices::execute_appservice(services, command).await,
        AdminCommand::Backup { dir, keep: None } => Ok(AdminOutput::Done(backup::backup(services, &dir).await?)),
        AdminCommand::Backup { dir, keep: Some(keep) } => Ok(AdminOutput::Done(backup::backup_rotated(services, &dir, keep).await?)),
        AdminCommand::Restore { .. } => Err(Error::bad_request("Restore runs on a stopped server only")),
        AdminCommand::Migrate { .. } => Err(Error::bad_request("Migrate runs on a stopped server only")),
    }
}

fn execute_federation(services: &Services, command: FederationCommand) -> Result<AdminOutput> {
    use crate::service::federation::sender::queue_depths;
    match command {
        FederationCommand::Status => {
            let depths = queue_depths(&services.store)?;
            let statuses = services.federation.sender.statuses();
            let mut destinations: Vec<&ruma::OwnedServerName> = depths.keys().chain(statuses.keys()).collect();
            destinations.sort();
            destinations.dedup();
            let lines: Vec<serde_json::Value> = destinations
                .into_iter()
                .map(|destination| {
                    let status = statuses.get(destination).cloned().unwrap_or_default();
                    let backoff_until_ts = status
                        .retry_at
                        .and_then(|at| at.checked_duration_since(std::time::Instant::now()))
                        .map(|left| now_ms() + left.as_millis() as u64);
                    serde_json::json!({
                        "destination": destination,
                        "queued": depths.get(destination).copied().unwrap_or(0),
                        "last_success_ts": status.last_success_ts,
                        "last_failure_ts": status.last_failure_ts,
                        "last_failure": status.last_failure,
                        "failures_in_a_row": status.failures_in_a_row,
                        "backoff_until_ts": backoff_until_ts,
                    })
                })
                .collect();
            Ok(AdminOutput::Details(serde_json::Value::Array(lines)))
        }
        FederationCommand::Retry { destination } => {
            let destination = ruma::ServerName::parse(&destination).map_err(|e| Error::invalid_param(format!("{destination}: {e}")))?;
            services.federation.sender.retry_now(&destination);
            services.rooms.outbox().notify_one();
            Ok(AdminOutput::Done(format!("retrying {destination} now")))
        }
    }
}

async fn execute_media(services: &Services, command: MediaCommand) -> Result<AdminOutput> {
    match command {
        MediaCommand::List { user } => {
            let user_id = services.accounts.parse_login_name(&user)?;
            Ok(AdminOutput::Media(services.media.list_by_user(&user_id)?))
        }
        MediaCommand::Delete { mxc } => {
            let uri = OwnedMxcUri::from(mxc.as_str());
            let (server_name, media_id) = uri
                .parts()
                .map_err(|e| Error::invalid_param(format!("{mxc} is not an mxc:// URI: {e}")))?;
            match services.media.delete(server_name, media_id).await? {
                true => Ok(AdminOutput::Done(format!("deleted {mxc}"))),
                false => Err(Error::not_found(format!("no media {mxc}"))),
            }
        }
        MediaCommand::Purge { older_than, remote } => {
            let cutoff = now_ms().saturating_sub(older_than.as_millis() as u64);
            let purged = services.media.purge_created_before(cutoff, remote).await?;
            Ok(AdminOutput::Done(format!("purged {purged} media item(s)")))
        }
    }
}

async fn execute_user(services: &Services, command: UserCommand) -> Result<AdminOutput> {
    match command {
        UserCommand::Create { name, password, admin } => {
            let user_id = services.accounts.new_user_id(&name)?;
            let generated = password.is_none().then(|| random_string(20));
            let password = password.or_else(|| generated.clone());
            let account = NewAccount {
                user_id: user_id.clone(),
                password,
                admin,
                registration_token: None,
                login: None,
                email: None,
            };
            services.create_account(account).await?;
            let admin = services.accounts.get_active(&user_id)?.admin;
            Ok(AdminOutput::Credentials {
                user_id: user_id.to_string(),
                password: generated,
                admin,
            })
        }
        UserCommand::List => {
            let users = services.accounts.list()?;
            Ok(AdminOutput::Users(
                users
                    .into_iter()
                    .map(|(user_id, record)| UserSummary {
                        user_id: user_id.to_string(),
                        admin: record.admin,
                        deactivated: record.deactivated,
                        created_ts: record.created_ts,
                    })
                    .collect(),
            ))
        }
        UserCommand::ResetPassword { name, password } => {
            let user_id = services.accounts.parse_login_name(&name)?;
            let generated = password.is_none().then(|| random_string(20));
            let password = password.or_else(|| generated.clone()).unwrap_or_default();
            services.change_password(&user_id, password, true, None).await?;
            let admin = services.accounts.get_active(&user_id)?.admin;
            Ok(AdminOutput::Credentials {
                user_id: user_id.to_string(),
                password: generated,
                admin,
            })
        }
        UserCommand::Deactivate { name } => {
            let user_id = services.accounts.parse_login_name(&name)?;
            services.deactivate(&user_id)?;
            Ok(AdminOutput::Done(format!("{user_id} is deactivated")))
        }
        UserCommand::MakeAdmin { name, revoke } => {
            let user_id = services.accounts.parse_login_name(&name)?;
            services.set_admin(&user_id, !revoke)?;
            let state = if revoke { "no longer" } else { "now" };
            Ok(AdminOutput::Done(format!("{user_id} is {state} a server admin")))
        }
        UserCommand::Suspend { name } => restrict(services, &name, "suspended", |record| record.suspended = true),
        UserCommand::Lock { name } => restrict(services, &name, "locked", |record| record.locked = true),
        UserCommand::Unlock { name } => restrict(services, &name, "neither suspended nor locked", |record| {
            record.suspended = false;
            record.locked = false;
        }),
    }
}

/// Changes what an account is restricted from.
fn restrict(services: &Services, name: &str, now: &str, change: impl FnOnce(&mut UserRecord)) -> Result<AdminOutput> {
    let user_id = services.accounts.parse_login_name(name)?;
    services.accounts.restrict(&user_id, change)?;
    Ok(AdminOutput::Done(format!("{user_id} is {now}")))
}

fn execute_token(services: &Services, command: TokenCommand) -> Result<AdminOutput> {
    let tokens = &services.registration_tokens;
    match command {
        TokenCommand::Create { uses, expires, token } => {
            let expiry_ts = expires.map(|duration| now_ms() + duration.as_millis() as u64);
            Ok(AdminOutput::Token(tokens.create(token, uses, expiry_ts, false)?))
        }
        TokenCommand::List => Ok(AdminOutput::Tokens(tokens.list()?)),
        TokenCommand::Revoke { token } => match tokens.revoke(&token)? {
            true => Ok(AdminOutput::Done(format!("revoked {token}"))),
            false => Err(Error::not_found(format!("no registration token {token}"))),
        },
    }
}
