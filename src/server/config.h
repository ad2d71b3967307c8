#pragma once
// Config: the server's settings, read from memcached-compatible flags.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace memkeep::server {

struct Config {
    int port = 11211;
    std::vector<std::string> listen_addresses{"127.0.0.1"};
    std::string unix_socket;          // -s: when set, TCP is off (as memcached)
    unsigned unix_mask = 0700;        // -a
    size_t memory_limit_mb = 64;      // -m
    int conn_limit = 1024;            // -c
    int threads = 4;                  // -t
    size_t max_item_size = 1u << 20;  // -I
    bool disable_evictions = false;   // -M
    bool disable_cas = false;         // -C
    std::string prefix_delimiter;     // -D: key prefix delimiter for stats detail (turns it on)
    int max_reqs_per_event = 20;      // -R
    int listen_backlog = 1024;        // -b
    bool daemonize = false;           // -d
    std::string pidfile;              // -P
    std::string user;                 // -u
    int verbosity = 0;                // -v, -vv
    std::string protocol = "auto";    // -B: auto (first byte decides), ascii or binary
    int udp_port = 0;                 // -U: 0 = no UDP (memcached's default since 1.5.6)
    std::string auth_file;            // -Y: ascii authentication, user:password lines (forces -B ascii)

    // Storage (docs/OPERATIONS.md)
    std::string storage = "memory";   // --storage memory|durable|overflow
    std::string data_dir;             // --data-dir
    std::string fsync = "everysec";   // --fsync always|everysec|no
    bool admin = false;               // --admin: allow admin commands (backup)
    uint64_t disk_limit = 1ull << 30; // --disk-limit: overflow tier size

    // Security (docs/OPERATIONS.md)
    bool enable_sasl = false;         // -S: SASL on the binary protocol (implies -B binary)
    bool enable_ssl = false;          // -Z: TLS on every TCP listener
    std::string tls_cert;             // --tls-cert, -o ssl_chain_cert
    std::string tls_key;              // --tls-key, -o ssl_key
    std::string tls_ca;               // --tls-ca, -o ssl_ca_cert
    int ssl_verify_mode = -1;         // -o ssl_verify_mode (0-3); -1: 2 (require) with a CA, else 0

    // Replication (docs/OPERATIONS.md)
    int repl_port = 0;                     // -X: replication listener (0: none; 11212 when -x is given)
    std::vector<std::string> repl_peers;   // -x HOST[:PORT], repeatable: active-active peers
    std::string replica_of;                // --replica-of HOST[:PORT]: read-only replica
    std::string repl_secret;               // --repl-secret-file's content
    uint64_t repl_backlog = 64ull << 20;   // --repl-backlog
    int repl_sync = 0;                     // --repl-sync N
    int repl_sync_timeout_ms = 1000;       // --repl-sync-timeout
    int repl_timeout_seconds = 10;         // --repl-timeout
    // Replication security (docs/OPERATIONS.md "Security: replication").
    bool repl_insecure = false;            // --repl-insecure: no secret although -S/-Y/-Z protect clients
    int64_t repl_max_clock_offset_ms = 500;   // --repl-max-clock-offset
    bool repl_tls = false;                 // --repl-tls: TLS 1.3 on replication links (--tls-cert/-key/-ca)
    bool replication() const { return !repl_peers.empty() || !replica_of.empty() || repl_port != 0; }

    size_t memory_limit_bytes() const { return memory_limit_mb << 20; }
};

// What parse_config tells main to do.
enum class ParseOutcome { kRun, kExitSuccess, kExitFailure };

// Reads argv. On help or version it prints to stdout and returns
// kExitSuccess; on a bad flag it prints one line naming it to stderr and
// returns kExitFailure.
ParseOutcome parse_config(int argc, char** argv, Config* config);

// "1m", "512k", "2g", "2048" -> bytes; false if malformed.
bool parse_size(const std::string& text, uint64_t* bytes);

}  // namespace memkeep::server
