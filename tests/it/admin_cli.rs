//! `hearth admin` against a running server (through its admin socket) and a stopped one
//! (on the store directly), with exit codes scripts can trust.

use crate::common::{TestDatabase, TestServer, assert_error, message_bodies, postgres_cluster};

#[tokio::test]
async fn admin_cli_manages_users_while_the_server_runs() {
    let mut server = TestServer::start(&[("HEARTH_REGISTRATION", "closed")]).await;

    let bootstrap = server
        .log()
        .split("registration_token=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let (output, created) = server.admin(&["user", "create", "nina", "--password", "nina-pw", "--admin"]);
    assert!(output.status.success(), "{output:?}");
    // The first-start token dies with the first account, and passwords stay out of the log.
    let (_, tokens) = server.admin(&["registration-token", "list"]);
    assert_eq!(tokens["tokens"], serde_json::json!([]));
    let validity = format!("/_matrix/client/v1/register/m.login.registration_token/validity?token={bootstrap}");
    assert_error(&server.get(&validity, None).await, 403, "M_FORBIDDEN");
    assert!(!server.log().contains("nina-pw"));
    assert_eq!(created["credentials"]["user_id"], "@nina:localhost");
    assert_eq!(created["credentials"]["admin"], true);
    let (status, login) = server.login("nina", "nina-pw").await;
    assert_eq!(status.as_u16(), 200, "{login}");
    let token = login["access_token"].as_str().unwrap().to_owned();

    // A generated password is printed once and works.
    let (output, created) = server.admin(&["user", "create", "omar"]);
    assert!(output.status.success());
    let password = created["credentials"]["password"].as_str().unwrap().to_owned();
    assert_eq!(server.login("omar", &password).await.0.as_u16(), 200);
    assert_eq!(created["credentials"]["admin"], false);

    // Failures exit 1 with a message; usage errors exit 2.
    let (output, error) = server.admin(&["user", "create", "nina"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(error["error"].as_str().unwrap().contains("M_USER_IN_USE"));
    let (output, _) = server.admin(&["user", "create", "Bad Name"]);
    assert_eq!(output.status.code(), Some(1));
    let (output, _) = server.admin(&["user", "explode"]);
    assert_eq!(output.status.code(), Some(2));

    // Reset the password: old sessions end, the new password works.
    let (output, _) = server.admin(&["user", "reset-password", "nina", "--password", "new-pw"]);
    assert!(output.status.success());
    assert_error(
        &server.get("/_matrix/client/v3/account/whoami", Some(&token)).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_eq!(server.login("nina", "new-pw").await.0.as_u16(), 200);

    // make-admin, deactivate, and the list shows both.
    assert!(server.admin(&["user", "make-admin", "omar"]).0.status.success());
    assert!(server.admin(&["user", "deactivate", "@omar:localhost"]).0.status.success());
    assert_error(&server.login("omar", &password).await, 403, "M_USER_DEACTIVATED");
    let (_, list) = server.admin(&["user", "list"]);
    let users = list["users"].as_array().unwrap();
    assert_eq!(users.len(), 2);
    assert_eq!(users[1]["user_id"], "@omar:localhost");
    assert_eq!(
        (users[1]["admin"].as_bool(), users[1]["deactivated"].as_bool()),
        (Some(true), Some(true))
    );

    // Human-readable output.
    let output = server.command().args(["admin", "user", "list"]).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("@nina:localhost") && text.contains("2 account(s)"), "{text}");

    // Tokens: create with expiry, list, revoke, revoke again fails.
    let (output, token) = server.admin(&["registration-token", "create", "--expires", "1d", "--token", "welcome-1"]);
    assert!(output.status.success(), "{output:?}");
    assert!(token["token"]["expiry_ts"].as_u64().is_some());
    assert!(server.admin(&["registration-token", "revoke", "welcome-1"]).0.status.success());
    assert_eq!(
        server.admin(&["registration-token", "revoke", "welcome-1"]).0.status.code(),
        Some(1)
    );

    // With the server stopped, the CLI opens the store itself.
    server.stop();
    let (output, created) = server.admin(&["user", "create", "pia", "--password", "pia-pw"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(created["credentials"]["user_id"], "@pia:localhost");
    server.restart().await;
    assert_eq!(server.login("pia", "pia-pw").await.0.as_u16(), 200);

    // A server that is neither running nor has a store it can open: exit 3.
    let output = server
        .command()
        .env("HEARTH_DATA_DIR", "/proc/none")
        .env("HEARTH_STORAGE__POSTGRES_URL", "postgresql://nobody@127.0.0.1:1/none")
        .args(["admin", "user", "list"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{output:?}");
}

#[tokio::test]
async fn backup_while_writing_then_restore_keeps_every_acknowledged_message() {
    let mut server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    if postgres_cluster().is_some() {
        // PostgreSQL is backed up by its own tools: the command says so.
        let (output, refused) = server.admin(&["backup", server.dir.path().join("backup").to_str().unwrap()]);
        assert!(!output.status.success(), "{output:?}");
        assert!(refused["error"].as_str().unwrap().contains("pg_dump"), "{refused}");
        return;
    }
    let (_, created) = server
        .post("/_matrix/client/v3/createRoom", Some(&alice), serde_json::json!({}))
        .await;
    let room = created["room_id"].as_str().unwrap().to_owned();
    let send = |n: usize| {
        let (server, alice, room) = (&server, alice.clone(), room.clone());
        async move {
            let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/b{n}");
            let (status, _) = server
                .put(
                    &path,
                    Some(&alice),
                    serde_json::json!({ "msgtype": "m.text", "body": format!("before {n}") }),
                )
                .await;
            assert_eq!(status.as_u16(), 200);
        }
    };
    for n in 0..50 {
        send(n).await;
    }

    // Writes go on while the backup runs.
    let writer = {
        let (base, alice, room) = (server.base_url.clone(), alice.clone(), room.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            for n in 0..100 {
                let url = format!("{base}/_matrix/client/v3/rooms/{room}/send/m.room.message/during{n}");
                let _ = http
                    .put(url)
                    .bearer_auth(&alice)
                    .json(&serde_json::json!({ "msgtype": "m.text", "body": "during" }))
                    .send()
                    .await;
            }
        })
    };
    let backup_dir = server.dir.path().join("backup");
    let (output, done) = server.admin(&["backup", backup_dir.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    assert!(done["done"].as_str().unwrap().starts_with("backed up"), "{done}");
    writer.await.unwrap();

    // A running server refuses a restore; a stopped one with its data moved away takes it.
    let (output, _) = server.admin(&["restore", backup_dir.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    server.stop();
    let data = server.dir.path().join("data");
    std::fs::rename(&data, server.dir.path().join("data.old")).unwrap();
    let (output, restored) = server.admin(&["restore", backup_dir.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?} {restored}");
    server.restart().await;

    let (_, login) = server.login("alice", "alicepass").await;
    let token = login["access_token"].as_str().unwrap();
    let (_, page) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=f&limit=1000"), Some(token))
        .await;
    let bodies = message_bodies(&page["chunk"]);
    for n in 0..50 {
        assert!(
            bodies.contains(&format!("before {n}")),
            "message {n} acknowledged before the backup is restored"
        );
    }
}

#[tokio::test]
async fn scheduled_backups_keep_the_newest_n() {
    if postgres_cluster().is_some() {
        return; // RocksDB checkpoints; PostgreSQL is backed up by its own tools.
    }
    let server = TestServer::start(&[]).await;
    server.register("alice", "alicepass").await;
    let backups = server.dir.path().join("backups");
    std::fs::create_dir_all(backups.join("unrelated")).unwrap();
    for round in 1..=3 {
        let (output, done) = server.admin(&["backup", backups.to_str().unwrap(), "--keep", "2"]);
        assert!(output.status.success(), "{output:?}");
        let expected_removed = if round == 3 { 1 } else { 0 };
        assert!(
            done["done"]
                .as_str()
                .unwrap()
                .contains(&format!("removed {expected_removed} older")),
            "{done}"
        );
    }
    let mut names: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(names[2], "unrelated", "only dated backups are rotated: {names:?}");
    for name in &names[..2] {
        assert!(name.starts_with("hearth-"), "{names:?}");
        assert!(backups.join(name).join("db").join("CURRENT").is_file(), "{name} holds a checkpoint");
    }
    let (output, _) = server.admin(&["backup", backups.to_str().unwrap(), "--keep", "0"]);
    assert_eq!(output.status.code(), Some(2), "--keep 0 is bad usage: {output:?}");
}

#[tokio::test]
async fn a_rocksdb_store_migrated_to_postgres_serves_everything_it_held() {
    let Some(cluster) = postgres_cluster() else {
        return; // Needs the PostgreSQL cluster of the suite's second run.
    };
    let mut server = TestServer::start(&[("HEARTH_STORAGE__BACKEND", "rocksdb")]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let room = server.create_room(&alice, serde_json::json!({ "name": "Moving day" })).await;
    for n in 0..250 {
        server
            .send(
                &alice,
                &room,
                "m.room.message",
                serde_json::json!({ "msgtype": "m.text", "body": format!("m{n}") }),
            )
            .await;
    }
    let (_, uploaded) = crate::media::upload(&server, &alice, "text/plain", "note.txt", b"kept beside the store".to_vec()).await;
    let mxc = uploaded["content_uri"].as_str().unwrap().to_owned();

    // A running server refuses; a stopped one is copied into an empty database, not twice.
    let database = TestDatabase::create(&cluster);
    let (output, _) = server.admin(&["migrate", "--to", "postgres", &database.url()]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    server.stop();
    let (output, done) = server.admin(&["migrate", "--to", "postgres", &database.url()]);
    assert!(output.status.success(), "{output:?}");
    let done = done["done"].as_str().unwrap();
    assert!(done.contains("row counts match") && done.contains("sampled events"), "{done}");
    let (output, refused) = server.admin(&["migrate", "--to", "postgres", &database.url()]);
    assert!(!output.status.success(), "{output:?}");
    assert!(refused["error"].as_str().unwrap().contains("not empty"), "{refused}");

    server.set_env("HEARTH_STORAGE__BACKEND", "postgres");
    server.set_env("HEARTH_STORAGE__POSTGRES_URL", &database.url());
    server.spawn().await;
    let (_, login) = server.login("alice", "alicepass").await;
    let token = login["access_token"].as_str().unwrap().to_owned();
    let (_, page) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=f&limit=1000"), Some(&token))
        .await;
    let bodies = message_bodies(&page["chunk"]);
    assert_eq!(bodies, (0..250).map(|n| format!("m{n}")).collect::<Vec<_>>());
    let (_, name) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.name"), Some(&token))
        .await;
    assert_eq!(name["name"], "Moving day");
    let media = mxc.trim_start_matches("mxc://");
    let (status, _, content) =
        crate::media::fetch(&server, &format!("/_matrix/client/v1/media/download/{media}"), Some(&token), None).await;
    assert_eq!((status.as_u16(), content.as_slice()), (200, b"kept beside the store".as_slice()));
    // New writes go on from where the store was (stream positions continue).
    server
        .send(
            &token,
            &room,
            "m.room.message",
            serde_json::json!({ "msgtype": "m.text", "body": "after" }),
        )
        .await;
    let (_, page) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=2"), Some(&token))
        .await;
    assert_eq!(message_bodies(&page["chunk"]), ["after", "m249"]);
}
