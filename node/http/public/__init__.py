"""The public face: an optional, read-only, token-free HTTP listener (README.md, "Publishing to portals").

Pure decisions live in their own modules (licences, ranges, files, dcat, pages, limits); app.py is the
aiohttp shell and service.py starts and stops it with the node.
"""
