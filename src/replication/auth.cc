#include "replication/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "replication/wire.h"

namespace memkeep::replication {

std::string make_nonce() {
    std::string nonce(kNonceSize, '\0');
    RAND_bytes(reinterpret_cast<unsigned char*>(nonce.data()), static_cast<int>(nonce.size()));
    return nonce;
}

std::string prove(std::string_view secret, std::string_view label, std::string_view nonce) {
    std::string proof(kProofSize, '\0');
    if (secret.empty()) return proof;
    std::string message(label);
    message.append(nonce);
    unsigned int length = 0;
    HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
         reinterpret_cast<const unsigned char*>(message.data()), message.size(),
         reinterpret_cast<unsigned char*>(proof.data()), &length);
    return proof;
}

std::string proof_transcript(std::string_view hello_nonce, std::string_view join_nonce, Role role,
                             std::string_view channel_binding) {
    std::string transcript(hello_nonce);
    transcript.append(join_nonce);
    transcript.push_back(static_cast<char>(role));
    transcript.append(channel_binding);
    return transcript;
}

bool proof_matches(std::string_view secret, std::string_view label, std::string_view nonce, std::string_view proof) {
    std::string expected = prove(secret, label, nonce);
    return proof.size() == expected.size() && CRYPTO_memcmp(proof.data(), expected.data(), proof.size()) == 0;
}

uint64_t random_id() {
    uint64_t id = 0;
    while (id == 0) RAND_bytes(reinterpret_cast<unsigned char*>(&id), sizeof(id));
    return id;
}

}  // namespace memkeep::replication
