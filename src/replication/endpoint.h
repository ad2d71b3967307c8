#pragma once
// Endpoint: HOST[:PORT] of a node's replication port (-x, --replica-of).

#include <cstdint>
#include <string>
#include <string_view>

namespace memkeep::replication {

inline constexpr uint16_t kDefaultReplicationPort = 11212;

struct Endpoint {
    std::string host;
    uint16_t port = kDefaultReplicationPort;
    std::string text() const { return host + ":" + std::to_string(port); }
};

// Parses HOST[:PORT] (PORT defaults to 11212; an IPv6 host in brackets);
// false for an empty host or a bad port.
bool parse_endpoint(std::string_view text, Endpoint* out);

}  // namespace memkeep::replication
