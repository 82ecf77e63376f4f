//! Mail, against a real SMTP server the test starts (Python's aiosmtpd with its Maildir
//! handler, installed by `scripts/smtp-sink`): confirming addresses, logging in and resetting
//! passwords with them, the outbox through an SMTP outage and a crash, the built-in identity
//! service, and invitations by email from the invite endpoint (as Element sends it) and the
//! CLI, each followed from the mail's own link.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{TestServer, assert_error, free_port};
use crate::federation::{eventually, sync_for};

/// An SMTP server keeping what it receives in a Maildir.
pub struct SmtpSink {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// A mail as received.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl ReceivedMail {
    /// The first link of the plain-text part that starts with `prefix`.
    pub fn link(&self, prefix: &str) -> String {
        self.text
            .split_whitespace()
            .find(|word| word.starts_with(prefix))
            .unwrap_or_else(|| panic!("no link to {prefix} in {:?}", self.text))
            .to_owned()
    }
}

fn aiosmtpd() -> PathBuf {
    let python = PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/hearth/aiosmtpd-1.4.6/bin/python");
    assert!(
        python.exists(),
        "aiosmtpd is not installed: run scripts/smtp-sink (scripts/test does)"
    );
    python
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let mut sink = SmtpSink {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
        };
        sink.spawn().await;
        sink
    }

    /// The `[email]` settings of a server sending here.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("HEARTH_EMAIL__SMTP_URL".into(), format!("smtp://127.0.0.1:{}", self.port)),
            ("HEARTH_EMAIL__FROM".into(), "Hearth <hearth@localhost>".into()),
        ]
    }

    async fn spawn(&mut self) {
        let child = Command::new(aiosmtpd())
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{}", self.port),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(self.dir.path().join("maildir"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server: mail cannot be delivered until [`SmtpSink::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// Every mail received so far, oldest first.
    pub fn received(&self) -> Vec<ReceivedMail> {
        let new = self.dir.path().join("maildir/new");
        let mut files: Vec<_> = std::fs::read_dir(new)
            .map(|dir| dir.filter_map(|entry| entry.ok()).collect())
            .unwrap_or_default();
        files.sort_by_key(|entry| entry.metadata().and_then(|m| m.modified()).ok());
        files
            .iter()
            .map(|entry| {
                let bytes = std::fs::read(entry.path()).unwrap();
                let message = mail_parser::MessageParser::default().parse(&bytes).expect("a mail");
                ReceivedMail {
                    to: message
                        .to()
                        .and_then(|to| to.first())
                        .and_then(|to| to.address())
                        .unwrap_or_default()
                        .to_owned(),
                    subject: message.subject().unwrap_or_default().to_owned(),
                    text: message.body_text(0).unwrap_or_default().into_owned(),
                    html: message.body_html(0).unwrap_or_default().into_owned(),
                }
            })
            .collect()
    }

    /// Waits for the `n`th mail (counting from 1) to `to`.
    pub async fn nth_mail_to(&self, to: &str, n: usize) -> ReceivedMail {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mails: Vec<ReceivedMail> = self.received().into_iter().filter(|mail| mail.to == to).collect();
            if mails.len() >= n {
                return mails[n - 1].clone();
            }
            assert!(Instant::now() < deadline, "mail {n} to {to} never arrived; got {mails:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A server that sends mail to `sink`, with `public_baseurl` at its own address.
pub async fn mailing_server(sink: &SmtpSink, extra: &[(&str, &str)]) -> TestServer {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let sink_env = sink.env();
    let mut env: Vec<(&str, &str)> = sink_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("HEARTH_PUBLIC_BASEURL", &base));
    env.extend_from_slice(extra);
    TestServer::start_on(port, &env).await
}

/// Opens a link of a mail as a browser would; the status and the page.
async fn open(server: &TestServer, link: &str) -> (StatusCode, String) {
    let response = server.http.get(link).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

/// Asks for a confirmation mail at `path`, opens its link, and returns the session ID.
pub async fn confirm_address(server: &TestServer, sink: &SmtpSink, path: &str, token: Option<&str>, email: &str, nth: usize) -> String {
    let (status, body) = server
        .post(
            path,
            token,
            json!({ "client_secret": "s3cret", "email": email, "send_attempt": nth }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    let mail = sink.nth_mail_to(&email.to_lowercase(), nth).await;
    assert!(mail.html.contains("localhost"), "the HTML part names the server: {}", mail.html);
    let (status, page) = open(server, &mail.link(&format!("{}/_hearth/email/confirm", server.base_url))).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("confirmed"), "{page}");
    body["sid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn email_addresses_login_and_password_reset() {
    let sink = SmtpSink::start().await;
    let server = mailing_server(&sink, &[]).await;
    let (token, _) = server.register("alice", "old password").await;
    let (_, capabilities) = server.get("/_matrix/client/v3/capabilities", Some(&token)).await;
    // Enabled is the default, which ruma leaves out.
    assert_ne!(capabilities["capabilities"]["m.3pid_changes"]["enabled"], false, "{capabilities}");

    // Add an address: a mail with a link, then UIA with the password.
    let sid = confirm_address(
        &server,
        &sink,
        "/_matrix/client/v3/account/3pid/email/requestToken",
        Some(&token),
        "Alice@Example.org",
        1,
    )
    .await;
    let add = json!({ "client_secret": "s3cret", "sid": sid });
    let (status, challenge) = server.post("/_matrix/client/v3/account/3pid/add", Some(&token), add.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
    let mut with_auth = add.clone();
    with_auth["auth"] = json!({ "type": "m.login.password", "session": challenge["session"],
        "identifier": { "type": "m.id.user", "user": "alice" }, "password": "old password" });
    let (status, body) = server.post("/_matrix/client/v3/account/3pid/add", Some(&token), with_auth).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, listed) = server.get("/_matrix/client/v3/account/3pid", Some(&token)).await;
    assert_eq!(listed["threepids"][0]["address"], "alice@example.org");
    assert_eq!(listed["threepids"][0]["medium"], "email");
    assert!(listed["threepids"][0]["validated_at"].is_u64());
    // The address is taken now.
    assert_error(
        &server
            .post(
                "/_matrix/client/v3/account/3pid/email/requestToken",
                Some(&token),
                json!({ "client_secret": "other", "email": "alice@example.org", "send_attempt": 1 }),
            )
            .await,
        400,
        "M_THREEPID_IN_USE",
    );

    // Log in with it.
    let login_by_email = |password: &str| json!({ "type": "m.login.password", "identifier": { "type": "m.id.thirdparty", "medium": "email", "address": "ALICE@example.org" }, "password": password });
    let (status, body) = server.post("/_matrix/client/v3/login", None, login_by_email("old password")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@alice:localhost");

    // Reset the password: unknown and malformed addresses are refused, a known one gets a mail.
    let reset = "/_matrix/client/v3/account/password/email/requestToken";
    assert_error(
        &server
            .post(
                reset,
                None,
                json!({ "client_secret": "r", "email": "nobody@example.org", "send_attempt": 1 }),
            )
            .await,
        400,
        "M_THREEPID_NOT_FOUND",
    );
    let (status, _) = server
        .post(
            reset,
            None,
            json!({ "client_secret": "r", "email": "not an address", "send_attempt": 1 }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let sid = confirm_address(&server, &sink, reset, None, "alice@example.org", 2).await;
    let new_password = json!({ "new_password": "new password", "auth": { "type": "m.login.email.identity",
        "threepid_creds": { "sid": sid, "client_secret": "s3cret" } } });
    let (status, body) = server.post("/_matrix/client/v3/account/password", None, new_password.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(server.login("alice", "old password").await.0, StatusCode::FORBIDDEN);
    assert_eq!(server.login("alice", "new password").await.0, StatusCode::OK);
    // Every device was logged out; the session cannot be used twice.
    assert_eq!(
        server.get("/_matrix/client/v3/account/whoami", Some(&token)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        server.post("/_matrix/client/v3/account/password", None, new_password).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Remove the address: no more login with it.
    let (_, login) = server.login("alice", "new password").await;
    let token = login["access_token"].as_str().unwrap();
    let (status, body) = server
        .post(
            "/_matrix/client/v3/account/3pid/delete",
            Some(token),
            json!({ "medium": "email", "address": "alice@example.org" }),
        )
        .await;
    assert_eq!(
        (status, body["id_server_unbind_result"].as_str()),
        (StatusCode::OK, Some("success")),
        "{body}"
    );
    assert_eq!(
        server
            .post("/_matrix/client/v3/login", None, login_by_email("new password"))
            .await
            .0,
        StatusCode::FORBIDDEN
    );

    // A server without [email] says so.
    let plain = TestServer::start(&[]).await;
    let (token, _) = plain.register("bob", "password").await;
    let (_, capabilities) = plain.get("/_matrix/client/v3/capabilities", Some(&token)).await;
    assert_eq!(capabilities["capabilities"]["m.3pid_changes"]["enabled"], false);
    assert_error(
        &plain
            .post(
                "/_matrix/client/v3/account/3pid/email/requestToken",
                Some(&token),
                json!({ "client_secret": "s", "email": "bob@example.org", "send_attempt": 1 }),
            )
            .await,
        400,
        "M_THREEPID_MEDIUM_NOT_SUPPORTED",
    );
}

#[tokio::test]
async fn mail_waits_out_an_smtp_outage_and_a_crash() {
    let mut sink = SmtpSink::start().await;
    sink.stop();
    // An unreachable SMTP server does not stop start-up.
    let mut server = mailing_server(&sink, &[]).await;
    let (token, _) = server.register("alice", "password").await;
    for n in 1..=3 {
        let (status, body) = server
            .post(
                "/_matrix/client/v3/account/3pid/email/requestToken",
                Some(&token),
                json!({ "client_secret": format!("secret{n}"), "email": format!("a{n}@example.org"), "send_attempt": 1 }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // The mails wait in the outbox, through a crash.
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.crash_and_restart().await;
    sink.restart().await;
    for n in 1..=3 {
        let mail = sink.nth_mail_to(&format!("a{n}@example.org"), 1).await;
        assert!(mail.subject.contains("Confirm"), "{mail:?}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sink.received().len(), 3, "every mail arrives once");
    // A wrong [email] stops start-up with one line naming the key.
    let output = server
        .command()
        .env("HEARTH_EMAIL__SMTP_URL", "gopher://nowhere")
        .arg("serve")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("email.smtp_url"), "{stderr}");
}

/// Registers with the identity service as Element does: an OpenID token, then `account/register`.
async fn identity_token(server: &TestServer, token: &str, user: &str) -> String {
    let (_, openid) = server
        .post(
            &format!("/_matrix/client/v3/user/{user}/openid/request_token"),
            Some(token),
            json!({}),
        )
        .await;
    let (status, registered) = server.post("/_matrix/identity/v2/account/register", None, openid).await;
    assert_eq!(status, StatusCode::OK, "{registered}");
    let id_token = registered["token"].as_str().unwrap().to_owned();
    let (_, account) = server.get("/_matrix/identity/v2/account", Some(&id_token)).await;
    assert_eq!(account["user_id"], user);
    id_token
}

#[tokio::test]
async fn invitation_by_email_from_the_invite_dialog() {
    let sink = SmtpSink::start().await;
    let server = mailing_server(&sink, &[("HEARTH_REGISTRATION", "closed")]).await;
    let (_, admin) = server.admin(&["user", "create", "alice", "--password", "password"]);
    assert_eq!(admin["credentials"]["user_id"], "@alice:localhost", "{admin}");
    let (_, login) = server.login("alice", "password").await;
    let token = login["access_token"].as_str().unwrap();
    let (_, room) = server
        .post("/_matrix/client/v3/createRoom", Some(token), json!({ "name": "Book club" }))
        .await;
    let room_id = room["room_id"].as_str().unwrap();

    // Discovery: the identity service is this server.
    let (_, well_known) = server.get("/.well-known/matrix/client", None).await;
    assert_eq!(well_known["m.identity_server"]["base_url"], server.base_url);
    assert_eq!(server.get("/_matrix/identity/v2", None).await.0, StatusCode::OK);
    let id_token = identity_token(&server, token, "@alice:localhost").await;
    let (_, terms) = server.get("/_matrix/identity/v2/terms", None).await;
    assert_eq!(terms["policies"], json!({}));
    let (_, hash) = server.get("/_matrix/identity/v2/hash_details", Some(&id_token)).await;
    let pepper = hash["lookup_pepper"].as_str().unwrap().to_owned();
    let lookup = json!({ "algorithm": "none", "pepper": pepper, "addresses": ["friend@example.org email"] });
    let (_, found) = server.post("/_matrix/identity/v2/lookup", Some(&id_token), lookup.clone()).await;
    assert_eq!(found["mappings"], json!({}));

    // Element's invite: the address with the identity server and its token.
    let id_server = server.base_url.trim_start_matches("http://").to_owned();
    let invite = json!({ "id_server": id_server, "id_access_token": id_token, "medium": "email", "address": "friend@example.org" });
    let (status, body) = server
        .post(&format!("/_matrix/client/v3/rooms/{room_id}/invite"), Some(token), invite)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, state) = server.get(&format!("/_matrix/client/v3/rooms/{room_id}/state"), Some(token)).await;
    let third_party = state
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["type"] == "m.room.third_party_invite")
        .expect("a third-party invite in the room")
        .clone();
    assert_eq!(third_party["content"]["display_name"], "fri…@example.org");
    let key = third_party["content"]["public_key"].as_str().unwrap();
    let (_, valid) = server
        .get(&format!("/_matrix/identity/v2/pubkey/isvalid?public_key={}", urlencode(key)), None)
        .await;
    assert_eq!(valid["valid"], true);

    // The mail names the room and the inviter and links to the landing page.
    let mail = sink.nth_mail_to("friend@example.org", 1).await;
    assert!(mail.subject.contains("alice") && mail.subject.contains("Book club"), "{mail:?}");
    assert!(mail.html.contains("Book club"), "{}", mail.html);
    let link = mail.link(&format!("{}/_hearth/invite/", server.base_url));
    let (status, page) = open(&server, &link).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("Book club") && page.contains("alice") && page.contains("<form"),
        "{page}"
    );

    // Choosing an account on it needs no registration token, on a closed server.
    let form = |username: &str, password: &str, confirm: &str| {
        server
            .http
            .post(&link)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("username={username}&password={password}&confirm={confirm}"))
            .send()
    };
    let response = form("friend", "long enough", "different").await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("differ"));
    let response = form("alice", "long enough", "long enough").await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "a taken name is refused on the page");
    let response = form("friend", "long enough", "long enough").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let welcome = response.text().await.unwrap();
    assert!(
        welcome.contains("@friend:localhost") && welcome.contains("app.element.io"),
        "{welcome}"
    );

    // The friend logs in, has the address, and is invited by a signed third-party invite.
    let (status, login) = server.login("friend", "long enough").await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let friend = login["access_token"].as_str().unwrap().to_owned();
    let (_, threepids) = server.get("/_matrix/client/v3/account/3pid", Some(&friend)).await;
    assert_eq!(threepids["threepids"][0]["address"], "friend@example.org");
    let sync = sync_for(&server, &friend, "", "the invite", |sync| {
        sync["rooms"]["invite"][room_id].is_object()
    })
    .await;
    let invite_state = &sync["rooms"]["invite"][room_id]["invite_state"]["events"];
    assert!(invite_state.to_string().contains("Book club"), "{invite_state}");
    let (_, member) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.member/@friend:localhost"),
            Some(token),
        )
        .await;
    assert_eq!(member["membership"], "invite");
    assert_eq!(member["third_party_invite"]["signed"]["mxid"], "@friend:localhost");
    let (status, _) = server
        .post(&format!("/_matrix/client/v3/join/{room_id}"), Some(&friend), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);

    // The link is used up; the address is found by its hash now, and a second invitation to it
    // is a normal invite.
    let (status, page) = open(&server, &link).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(page.contains("already accepted"), "{page}");
    let hashed = hash_of("friend@example.org email", &pepper);
    let lookup = json!({ "algorithm": "sha256", "pepper": pepper, "addresses": [hashed] });
    let (_, found) = server.post("/_matrix/identity/v2/lookup", Some(&id_token), lookup).await;
    assert_eq!(found["mappings"][&hashed], "@friend:localhost");
    let (_, other) = server
        .post("/_matrix/client/v3/createRoom", Some(token), json!({ "name": "Second" }))
        .await;
    let other = other["room_id"].as_str().unwrap();
    let invite = json!({ "id_server": id_server, "id_access_token": id_token, "medium": "email", "address": "friend@example.org" });
    let (status, _) = server
        .post(&format!("/_matrix/client/v3/rooms/{other}/invite"), Some(token), invite)
        .await;
    assert_eq!(status, StatusCode::OK);
    sync_for(&server, &friend, "", "the direct invite", |sync| {
        sync["rooms"]["invite"][other].is_object()
    })
    .await;
    assert_eq!(sink.received().len(), 1, "no mail for an address someone published");
}

#[tokio::test]
async fn invitation_by_email_from_the_cli() {
    let sink = SmtpSink::start().await;
    let server = mailing_server(&sink, &[("HEARTH_REGISTRATION", "token")]).await;
    server.admin(&["user", "create", "alice", "--password", "password"]);
    let (_, login) = server.login("alice", "password").await;
    let token = login["access_token"].as_str().unwrap().to_owned();
    let (_, room) = server
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&token),
            json!({ "name": "Garden", "room_alias_name": "garden" }),
        )
        .await;
    let room_id = room["room_id"].as_str().unwrap().to_owned();

    // While the server runs: invite, list, revoke.
    let (output, invited) = server.admin(&["invite", "pal@example.org", "--room", "#garden:localhost"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mail = sink.nth_mail_to("pal@example.org", 1).await;
    assert!(mail.text.contains("Garden") && mail.text.contains("alice"), "{}", mail.text);
    let link = mail.link(&format!("{}/_hearth/invite/", server.base_url));
    assert_eq!(invited["details"]["link"], link);
    let (_, listed) = server.admin(&["invite", "list"]);
    assert_eq!(listed["details"][0]["address"], "pal@example.org");
    assert_eq!(listed["details"][0]["status"], "pending");
    let invite_token = listed["details"][0]["token"].as_str().unwrap();
    let (output, _) = server.admin(&["invite", "revoke", invite_token]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let (status, page) = open(&server, &link).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(page.contains("withdrawn"), "{page}");
    let (_, state) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.third_party_invite/{invite_token}"),
            Some(&token),
        )
        .await;
    assert_eq!(state, json!({}), "the room's third-party invite is emptied");

    // Unknown and garbled links get a page, not an error document.
    let (status, page) = open(&server, &format!("{}/_hearth/invite/nonsense", server.base_url)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("<html"), "{page}");
    let (status, _) = open(&server, &format!("{}/_hearth/email/confirm?sid=x", server.base_url)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A second invitation, accepted on its page.
    server.admin(&["invite", "pal@example.org", "--room", &room_id, "--from", "alice"]);
    let mail = sink.nth_mail_to("pal@example.org", 2).await;
    let link = mail.link(&format!("{}/_hearth/invite/", server.base_url));
    let response = server
        .http
        .post(&link)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=pal&password=a+good+password&confirm=a+good+password")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (_, login) = server.login("pal", "a good password").await;
    let pal = login["access_token"].as_str().unwrap().to_owned();
    sync_for(&server, &pal, "", "the invite", |sync| {
        sync["rooms"]["invite"][&room_id].is_object()
    })
    .await;
    eventually("the listing shows the invitation used", async || {
        server.admin(&["invite", "list"]).1["details"][0]["status"] == "used"
    })
    .await;
}

#[tokio::test]
async fn expired_invitation_links_say_so() {
    let sink = SmtpSink::start().await;
    let server = mailing_server(&sink, &[("HEARTH_EMAIL__INVITE_LIFETIME", "1s")]).await;
    let (token, _) = server.register("alice", "password").await;
    let (_, room) = server.post("/_matrix/client/v3/createRoom", Some(&token), json!({})).await;
    server.admin(&["invite", "late@example.org", "--room", room["room_id"].as_str().unwrap()]);
    let link = sink
        .nth_mail_to("late@example.org", 1)
        .await
        .link(&format!("{}/_hearth/invite/", server.base_url));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, page) = open(&server, &link).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(page.contains("expired"), "{page}");
}

fn urlencode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The identity service's `sha256` lookup hash, as a client computes it.
fn hash_of(entry: &str, pepper: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(format!("{entry} {pepper}")))
}

#[tokio::test]
async fn invitation_page_in_a_browser() {
    let sink = SmtpSink::start().await;
    let server = mailing_server(&sink, &[("HEARTH_REGISTRATION", "closed")]).await;
    server.admin(&["user", "create", "alice", "--password", "password"]);
    let (_, login) = server.login("alice", "password").await;
    let token = login["access_token"].as_str().unwrap();
    let (_, room) = server
        .post("/_matrix/client/v3/createRoom", Some(token), json!({ "name": "Friday games" }))
        .await;
    let room_id = room["room_id"].as_str().unwrap();
    server.admin(&["invite", "gamer@example.org", "--room", room_id]);
    let link = sink
        .nth_mail_to("gamer@example.org", 1)
        .await
        .link(&format!("{}/_hearth/invite/", server.base_url));

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js/invite_page.mjs");
    assert!(
        script.with_file_name("node_modules").join("playwright-core").exists(),
        "playwright-core is not installed: run scripts/js-client (scripts/test does)"
    );
    let screenshots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("invitation-page");
    std::fs::create_dir_all(&screenshots).unwrap();
    let dir = screenshots.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .env("INVITE_LINK", link)
            .env("SCREENSHOT_DIR", dir)
            .env("INVITE_USERNAME", "gamer")
            .env("INVITE_PASSWORD", "let me play")
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|_| panic!("the browser run failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["status"], 200);
    assert_eq!(result["invitation"], "alice invites you to Friday games");
    assert!(result["welcome"].as_str().unwrap().contains("@gamer:localhost"), "{result}");
    assert!(
        result["elementLink"]
            .as_str()
            .unwrap()
            .starts_with("https://app.element.io/#/login?hs_url=")
    );
    for screenshot in ["invitation.png", "welcome.png"] {
        assert!(
            screenshots.join(screenshot).metadata().unwrap().len() > 1000,
            "{screenshot} was taken"
        );
    }
    println!("screenshots in {}", screenshots.display());

    let (_, login) = server.login("gamer", "let me play").await;
    let gamer = login["access_token"].as_str().unwrap().to_owned();
    sync_for(&server, &gamer, "", "the invite", |sync| {
        sync["rooms"]["invite"][room_id].is_object()
    })
    .await;
}

/// Adds `email` to the account of `token` (user `name`, password `password`) through its mail.
async fn add_address(server: &TestServer, sink: &SmtpSink, token: &str, name: &str, password: &str, email: &str) {
    let sid = confirm_address(
        server,
        sink,
        "/_matrix/client/v3/account/3pid/email/requestToken",
        Some(token),
        email,
        1,
    )
    .await;
    let (_, challenge) = server
        .post(
            "/_matrix/client/v3/account/3pid/add",
            Some(token),
            json!({ "client_secret": "s3cret", "sid": sid }),
        )
        .await;
    let body = json!({ "client_secret": "s3cret", "sid": sid, "auth": { "type": "m.login.password",
        "session": challenge["session"], "identifier": { "type": "m.id.user", "user": name }, "password": password } });
    let (status, body) = server.post("/_matrix/client/v3/account/3pid/add", Some(token), body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn email_notifications_of_unread_messages() {
    let sink = SmtpSink::start().await;
    let server = mailing_server(&sink, &[("HEARTH_EMAIL__NOTIFICATION_DELAY", "2s")]).await;
    let (alice, _) = server.register("alice", "password").await;
    let (bob, _) = server.register("bob", "password").await;
    let pusher = json!({ "kind": "email", "app_id": "m.email", "pushkey": "alice@example.org",
        "app_display_name": "Email Notifications", "device_display_name": "alice@example.org", "lang": "en", "data": {} });
    // Only a confirmed address of the account.
    assert_error(
        &server.post("/_matrix/client/v3/pushers/set", Some(&alice), pusher.clone()).await,
        400,
        "M_THREEPID_NOT_FOUND",
    );
    add_address(&server, &sink, &alice, "alice", "password", "alice@example.org").await;
    let (status, body) = server.post("/_matrix/client/v3/pushers/set", Some(&alice), pusher).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Two direct chats: one alice leaves unread, one she reads at once.
    let mut rooms = Vec::new();
    for name in ["Unread corner", "Read corner"] {
        let (_, room) = server
            .post(
                "/_matrix/client/v3/createRoom",
                Some(&bob),
                json!({ "name": name, "invite": ["@alice:localhost"], "is_direct": true }),
            )
            .await;
        let room = room["room_id"].as_str().unwrap().to_owned();
        server
            .post(&format!("/_matrix/client/v3/join/{room}"), Some(&alice), json!({}))
            .await;
        rooms.push(room);
    }
    let unread_event = crate::federation::send_text(&server, &bob, &rooms[0], "are you coming tonight?").await;
    let read_event = crate::federation::send_text(&server, &bob, &rooms[1], "seen this?").await;
    let (status, _) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{read_event}", rooms[1]),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!unread_event.is_empty());

    // One mail, after the delay, naming the unread message and its room only.
    let mail = sink.nth_mail_to("alice@example.org", 2).await;
    assert!(
        mail.text.contains("are you coming tonight?") && mail.text.contains("Unread corner"),
        "{}",
        mail.text
    );
    assert!(!mail.text.contains("seen this?"), "{}", mail.text);
    assert!(mail.html.contains("https://matrix.to/#/"), "{}", mail.html);
    // More messages in that room within the hour: no second mail.
    crate::federation::send_text(&server, &bob, &rooms[0], "hello?").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(sink.received().len(), 2, "one confirmation and one notification mail");
}

#[tokio::test]
async fn identity_service_publishing_keys_and_invitations() {
    let sink = SmtpSink::start().await;
    let server = mailing_server(&sink, &[]).await;
    let (token, _) = server.register("alice", "password").await;
    let id_token = identity_token(&server, &token, "@alice:localhost").await;
    let id_server = server.base_url.trim_start_matches("http://").to_owned();

    // Element's "Discovery": confirm the address with the identity service, then bind it.
    let sid = confirm_address(
        &server,
        &sink,
        "/_matrix/identity/v2/validate/email/requestToken",
        Some(&id_token),
        "alice@example.org",
        1,
    )
    .await;
    let bind = json!({ "client_secret": "s3cret", "sid": sid, "id_server": id_server, "id_access_token": id_token });
    let (status, body) = server
        .post("/_matrix/client/v3/account/3pid/bind", Some(&token), bind.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, hash) = server.get("/_matrix/identity/v2/hash_details", Some(&id_token)).await;
    let pepper = hash["lookup_pepper"].as_str().unwrap().to_owned();
    assert!(hash["algorithms"].to_string().contains("sha256"));
    let hashed = hash_of("alice@example.org email", &pepper);
    let lookup = json!({ "algorithm": "sha256", "pepper": pepper, "addresses": [hashed] });
    let (_, found) = server.post("/_matrix/identity/v2/lookup", Some(&id_token), lookup.clone()).await;
    assert_eq!(found["mappings"][&hashed], "@alice:localhost");
    let wrong_pepper = json!({ "algorithm": "sha256", "pepper": "salt", "addresses": [hashed] });
    assert_error(
        &server.post("/_matrix/identity/v2/lookup", Some(&id_token), wrong_pepper).await,
        400,
        "M_INVALID_PEPPER",
    );
    let (status, body) = server
        .post(
            "/_matrix/client/v3/account/3pid/unbind",
            Some(&token),
            json!({ "medium": "email", "address": "alice@example.org", "id_server": id_server }),
        )
        .await;
    assert_eq!(
        (status, body["id_server_unbind_result"].as_str()),
        (StatusCode::OK, Some("success")),
        "{body}"
    );
    let (_, found) = server.post("/_matrix/identity/v2/lookup", Some(&id_token), lookup).await;
    assert_eq!(found["mappings"], json!({}));
    // Another identity server is not trusted.
    let mut elsewhere = bind.clone();
    elsewhere["id_server"] = json!("identity.example.com");
    assert_error(
        &server.post("/_matrix/client/v3/account/3pid/bind", Some(&token), elsewhere).await,
        403,
        "M_SERVER_NOT_TRUSTED",
    );

    // Confirming by submitting the mailed token instead of opening the link.
    let (_, session) = server
        .post(
            "/_matrix/identity/v2/validate/email/requestToken",
            Some(&id_token),
            json!({ "client_secret": "other", "email": "alice2@example.org", "send_attempt": 1 }),
        )
        .await;
    let link = sink.nth_mail_to("alice2@example.org", 1).await.link(&server.base_url);
    let mail_token = url::Url::parse(&link)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "token")
        .unwrap()
        .1
        .into_owned();
    let submit = json!({ "sid": session["sid"], "client_secret": "other", "token": mail_token });
    let (_, submitted) = server
        .post("/_matrix/identity/v2/validate/email/submitToken", Some(&id_token), submit)
        .await;
    assert_eq!(submitted["success"], true);

    // Keys: the server's signs invitations; an invitation's ephemeral key is valid while it is open.
    let (_, keys) = server.get("/_matrix/key/v2/server", None).await;
    let key_id = keys["verify_keys"].as_object().unwrap().keys().next().unwrap().clone();
    let (status, public) = server.get(&format!("/_matrix/identity/v2/pubkey/{key_id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(public["public_key"], keys["verify_keys"][&key_id]["key"]);
    assert_eq!(
        server.get("/_matrix/identity/v2/pubkey/ed25519:nope", None).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, room) = server
        .post("/_matrix/client/v3/createRoom", Some(&token), json!({ "name": "Den" }))
        .await;
    let room_id = room["room_id"].as_str().unwrap();
    let store = json!({ "medium": "email", "address": "guest@example.org", "room_id": room_id, "sender": "@alice:localhost" });
    let (status, stored) = server
        .post("/_matrix/identity/v2/store-invite", Some(&id_token), store.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["display_name"], "gue…@example.org");
    assert!(sink.nth_mail_to("guest@example.org", 1).await.text.contains("Den"));
    let ephemeral = stored["public_keys"][1]["public_key"].as_str().unwrap();
    let (_, valid) = server
        .get(
            &format!("/_matrix/identity/v2/pubkey/ephemeral/isvalid?public_key={}", urlencode(ephemeral)),
            None,
        )
        .await;
    assert_eq!(valid["valid"], true);
    let (_, valid) = server
        .get("/_matrix/identity/v2/pubkey/ephemeral/isvalid?public_key=AAAA", None)
        .await;
    assert_eq!(valid["valid"], false);
    let mut as_bob = store.clone();
    as_bob["sender"] = json!("@bob:localhost");
    assert_error(
        &server.post("/_matrix/identity/v2/store-invite", Some(&id_token), as_bob).await,
        403,
        "M_FORBIDDEN",
    );
    let sign =
        json!({ "mxid": "@guest:localhost", "token": stored["token"], "private_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" });
    let (status, signed) = server.post("/_matrix/identity/v2/sign-ed25519", Some(&id_token), sign).await;
    assert_eq!(status, StatusCode::OK, "{signed}");
    assert_eq!(
        (signed["mxid"].as_str(), signed["sender"].as_str()),
        (Some("@guest:localhost"), Some("@alice:localhost"))
    );
    assert!(signed["signatures"].as_object().unwrap().values().next().unwrap()["ed25519:0"].is_string());

    // Logging out of the identity service ends its token.
    assert_eq!(
        server
            .post("/_matrix/identity/v2/account/logout", Some(&id_token), json!({}))
            .await
            .0,
        StatusCode::OK
    );
    assert_error(
        &server.get("/_matrix/identity/v2/account", Some(&id_token)).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
}
