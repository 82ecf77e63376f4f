"""An echo bridge on mautrix-python, for Hearth's appservice tests.

It answers every message of a real user with "echo: <body>" as that user's puppet
(@echo_<localpart>), registering and joining the puppet as a bridge does; it answers user
queries for @echo_* users by registering them, and the third-party lookups of its protocol
"echo". Every transaction it receives is appended to a JSON-lines log, in the order received,
with its events, ephemeral events, to-device messages, device-list changes and key counts (MSC3202),
so the test can check what arrived, once and in order.

Usage: echo_bridge.py HOMESERVER_URL SERVER_NAME AS_TOKEN HS_TOKEN PORT LOG_FILE
"""

import asyncio
import json
import logging
import sys

from aiohttp import web
from mautrix.appservice import AppService
from mautrix.types import EventType, Membership, MessageEvent

homeserver, server_name, as_token, hs_token, port, log_file = sys.argv[1:7]


def log(entry):
    with open(log_file, "a") as log:
        log.write(json.dumps(entry) + "\n")


def setup():
    """The appservice, built inside the running event loop (aiohttp needs that)."""
    appservice = AppService(
        server=homeserver,
        domain=server_name,
        as_token=as_token,
        hs_token=hs_token,
        bot_localpart="echobot",
        id="echo",
        ephemeral_events=True,
        encryption_events=True,
    )

    received = appservice.handle_transaction

    async def handle_transaction(txn_id, *, events, ephemeral=None, device_lists=None, otk_counts=None, **rest):
        log({
            "txn_id": txn_id,
            "events": events,
            "ephemeral": ephemeral or [],
            "to_device": rest.get("to_device") or [],
            "device_lists": device_lists.serialize() if device_lists else {},
            "otk_counts": {
                user: {device: count.serialize() for device, count in devices.items()}
                for user, devices in (otk_counts or {}).items()
            },
        })
        return await received(
            txn_id, events=events, ephemeral=ephemeral, device_lists=device_lists, otk_counts=otk_counts, **rest
        )

    appservice.handle_transaction = handle_transaction

    def puppet_of(user_id):
        return f"@echo_{user_id[1:].split(':')[0]}:{server_name}"

    @appservice.matrix_event_handler
    async def echo(event):
        bot = appservice.intent.mxid
        if event.type == EventType.ROOM_MEMBER and event.state_key == bot and event.content.membership == Membership.INVITE:
            await appservice.intent.join_room(event.room_id)
            return
        if event.type != EventType.ROOM_MESSAGE or not isinstance(event, MessageEvent):
            return
        sender = str(event.sender)
        if sender.startswith("@echo") or not event.content.body.startswith("bridge:"):
            return
        intent = appservice.intent.user(puppet_of(sender))
        await intent.ensure_joined(event.room_id)
        await intent.send_text(event.room_id, "echo: " + event.content.body)

    async def query_user(user_id):
        if not user_id.startswith("@echo_"):
            return None
        await appservice.intent.user(user_id).ensure_registered()
        # mautrix answers 404 for an empty (falsy) answer.
        return {"registered": user_id}

    appservice.query_user = query_user

    async def protocol(request):
        return web.json_response({
            "user_fields": ["name"],
            "location_fields": ["channel"],
            "icon": "mxc://example.org/echo",
            "field_types": {
                "name": {"regexp": ".*", "placeholder": "someone"},
                "channel": {"regexp": ".*", "placeholder": "general"},
            },
            "instances": [{"desc": "Echo network", "fields": {}, "network_id": "echo-net"}],
        })

    async def locations(request):
        channel = request.query.get("channel", "general")
        return web.json_response([
            {"alias": f"#echo_{channel}:{server_name}", "protocol": "echo", "fields": {"channel": channel}}
        ])

    async def users(request):
        name = request.query.get("name", "someone")
        return web.json_response([
            {"userid": f"@echo_{name}:{server_name}", "protocol": "echo", "fields": {"name": name}}
        ])

    appservice.app.router.add_get("/_matrix/app/v1/thirdparty/protocol/echo", protocol)
    appservice.app.router.add_get("/_matrix/app/v1/thirdparty/location/echo", locations)
    appservice.app.router.add_get("/_matrix/app/v1/thirdparty/user/echo", users)
    return appservice


async def main():
    logging.basicConfig(level=logging.WARNING)
    appservice = setup()
    await appservice.start("127.0.0.1", int(port))
    print("ready", flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
