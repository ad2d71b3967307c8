#include "server/server.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>

#include "server/log.h"
#include "server/sasl_cyrus.h"
#include "storage/durable_store.h"
#include "storage/overflow_tier.h"
#include "version.h"

namespace memkeep::server {

namespace {
engine::EngineConfig engine_config(const Config& config) {
    engine::EngineConfig result;
    result.memory_limit = config.memory_limit_bytes();
    result.max_item_size = config.max_item_size;
    result.evictions_enabled = !config.disable_evictions;
    result.cas_enabled = !config.disable_cas;
    result.storage_mode = config.storage == "durable"    ? engine::StorageMode::kDurable
                          : config.storage == "overflow" ? engine::StorageMode::kOverflow
                                                         : engine::StorageMode::kMemory;
    return result;
}

// A backup's name becomes a directory under <data-dir>/backups: letters,
// digits, '.', '_' and '-' only (no '/', no control characters), not
// starting with '.' (no "..", no hidden directories), at most 128 bytes.
bool valid_backup_name(std::string_view name) {
    if (name.empty() || name.size() > 128 || name[0] == '.') return false;
    for (char c : name) {
        bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                       c == '_' || c == '-';
        if (!allowed) return false;
    }
    return true;
}

constexpr std::string_view kTooManyConnections = "ERROR Too many open connections\r\n";
}  // namespace

Server::Server(const Config& config)
    : config_(config),
      prefix_stats_(config.prefix_delimiter.empty() ? ':' : config.prefix_delimiter[0], !config.prefix_delimiter.empty()),
      verbosity_(config.verbosity),
      started_at_(::time(nullptr)) {}

bool Server::open_storage(std::string* error) {
    if (config_.storage == "durable") {
        storage::DurableOptions options;
        options.data_dir = config_.data_dir;
        options.fsync = config_.fsync == "always"  ? storage::FsyncPolicy::kAlways
                        : config_.fsync == "no"    ? storage::FsyncPolicy::kNever
                                                   : storage::FsyncPolicy::kEverySecond;
        options.memory_limit = config_.memory_limit_bytes();
        backend_ = storage::open_durable_store(options, error);
        if (!backend_) return false;
    } else if (config_.storage == "overflow") {
        storage::OverflowOptions options;
        options.data_dir = config_.data_dir;
        options.disk_limit = config_.disk_limit;
        backend_ = storage::open_overflow_tier(options, error);
        if (!backend_) return false;
    }
    engine_ = std::make_unique<engine::Engine>(engine_config(config_), backend_.get());
    if (config_.replication()) {
        replication::ReplicationOptions options;
        options.listen_addresses = config_.listen_addresses;
        options.port = static_cast<uint16_t>(config_.repl_port);
        for (const std::string& peer : config_.repl_peers) {
            replication::Endpoint endpoint;
            replication::parse_endpoint(peer, &endpoint);   // checked by parse_config
            options.peers.push_back(endpoint);
        }
        options.replica = !config_.replica_of.empty();
        if (options.replica) replication::parse_endpoint(config_.replica_of, &options.primary);
        options.secret = config_.repl_secret;
        options.backlog_bytes = config_.repl_backlog;
        options.sync_count = config_.repl_sync;
        options.sync_timeout_ms = config_.repl_sync_timeout_ms;
        options.timeout_seconds = config_.repl_timeout_seconds;
        options.max_clock_offset_ms = config_.repl_max_clock_offset_ms;
        options.tls = config_.repl_tls;
        options.tls_cert = config_.tls_cert;
        options.tls_key = config_.tls_key.empty() ? config_.tls_cert : config_.tls_key;
        options.tls_ca = config_.tls_ca;
        if (config_.repl_secret.empty() &&
            (config_.enable_sasl || !config_.auth_file.empty() || config_.enable_ssl)) {
            log_line("WARNING: --repl-insecure: the replication port has no --repl-secret-file; anyone who can "
                     "reach it can join and read every write, although -S, -Y or -Z protect the client port");
        }
        options.log = [](std::string_view line) { log_line(line); };
        storage::Backend* durable_store = config_.storage == "durable" ? backend_.get() : nullptr;
        replicator_ = std::make_unique<replication::Replicator>(*engine_, durable_store, std::move(options));
        engine_->set_replication(replicator_.get());
    }
    return true;
}

std::string Server::admin_replication(std::string_view command, std::string_view argument) {
    if (!config_.admin) return "CLIENT_ERROR admin commands are not enabled (start with --admin)";
    if (!replicator_) return "CLIENT_ERROR replication is not enabled (start with -X, -x or --replica-of)";
    if (command == "promote" && argument.empty()) return replicator_->promote();
    if (command == "replica-of" && !argument.empty()) return replicator_->follow(argument);
    return "ERROR";
}

std::string Server::admin_backup(std::string_view name) {
    if (!config_.admin) return "CLIENT_ERROR admin commands are not enabled (start with --admin)";
    if (config_.storage != "durable") return "CLIENT_ERROR backup needs --storage durable";
    std::string label(name);
    if (label.empty()) label = fmt::format("backup-{}", ::time(nullptr));
    if (!valid_backup_name(label)) {
        return "CLIENT_ERROR bad backup name (use letters, digits, '.', '_' and '-', not starting with '.')";
    }
    std::string directory = config_.data_dir + "/backups/" + label;
    ::mkdir((config_.data_dir + "/backups").c_str(), 0755);
    std::string error;
    if (!backend_->checkpoint(directory, &error)) return "SERVER_ERROR backup failed: " + error;
    if (verbosity_.load() >= 1) log_line("backup written to " + directory);
    return "OK " + directory;
}

Server::~Server() {
    for (auto& worker : workers_) worker->stop();
    for (auto& worker : workers_) worker->join();
    if (replicator_) replicator_->stop();
    for (auto& listener : listeners_) ::close(listener.fd);
    for (auto& udp : udp_sockets_) ::close(udp.fd);
}

bool Server::load_auth_file(std::string* error) {
    if (config_.auth_file.empty()) return true;
    auth_ = std::make_unique<protocol::AsciiAuthFile>();
    return auth_->load(config_.auth_file, error);
}

bool Server::open_listeners(std::string* error) {
    if (config_.enable_sasl) {
        sasl_ = make_cyrus_sasl(config_.verbosity, error);
        if (!sasl_) return false;
    }
    if (config_.enable_ssl) {
        net::TlsOptions options;
        options.certificate_chain = config_.tls_cert;
        options.private_key = config_.tls_key;
        options.ca_certificates = config_.tls_ca;
        options.verify_mode = config_.ssl_verify_mode >= 0 ? config_.ssl_verify_mode : config_.tls_ca.empty() ? 0 : 2;
        tls_ = net::TlsContext::create(options, error);
        if (!tls_) return false;
    }
    if (!config_.unix_socket.empty()) {
        auto listener = net::bind_unix_listener(config_.unix_socket, config_.unix_mask, error);
        if (listener.fd < 0) return false;
        listeners_.push_back(listener);
        return true;
    }
    for (const auto& address : config_.listen_addresses) {
        auto listener = net::bind_tcp_listener(address, config_.port, error);
        if (listener.fd < 0) return false;
        listeners_.push_back(listener);
    }
    // -U: a UDP socket on each -l address (not with -s, as memcached).
    for (const auto& address : config_.listen_addresses) {
        if (config_.udp_port == 0) break;
        auto udp = net::open_udp_socket(address, config_.udp_port, error);
        if (udp.fd < 0) return false;
        udp_sockets_.push_back(udp);
    }
    return true;
}

bool Server::open_replication_listener(std::string* error) {
    return !replicator_ || replicator_->open(error);
}

bool Server::start_listening(std::string* error) {
    for (const auto& listener : listeners_) {
        if (!net::start_listening(listener, config_.listen_backlog, error)) return false;
    }
    return true;
}

void Server::log_request(int fd, std::string_view line) { log_line(fmt::format("<{} {}", fd, line)); }

void Server::connection_closed(const net::ConnectionInfo& info) {
    {
        std::lock_guard<std::mutex> guard(registry_mutex_);
        registry_.erase(info.fd);
    }
    current_connections_.fetch_sub(1);
    // A file descriptor came free: resume accepting if EMFILE paused it.
    if (accept_paused_.load() && accept_wake_fd_ >= 0) {
        uint64_t one = 1;
        [[maybe_unused]] ssize_t n = ::write(accept_wake_fd_, &one, sizeof(one));
    }
    if (verbosity_.load() >= 2) log_line(fmt::format("<{} connection closed.", info.fd));
}

void Server::pause_accepting() {
    // As memcached on EMFILE: stop accepting (the listeners leave the epoll
    // set, so a listener that stays readable cannot spin the loop) until a
    // connection closes or the next maintenance tick. Waiting clients stay
    // in the kernel's backlog.
    if (accept_paused_.exchange(true)) return;
    for (const auto& listener : listeners_) ::epoll_ctl(main_epoll_fd_, EPOLL_CTL_DEL, listener.fd, nullptr);
    rejected_connections_.fetch_add(1);
    listen_disabled_.fetch_add(1);
    log_line("too many open files: not accepting connections until one closes");
}

void Server::resume_accepting() {
    if (!accept_paused_.exchange(false)) return;
    epoll_event event{};
    event.events = EPOLLIN;
    for (const auto& listener : listeners_) {
        event.data.fd = listener.fd;
        ::epoll_ctl(main_epoll_fd_, EPOLL_CTL_ADD, listener.fd, &event);
    }
}

void Server::accept_from(const net::ListenSocket& listener) {
    for (;;) {
        std::string peer;
        int fd = net::accept_connection(listener, &peer);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) pause_accepting();
            return;
        }
        if (current_connections_.load() >= static_cast<uint64_t>(config_.conn_limit)) {
            [[maybe_unused]] ssize_t n = ::send(fd, kTooManyConnections.data(), kTooManyConnections.size(), MSG_NOSIGNAL);
            ::close(fd);
            rejected_connections_.fetch_add(1);
            continue;
        }
        auto info = std::make_shared<net::ConnectionInfo>();
        info->fd = fd;
        info->peer = peer;
        info->local = listener.name;
        info->last_command_time.store(::time(nullptr));
        {
            std::lock_guard<std::mutex> guard(registry_mutex_);
            registry_[fd] = info;
        }
        current_connections_.fetch_add(1);
        total_connections_.fetch_add(1);
        if (verbosity_.load() >= 2) log_line(fmt::format("<{} new client connection from {}", fd, peer));
        workers_[next_worker_]->add_connection(fd, std::move(info));
        next_worker_ = (next_worker_ + 1) % workers_.size();
    }
}

int Server::run() {
    // SIGTERM/SIGINT/SIGUSR1 (stop) and SIGHUP (reload the -Y file) arrive through
    // a signalfd on this thread; workers inherit the blocked mask.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGUSR1);   // as memcached 1.6: a graceful stop
    sigaddset(&stop_signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    int signal_fd = ::signalfd(-1, &stop_signals, SFD_NONBLOCK | SFD_CLOEXEC);

    net::Connection::Limits limits;
    limits.max_requests_per_event = static_cast<size_t>(config_.max_reqs_per_event);
    limits.protocol = protocol_choice();
    limits.tls = tls_.get();   // -Z: TLS on every TCP listener (a UNIX socket with -Z is refused at start)
    for (int i = 0; i < config_.threads; ++i) {
        workers_.push_back(std::make_unique<net::Worker>(
            *engine_, *this, limits, [this](const net::ConnectionInfo& info) { connection_closed(info); }));
        for (const auto& udp : udp_sockets_) workers_.back()->add_udp_socket(udp.fd);
        workers_.back()->start();
    }

    if (replicator_) {
        std::string error;
        if (!replicator_->start(&error)) log_line("replication: cannot start: " + error);
    }

    int epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
    main_epoll_fd_ = epoll_fd;
    accept_wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.fd = signal_fd;
    ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, signal_fd, &event);
    event.data.fd = accept_wake_fd_;
    ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, accept_wake_fd_, &event);
    for (const auto& listener : listeners_) {
        event.data.fd = listener.fd;
        ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listener.fd, &event);
        if (verbosity_.load() >= 1) log_line(fmt::format("memkeep {} listening on {}", kVersion, listener.name));
    }
    for (const auto& udp : udp_sockets_) {
        if (verbosity_.load() >= 1) log_line(fmt::format("memkeep {} listening on {}", kVersion, udp.name));
    }

    bool running = true;
    time_t last_maintenance = ::time(nullptr);
    epoll_event ready[16];
    while (running) {
        int n = ::epoll_wait(epoll_fd, ready, 16, 1000);
        for (int i = 0; i < n; ++i) {
            if (ready[i].data.fd == signal_fd) {
                signalfd_siginfo info;
                [[maybe_unused]] ssize_t r = ::read(signal_fd, &info, sizeof(info));
                if (info.ssi_signo == SIGHUP) {
                    // As memcached: SIGHUP reloads the auth file; a file that
                    // cannot be read keeps the credentials already loaded.
                    std::string error;
                    if (auth_ && !auth_->reload(&error)) log_line("auth file not reloaded: " + error);
                    else if (auth_ && verbosity_.load() >= 1) log_line("auth file reloaded");
                    continue;
                }
                if (info.ssi_signo == SIGUSR1) log_line("Gracefully stopping");
                else if (verbosity_.load() >= 1) log_line(fmt::format("signal {} received, shutting down", info.ssi_signo));
                running = false;
                continue;
            }
            if (ready[i].data.fd == accept_wake_fd_) {
                uint64_t count;
                [[maybe_unused]] ssize_t r = ::read(accept_wake_fd_, &count, sizeof(count));
                resume_accepting();
                continue;
            }
            for (const auto& listener : listeners_) {
                if (accept_paused_.load()) break;
                if (listener.fd == ready[i].data.fd) accept_from(listener);
            }
        }
        time_t now = ::time(nullptr);
        if (now != last_maintenance) {
            last_maintenance = now;
            resume_accepting();   // fds may have come free outside our connections
            engine_->run_maintenance();
            engine_->save_state();
            if (replicator_) replicator_->save_progress();
        }
    }

    // Stop accepting, then let every worker finish its replies in flight.
    for (auto& listener : listeners_) ::close(listener.fd);
    listeners_.clear();
    if (!config_.unix_socket.empty()) ::unlink(config_.unix_socket.c_str());
    for (auto& worker : workers_) worker->stop();
    for (auto& worker : workers_) worker->join();
    for (auto& udp : udp_sockets_) ::close(udp.fd);
    udp_sockets_.clear();
    if (replicator_) replicator_->stop();   // saves where each link stopped
    engine_->save_state();
    ::close(epoll_fd);
    ::close(signal_fd);
    ::close(accept_wake_fd_);
    accept_wake_fd_ = -1;
    return 0;
}

}  // namespace memkeep::server
