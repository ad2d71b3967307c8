#pragma once
// What a protocol handler needs from the server beyond the engine: stats of
// the whole process, verbosity, logging. The server implements it; unit tests
// and fuzz targets can use a small fake.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/engine.h"
#include "engine/op_stats.h"
#include "protocol/prefix_stats.h"
#include "protocol/sasl.h"

namespace memkeep::protocol {

class AsciiAuthFile;

using StatLines = std::vector<std::pair<std::string, std::string>>;

class ServerServices {
public:
    virtual ~ServerServices() = default;
    // Fills `out` with the `stats <group>` lines ("" is the general group).
    // Returns false for a group that does not exist.
    virtual bool collect_stats(std::string_view group, StatLines& out) = 0;
    virtual void reset_stats() = 0;
    virtual void set_verbosity(int level) = 0;
    // -vv: logs one request line of connection `fd` ("<fd line").
    virtual void log_request(int fd, std::string_view line) = 0;
    virtual bool verbose_requests() const = 0;
    // The `backup [name]` admin command: the reply line.
    virtual std::string admin_backup(std::string_view name) = 0;
    // The `replication promote` / `replication replica-of HOST[:PORT]` admin
    // commands: the reply line.
    virtual std::string admin_replication(std::string_view command, std::string_view argument) {
        (void)command;
        (void)argument;
        return "ERROR";
    }
    // -Y: the credentials text connections must present first; null when
    // ascii authentication is off.
    virtual const AsciiAuthFile* ascii_auth() const { return nullptr; }
    // -S: SASL for the binary protocol; null when SASL is off (the SASL
    // opcodes then answer "Unknown command", as memcached without -S).
    virtual SaslProvider* sasl() { return nullptr; }
    // `stats detail` and -D: per-prefix counts; null when the server keeps none.
    virtual PrefixStats* prefix_stats() { return nullptr; }
};

// Everything a connection's protocol handler works with.
struct HandlerContext {
    engine::Engine& engine;
    engine::OpStats& stats;   // the worker thread's counters
    ServerServices& server;
    int connection_fd = -1;
    // UDP: each request is one datagram whose source address can be forged;
    // admin commands are refused on it.
    bool datagram = false;
};

}  // namespace memkeep::protocol
