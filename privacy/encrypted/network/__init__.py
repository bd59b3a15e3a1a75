"""Parties as processes: TLS between them and with clients, and everything that keeps a server up.

`wire` (the message format, read strictly), `certificates` (the CA, per-party and per-client
certificates, revocation), `memory` (a party's memory budget), `server` (`PartyServer`), `remote`
(`RemoteClient`) and `processes` (`run_party`, model-share saving, three parties on loopback).
"""
