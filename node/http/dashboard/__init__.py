"""The operator dashboard served by the admin listener: sign-in sessions, pages, live events.

`sessions` holds the pure decisions (who is signed in, which cookie request may pass); `routes` is the
aiohttp shell; `feed` samples the node's state for the server-sent events; `static/` is the front end
(plain ES modules, no build step).
"""
