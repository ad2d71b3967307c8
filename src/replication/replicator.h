#pragma once
// Replicator: replication for one node. It is the engine's ReplicationSink
// (every mutation goes into the replication log), listens on the replication
// port (-X) for nodes that pull from this one (a Feed each), and keeps a Link
// to every node this one pulls from (-x peers, or --replica-of's primary).
//
// Active-active (repcached style): two or more nodes name each other with -x;
// each pulls the others' writes, conflicts resolve last-writer-wins in the
// engine. Read replica (memcachedb style): --replica-of makes the engine
// read-only and pulls everything from the primary; `replication promote`
// makes it writable, `replication replica-of HOST[:PORT]` points it at
// another primary.

#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/mutex.h"
#include "engine/engine.h"
#include "engine/mutation.h"
#include "replication/backlog.h"
#include "replication/feed.h"
#include "replication/handshake_pool.h"
#include "replication/link.h"
#include "replication/link_tls.h"
#include "replication/node.h"

namespace memkeep::replication {

using StatLines = std::vector<std::pair<std::string, std::string>>;

class Replicator : public engine::ReplicationSink {
public:
    // `durable_backend`: the store of a durable node (resume points), else null.
    Replicator(engine::Engine& engine, storage::Backend* durable_backend, ReplicationOptions options);
    ~Replicator() override;

    // Binds the replication port (before anything serves, so that a port in
    // use fails the start); false with `error`.
    bool open(std::string* error);
    // Starts accepting and connecting; false with `error` when not even the
    // handshake threads can be started.
    bool start(std::string* error);
    // Stops every connection and thread (saves resume points first).
    void stop();

    // engine::ReplicationSink
    uint64_t node_id() const override { return node_id_; }
    uint64_t publish(const engine::Mutation& mutation) override { return log_.append(mutation); }
    bool release(bool urgent) override;
    bool wait_replicated(uint64_t offset, int* acknowledged, int* required) override;
    bool sync_required() const override { return options_.sync_count > 0; }

    // Admin commands; each returns the reply line.
    std::string promote();
    std::string follow(std::string_view address);

    void collect_stats(StatLines& out);
    // About once a second: durable nodes save their resume points.
    void save_progress();

private:
    void accept_loop();
    void reap_finished_feeds();
    // A HandshakePool worker hands over a Feed that proved the secret.
    void admit(std::unique_ptr<Feed> feed);
    // Starts `link`'s thread; false (logged) if none can be started.
    bool start_link(Link& link);

    engine::Engine& engine_;
    storage::Backend* durable_backend_;
    ReplicationOptions options_;
    uint64_t node_id_;
    uint64_t run_id_;
    ReplicationLog log_;
    ReplicationCounters counters_;
    Mutex acks_mutex_;   // guards feeds_ and the acks they report
    std::condition_variable acks_changed_;
    RepeatFilter feed_log_filter_;
    Node node_;
    LinkTlsContext tls_;
    std::vector<int> listen_fds_;
    std::thread acceptor_;
    std::atomic<bool> stopping_{false};
    std::vector<std::unique_ptr<Feed>> feeds_ GUARDED_BY(acks_mutex_);
    HandshakePool handshakes_;
    Mutex links_mutex_;
    std::vector<std::unique_ptr<Link>> links_ GUARDED_BY(links_mutex_);
    std::atomic<bool> replica_{false};
    std::atomic<int64_t> last_release_us_{0};
};

}  // namespace memkeep::replication
