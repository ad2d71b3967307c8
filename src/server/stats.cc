// The `stats` command groups, as Server methods: what the process, the
// workers and the engine count, under memcached's names.

#include <sys/resource.h>
#include <unistd.h>

#include <fmt/format.h>

#include "server/server.h"
#include "version.h"

namespace memkeep::server {

namespace {

void add(protocol::StatLines& out, std::string name, std::string value) {
    out.emplace_back(std::move(name), std::move(value));
}

template <typename Number>
void add_number(protocol::StatLines& out, std::string name, Number value) {
    out.emplace_back(std::move(name), fmt::format("{}", value));
}

std::string seconds_and_micros(const timeval& tv) { return fmt::format("{}.{:06}", tv.tv_sec, tv.tv_usec); }

}  // namespace

protocol::ProtocolChoice Server::protocol_choice() const {
    if (config_.protocol == "ascii") return protocol::ProtocolChoice::kAscii;
    if (config_.protocol == "binary") return protocol::ProtocolChoice::kBinary;
    return protocol::ProtocolChoice::kAuto;
}

bool Server::collect_stats(std::string_view group, protocol::StatLines& out) {
    if (group.empty()) general_stats(out);
    else if (group == "settings") settings_stats(out);
    else if (group == "items") item_stats(out);
    else if (group == "slabs") slab_stats(out);
    else if (group == "sizes") add(out, "sizes_status", "disabled");
    else if (group == "conns") connection_stats(out);
    else if (group == "storage") storage_stats(out);
    else if (group == "repl") replication_stats(out);
    else return false;
    return true;
}

void Server::reset_stats() {
    for (auto& worker : workers_) worker->reset_stats();
    engine_->cache().reset_counters();
    total_connections_.store(0);
    rejected_connections_.store(0);
    listen_disabled_.store(0);
    if (tls_) tls_->reset_stats();
    prefix_stats_.clear();
}

void Server::general_stats(protocol::StatLines& out) {
    // Sum the per-worker counters.
    struct Totals {
#define MEMKEEP_TOTAL(name) uint64_t name = 0;
        MEMKEEP_OP_STATS(MEMKEEP_TOTAL)
#undef MEMKEEP_TOTAL
    } t;
    uint64_t conn_yields = 0;
    for (auto& worker : workers_) {
        auto& s = worker->op_stats();
#define MEMKEEP_SUM(name) t.name += s.name.get();
        MEMKEEP_OP_STATS(MEMKEEP_SUM)
#undef MEMKEEP_SUM
        conn_yields += worker->conn_yields();
    }
    engine::CacheCounters cache = engine_->cache().counters();
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    time_t now = ::time(nullptr);

    add_number(out, "pid", ::getpid());
    add_number(out, "uptime", now - started_at_);
    add_number(out, "time", now);
    add(out, "version", kProtocolVersion);
    add(out, "memkeep_version", kVersion);
    add_number(out, "pointer_size", sizeof(void*) * 8);
    add(out, "rusage_user", seconds_and_micros(usage.ru_utime));
    add(out, "rusage_system", seconds_and_micros(usage.ru_stime));
    add_number(out, "max_connections", config_.conn_limit);
    add_number(out, "curr_connections", current_connections_.load());
    add_number(out, "total_connections", total_connections_.load());
    add_number(out, "rejected_connections", rejected_connections_.load());
    add_number(out, "connection_structures", current_connections_.load());
    add_number(out, "cmd_get", t.cmd_get);
    add_number(out, "cmd_set", t.cmd_set);
    add_number(out, "cmd_flush", t.cmd_flush);
    add_number(out, "cmd_touch", t.cmd_touch);
    add_number(out, "cmd_meta", t.cmd_meta);
    add_number(out, "get_hits", t.get_hits);
    add_number(out, "get_misses", t.get_misses);
    add_number(out, "get_expired", t.get_expired);
    add_number(out, "delete_misses", t.delete_misses);
    add_number(out, "delete_hits", t.delete_hits);
    add_number(out, "incr_misses", t.incr_misses);
    add_number(out, "incr_hits", t.incr_hits);
    add_number(out, "decr_misses", t.decr_misses);
    add_number(out, "decr_hits", t.decr_hits);
    add_number(out, "cas_misses", t.cas_misses);
    add_number(out, "cas_hits", t.cas_hits);
    add_number(out, "cas_badval", t.cas_badval);
    add_number(out, "touch_hits", t.touch_hits);
    add_number(out, "touch_misses", t.touch_misses);
    add_number(out, "store_too_large", t.store_too_large);
    add_number(out, "store_no_memory", t.store_no_memory);
    add_number(out, "auth_cmds", t.auth_cmds);
    add_number(out, "auth_errors", t.auth_errors);
    if (tls_) add_number(out, "ssl_handshake_errors", tls_->handshake_errors());
    add_number(out, "bytes_read", t.bytes_read);
    add_number(out, "bytes_written", t.bytes_written);
    add_number(out, "limit_maxbytes", engine_->config().memory_limit);
    add_number(out, "accepting_conns", accept_paused_.load() ? 0 : 1);
    add_number(out, "listen_disabled_num", listen_disabled_.load());
    add_number(out, "threads", workers_.size());
    add_number(out, "conn_yields", conn_yields);
    add_number(out, "bytes", cache.linked_bytes);
    add_number(out, "curr_items", cache.current_items);
    add_number(out, "total_items", cache.total_items);
    add_number(out, "expired_unfetched", cache.expired_unfetched);
    add_number(out, "evicted_unfetched", cache.evicted_unfetched);
    add_number(out, "evictions", cache.evictions);
    add_number(out, "reclaimed", cache.reclaimed);
}

void Server::settings_stats(protocol::StatLines& out) {
    add_number(out, "maxbytes", engine_->config().memory_limit);
    add_number(out, "maxconns", config_.conn_limit);
    add_number(out, "tcpport", config_.port);
    add_number(out, "udpport", config_.udp_port);
    add(out, "inter", config_.unix_socket.empty() ? fmt::format("{}", fmt::join(config_.listen_addresses, ",")) : "NULL");
    add_number(out, "verbosity", verbosity_.load());
    add_number(out, "num_threads", config_.threads);
    add(out, "evictions", config_.disable_evictions ? "off" : "on");
    add(out, "domain_socket", config_.unix_socket.empty() ? "NULL" : config_.unix_socket);
    add(out, "umask", fmt::format("{:o}", config_.unix_mask));
    add_number(out, "item_size_max", config_.max_item_size);
    add(out, "cas_enabled", config_.disable_cas ? "no" : "yes");
    add(out, "stat_key_prefix", std::string(1, prefix_stats_.delimiter()));
    add(out, "detail_enabled", prefix_stats_.enabled() ? "yes" : "no");
    add_number(out, "tcp_backlog", config_.listen_backlog);
    add_number(out, "reqs_per_event", config_.max_reqs_per_event);
    add(out, "binding_protocol", protocol::protocol_choice_name(protocol_choice()));
    add(out, "auth_enabled_ascii", config_.auth_file.empty() ? "no" : config_.auth_file);
    add(out, "maxconns_fast", "yes");
    add(out, "auth_enabled_sasl", config_.enable_sasl ? "yes" : "no");
    add(out, "ssl_enabled", config_.enable_ssl ? "yes" : "no");
    if (config_.enable_ssl) {
        add(out, "ssl_chain_cert", config_.tls_cert);
        add(out, "ssl_key", config_.tls_key.empty() ? config_.tls_cert : config_.tls_key);
        add_number(out, "ssl_verify_mode",
                   config_.ssl_verify_mode >= 0 ? config_.ssl_verify_mode : config_.tls_ca.empty() ? 0 : 2);
        add(out, "ssl_ca_cert", config_.tls_ca.empty() ? "NULL" : config_.tls_ca);
        add(out, "ssl_min_version", "tlsv1.2");
    }
}

void Server::item_stats(protocol::StatLines& out) {
    // memkeep has no slab classes: one pseudo-class (1) sums every item.
    engine::CacheCounters cache = engine_->cache().counters();
    if (cache.current_items == 0) return;
    add_number(out, "items:1:number", cache.current_items);
    add_number(out, "items:1:evicted", cache.evictions);
    add_number(out, "items:1:evicted_unfetched", cache.evicted_unfetched);
    add_number(out, "items:1:expired_unfetched", cache.expired_unfetched);
    add_number(out, "items:1:reclaimed", cache.reclaimed);
    // memcached's name: tail items eviction passed over because a reply held them.
    add_number(out, "items:1:lrutail_reflocked", cache.eviction_skipped_referenced);
}

void Server::slab_stats(protocol::StatLines& out) {
    engine::CacheCounters cache = engine_->cache().counters();
    add_number(out, "active_slabs", cache.current_items > 0 ? 1 : 0);
    add_number(out, "total_malloced", engine_->cache().budget().used());
}

void Server::storage_stats(protocol::StatLines& out) {
    add(out, "storage_mode", config_.storage);
    uint64_t disk_loads = 0, get_hits = 0;
    for (auto& worker : workers_) {
        disk_loads += worker->op_stats().disk_loads.get();
        get_hits += worker->op_stats().get_hits.get();
    }
    // Reads served: from RAM, or after loading the item from disk.
    add_number(out, "storage_reads_from_disk", disk_loads);
    add_number(out, "storage_reads_from_ram", get_hits > disk_loads ? get_hits - disk_loads : 0);
    if (backend_) backend_->collect_stats(out);
}

void Server::connection_stats(protocol::StatLines& out) {
    time_t now = ::time(nullptr);
    for (const auto& listener : listeners_) {
        add(out, fmt::format("{}:addr", listener.fd), listener.name);
        add(out, fmt::format("{}:state", listener.fd), "conn_listening");
    }
    std::lock_guard<std::mutex> guard(registry_mutex_);
    for (const auto& [fd, info] : registry_) {
        add(out, fmt::format("{}:addr", fd), info->peer);
        add(out, fmt::format("{}:listen_addr", fd), info->local);
        add(out, fmt::format("{}:state", fd), "conn_parse_cmd");
        add_number(out, fmt::format("{}:secs_since_last_cmd", fd),
                   now - info->last_command_time.load(std::memory_order_relaxed));
    }
}

}  // namespace memkeep::server

namespace memkeep::server {

void Server::replication_stats(protocol::StatLines& out) {
    if (!replicator_) {
        out.emplace_back("repl_role", "none");
        return;
    }
    replicator_->collect_stats(out);
}

}  // namespace memkeep::server
