#pragma once
// Server: wires the listeners, the worker threads and the engine together,
// and answers what protocol handlers ask of the whole process (stats,
// verbosity, logging).

#include <atomic>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "net/connection.h"
#include "net/listener.h"
#include "net/udp_listener.h"
#include "net/tls.h"
#include "net/worker.h"
#include "protocol/sasl.h"
#include "protocol/ascii_auth.h"
#include "protocol/services.h"
#include "replication/replicator.h"
#include "server/config.h"
#include "storage/backend.h"

namespace memkeep::server {

class Server : public protocol::ServerServices {
public:
    explicit Server(const Config& config);
    ~Server() override;

    // Opens the store (durable mode) and creates the engine; false with
    // `error` set when the data directory cannot be used.
    bool open_storage(std::string* error);

    // Binds every client socket (as root, before the -u switch, so that a
    // privileged port works). Done before daemonizing so that a port in use
    // is reported to the person who started us, with a non-zero exit. The
    // TCP and UNIX sockets accept only after start_listening.
    bool open_listeners(std::string* error);

    // listen() on the client sockets, once the store and the replication
    // listener are open: a client that can connect is served.
    bool start_listening(std::string* error);

    // Opens the replication listener (-X); after open_storage, as the -u
    // user. True when replication is off.
    bool open_replication_listener(std::string* error);

    // -Y: reads the auth file; false with `error` naming it when it cannot
    // be read. Called before anything listens. SIGHUP reads it again.
    bool load_auth_file(std::string* error);

    // Serves until SIGTERM, SIGINT or SIGUSR1 (memcached's graceful stop), then stops accepting, finishes replies
    // in flight and returns the exit code (0).
    int run();

    // protocol::ServerServices
    bool collect_stats(std::string_view group, protocol::StatLines& out) override;
    void reset_stats() override;
    void set_verbosity(int level) override { verbosity_.store(level); }
    void log_request(int fd, std::string_view line) override;
    bool verbose_requests() const override { return verbosity_.load(std::memory_order_relaxed) >= 2; }
    std::string admin_backup(std::string_view name) override;
    std::string admin_replication(std::string_view command, std::string_view argument) override;
    const protocol::AsciiAuthFile* ascii_auth() const override { return auth_.get(); }
    protocol::SaslProvider* sasl() override { return sasl_.get(); }
    protocol::PrefixStats* prefix_stats() override { return &prefix_stats_; }

private:
    void accept_from(const net::ListenSocket& listener);
    // EMFILE/ENFILE: the listeners leave the main loop's epoll set until a
    // connection closes (accept_wake_fd_) or the next maintenance tick.
    void pause_accepting();
    void resume_accepting();
    void connection_closed(const net::ConnectionInfo& info);
    // -B as the connections see it.
    protocol::ProtocolChoice protocol_choice() const;

    // stats groups (stats.cc)
    void general_stats(protocol::StatLines& out);
    void settings_stats(protocol::StatLines& out);
    void item_stats(protocol::StatLines& out);
    void slab_stats(protocol::StatLines& out);
    void connection_stats(protocol::StatLines& out);
    void storage_stats(protocol::StatLines& out);
    void replication_stats(protocol::StatLines& out);

    Config config_;
    std::unique_ptr<storage::Backend> backend_;   // durable mode only; outlives the engine
    std::unique_ptr<engine::Engine> engine_;
    // Replication (-X, -x, --replica-of); stopped before the engine goes.
    std::unique_ptr<replication::Replicator> replicator_;
    // -S (Cyrus SASL) and -Z (the TLS context of every TCP connection);
    // made by open_listeners, so bad files fail the start.
    std::unique_ptr<protocol::SaslProvider> sasl_;
    std::unique_ptr<net::TlsContext> tls_;
    std::vector<net::ListenSocket> listeners_;
    std::vector<net::UdpSocket> udp_sockets_;             // -U: served by every worker
    std::unique_ptr<protocol::AsciiAuthFile> auth_;       // -Y
    protocol::PrefixStats prefix_stats_;                  // stats detail, -D
    std::vector<std::unique_ptr<net::Worker>> workers_;
    size_t next_worker_ = 0;
    std::atomic<int> verbosity_;
    time_t started_at_;

    std::atomic<uint64_t> current_connections_{0};
    std::atomic<uint64_t> total_connections_{0};
    std::atomic<uint64_t> rejected_connections_{0};
    std::atomic<uint64_t> listen_disabled_{0};   // times EMFILE paused accepting
    std::atomic<bool> accept_paused_{false};
    int main_epoll_fd_ = -1;
    int accept_wake_fd_ = -1;   // eventfd written by workers when a connection closes
    std::mutex registry_mutex_;
    std::map<int, std::shared_ptr<net::ConnectionInfo>> registry_;
};

}  // namespace memkeep::server
