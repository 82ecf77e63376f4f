//! Mail: an outbox in RocksDB and the task that drains it through lettre.
//!
//! A mail to send is a row of `mail_outbox`, written in the same batch as what caused it (a
//! confirmation session, an invitation), so a crash never loses one. The sender task hands the
//! rows to the SMTP server, several at once, and deletes each once the server accepted it;
//! while the server is unreachable it retries with exponential backoff, so an outage delays
//! mail and loses none. A mail the SMTP server refuses for good (a permanent 5xx answer, an address it
//! cannot take) is dropped with a warning instead of blocking the ones behind it.

pub mod templates;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::AsyncSmtpTransportBuilder;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::{Services, now_ms};
use crate::config::Email;
use crate::error::{Error, Result};
use crate::store::{Batch, Counter, Store, Table};

/// The first retry delay after the SMTP server failed; it doubles with each failure in a row.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How many mails are handed to the SMTP server at once (each on its own pooled connection).
const PARALLEL_DELIVERIES: usize = 8;
/// How long one delivery may take before it counts as failed.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// A mail to send: one recipient, a subject, and the same text as plain text and HTML.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedMail {
    pub queued_ts: u64,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The outbox and the SMTP transport; without `[email]`, every mail feature is off.
pub struct Mailer {
    smtp: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
    numbers: Counter,
    wake: Notify,
}

/// Checks `[email]` without connecting: the error names the key.
pub fn check_config(email: &Email) -> std::result::Result<(), String> {
    parse(email).map(|_| ())
}

fn parse(email: &Email) -> std::result::Result<(AsyncSmtpTransportBuilder, Mailbox), String> {
    let smtp = AsyncSmtpTransport::<Tokio1Executor>::from_url(&email.smtp_url)
        .map_err(|e| format!("configuration key `email.smtp_url`: {e}"))?
        .timeout(Some(SMTP_TIMEOUT));
    let from = email
        .from
        .parse::<Mailbox>()
        .map_err(|e| format!("configuration key `email.from`: {e}"))?;
    Ok((smtp, from))
}

impl Mailer {
    pub fn new(store: &Store, email: Option<&Email>) -> Result<Mailer> {
        let smtp = match email {
            // Building the transport starts its connection pool's task: inside the runtime.
            Some(email) => {
                let (smtp, from) = parse(email).map_err(Error::Internal)?;
                Some((smtp.build(), from))
            }
            None => {
                tracing::info!("no [email] configured: confirming addresses, password resets and invitations by email are off");
                None
            }
        };
        Ok(Mailer {
            numbers: Counter::open(store, "mail")?,
            smtp,
            wake: Notify::new(),
        })
    }

    /// Whether mail can be sent.
    pub fn enabled(&self) -> bool {
        self.smtp.is_some()
    }

    /// Refuses as the spec does for a server that cannot send mail.
    pub fn require(&self) -> Result<()> {
        if self.enabled() {
            Ok(())
        } else {
            Err(Error::threepid_medium_not_supported("This server does not send email"))
        }
    }

    /// Adds a mail to `batch`; call [`Mailer::wake`] once the batch is committed.
    pub fn stage(&self, batch: &mut Batch<'_>, to: &str, mail: templates::Mail) -> Result<()> {
        self.require()?;
        let queued = QueuedMail {
            queued_ts: now_ms(),
            to: to.to_owned(),
            subject: mail.subject,
            text: mail.text,
            html: mail.html,
        };
        batch.put_json(Table::MailOutbox, &self.numbers.next()?.to_be_bytes(), &queued);
        Ok(())
    }

    /// Tells the sender that mail is waiting.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Drains the outbox until the server stops.
pub async fn run(services: Arc<Services>) {
    let mailer = &services.mail;
    let Some((smtp, from)) = &mailer.smtp else { return };
    let mut backoff = FIRST_BACKOFF;
    loop {
        let woken = mailer.wake.notified();
        // One process at a time when processes share the database; it sends what all queued.
        let drainer = match services.store.try_lock(b"mail_outbox") {
            Ok(Some(drainer)) => drainer,
            Ok(None) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(error) => {
                tracing::error!(%error, "cannot take the mail outbox's lock");
                tokio::time::sleep(FIRST_BACKOFF).await;
                continue;
            }
        };
        let rows = match services.store.range(Table::MailOutbox, b"", b"", true, 100) {
            Ok(rows) => rows,
            Err(error) => {
                tracing::error!(%error, "cannot read the mail outbox");
                Vec::new()
            }
        };
        if rows.is_empty() {
            drop(drainer);
            let _ = tokio::time::timeout(Duration::from_secs(60), woken).await;
            continue;
        }
        // Several mails at once over the transport's pooled connections: one SMTP exchange
        // spends most of its time waiting on the network.
        let outcomes: Vec<(Vec<u8>, std::result::Result<(), Delivery>)> = futures_util::stream::iter(rows)
            .map(|(key, value)| async move {
                let outcome = match serde_json::from_slice::<QueuedMail>(&value) {
                    Ok(mail) => deliver(smtp, from, &mail).await,
                    Err(error) => Err(Delivery::Refused(format!("unreadable outbox row: {error}"))),
                };
                (key, outcome)
            })
            .buffer_unordered(PARALLEL_DELIVERIES)
            .collect()
            .await;
        let mut batch = services.store.batch();
        let mut failure = None;
        for (key, outcome) in outcomes {
            match outcome {
                Err(Delivery::Failed(error)) => {
                    failure = Some(error);
                    continue;
                }
                Err(Delivery::Refused(error)) => tracing::warn!(%error, "mail dropped: the SMTP server refused it for good"),
                Ok(()) => {}
            }
            batch.delete(Table::MailOutbox, &key);
        }
        if let Err(error) = batch.commit() {
            tracing::error!(%error, "cannot delete sent mails from the outbox");
        }
        drop(drainer);
        match failure {
            Some(error) => {
                tracing::warn!(%error, retry_in = ?backoff, "the SMTP server failed; mail stays queued");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            None => backoff = FIRST_BACKOFF,
        }
    }
}

/// Why a mail did not go out.
enum Delivery {
    /// Try again later: the server is unreachable or answered with a transient error.
    Failed(String),
    /// The mail can never go out as it is.
    Refused(String),
}

async fn deliver(smtp: &AsyncSmtpTransport<Tokio1Executor>, from: &Mailbox, mail: &QueuedMail) -> std::result::Result<(), Delivery> {
    let to: Mailbox = mail
        .to
        .parse()
        .map_err(|e| Delivery::Refused(format!("recipient {}: {e}", mail.to)))?;
    let message = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(&mail.subject)
        .multipart(MultiPart::alternative_plain_html(mail.text.clone(), mail.html.clone()))
        .map_err(|e| Delivery::Refused(e.to_string()))?;
    match smtp.send(message).await {
        Ok(_) => {
            tracing::info!(to = %mail.to, subject = %mail.subject, "mail sent");
            Ok(())
        }
        Err(error) if error.is_permanent() => Err(Delivery::Refused(error.to_string())),
        Err(error) => Err(Delivery::Failed(error.to_string())),
    }
}
