// libFuzzer target: arbitrary bytes from a stranger on the replication port,
// before it has proved the secret: a Feed (this node's side of an accepted
// connection) runs its handshake against them (Feed::authenticate, as a
// HandshakePool worker does).
//
// Besides crashes, sanitizer reports and hangs, it checks the promise of the
// handshake: the stranger's bytes are all written before the Feed sends its
// challenge, so they cannot contain a proof of the secret for it, and
// authenticate() must never succeed. The first input byte picks whether the
// node requires the secret (it always does here) with or without sync
// acknowledgements, and whether the node is a replica.

#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "engine/engine.h"
#include "replication/backlog.h"
#include "replication/feed.h"
#include "replication/node.h"
#include "fuzz_support.h"

namespace {

memkeep::replication::ReplicationOptions fuzz_options(bool sync, bool replica) {
    memkeep::replication::ReplicationOptions options;
    options.secret = "a secret the stranger does not know";
    options.sync_count = sync ? 1 : 0;
    options.replica = replica;
    options.timeout_seconds = 1;
    options.log = [](std::string_view) {};
    return options;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0 || size > 16384) return 0;
    static memkeep::replication::ReplicationLog log{1 << 20};
    static memkeep::replication::ReplicationCounters counters;
    static memkeep::Mutex acks_mutex;
    static std::condition_variable acks_changed;
    static memkeep::replication::RepeatFilter filter;
    auto options = fuzz_options(data[0] & 1, data[0] & 2);
    memkeep::replication::Node node{memkeep::fuzz::shared_engine(), log, options, counters, nullptr,
                                    77, 1234, acks_mutex, acks_changed, filter};

    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) std::abort();
    // The stranger says everything at once and hangs up.
    const uint8_t* bytes = data + 1;
    size_t left = size - 1;
    while (left > 0) {
        ssize_t n = write(fds[1], bytes, left);
        if (n <= 0) break;
        bytes += n;
        left -= static_cast<size_t>(n);
    }
    shutdown(fds[1], SHUT_WR);
    bool admitted = false;
    {
        memkeep::replication::Feed feed(node, fds[0], "127.0.0.1:1", memkeep::replication::monotonic_ms());
        admitted = feed.authenticate();
    }
    close(fds[1]);
    if (admitted) {
        std::fprintf(stderr, "a stranger was admitted without proving the secret\n");
        std::abort();
    }
    return 0;
}
