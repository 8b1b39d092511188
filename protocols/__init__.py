"""Wire formats and pure protocol logic for guildnet: no sockets, no database.

Everything in this package can be tested on bytes alone (the h11 idea): identity (Ed25519, did:key),
canonical JSON, JWS, AgentFacts, signed-write envelopes.
"""
