// Element's daily chat through Element's own SDK: matrix-js-sdk (which Element Web is built
// on) logs two users in to the Hearth at HEARTH_URL, lists rooms, invites and joins, chats in
// real time, and sees read receipts, typing and unread counts, as Element Web shows them.
// Run by tests/it/js_client.rs; exits non-zero, saying what failed, when something does.
import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

logger.setLevel("error");
const baseUrl = process.env.HEARTH_URL;
const password = process.env.HEARTH_PASSWORD;

async function login(user) {
  const anonymous = sdk.createClient({ baseUrl });
  const session = await anonymous.login("m.login.password", {
    identifier: { type: "m.id.user", user },
    password,
    initial_device_display_name: "Element (matrix-js-sdk)",
  });
  const client = sdk.createClient({
    baseUrl,
    accessToken: session.access_token,
    userId: session.user_id,
    deviceId: session.device_id,
  });
  const prepared = new Promise((resolve, reject) => {
    client.on(sdk.ClientEvent.Sync, (state, _previous, data) => {
      if (state === "PREPARED") resolve();
      if (state === "ERROR") reject(new Error(`sync failed: ${data?.error}`));
    });
  });
  await client.startClient({ initialSyncLimit: 20, lazyLoadMembers: true });
  await prepared;
  return client;
}

async function waitFor(what, check) {
  const deadline = Date.now() + 15000;
  while (Date.now() < deadline) {
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`timed out waiting for: ${what}`);
}

function nextMessage(client, roomId, body) {
  return new Promise((resolve) => {
    const listener = (event, room) => {
      if (room?.roomId === roomId && event.getContent().body === body) {
        client.off(sdk.RoomEvent.Timeline, listener);
        resolve(event);
      }
    };
    client.on(sdk.RoomEvent.Timeline, listener);
  });
}

const alice = await login("alice");
const bob = await login("bob");
const aliceId = alice.getUserId();
const bobId = bob.getUserId();

// Alice makes a room and invites Bob, who sees the invite and joins.
const { room_id: roomId } = await alice.createRoom({ name: "Daily chat", invite: [bobId] });
await waitFor("bob sees the invite", () => bob.getRoom(roomId)?.getMyMembership() === "invite");
await bob.joinRoom(roomId);
await waitFor("alice sees bob join", () => alice.getRoom(roomId)?.getMember(bobId)?.membership === "join");
await waitFor("both list the room by name", () =>
  [alice, bob].every((client) => client.getRooms().some((room) => room.roomId === roomId && room.name === "Daily chat")),
);

// A message appears on the other side while its sync long-polls.
const sent = Date.now();
const arriving = nextMessage(bob, roomId, "hello bob");
await alice.sendTextMessage(roomId, "hello bob");
const hello = await arriving;
const deliveryMs = Date.now() - sent;
if (hello.getSender() !== aliceId || !hello.getTs()) throw new Error("the message lacks sender or timestamp");

// Bob reads it: Alice sees his receipt on her message.
await bob.sendReadReceipt(hello);
await waitFor("alice sees bob's read receipt", () =>
  alice.getRoom(roomId).getUsersReadUpTo(alice.getRoom(roomId).findEventById(hello.getId())).includes(bobId),
);

// Bob types, then stops: Alice sees both.
await bob.sendTyping(roomId, true, 20000);
await waitFor("alice sees bob typing", () => alice.getRoom(roomId).getMember(bobId).typing === true);
await bob.sendTyping(roomId, false);
await waitFor("alice sees bob stop typing", () => alice.getRoom(roomId).getMember(bobId).typing === false);

// Unread counts: two messages, one mentioning Bob, counted and highlighted; reading resets them.
const mention = nextMessage(bob, roomId, "bob: are you there?");
await alice.sendTextMessage(roomId, "lunch at noon?");
await alice.sendMessage(roomId, { msgtype: "m.text", body: "bob: are you there?", "m.mentions": { user_ids: [bobId] } });
const last = await mention;
const bobsRoom = bob.getRoom(roomId);
await waitFor("bob's unread count is 2 with 1 highlight", () =>
  bobsRoom.getUnreadNotificationCount(sdk.NotificationCountType.Total) === 2 &&
  bobsRoom.getUnreadNotificationCount(sdk.NotificationCountType.Highlight) === 1,
);
await bob.sendReadReceipt(last);
await waitFor("bob's unread count resets", () => bobsRoom.getUnreadNotificationCount(sdk.NotificationCountType.Total) === 0);

// Edits and reactions show up too.
await bob.sendEvent(roomId, "m.reaction", { "m.relates_to": { rel_type: "m.annotation", event_id: last.getId(), key: "👍" } });
await waitFor("alice sees the reaction", () =>
  alice.getRoom(roomId).getLiveTimeline().getEvents().some((event) => event.getType() === "m.reaction"),
);

alice.stopClient();
bob.stopClient();
console.log(JSON.stringify({ ok: true, delivery_ms: deliveryMs }));
process.exit(0);
