#pragma once
// Proof of a shared secret (--repl-secret-file) without sending it: each side
// sends a random nonce, and the other answers HMAC-SHA256(secret, label ||
// nonce). A label per direction stops a proof from being reflected back.

#include <string>
#include <string_view>

namespace memkeep::replication {

// kNonceSize random bytes.
std::string make_nonce();
// The proof of `secret` for a challenge `nonce`, in the given direction
// ("join" from the downstream, "welcome" from the upstream). Without a
// secret: kProofSize zero bytes.
std::string prove(std::string_view secret, std::string_view label, std::string_view nonce);
// Compares a received proof with the expected one in constant time.
bool proof_matches(std::string_view secret, std::string_view label, std::string_view nonce, std::string_view proof);
// A random 64-bit identifier (node ids, run ids); never 0.
uint64_t random_id();

}  // namespace memkeep::replication
