#include "server/config.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>

#include "replication/endpoint.h"
#include "version.h"

namespace memkeep::server {

namespace {
constexpr size_t kMinItemSize = 1024;
constexpr size_t kMaxItemSize = 1024u << 20;

std::vector<std::string> split_commas(const std::string& text) {
    std::vector<std::string> parts;
    size_t start = 0;
    while (start <= text.size()) {
        size_t comma = text.find(',', start);
        if (comma == std::string::npos) comma = text.size();
        if (comma > start) parts.push_back(text.substr(start, comma - start));
        start = comma + 1;
    }
    return parts;
}

// memcached's -o: comma separated key=value options. memkeep knows the TLS
// ones; any other key is an error naming it.
bool parse_extended(const std::vector<std::string>& options, Config* config, std::string* error) {
    std::vector<std::string> unknown;
    for (const auto& option : options) {
        for (const auto& item : split_commas(option)) {
            size_t equals = item.find('=');
            std::string key = item.substr(0, equals);
            std::string value = equals == std::string::npos ? "" : item.substr(equals + 1);
            bool needs_value = true;
            if (key == "ssl_chain_cert") config->tls_cert = value;
            else if (key == "ssl_key") config->tls_key = value;
            else if (key == "ssl_ca_cert") config->tls_ca = value;
            else if (key == "ssl_verify_mode") {
                if (value.size() != 1 || value[0] < '0' || value[0] > '3') {
                    *error = "-o ssl_verify_mode: must be 0, 1, 2 or 3";
                    return false;
                }
                config->ssl_verify_mode = value[0] - '0';
            } else {
                needs_value = false;
                unknown.push_back(key);
            }
            if (needs_value && value.empty()) {
                *error = "-o " + key + ": needs a value (" + key + "=...)";
                return false;
            }
        }
    }
    if (!unknown.empty()) {
        std::string names;
        for (const auto& key : unknown) names += (names.empty() ? "" : ", ") + key;
        *error = "-o/--extended: unknown option" + std::string(unknown.size() > 1 ? "s: " : ": ") + names;
        return false;
    }
    return true;
}

int fail(const std::string& message) {
    std::fprintf(stderr, "memkeep: %s\n", message.c_str());
    return 1;
}
}  // namespace

bool parse_size(const std::string& text, uint64_t* bytes) {
    if (text.empty()) return false;
    size_t multiplier = 1;
    std::string digits = text;
    char last = digits.back();
    if (last == 'k' || last == 'K') multiplier = 1024;
    if (last == 'm' || last == 'M') multiplier = 1024 * 1024;
    if (last == 'g' || last == 'G') multiplier = 1024 * 1024 * 1024;
    if (multiplier != 1) digits.pop_back();
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 12) {
        return false;
    }
    *bytes = std::stoull(digits) * multiplier;
    return true;
}

ParseOutcome parse_config(int argc, char** argv, Config* config) {
    CLI::App app{"memkeep: a memcached-compatible server that keeps what memcached loses", "memkeep"};
    app.set_help_flag("-h,--help", "print this help and exit");
    std::string listen = "127.0.0.1";
    std::string item_size = "1m";
    std::string unix_mask = "0700";
    int64_t memory_mb = static_cast<int64_t>(config->memory_limit_mb);
    bool show_version = false;

    app.add_option("-p,--port", config->port, "TCP port to listen on (default: 11211)")
        ->check(CLI::Range(0, 65535));
    app.add_option("-l,--listen", listen, "interfaces to listen on, comma separated (default: 127.0.0.1)");
    app.add_option("-s,--unix-socket", config->unix_socket, "UNIX socket to listen on (disables TCP)");
    app.add_option("-a,--unix-mask", unix_mask, "access mask for the UNIX socket, in octal (default: 0700)");
    app.add_option("-m,--memory-limit", memory_mb, "item memory in megabytes (default: 64)");
    app.add_option("-c,--conn-limit", config->conn_limit, "max simultaneous connections (default: 1024)");
    app.add_option("-t,--threads", config->threads, "number of worker threads (default: 4)");
    app.add_option("-I,--max-item-size", item_size, "max item size, k/m suffixes allowed (default: 1m)");
    app.add_flag("-M,--disable-evictions", config->disable_evictions,
                 "return an error when memory is exhausted instead of evicting");
    app.add_flag("-C,--disable-cas", config->disable_cas, "disable CAS values");
    auto* delimiter_option = app.add_option("-D", config->prefix_delimiter,
                   "key prefix delimiter for per-prefix stats (stats detail), and turn them on");
    app.add_option("-R,--max-reqs-per-event", config->max_reqs_per_event,
                   "requests handled per connection before yielding (default: 20)");
    app.add_option("-b,--listen-backlog", config->listen_backlog, "listen backlog (default: 1024)");
    app.add_flag("-d,--daemon", config->daemonize, "run as a daemon");
    app.add_option("-P,--pidfile", config->pidfile, "save the PID in this file (with -d)");
    app.add_option("-u,--user", config->user, "assume the identity of this user (when run as root)");
    app.add_flag("-v,--verbose", config->verbosity, "verbose (-vv: also log every request)");
    app.add_flag("-V,--version", show_version, "print version and exit");
    app.add_flag("-S,--enable-sasl", config->enable_sasl,
                 "SASL authentication on the binary protocol (implies -B binary; see docs/OPERATIONS.md)");
    app.add_flag("-Z,--enable-ssl", config->enable_ssl, "TLS on the TCP listeners (needs --tls-cert and --tls-key)");
    app.add_option("--tls-cert", config->tls_cert, "TLS: certificate chain file, PEM (as -o ssl_chain_cert)");
    app.add_option("--tls-key", config->tls_key, "TLS: private key file, PEM (as -o ssl_key)");
    app.add_option("--tls-ca", config->tls_ca,
                   "TLS: CA certificates, PEM; clients must present a certificate they signed (as -o ssl_ca_cert)");
    std::vector<std::string> extended;
    app.add_option("-o,--extended", extended,
                   "comma separated memcached options: ssl_chain_cert, ssl_key, ssl_ca_cert, ssl_verify_mode")
        ->allow_extra_args(false);
    auto* protocol_option = app.add_option("-B,--protocol", config->protocol,
                   "protocol: auto (each connection's first byte decides), ascii or binary (default: auto)")
        ->check(CLI::IsMember({"auto", "ascii", "binary"}));

    app.add_option("-U,--udp-port", config->udp_port,
                   "UDP port to listen on, on the -l addresses (default: 0, off)")
        ->check(CLI::Range(0, 65535));
    app.add_option("-Y,--auth-file", config->auth_file,
                   "ascii authentication: a file of user:password lines; text clients must log in first "
                   "(implies -B ascii; no UDP)");

    app.add_option("--storage", config->storage,
                   "memory (default: a cache), durable (every write on disk before it is acknowledged) "
                   "or overflow (items evicted from RAM go to disk)")
        ->check(CLI::IsMember({"memory", "durable", "overflow"}));
    app.add_option("--data-dir", config->data_dir, "directory of the durable store or the overflow tier");
    std::string disk_limit = "1g";
    app.add_option("--disk-limit", disk_limit, "overflow mode: disk space for evicted items, k/m/g suffixes (default: 1g)");
    app.add_option("--fsync", config->fsync,
                   "durable mode: always (sync before each reply, group commit), everysec (default) or no")
        ->check(CLI::IsMember({"always", "everysec", "no"}));
    app.add_flag("--admin", config->admin, "allow admin commands (backup, replication)");

    app.add_option("-X,--repl-port", config->repl_port,
                   "replication port, on the -l addresses (default: off; 11212 when -x is given)")
        ->check(CLI::Range(0, 65535));
    app.add_option("-x,--repl-peer", config->repl_peers,
                   "active-active peer HOST[:PORT] (repeatable; PORT defaults to 11212)")
        ->allow_extra_args(false);
    app.add_option("--replica-of", config->replica_of, "be a read-only replica of HOST[:PORT] (its replication port)");
    std::string secret_file;
    app.add_option("--repl-secret-file", secret_file,
                   "file holding a shared secret that peers and replicas must prove (challenge-response)");
    std::string repl_backlog = "64m";
    app.add_option("--repl-backlog", repl_backlog,
                   "replication backlog: recent writes kept for partial resync, k/m/g suffixes (default: 64m)");
    app.add_option("--repl-sync", config->repl_sync,
                   "acknowledge a write only once this many peers or replicas applied it (default: 0)")
        ->check(CLI::Range(0, 64));
    app.add_option("--repl-sync-timeout", config->repl_sync_timeout_ms,
                   "milliseconds a write waits for --repl-sync acknowledgements (default: 1000)")
        ->check(CLI::Range(1, 3600000));
    app.add_option("--repl-timeout", config->repl_timeout_seconds,
                   "seconds of silence after which a replication connection is dropped and retried (default: 10)")
        ->check(CLI::Range(1, 3600));
    // Replication security (docs/OPERATIONS.md "Security: replication").
    app.add_flag("--repl-insecure", config->repl_insecure,
                 "allow replication without --repl-secret-file although -S, -Y or -Z protect the client port");
    app.add_option("--repl-max-clock-offset", config->repl_max_clock_offset_ms,
                   "milliseconds a replicated write's version may be ahead of this node's clock; records further "
                   "ahead are refused and the link dropped (default: 500)")
        ->check(CLI::Range(1, 3600000));
    app.add_flag("--repl-tls", config->repl_tls,
                 "TLS 1.3 on replication links, with --tls-cert/--tls-key; peers must present a certificate "
                 "signed by --tls-ca (both directions)");

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
        std::cout << app.help();
        return ParseOutcome::kExitSuccess;
    } catch (const CLI::ParseError& error) {
        std::string message = error.what();
        for (char& c : message) {
            if (c == '\n') c = ' ';
        }
        fail(message);
        return ParseOutcome::kExitFailure;
    }
    if (show_version) {
        std::cout << "memkeep " << kVersion << "\n";
        return ParseOutcome::kExitSuccess;
    }

    auto reject = [](const std::string& message) {
        fail(message);
        return ParseOutcome::kExitFailure;
    };
    if (memory_mb <= 0 || memory_mb > (int64_t{1} << 30)) {
        return reject("-m/--memory-limit: must be a number of megabytes, at least 1");
    }
    config->memory_limit_mb = static_cast<size_t>(memory_mb);
    if (config->threads < 1 || config->threads > 256) {
        return reject("-t/--threads: must be between 1 and 256");
    }
    if (config->conn_limit < 1) return reject("-c/--conn-limit: must be at least 1");
    if (config->max_reqs_per_event < 1) return reject("-R/--max-reqs-per-event: must be at least 1");
    if (config->listen_backlog < 1) return reject("-b/--listen-backlog: must be at least 1");
    if (!parse_size(item_size, &config->max_item_size)) {
        return reject("-I/--max-item-size: not a size: " + item_size + " (use e.g. 512k or 2m)");
    }
    if (config->max_item_size < kMinItemSize) {
        return reject("-I/--max-item-size: cannot be less than 1024 bytes");
    }
    if (config->max_item_size > kMaxItemSize) {
        return reject("-I/--max-item-size: cannot be larger than 1024m");
    }
    if (config->max_item_size > config->memory_limit_bytes() / 2) {
        return reject("-I/--max-item-size: cannot be higher than 1/2 of -m/--memory-limit");
    }
    if (unix_mask.empty() || unix_mask.find_first_not_of("01234567") != std::string::npos ||
        unix_mask.size() > 4) {
        return reject("-a/--unix-mask: not an octal mask: " + unix_mask);
    }
    config->unix_mask = static_cast<unsigned>(std::stoul(unix_mask, nullptr, 8));
    if (config->storage != "memory" && config->data_dir.empty()) {
        return reject("--storage " + config->storage + ": needs --data-dir DIR");
    }
    if (!parse_size(disk_limit, &config->disk_limit)) {
        return reject("--disk-limit: not a size: " + disk_limit + " (use e.g. 512m or 2g)");
    }
    // The tier must hold at least a few of the largest items.
    if (config->storage == "overflow" && config->disk_limit < 4 * config->max_item_size) {
        return reject("--disk-limit: too small to hold items of -I/--max-item-size (needs at least 4 x -I)");
    }
    if (delimiter_option->count() > 0 && config->prefix_delimiter.empty()) return reject("-D: no delimiter specified");
    std::string extended_error;
    if (!parse_extended(extended, config, &extended_error)) return reject(extended_error);
    if (config->enable_sasl) {
        // memcached 1.6.18: -S makes the server binary only, and refuses an
        // explicit -B that would let text clients in.
        if (protocol_option->count() > 0 && config->protocol != "binary") {
            return reject("-S/--enable-sasl: you cannot allow the ASCII protocol while using SASL (use -B binary)");
        }
        config->protocol = "binary";
    }
    if (config->enable_ssl) {
        if (config->tls_cert.empty()) return reject("-Z/--enable-ssl: needs --tls-cert FILE (or -o ssl_chain_cert=FILE)");
        if (!config->unix_socket.empty()) return reject("-Z/--enable-ssl: you cannot enable TLS without a TCP port");
    }
    config->listen_addresses = split_commas(listen);
    if (config->listen_addresses.empty()) return reject("-l/--listen: no address given");
    if (!config->auth_file.empty()) {
        // As memcached: ascii auth makes the server text only, and a UDP
        // datagram has no connection to authenticate.
        if (app.count("--protocol") > 0 && config->protocol != "ascii") {
            return reject("-Y/--auth-file: you cannot allow the binary protocol while using ascii authentication "
                          "(use -B ascii or leave -B out)");
        }
        if (config->udp_port != 0) {
            return reject("-Y/--auth-file: cannot use UDP with ascii authentication (-U 0 to disable)");
        }
        config->protocol = "ascii";
    }
    if (!parse_size(repl_backlog, &config->repl_backlog) || config->repl_backlog < (64u << 10)) {
        return reject("--repl-backlog: not a size of at least 64k: " + repl_backlog);
    }
    for (const std::string& peer : config->repl_peers) {
        replication::Endpoint endpoint;
        if (!replication::parse_endpoint(peer, &endpoint)) return reject("-x/--repl-peer: not HOST[:PORT]: " + peer);
    }
    replication::Endpoint primary;
    if (!config->replica_of.empty() && !replication::parse_endpoint(config->replica_of, &primary)) {
        return reject("--replica-of: not HOST[:PORT]: " + config->replica_of);
    }
    if (!config->replica_of.empty() && !config->repl_peers.empty()) {
        return reject("--replica-of: a replica cannot also have -x/--repl-peer peers");
    }
    if ((!config->replica_of.empty() || !config->repl_peers.empty()) && config->disable_cas) {
        return reject("-C/--disable-cas: replication orders writes by their CAS versions; do not use -C with it");
    }
    if (!config->repl_peers.empty() && config->repl_port == 0) config->repl_port = replication::kDefaultReplicationPort;
    if (!secret_file.empty()) {
        std::ifstream in(secret_file, std::ios::binary);
        if (!in) return reject("--repl-secret-file: cannot read " + secret_file);
        std::string secret((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
        if (secret.empty()) return reject("--repl-secret-file: " + secret_file + " is empty");
        config->repl_secret = secret;
    }
    // Security (docs/OPERATIONS.md "Security"): every way in is authenticated.
    if (config->enable_sasl && config->udp_port != 0) {
        // memcached 1.6.18: "Cannot enable UDP while using binary SASL
        // authentication", exit 64. A datagram has no connection to log in.
        return reject("-S/--enable-sasl: cannot enable UDP while using binary SASL authentication (-U 0 to disable)");
    }

    if (config->repl_tls && (config->tls_cert.empty() || config->tls_ca.empty())) {
        return reject("--repl-tls: needs --tls-cert FILE, --tls-key FILE and --tls-ca FILE (the CA that signs every "
                      "node's certificate)");
    }
    if (config->repl_tls && !config->replication()) return reject("--repl-tls: replication is not enabled");
    // A client port protected by SASL, ascii auth or TLS next to a replication
    // port anyone can join would hand out the same data without any of it.
    bool clients_protected = config->enable_sasl || !config->auth_file.empty() || config->enable_ssl;
    if (config->replication() && config->repl_secret.empty() && clients_protected && !config->repl_insecure) {
        return reject("--repl-secret-file: needed for replication when -S, -Y or -Z protects the client port "
                      "(anyone could join the replication port and read every write); "
                      "--repl-insecure to run without it");
    }
    // As memcached: -U without -p also sets the TCP port.
    if (config->udp_port != 0 && app.count("--port") == 0) config->port = config->udp_port;
    return ParseOutcome::kRun;
}

}  // namespace memkeep::server
