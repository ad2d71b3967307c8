#pragma once
// Proof of a shared secret (--repl-secret-file) without sending it: each side
// sends a random nonce, and each proves HMAC-SHA256(secret, label ||
// transcript), the transcript being both nonces, the role the downstream
// asked for and, with --repl-tls, the TLS session's exporter (RFC 9266). A
// label per direction stops a proof from being reflected back; the role
// stops a replica's proof from admitting a peer; the exporter stops a proof
// from being relayed into another TLS session (a node in the middle that
// makes this node answer its challenges, e.g. through `replication
// replica-of`). Without TLS nothing can stop a relay that forwards a whole
// connection: use --repl-tls across hosts (docs/OPERATIONS.md).

#include <string>
#include <string_view>

#include "replication/wire.h"

namespace memkeep::replication {

// kNonceSize random bytes.
std::string make_nonce();
// The proof of `secret` for a challenge `nonce`, in the given direction
// ("join" from the downstream, "welcome" from the upstream). Without a
// secret: kProofSize zero bytes.
std::string prove(std::string_view secret, std::string_view label, std::string_view nonce);
// What a proof covers: HELLO's nonce, JOIN's nonce, the role, the channel binding.
std::string proof_transcript(std::string_view hello_nonce, std::string_view join_nonce, Role role,
                             std::string_view channel_binding);
// Compares a received proof with the expected one in constant time.
bool proof_matches(std::string_view secret, std::string_view label, std::string_view nonce, std::string_view proof);
// A random 64-bit identifier (node ids, run ids); never 0.
uint64_t random_id();

}  // namespace memkeep::replication
